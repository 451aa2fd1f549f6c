"""Backend selection and the generic onnxruntime runner (dynin_rt.tokenizers.backends)."""
import sys

import numpy as np
import onnx  # required by the package (pyproject): a missing one is a failure, not a skip
import onnxruntime as ort
import pytest

from dynin_rt.tokenizers import backends
from dynin_rt.tokenizers.backends import BackendStatus, BackendUnavailableError, OnnxRunner, resolve_backend


def _fake_probes(monkeypatch, **available):
    """Replace the probes so that exactly the named backends are available."""
    for name in ("torch", "onnx", "tensorrt"):
        ok = available.get(name, False)
        status = BackendStatus(name, ok, f"{name} ok" if ok else f"{name} missing for the test")
        monkeypatch.setitem(backends._PROBES, name, lambda s=status: s)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        resolve_backend("cuda")


def test_auto_prefers_tensorrt_then_onnx_then_torch(monkeypatch):
    _fake_probes(monkeypatch, torch=True, onnx=True, tensorrt=True)
    assert resolve_backend("auto").name == "tensorrt"
    _fake_probes(monkeypatch, torch=True, onnx=True)
    chosen = resolve_backend("auto")
    assert chosen.name == "onnx" and "tensorrt missing for the test" in chosen.reason
    _fake_probes(monkeypatch, torch=True)
    assert resolve_backend("auto").name == "torch"


def test_forced_unavailable_backend_raises_with_reason(monkeypatch):
    _fake_probes(monkeypatch, torch=True)
    with pytest.raises(BackendUnavailableError, match="'onnx' was requested but is unavailable: onnx missing"):
        resolve_backend("onnx")
    with pytest.raises(BackendUnavailableError, match="tensorrt missing"):
        resolve_backend("tensorrt")


def test_tensorrt_probe_names_the_missing_piece(monkeypatch):
    # A None entry in sys.modules makes "import tensorrt" raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    status = backends.probe_tensorrt()
    assert not status.available and "tensorrt" in status.reason and "not importable" in status.reason


def test_onnx_providers_need_a_gpu_for_cuda(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(backends, "_cuda_available", lambda: False)
    assert backends.onnx_providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(backends, "_cuda_available", lambda: True)
    assert backends.onnx_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_onnx_runner_runs_a_hand_built_graph(tmp_path):
    from onnx import TensorProto, helper

    # y = a + b, z = a * b over a dynamic leading axis.
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Mul", ["a", "b"], ["z"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 2]) for n in ("y", "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    runner = OnnxRunner(path, providers=["CPUExecutionProvider"])
    assert runner.input_names == ["a", "b"] and runner.output_names == ["y", "z"]
    a = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    b = np.array([[10, 20], [30, 40], [50, 60]], np.float32)
    out = runner({"a": a, "b": b})
    np.testing.assert_array_equal(out["y"], [[11, 22], [33, 44], [55, 66]])
    np.testing.assert_array_equal(out["z"], [[10, 40], [90, 160], [250, 360]])
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        runner({"a": a})


def test_onnx_runner_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        OnnxRunner(tmp_path / "nope.onnx")


def test_tensorrt_runner_refuses_without_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="cannot run a TensorRT engine"):
        backends.TensorRTRunner(tmp_path / "x.engine")
