"""Conversions: HF checkpoint -> runtime weights; tokenizers -> ONNX and TensorRT engines.

Names are imported on first use, so loading an exported model never pulls in torch or onnx.
"""
import importlib

_EXPORTS = {
    "build_engine": ".tensorrt",
    "export_emova_onnx": ".emova_onnx",
    "export_magvit_onnx": ".magvit_onnx",
    "export_weights": ".weights",
    "read_manifest": ".weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
