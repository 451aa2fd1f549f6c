"""Each CPU kernel against its PyTorch twin (style guide §6-§8): fp32 to ~1e-5 relative, bf16 no
worse than twice PyTorch's own bf16 error, sampler steps checked by hand. The same tests run the
CUDA kernels against these twins in tests/test_ops_cuda.py."""
import math

import numpy as np
import pytest
import torch

from dynin_rt import _C
from dynin_rt.noise import CounterNoise, counter_uniform
from dynin_rt.reference.model import apply_rope, rms_norm, rope_tables

OPS = _C.Ops("cpu")
RNG = np.random.default_rng(0)
# odd sizes, skinny and wide activations, K not a multiple of the vector width
GEMM_SHAPES = [(1, 7, 5), (3, 33, 97), (7, 130, 64), (64, 129, 200), (65, 64, 48), (320, 96, 129)]


def rel_err(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
def test_gemm_fp32(m, n, k):
    x = RNG.standard_normal((m, k), dtype=np.float32)
    w = RNG.standard_normal((n, k), dtype=np.float32)
    want = (torch.from_numpy(x).double() @ torch.from_numpy(w).double().T).numpy()
    assert rel_err(OPS.gemm(x, w), want) < 1e-5
    y0 = RNG.standard_normal((m, n), dtype=np.float32)
    assert rel_err(OPS.gemm(x, w, y=y0), want + y0) < 1e-5


@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
def test_gemm_bf16_within_twice_torch_bf16_error(m, n, k):
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m + n))
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(k)).bfloat16()
    exact = x.double() @ w.double().T  # bf16 weights, exact arithmetic
    torch_err = (torch.nn.functional.linear(x.bfloat16(), w).double() - exact).abs().max().item()
    bits = w.view(torch.int16).numpy().view(np.uint16)
    ours = torch.from_numpy(OPS.gemm(x.numpy(), bits, "bf16")).double()
    assert (ours - exact).abs().max().item() <= 2 * torch_err + 1e-6


def test_rms_norm_matches_reference_formula():
    x = torch.randn(9, 200)
    w = 1 + 0.1 * torch.randn(200)
    want = rms_norm(x, w, 1e-5).numpy()
    assert rel_err(OPS.rms_norm(x.numpy(), w.numpy(), 1e-5), want) < 1e-6


def test_rope_matches_reference_rotation():
    heads, hd = 3, 16
    q, k = torch.randn(11, heads * hd), torch.randn(11, heads * hd)
    positions = np.array([0, 1, 2, 5, 8, 13, 40, 41, 100, 2047, 3000], dtype=np.int32)
    sin, cos = rope_tables(4096, hd, 500000.0, "cpu")
    def ref(t):
        t4 = t.view(1, 11, heads, hd).transpose(1, 2)
        return apply_rope(t4, sin[positions], cos[positions]).transpose(1, 2).reshape(11, heads * hd).numpy()
    q2, k2 = OPS.rope(q.numpy(), k.numpy(), positions, hd, 500000.0)
    assert rel_err(q2, ref(q)) < 1e-5 and rel_err(k2, ref(k)) < 1e-5


def test_attention_varlen_matches_sdpa():
    heads, hd = 4, 32
    q_lens, k_lens = [5, 1, 9], [7, 3, 9]  # queries may be a subset of their sequence's keys
    q = torch.randn(sum(q_lens), heads * hd)
    k = torch.randn(sum(k_lens), heads * hd)
    v = torch.randn(sum(k_lens), heads * hd)
    qs, ks = np.cumsum([0] + q_lens).tolist(), np.cumsum([0] + k_lens).tolist()
    out = OPS.attention(q.numpy(), k.numpy(), v.numpy(), qs, ks, heads)
    for s in range(3):
        qq = q[qs[s]:qs[s + 1]].view(-1, heads, hd).transpose(0, 1)
        kk = k[ks[s]:ks[s + 1]].view(-1, heads, hd).transpose(0, 1)
        vv = v[ks[s]:ks[s + 1]].view(-1, heads, hd).transpose(0, 1)
        want = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv).transpose(0, 1).reshape(-1, heads * hd)
        assert rel_err(out[qs[s]:qs[s + 1]], want.numpy()) < 1e-5


def test_swiglu():
    g = torch.randn(6, 2 * 50)
    want = (torch.nn.functional.silu(g[:, :50]) * g[:, 50:]).numpy()
    assert rel_err(OPS.swiglu(g.numpy()), want) < 1e-6


# -- fused sampler steps -----------------------------------------------------------------------

MASK = 126336


def commit(logits, cand_row, cand_pos, canvas, k, choice="argmax", confidence="probability", select="topk",
           temperature=0.0, threshold=0.9, factor=1.0, seed=0, step=0, columns=None):
    cols = columns or [(0, 0, logits.shape[1])]
    return OPS.commit_step(np.asarray(logits, np.float32), cols, np.asarray(cand_row, np.int32), np.asarray(cand_pos, np.int32),
                           np.asarray(canvas, np.int32), np.asarray(k, np.int32), choice, confidence, select, temperature,
                           threshold, factor, seed, step)


def peaked_rows(prefs, strengths, width=10):
    logits = np.zeros((len(prefs), width), np.float32)
    for i, (t, s) in enumerate(zip(prefs, strengths)):
        logits[i, t] = s
    return logits


def test_commit_topk_takes_most_confident_per_row():
    logits = peaked_rows([1, 2, 3, 4, 5], [1.0, 5.0, 3.0, 2.0, 9.0])
    canvas = np.full((2, 6), MASK)
    out, n = commit(logits, [0, 0, 0, 1, 1], [1, 2, 3, 0, 5], canvas, [2, 1])
    assert out[0].tolist() == [MASK, MASK, 2, 3, MASK, MASK]
    assert out[1].tolist() == [MASK] * 5 + [5]
    assert n.tolist() == [2, 1] and canvas[0, 2] == MASK  # input untouched


def test_commit_confidence_is_the_softmax_probability():
    # probabilities: row a: p = e^2 / (e^2 + 9) ~ 0.451; row b: e^1.4 / (e^1.4 + 9) ~ 0.311
    logits = peaked_rows([3, 4], [2.0, 1.4])
    out, _ = commit(logits, [0, 0], [0, 1], np.full((1, 2), MASK), [1], select="threshold", threshold=0.4)
    assert out[0].tolist() == [3, MASK]
    out, _ = commit(logits, [0, 0], [0, 1], np.full((1, 2), MASK), [1], select="threshold", threshold=0.3)
    assert out[0].tolist() == [3, 4]
    out, _ = commit(logits, [0, 0], [0, 1], np.full((1, 2), MASK), [1], select="threshold", threshold=0.99)
    assert out[0].tolist() == [3, MASK]  # at least the best one


def test_commit_factor_rule():
    # confidences ~0.9, 0.8, 0.5: (n+1)(1-c_n) = 0.2, 0.6, 2.0 -> factor 1.0 commits the first two
    strengths = [math.log(0.9 * 9 / 0.1), math.log(0.8 * 9 / 0.2), math.log(0.5 * 9 / 0.5)]
    logits = peaked_rows([1, 2, 3], strengths)
    out, n = commit(logits, [0, 0, 0], [0, 1, 2], np.full((1, 3), MASK), [0], select="factor", factor=1.0)
    assert out[0].tolist() == [1, 2, MASK] and n.tolist() == [2]


def test_commit_maps_columns_to_tokens():
    # T2S layout: 4 unit columns at token 1000, then <|eoa|> and EOS columns
    logits = peaked_rows([4, 2], [50.0, 50.0], width=6)
    cols = [(0, 1000, 4), (4, 126098, 1), (5, 126081, 1)]
    out, _ = commit(logits, [0, 0], [0, 1], np.full((1, 2), MASK), [2], columns=cols)
    assert out[0].tolist() == [126098, 1002]


def test_commit_random_confidence_uses_the_counter_noise():
    logits = peaked_rows([1, 2, 3], [1.0, 1.0, 1.0])
    u = [counter_uniform(11, 2, 4, 0, pos) for pos in (5, 6, 7)]
    out, _ = commit(logits, [0, 0, 0], [5, 6, 7], np.full((1, 8), MASK), [1], confidence="random", seed=11, step=4)
    assert out[0, 5 + int(np.argmax(u))] == [1, 2, 3][int(np.argmax(u))]


def test_commit_gumbel_and_categorical_match_counter_noise_reference():
    logits = torch.randn(4, 300)
    noise = CounterNoise(21)
    pos = torch.tensor([3, 4, 5, 6])
    canvas_logits = torch.zeros(1, 8, 300)
    canvas_logits[0, 3:7] = logits
    want = noise.llada_tokens(canvas_logits, 0.8, 7, pos)[0, pos].tolist()
    out, _ = commit(logits.numpy(), [0] * 4, [3, 4, 5, 6], np.full((1, 8), MASK), [4], choice="gumbel", temperature=0.8,
                    seed=21, step=7)
    assert out[0, 3:7].tolist() == want
    scaled = (logits / 0.7).unsqueeze(0)
    want = noise.categorical(scaled, None, 2, pos)[0].tolist()
    out, _ = commit(logits.numpy(), [0] * 4, [3, 4, 5, 6], np.full((1, 8), MASK), [4], choice="categorical",
                    temperature=0.7, seed=21, step=2)
    assert out[0, 3:7].tolist() == want


def test_maskgit_step_keeps_the_lowest_scores_masked():
    # peaked logits: every sample is certain, so scores are log p ~ 0 plus T * Gumbel of the noise
    n = 6
    logits = peaked_rows([7, 6, 5, 4, 3, 2], [60.0] * n, width=8)
    codes = np.full((1, n), -1, np.int32)
    out, last = OPS.maskgit_step(logits, np.zeros(n, np.int32), np.arange(n, dtype=np.int32), codes, codes.copy(), [2], 1.0, 5, 3)
    assert last[0].tolist() == [7, 6, 5, 4, 3, 2]
    scores = [math.log(max(1.0, 1e-20)) - math.log(-math.log(counter_uniform(5, 2, 3, 0, i))) for i in range(n)]
    masked = set(np.argsort(scores)[:2].tolist())
    assert {i for i in range(n) if out[0, i] == -1} == masked
    assert all(out[0, i] == last[0, i] for i in range(n) if i not in masked)


def test_counter_rng_twins_agree():
    for args in [(0, 1, 0, 0, 0, 0), (7, 2, 3, 1, 9, 138000), (2**63 + 5, 1, 100, 3, 4095, 17)]:
        assert _C.counter_uniform(*args) == counter_uniform(*args)
    assert _C.counter_uniform(7, 2, 3, 1, 9) == counter_uniform(7, 2, 3, 1, 9)


@pytest.mark.parametrize("m, row0, n", [(1, 0, 16), (5, 3, 40), (12, 16, 33), (13, 7, 200), (40, 100, 17)])
def test_gemm_on_packed_fp32_weights(m, row0, n):
    # The LM head slices its packed copy at any row (e.g. the image codes start at 126372).
    k = 37
    x = RNG.standard_normal((m, k), dtype=np.float32)
    w = RNG.standard_normal((row0 + n + 5, k), dtype=np.float32)
    want = (torch.from_numpy(x).double() @ torch.from_numpy(w[row0:row0 + n]).double().T).numpy()
    try:
        got = OPS.gemm_packed(x, w, row0, n)
    except ValueError as exc:
        pytest.skip(f"this CPU build does not pack fp32 weights ({exc})")
    assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize("m, row0, n, k", [(1, 0, 16, 8), (5, 3, 40, 37), (13, 7, 200, 64), (40, 100, 17, 129)])
def test_gemm_on_packed_bf16_weights_within_twice_torch_bf16_error(m, row0, n, k):
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    w = torch.randn(row0 + n + 3, k, generator=torch.Generator().manual_seed(k)).bfloat16()
    exact = x.double() @ w[row0:row0 + n].double().T
    torch_err = (torch.nn.functional.linear(x.bfloat16(), w[row0:row0 + n]).double() - exact).abs().max().item()
    bits = w.view(torch.int16).numpy().view(np.uint16)
    try:
        got = torch.from_numpy(OPS.gemm_packed(x.numpy(), bits, row0, n, "bf16")).double()
    except ValueError as exc:
        pytest.skip(f"this CPU has no AVX512-BF16 packed kernel ({exc})")
    assert (got - exact).abs().max().item() <= 2 * torch_err + 1e-6
