"""The frozen detokenizers: MAGVIT-v2 (images, video frames) and EMOVA (speech), each on
PyTorch, onnxruntime or TensorRT."""
from .emova import EmovaSpeech
from .magvit import MagvitV2

__all__ = ["EmovaSpeech", "MagvitV2"]
