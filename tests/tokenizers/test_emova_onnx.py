"""EMOVA ONNX graphs on onnxruntime vs the PyTorch twins (same noise), and TensorRT where a GPU exists."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from dynin_rt.cli import main
from dynin_rt.testing.emova import write_emova
from dynin_rt.tokenizers.backends import probe_tensorrt
from dynin_rt.tokenizers.emova import EmovaSpeech
from dynin_rt.tokenizers.emova.onnx_export import OPSET
from dynin_rt.tokenizers.emova.runners import TEXT_GRAPH, UNITS_GRAPH, WAVE_GRAPH

UNITS = np.array([3, 4000, 4000, 17, 2222, 1, 900, 901, 65, 3999, 12, 2048], dtype=np.int64)


def _snr(ref, x):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - x).astype(np.float64) ** 2), 1e-30))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # the graphs are exported by the CLI command; the onnx backend then finds them and reuses them
    ckpt = write_emova(tmp_path_factory.mktemp("emova_small"), small=True)
    out = str(tmp_path_factory.mktemp("emova_onnx"))
    assert main(["export", "emova", str(ckpt), out]) == 0
    return EmovaSpeech.from_pretrained(ckpt), EmovaSpeech.from_pretrained(ckpt, backend="onnx", export_dir=out), out


def test_graphs_are_opset17_with_noise_as_input(pair):
    _, _, out = pair
    files = sorted(os.listdir(out))
    assert any(f.startswith(TEXT_GRAPH) for f in files) and any(f.startswith(WAVE_GRAPH) for f in files)
    assert any(f.startswith(UNITS_GRAPH) for f in files)
    for f in files:
        model = onnx.load(os.path.join(out, f))
        assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == OPSET
        ops = {n.op_type for n in model.graph.node}
        assert not ops & {"RandomNormal", "RandomNormalLike", "NonZero", "ScatterND"}, (f, ops)
        if f.startswith(TEXT_GRAPH):
            assert [i.name for i in model.graph.input] == ["ids", "g", "sdp_noise"]


def test_vocoder_onnx_matches_torch(pair):
    torch_sp, onnx_sp, _ = pair
    assert onnx_sp.backend == "onnx"
    for seed, units in ((0, UNITS), (1, np.tile(UNITS, 6)), (2, UNITS[:1])):
        ref, got = torch_sp.decode(units, seed=seed), onnx_sp.decode(units, seed=seed)
        assert ref.shape == got.shape
        assert _snr(ref, got) >= 40.0


def test_encoder_onnx_units_identical(pair):
    torch_sp, onnx_sp, _ = pair
    rng = np.random.default_rng(0)
    for n in (300, 16000 + 97, 40000):
        t = np.arange(n) / 16000
        wav = (0.3 * np.sin(2 * np.pi * 300 * t * (1 + t)) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        np.testing.assert_array_equal(onnx_sp.encode(wav, reduced=False), torch_sp.encode(wav, reduced=False))


def test_exported_files_are_reused(pair):
    _, _, out = pair
    assert len(os.listdir(out)) == 3  # the CLI's files, nothing written twice under other names
    mtimes = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
    EmovaSpeech.from_pretrained(pair[0].checkpoint_dir, backend="onnx", export_dir=out)
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)} == mtimes


def test_exporter_does_not_need_onnxscript(tmp_path):
    # onnxscript is not a declared dependency: the TorchScript exporter must work without it.
    code = (
        "import sys; sys.modules['onnxscript'] = None\n"
        "from dynin_rt.testing.emova import write_emova\n"
        "from dynin_rt.tokenizers.emova import EmovaSpeech\n"
        f"sp = EmovaSpeech.from_pretrained(write_emova({str(tmp_path / 'c')!r}, small=True), backend='onnx', "
        f"export_dir={str(tmp_path / 'o')!r})\n"
        "assert sp.decode([1, 2, 3]).size > 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


@pytest.mark.skipif(not probe_tensorrt().available, reason=f"TensorRT unavailable: {probe_tensorrt().reason}")
def test_tensorrt_matches_torch(pair, tmp_path):
    # fp16 wave graph (the default): a looser bound than fp32's 40 dB; fp32 text and encoder graphs.
    torch_sp = pair[0]
    trt_sp = EmovaSpeech.from_pretrained(pair[0].checkpoint_dir, backend="tensorrt", export_dir=str(tmp_path))
    ref, got = torch_sp.decode(UNITS, seed=0), trt_sp.decode(UNITS, seed=0)
    assert ref.shape == got.shape and _snr(ref, got) >= 30.0
    wav = (0.3 * np.sin(np.arange(20000) * 0.05)).astype(np.float32)
    np.testing.assert_array_equal(trt_sp.encode(wav, reduced=False), torch_sp.encode(wav, reduced=False))
