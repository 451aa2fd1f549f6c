"""ONNX export of the MAGVIT graphs: the TensorRT-friendly form, and onnxruntime parity with PyTorch.

Parity bars (issue 3): decoded uint8 pixels within 1, codes >= 99.9% identical.
"""
import os
from collections import Counter

import numpy as np
import onnx  # required by the package (pyproject): a missing one is a failure, not a skip
import onnxruntime  # noqa: F401
import pytest
import torch

from dynin_rt.cli import main
from dynin_rt.testing.magvit import write_magvit
from dynin_rt.tokenizers.backends import OnnxRunner
from dynin_rt.tokenizers.magvit import MagvitV2
from dynin_rt.tokenizers.magvit.checkpoint import load_magvit_model
from dynin_rt.tokenizers.magvit.image import postprocess_pixels
from dynin_rt.tokenizers.magvit.onnx_export import OPSET, export_magvit_onnx

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    # exported by the CLI command; the library call below then finds the files and reuses them
    root = tmp_path_factory.mktemp("magvit_onnx")
    ckpt = write_magvit(root / "ckpt", ch=32, seed=4)
    assert main(["export", "magvit", str(ckpt), str(root / "onnx")]) == 0
    return ckpt, export_magvit_onnx(ckpt, root / "onnx", "fp32")


def _max_pixel_diff(a, b):
    """Largest uint8 difference after the official postprocessing of two float pixel batches."""
    ua, ub = (postprocess_pixels(torch.as_tensor(t)).astype(int) for t in (a, b))
    return int(np.abs(ua - ub).max())


def test_graph_form_is_tensorrt_friendly(small):
    _, paths = small
    for part, (in_name, in_type, in_rank), out_name in (
        ("decoder", ("codes", onnx.TensorProto.INT32, 3), "pixels"),
        ("encoder", ("pixels", onnx.TensorProto.FLOAT, 4), "latent"),
    ):
        model = onnx.load(paths[part])
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
        ops = Counter(n.op_type for n in model.graph.node)
        # GroupNorm as InstanceNormalization (TensorRT-native), never the opset-18/21 GroupNormalization op.
        assert ops["InstanceNormalization"] == 42 and "GroupNormalization" not in ops
        assert ops["Softmax"] == 1 and ops["Conv"] == 53
        (inp,) = model.graph.input
        assert inp.name == in_name and inp.type.tensor_type.elem_type == in_type
        dims = inp.type.tensor_type.shape.dim
        assert len(dims) == in_rank
        dynamic = [bool(d.dim_param) for d in dims]
        # codes [batch, h, w] all dynamic; pixels [batch, 3, height, width] with a fixed channel axis
        assert dynamic == ([True] * 3 if part == "decoder" else [True, False, True, True])
        assert [o.name for o in model.graph.output] == [out_name]
    assert Counter(n.op_type for n in onnx.load(paths["decoder"]).graph.node)["Resize"] == 4
    assert Counter(n.op_type for n in onnx.load(paths["encoder"]).graph.node)["Pad"] == 4


def test_export_reuses_existing_files(small, tmp_path):
    ckpt, paths = small
    mtimes = {k: os.path.getmtime(p) for k, p in paths.items()}
    again = export_magvit_onnx(ckpt, os.path.dirname(paths["decoder"]), "fp32")
    assert again == paths and {k: os.path.getmtime(p) for k, p in again.items()} == mtimes


@pytest.mark.parametrize("batch,grid", [(1, 1), (2, 4), (1, 7)])
def test_onnxruntime_decoder_parity(small, batch, grid):
    ckpt, paths = small
    model = load_magvit_model(ckpt)
    codes = torch.from_numpy(np.random.default_rng(grid).integers(0, 8192, (batch, grid, grid)))
    got = OnnxRunner(paths["decoder"], CPU)({"codes": codes.int().numpy()})["pixels"]
    with torch.inference_mode():
        ref = model.decode_codes(codes)
    assert got.shape == (batch, 3, 16 * grid, 16 * grid)
    assert _max_pixel_diff(got, ref) <= 1


def test_onnxruntime_encoder_parity(small):
    ckpt, paths = small
    model = load_magvit_model(ckpt)
    rng = np.random.default_rng(9)
    x = (rng.random((3, 3, 64, 96), np.float32) * 2 - 1).astype(np.float32)
    latent = OnnxRunner(paths["encoder"], CPU)({"pixels": x})["latent"]
    with torch.inference_mode():
        ref = model.encoder(torch.from_numpy(x))
    assert latent.shape == (3, 13, 4, 6)
    got_codes = model.quantize.latent_to_codes(torch.from_numpy(latent))
    ref_codes = model.quantize.latent_to_codes(ref)
    agree = (got_codes == ref_codes).float().mean().item()
    assert agree >= 0.999, f"codes agree {agree:.4%}; max latent diff {np.abs(latent - ref.numpy()).max():.2e}"


def test_fp16_graph_keeps_norms_and_softmax_in_fp32(small, tmp_path):
    ckpt, fp32_paths = small
    paths = export_magvit_onnx(ckpt, tmp_path, "fp16")
    model = onnx.shape_inference.infer_shapes(onnx.load(paths["decoder"]))
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    for io in list(model.graph.input) + list(model.graph.output):
        types[io.name] = io.type.tensor_type.elem_type
    conv_w = [types[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]
    assert set(conv_w) == {onnx.TensorProto.FLOAT16}
    for n in model.graph.node:
        if n.op_type in ("InstanceNormalization", "Softmax"):
            assert types[n.input[0]] == onnx.TensorProto.FLOAT, n.name
    assert types["pixels"] == onnx.TensorProto.FLOAT
    # onnxruntime runs it too; fp16 activations cost a few uint8 levels at most.
    codes = np.random.default_rng(1).integers(0, 8192, (1, 3, 3)).astype(np.int32)
    half = OnnxRunner(paths["decoder"], CPU)({"codes": codes})["pixels"]
    full = OnnxRunner(fp32_paths["decoder"], CPU)({"codes": codes})["pixels"]
    assert _max_pixel_diff(half, full) <= 8


def test_magvitv2_onnx_backend_matches_torch(small, tmp_path):
    ckpt, _ = small
    tok_onnx = MagvitV2.from_pretrained(ckpt, backend="onnx", cache_dir=tmp_path)
    tok_torch = MagvitV2.from_pretrained(ckpt, backend="torch", device="cpu")
    assert tok_onnx.backend == "onnx"
    codes = np.random.default_rng(3).integers(0, 8192, (2, 9))
    a, b = tok_onnx.decode(codes), tok_torch.decode(codes)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    images = np.random.default_rng(4).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    ca, cb = tok_onnx.encode(images, resolution=48), tok_torch.encode(images, resolution=48)
    assert (ca == cb).mean() >= 0.999


def test_official_width_parity_small_grid(tmp_path):
    """The released width (95 M parameters) on a 2 x 2 grid: exported graph == PyTorch twin."""
    ckpt = write_magvit(tmp_path / "ckpt", ch=128, seed=5)
    paths = export_magvit_onnx(ckpt, tmp_path / "onnx", "fp32")
    model = load_magvit_model(ckpt)
    codes = torch.from_numpy(np.random.default_rng(0).integers(0, 8192, (2, 2, 2)))
    got = OnnxRunner(paths["decoder"], CPU)({"codes": codes.int().numpy()})["pixels"]
    with torch.inference_mode():
        ref = model.decode_codes(codes)
        x = ref.clamp(-1, 1)
        ref_codes = model.encode_codes(x)
    assert _max_pixel_diff(got, ref) <= 1
    latent = OnnxRunner(paths["encoder"], CPU)({"pixels": x.numpy()})["latent"]
    got_codes = model.quantize.latent_to_codes(torch.from_numpy(latent))
    assert (got_codes == ref_codes).float().mean().item() >= 0.999
