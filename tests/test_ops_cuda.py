"""Each CUDA kernel against its CPU twin on the same inputs (style guide §6): fp32 kernels to
~1e-5 relative, bf16 GEMMs within twice PyTorch's bf16 error, sampler steps token-identical."""
import numpy as np
import pytest
import torch

from cuda_available import cuda_skip_reason

REASON = cuda_skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

RNG = np.random.default_rng(1)


@pytest.fixture(scope="module")
def ops():
    from dynin_rt import _C

    return _C.Ops("cpu"), _C.Ops("cuda")


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("m, n, k", [(1, 7, 5), (3, 33, 97), (64, 129, 200), (320, 96, 129), (32, 4096, 512)])
def test_gemm_fp32(ops, m, n, k):
    cpu, gpu = ops
    x = RNG.standard_normal((m, k), dtype=np.float32)
    w = RNG.standard_normal((n, k), dtype=np.float32)
    y0 = RNG.standard_normal((m, n), dtype=np.float32)
    assert rel_err(gpu.gemm(x, w), cpu.gemm(x, w)) < 1e-5
    assert rel_err(gpu.gemm(x, w, y=y0), cpu.gemm(x, w, y=y0)) < 1e-5


@pytest.mark.parametrize("m, n, k", [(1, 7, 5), (64, 129, 200), (320, 96, 128)])
def test_gemm_bf16(ops, m, n, k):
    cpu, gpu = ops
    x = torch.randn(m, k)
    w = torch.randn(n, k).bfloat16()
    exact = x.double() @ w.double().T
    torch_err = (torch.nn.functional.linear(x.bfloat16(), w).double() - exact).abs().max().item()
    bits = w.view(torch.int16).numpy().view(np.uint16)
    got = torch.from_numpy(gpu.gemm(x.numpy(), bits, "bf16")).double()
    assert (got - exact).abs().max().item() <= 2 * torch_err + 1e-6


def test_norm_rope_swiglu(ops):
    cpu, gpu = ops
    x = RNG.standard_normal((9, 200), dtype=np.float32)
    w = (1 + 0.1 * RNG.standard_normal(200)).astype(np.float32)
    assert rel_err(gpu.rms_norm(x, w, 1e-5), cpu.rms_norm(x, w, 1e-5)) < 1e-5
    q, k = RNG.standard_normal((11, 4 * 32), dtype=np.float32), RNG.standard_normal((11, 4 * 32), dtype=np.float32)
    pos = np.array([0, 1, 2, 5, 8, 13, 40, 41, 100, 2047, 3000], dtype=np.int32)
    for a, b in zip(gpu.rope(q, k, pos, 32, 500000.0), cpu.rope(q, k, pos, 32, 500000.0)):
        assert rel_err(a, b) < 1e-5
    g = RNG.standard_normal((6, 100), dtype=np.float32)
    assert rel_err(gpu.swiglu(g), cpu.swiglu(g)) < 1e-5


@pytest.mark.parametrize("heads, hd", [(4, 32), (2, 64), (2, 128), (3, 48)])
def test_attention_varlen(ops, heads, hd):
    cpu, gpu = ops
    q_lens, k_lens = [5, 1, 40], [7, 3, 70]
    q = RNG.standard_normal((sum(q_lens), heads * hd), dtype=np.float32)
    k = RNG.standard_normal((sum(k_lens), heads * hd), dtype=np.float32)
    v = RNG.standard_normal((sum(k_lens), heads * hd), dtype=np.float32)
    qs, ks = np.cumsum([0] + q_lens).tolist(), np.cumsum([0] + k_lens).tolist()
    assert rel_err(gpu.attention(q, k, v, qs, ks, heads), cpu.attention(q, k, v, qs, ks, heads)) < 1e-5


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
def test_commit_step_matches_cpu(ops, choice, confidence, select, temperature):
    cpu, gpu = ops
    n_cand, cols = 24, 700
    logits = (3 * RNG.standard_normal((n_cand, cols))).astype(np.float32)
    rows = np.array([0] * 10 + [1] * 14, np.int32)
    pos = np.array(list(range(10)) + list(range(14)), np.int32)
    canvas = np.full((2, 16), 126336, np.int32)
    args = (logits, [(0, 1000, 698), (698, 126098, 1), (699, 126081, 1)], rows, pos, canvas, np.array([3, 5], np.int32),
            choice, confidence, select, temperature, 0.3, 1.0, 9, 4)
    a, b = gpu.commit_step(*args), cpu.commit_step(*args)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_maskgit_step_matches_cpu(ops):
    cpu, gpu = ops
    n = 50
    logits = (2 * RNG.standard_normal((n, 512))).astype(np.float32)
    rows = np.array([0] * 20 + [1] * 30, np.int32)
    index = np.array(list(range(20)) + list(range(30)), np.int32)
    codes = np.full((2, 30), -1, np.int32)
    args = (logits, rows, index, codes, codes.copy(), [7, 12], 0.6, 3, 2)
    a, b = gpu.maskgit_step(*args), cpu.maskgit_step(*args)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
