"""The backbone's exporter (HF checkpoint -> runtime weights, docs/weight-format.md) and the export
commands (``commands.py``: ``dynin-rt export`` and the repository's export/ scripts). The tokenizers'
ONNX exporters live beside their models, in tokenizers/magvit/ and tokenizers/emova/.

Names are imported on first use, so loading an exported model never pulls in torch or onnx.
"""
import importlib

_EXPORTS = {
    "export_weights": ".weights",
    "read_manifest": ".weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
