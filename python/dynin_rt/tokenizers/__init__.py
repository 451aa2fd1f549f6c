"""The frozen media tokenizers (docs/tokenizers.md): ``magvit/`` (MAGVIT-v2: images, video frames)
and ``emova/`` (EMOVA: speech), each with its network, checkpoint reader, pre/post-processing and
ONNX exporter; ``backends.py`` (PyTorch, onnxruntime or TensorRT, and their runners) and
``tensorrt.py`` (engine builder and cache) serve both."""
from .emova import EmovaSpeech
from .magvit import MagvitV2

__all__ = ["EmovaSpeech", "MagvitV2"]
