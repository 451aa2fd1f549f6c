"""MAGVIT-v2, the image tokenizer (docs/tokenizers.md): ``net`` (encoder, lookup-free quantizer,
decoder), ``checkpoint`` (strict reader of the released directory), ``image`` (pre/post-processing
of images and video frames), ``tokenizer`` (``MagvitV2``: codes <-> images on a backend) and
``onnx_export`` (the ONNX graphs and their TensorRT engines)."""
from .tokenizer import MagvitV2

__all__ = ["MagvitV2"]
