"""Every backend kernel on every backend this build has, as ggml's test-backend-ops: each op case runs
on each name in `_C.backend_names()` ("cpu", and "cuda" on a GPU or in the emulated build) against a
PyTorch / numpy reference (style guide §6-§8): fp32 to ~1e-5 relative, bf16 no worse than twice
PyTorch's own bf16 error, sampler steps checked by hand. The fused sampler steps of the other
backends must also equal their CPU twins token for token. A new backend is one more name."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cuda_available import cuda_skip_reason
from dynin_rt import _C
from dynin_rt.noise import CounterNoise, counter_uniform
from dynin_rt.reference.model import apply_rope, rms_norm, rope_tables

# DYNIN_RT_TEST_BACKENDS=cuda keeps the cases of those backends only (the emulated build's run in
# tests/test_cuda_emulated.py: the CPU cases ran in the main suite already)
_ONLY = os.environ.get("DYNIN_RT_TEST_BACKENDS")
BACKENDS = [b for b in _C.backend_names() if not _ONLY or b in _ONLY.split(",")]
TWIN_BACKENDS = [b for b in BACKENDS if b != "cpu"] or [
    pytest.param("none", marks=pytest.mark.skip(reason="this build has the CPU backend only: there is no twin to compare"))
]
RNG = np.random.default_rng(0)
# odd sizes, skinny and wide activations, K not a multiple of the vector width
GEMM_SHAPES = [(1, 7, 5), (3, 33, 97), (7, 130, 64), (64, 129, 200), (65, 64, 48), (320, 96, 129)]
ATTENTION_CASES = [(4, 16), (4, 32), (2, 64), (2, 128), (3, 48)]  # (heads, head_dim)
MASK = 126336


def make_ops(name):
    if name == "cuda":
        reason = cuda_skip_reason()
        if reason:
            pytest.skip(reason)
    return _C.Ops(name)


@pytest.fixture(scope="module", params=BACKENDS)
def ops(request):
    return make_ops(request.param)


@pytest.fixture(scope="module", params=TWIN_BACKENDS)
def twins(request):
    """(the CPU twin, another backend)"""
    return _C.Ops("cpu"), make_ops(request.param)


def rel_err(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def bf16_bits(w: torch.Tensor) -> np.ndarray:
    return w.view(torch.int16).numpy().view(np.uint16)


# -- GEMMs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
def test_gemm_fp32(ops, m, n, k):
    x = RNG.standard_normal((m, k), dtype=np.float32)
    w = RNG.standard_normal((n, k), dtype=np.float32)
    want = (torch.from_numpy(x).double() @ torch.from_numpy(w).double().T).numpy()
    assert rel_err(ops.gemm(x, w), want) < 1e-5
    y0 = RNG.standard_normal((m, n), dtype=np.float32)
    assert rel_err(ops.gemm(x, w, y=y0), want + y0) < 1e-5


@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
def test_gemm_bf16_within_twice_torch_bf16_error(ops, m, n, k):
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m + n))
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(k)).bfloat16()
    exact = x.double() @ w.double().T  # bf16 weights, exact arithmetic
    torch_err = (torch.nn.functional.linear(x.bfloat16(), w).double() - exact).abs().max().item()
    ours = torch.from_numpy(ops.gemm(x.numpy(), bf16_bits(w), "bf16")).double()
    assert (ours - exact).abs().max().item() <= 2 * torch_err + 1e-6


@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_fp16_with_activations_beyond_the_fp16_range(ops, accumulate):
    # SwiGLU outputs exceed fp16's 65504: an fp16 GEMM must not cast such rows to inf.
    if not ops.caps()["computes_f16"]:
        pytest.skip("this backend widens fp16 weights to fp32 when they are placed: its GEMMs never read fp16")
    m, n, k = 5, 33, 96
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1))
    x[1] *= 3e5
    x[3, 7] = 1e5
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(2)).half()
    y0 = torch.randn(m, n) if accumulate else torch.zeros(m, n)
    exact = x.double() @ w.double().T + y0.double()
    # what an fp16 product can achieve: each row scaled by a power of two into range, rounded to fp16
    scale = 2.0 ** torch.clamp(torch.ceil(torch.log2(x.abs().amax(1, keepdim=True) / 32768)), min=0)
    rounded = (x / scale).half().double() * scale
    ref_err = (rounded @ w.double().T + y0.double() - exact).abs().max().item()
    bits = w.view(torch.int16).numpy().view(np.uint16)
    got = torch.from_numpy(ops.gemm(x.numpy(), bits, "fp16", y=y0.numpy() if accumulate else None)).double()
    assert torch.isfinite(got).all()
    assert (got - exact).abs().max().item() <= 2 * ref_err + 1e-4 * exact.abs().max().item()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_gemm_into_lm_head_column_ranges(ops, dtype):
    # The text-to-speech LM head (engine.cc): 4096 unit columns, then <|eoa|> and EOS, each product
    # written at logits + col with leading dim 4098, so the EOS column starts 4-byte aligned only.
    m, k = 3, 64
    x = torch.randn(m, k)
    w = torch.randn(4100, k)
    columns = [(0, 2, 4096), (4096, 4099, 1), (4097, 1, 1)]
    rows = list(range(2, 4098)) + [4099, 1]
    if dtype == "bf16":
        w = w.bfloat16()
        got = torch.from_numpy(ops.gemm_columns(x.numpy(), bf16_bits(w), columns, "bf16")).double()
        exact = x.double() @ w[rows].double().T
        torch_err = (torch.nn.functional.linear(x.bfloat16(), w[rows]).double() - exact).abs().max().item()
        assert (got - exact).abs().max().item() <= 2 * torch_err + 1e-6
    else:
        want = (x.double() @ w[rows].double().T).numpy()
        assert rel_err(ops.gemm_columns(x.numpy(), w.numpy(), columns), want) < 1e-5


@pytest.mark.parametrize("m, row0, n", [(1, 0, 16), (5, 3, 40), (12, 16, 33), (13, 7, 200), (40, 100, 17)])
def test_gemm_on_packed_fp32_weights(ops, m, row0, n):
    # The LM head slices its packed copy at any row (e.g. the image codes start at 126372).
    if not ops.packs("fp32"):
        pytest.skip("this backend keeps no packed fp32 weights (CPU: only builds with AVX-512)")
    k = 37
    x = RNG.standard_normal((m, k), dtype=np.float32)
    w = RNG.standard_normal((row0 + n + 5, k), dtype=np.float32)
    want = (torch.from_numpy(x).double() @ torch.from_numpy(w[row0:row0 + n]).double().T).numpy()
    assert rel_err(ops.gemm_packed(x, w, row0, n), want) < 1e-5


@pytest.mark.parametrize("m, row0, n, k", [(1, 0, 16, 8), (5, 3, 40, 37), (13, 7, 200, 64), (40, 100, 17, 129)])
def test_gemm_on_packed_bf16_weights_within_twice_torch_bf16_error(ops, m, row0, n, k):
    if not ops.packs("bf16"):
        pytest.skip("this backend keeps no packed bf16 weights (CPU: only with AVX512-BF16)")
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    w = torch.randn(row0 + n + 3, k, generator=torch.Generator().manual_seed(k)).bfloat16()
    exact = x.double() @ w[row0:row0 + n].double().T
    torch_err = (torch.nn.functional.linear(x.bfloat16(), w[row0:row0 + n]).double() - exact).abs().max().item()
    got = torch.from_numpy(ops.gemm_packed(x.numpy(), bf16_bits(w), row0, n, "bf16")).double()
    assert (got - exact).abs().max().item() <= 2 * torch_err + 1e-6


# -- norm, RoPE, attention, elementwise ------------------------------------------------------------


def test_rms_norm_matches_reference_formula(ops):
    x = torch.randn(9, 200)
    w = 1 + 0.1 * torch.randn(200)
    want = rms_norm(x, w, 1e-5).numpy()
    assert rel_err(ops.rms_norm(x.numpy(), w.numpy(), 1e-5), want) < 1e-6


def test_rope_matches_reference_rotation(ops):
    heads, hd = 3, 16
    q, k = torch.randn(11, heads * hd), torch.randn(11, heads * hd)
    positions = np.array([0, 1, 2, 5, 8, 13, 40, 41, 100, 2047, 3000], dtype=np.int32)
    sin, cos = rope_tables(4096, hd, 500000.0, "cpu")

    def ref(t):
        t4 = t.view(1, 11, heads, hd).transpose(1, 2)
        return apply_rope(t4, sin[positions], cos[positions]).transpose(1, 2).reshape(11, heads * hd).numpy()

    q2, k2 = ops.rope(q.numpy(), k.numpy(), positions, hd, 500000.0)
    assert rel_err(q2, ref(q)) < 1e-5 and rel_err(k2, ref(k)) < 1e-5


@pytest.mark.parametrize("heads, hd", ATTENTION_CASES)
def test_attention_varlen_matches_sdpa(ops, heads, hd):
    # queries may be a subset of their sequence's keys; 70 keys span three key tiles, 40 queries two
    q_lens, k_lens = [5, 1, 40], [7, 3, 70]
    q = torch.randn(sum(q_lens), heads * hd)
    k = torch.randn(sum(k_lens), heads * hd)
    v = torch.randn(sum(k_lens), heads * hd)
    qs, ks = np.cumsum([0] + q_lens).tolist(), np.cumsum([0] + k_lens).tolist()
    out = ops.attention(q.numpy(), k.numpy(), v.numpy(), qs, ks, heads)
    for s in range(3):
        qq = q[qs[s]:qs[s + 1]].view(-1, heads, hd).transpose(0, 1)
        kk = k[ks[s]:ks[s + 1]].view(-1, heads, hd).transpose(0, 1)
        vv = v[ks[s]:ks[s + 1]].view(-1, heads, hd).transpose(0, 1)
        want = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv).transpose(0, 1).reshape(-1, heads * hd)
        assert rel_err(out[qs[s]:qs[s + 1]], want.numpy()) < 1e-5


# Few queries over many keys (a cached step): the device splits the keys into chunks (flash-decoding)
# and combines them, which costs one launch more; odd lengths leave partial key tiles and chunks, and
# a chunk past a short sequence's end.
@pytest.mark.parametrize("heads, hd, q_lens, k_lens", [(2, 128, [32, 3], [517, 130]), (3, 48, [1, 33], [257, 65])],
                         ids=["hd128", "hd48"])
def test_attention_with_few_queries_equals_the_cpu_twin(twins, heads, hd, q_lens, k_lens):
    cpu, dev = twins
    q = torch.randn(sum(q_lens), heads * hd)
    k = torch.randn(sum(k_lens), heads * hd)
    v = torch.randn(sum(k_lens), heads * hd)
    qs, ks = np.cumsum([0] + q_lens).tolist(), np.cumsum([0] + k_lens).tolist()
    launches = dev.counters()["kernel_launches"]
    got = dev.attention(q.numpy(), k.numpy(), v.numpy(), qs, ks, heads)
    assert dev.counters()["kernel_launches"] - launches == 2  # the chunks, then their combination
    assert rel_err(got, cpu.attention(q.numpy(), k.numpy(), v.numpy(), qs, ks, heads)) < 1e-5


def test_swiglu(ops):
    g = torch.randn(6, 2 * 50)
    want = (torch.nn.functional.silu(g[:, :50]) * g[:, 50:]).numpy()
    assert rel_err(ops.swiglu(g.numpy()), want) < 1e-6


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_embed_gathers_rows(ops, dtype):
    table = torch.randn(50, 24)
    ids = np.array([3, 0, 49, 3, 17], np.int32)
    if dtype == "bf16":
        table = table.bfloat16()
        got = ops.embed(bf16_bits(table), ids, "bf16")
    else:
        got = ops.embed(table.numpy(), ids, "fp32")
    assert np.array_equal(got, table.float().numpy()[ids])


def test_copy_rows_with_and_without_index_lists(ops):
    src = RNG.standard_normal((6, 10), dtype=np.float32)
    dst = RNG.standard_normal((8, 12), dtype=np.float32)
    want = dst.copy()
    want[[7, 2, 0], :9] = src[[4, 1, 1], :9]
    assert np.array_equal(ops.copy_rows(src, [4, 1, 1], dst, [7, 2, 0], 9), want)
    want = dst.copy()
    want[:6, :10] = src
    assert np.array_equal(ops.copy_rows(src, None, dst, None, 10), want)


@pytest.mark.parametrize("form", ["llada", "maskgit"])
def test_cfg_combine_in_the_official_float_order(ops, form):
    u = RNG.standard_normal(70001, dtype=np.float32)
    c = RNG.standard_normal(70001, dtype=np.float32)
    alpha, beta = np.float32(2.5), np.float32(1.5)
    want = u + alpha * (c - u) if form == "llada" else alpha * c - beta * u
    assert rel_err(ops.cfg_combine(u, c, float(alpha), float(beta), form), want) < 1e-6


def test_backend_counters(ops):
    # Backend::counters: a device backend counts its launches, host waits and allocations (the tests
    # of the step path assert on them); a host-memory backend has nothing to count.
    g = RNG.standard_normal((3, 64), dtype=np.float32)
    ops.swiglu(g)  # once first: what a backend allocates at its first use (a staging ring) is not counted below
    before = ops.counters()
    ops.swiglu(g)  # upload (staged: no wait), one kernel, download (waits), two buffers allocated and freed
    after = ops.counters()
    delta = {k: after[k] - before[k] for k in after}
    if ops.caps()["host_memory"]:
        assert after == before
    else:
        assert delta["kernel_launches"] == 1 and delta["allocations"] == 2 and delta["frees"] == 2
        assert delta["host_syncs"] == 3  # the download and the two frees


def test_uploads_in_flight_keep_their_data(ops):
    # 7 MiB in pieces under 1 MiB, none waited for: the CUDA backend's 4 MiB pinned staging ring wraps
    # onto copies not yet run (the emulated device runs them only when the host waits)
    arrays = [RNG.standard_normal(n, dtype=np.float32) for n in [250_000, 7, 262_144, 199_999] * 7]
    for got, want in zip(ops.roundtrip(arrays), arrays):
        assert np.array_equal(got, want)


# -- fused sampler steps -----------------------------------------------------------------------


def commit(ops, logits, cand_row, cand_pos, canvas, k, choice="argmax", confidence="probability", select="topk",
           temperature=0.0, threshold=0.9, factor=1.0, seed=0, step=0, columns=None):
    cols = columns or [(0, 0, logits.shape[1])]
    return ops.commit_step(np.asarray(logits, np.float32), cols, np.asarray(cand_row, np.int32), np.asarray(cand_pos, np.int32),
                           np.asarray(canvas, np.int32), np.asarray(k, np.int32), choice, confidence, select, temperature,
                           threshold, factor, seed, step)


def peaked_rows(prefs, strengths, width=10):
    logits = np.zeros((len(prefs), width), np.float32)
    for i, (t, s) in enumerate(zip(prefs, strengths)):
        logits[i, t] = s
    return logits


def test_commit_topk_takes_most_confident_per_row(ops):
    logits = peaked_rows([1, 2, 3, 4, 5], [1.0, 5.0, 3.0, 2.0, 9.0])
    canvas = np.full((2, 6), MASK)
    out, n = commit(ops, logits, [0, 0, 0, 1, 1], [1, 2, 3, 0, 5], canvas, [2, 1])
    assert out[0].tolist() == [MASK, MASK, 2, 3, MASK, MASK]
    assert out[1].tolist() == [MASK] * 5 + [5]
    assert n.tolist() == [2, 1] and canvas[0, 2] == MASK  # input untouched


def test_commit_confidence_is_the_softmax_probability(ops):
    # probabilities: row a: p = e^2 / (e^2 + 9) ~ 0.451; row b: e^1.4 / (e^1.4 + 9) ~ 0.311
    logits = peaked_rows([3, 4], [2.0, 1.4])
    out, _ = commit(ops, logits, [0, 0], [0, 1], np.full((1, 2), MASK), [1], select="threshold", threshold=0.4)
    assert out[0].tolist() == [3, MASK]
    out, _ = commit(ops, logits, [0, 0], [0, 1], np.full((1, 2), MASK), [1], select="threshold", threshold=0.3)
    assert out[0].tolist() == [3, 4]
    out, _ = commit(ops, logits, [0, 0], [0, 1], np.full((1, 2), MASK), [1], select="threshold", threshold=0.99)
    assert out[0].tolist() == [3, MASK]  # at least the best one


def test_commit_factor_rule(ops):
    # confidences ~0.9, 0.8, 0.5: (n+1)(1-c_n) = 0.2, 0.6, 2.0 -> factor 1.0 commits the first two
    strengths = [math.log(0.9 * 9 / 0.1), math.log(0.8 * 9 / 0.2), math.log(0.5 * 9 / 0.5)]
    logits = peaked_rows([1, 2, 3], strengths)
    out, n = commit(ops, logits, [0, 0, 0], [0, 1, 2], np.full((1, 3), MASK), [0], select="factor", factor=1.0)
    assert out[0].tolist() == [1, 2, MASK] and n.tolist() == [2]


def test_commit_maps_columns_to_tokens(ops):
    # T2S layout: 4 unit columns at token 1000, then <|eoa|> and EOS columns
    logits = peaked_rows([4, 2], [50.0, 50.0], width=6)
    cols = [(0, 1000, 4), (4, 126098, 1), (5, 126081, 1)]
    out, _ = commit(ops, logits, [0, 0], [0, 1], np.full((1, 2), MASK), [2], columns=cols)
    assert out[0].tolist() == [126098, 1002]


def test_commit_random_confidence_uses_the_counter_noise(ops):
    logits = peaked_rows([1, 2, 3], [1.0, 1.0, 1.0])
    u = [counter_uniform(11, 2, 4, 0, pos) for pos in (5, 6, 7)]
    out, _ = commit(ops, logits, [0, 0, 0], [5, 6, 7], np.full((1, 8), MASK), [1], confidence="random", seed=11, step=4)
    assert out[0, 5 + int(np.argmax(u))] == [1, 2, 3][int(np.argmax(u))]


def test_commit_gumbel_and_categorical_match_counter_noise_reference(ops):
    logits = torch.randn(4, 300)
    noise = CounterNoise(21)
    pos = torch.tensor([3, 4, 5, 6])
    canvas_logits = torch.zeros(1, 8, 300)
    canvas_logits[0, 3:7] = logits
    want = noise.llada_tokens(canvas_logits, 0.8, 7, pos)[0, pos].tolist()
    out, _ = commit(ops, logits.numpy(), [0] * 4, [3, 4, 5, 6], np.full((1, 8), MASK), [4], choice="gumbel", temperature=0.8,
                    seed=21, step=7)
    assert out[0, 3:7].tolist() == want
    scaled = (logits / 0.7).unsqueeze(0)
    want = noise.categorical(scaled, None, 2, pos)[0].tolist()
    out, _ = commit(ops, logits.numpy(), [0] * 4, [3, 4, 5, 6], np.full((1, 8), MASK), [4], choice="categorical",
                    temperature=0.7, seed=21, step=2)
    assert out[0, 3:7].tolist() == want


def test_maskgit_step_keeps_the_lowest_scores_masked(ops):
    # peaked logits: every sample is certain, so scores are log p ~ 0 plus T * Gumbel of the noise
    n = 6
    logits = peaked_rows([7, 6, 5, 4, 3, 2], [60.0] * n, width=8)
    codes = np.full((1, n), -1, np.int32)
    out, last = ops.maskgit_step(logits, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), codes, codes.copy(), [2], 1.0, 5, 3)
    assert last[0].tolist() == [7, 6, 5, 4, 3, 2]
    scores = [math.log(max(1.0, 1e-20)) - math.log(-math.log(counter_uniform(5, 2, 3, 0, i))) for i in range(n)]
    masked = set(np.argsort(scores)[:2].tolist())
    assert {i for i in range(n) if out[0, i] == -1} == masked
    assert all(out[0, i] == last[0, i] for i in range(n) if i not in masked)


UNMAPPED_COLUMN = """
import numpy as np
from dynin_rt import _C
ops = _C.Ops({backend!r})
logits = np.zeros((1, 6), np.float32)
logits[0, 5] = 9.0  # column 5 wins; only columns 0-3 map to tokens
ops.commit_step(logits, [(0, 1000, 4)], np.zeros(1, np.int32), np.zeros(1, np.int32), np.full((1, 2), 126336, np.int32),
                np.ones(1, np.int32), "argmax", "probability", "topk", 0.0, 0.9, 1.0, 0, 0)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_commit_of_an_unmapped_column_fails(backend):
    ops = make_ops(backend)
    if backend == "cpu":
        with pytest.raises(ValueError, match="not mapped"):
            commit(ops, peaked_rows([5], [9.0], width=6), [0], [0], np.full((1, 2), MASK), [1], columns=[(0, 1000, 4)])
        return
    # A device fails the launch (a trap), which leaves the device unusable: a process of its own.
    proc = subprocess.run([sys.executable, "-c", UNMAPPED_COLUMN.format(backend=backend)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "RuntimeError" in proc.stderr, proc.stderr[-2000:]
    assert "column 5 is not mapped to a token" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "choice, confidence, select, temperature",
    [
        ("argmax", "probability", "topk", 0.0),
        ("gumbel", "probability", "topk", 0.8),
        ("argmax", "random", "topk", 0.0),
        ("categorical", "probability", "threshold", 1.0),
        ("argmax", "probability", "factor", 0.0),
    ],
)
def test_commit_step_equals_the_cpu_twin(twins, choice, confidence, select, temperature):
    cpu, other = twins
    n_cand, cols = 24, 700
    logits = (3 * RNG.standard_normal((n_cand, cols))).astype(np.float32)
    rows = np.array([0] * 10 + [1] * 14, np.int32)
    pos = np.array(list(range(10)) + list(range(14)), np.int32)
    canvas = np.full((2, 16), MASK, np.int32)
    args = (logits, [(0, 1000, 698), (698, 126098, 1), (699, 126081, 1)], rows, pos, canvas, np.array([3, 5], np.int32),
            choice, confidence, select, temperature, 0.3, 1.0, 9, 4)
    a, b = other.commit_step(*args), cpu.commit_step(*args)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_maskgit_step_equals_the_cpu_twin(twins):
    cpu, other = twins
    n = 50
    logits = (2 * RNG.standard_normal((n, 512))).astype(np.float32)
    rows = np.array([0] * 20 + [1] * 30, np.int32)
    index = np.array(list(range(20)) + list(range(30)), np.int32)
    codes = np.full((2, 30), -1, np.int32)
    args = (logits, rows, index, codes, codes.copy(), [7, 12], 0.6, 3, 2)
    a, b = other.maskgit_step(*args), cpu.maskgit_step(*args)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_counter_rng_twins_agree():
    for args in [(0, 1, 0, 0, 0, 0), (7, 2, 3, 1, 9, 138000), (2**63 + 5, 1, 100, 3, 4095, 17)]:
        assert _C.counter_uniform(*args) == counter_uniform(*args)
    assert _C.counter_uniform(7, 2, 3, 1, 9) == counter_uniform(7, 2, 3, 1, 9)


def test_det_math_vector_lanes_equal_the_scalar_path():
    # The sampler twins evaluate det_math.h's exp / log in vector lanes, the CUDA kernels one value
    # at a time: both must give the same bits, and stay within an ulp of the true value.
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-746, 710, 20000), rng.uniform(-40, 0, 20000), rng.standard_normal(999) * 1e-9,
                        [0.0, -745.1, -744.0, 709.5, -708.5, 1e-300]])
    scalar, lanes = _C.det_math(x, "exp")
    assert np.array_equal(scalar.view(np.int64), lanes.view(np.int64))
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    normal = (ref > 1e-300) & np.isfinite(ref)
    assert (np.abs(scalar[normal] - ref[normal]) <= np.spacing(ref[normal])).all()
    y = np.concatenate([10 ** rng.uniform(-20, 3, 30000), rng.uniform(0.6, 1.5, 20000), [1.0, 1e-20, 0.5, 2.0, 1 + 2**-52]])
    scalar, lanes = _C.det_math(y, "log")
    assert np.array_equal(scalar.view(np.int64), lanes.view(np.int64))
    ref = np.log(y)
    assert (np.abs(scalar - ref) <= np.spacing(np.abs(ref))).all()
