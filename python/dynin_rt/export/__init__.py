"""Conversions: HF checkpoint -> runtime weights; tokenizers -> ONNX / TensorRT."""
from .weights import export_weights, read_manifest

__all__ = ["export_weights", "read_manifest"]
