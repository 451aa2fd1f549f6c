"""EMOVA, the speech tokenizer (docs/tokenizers.md): ``config`` (architecture and style table),
``weights`` (strict reader of the released checkpoint), ``s2u`` (speech -> units: mel front end,
SPIRAL, FSQ), ``u2s`` / ``u2s_text`` / ``u2s_wave`` (units -> speech: the UVITS vocoder),
``audio`` (input checks), ``runners`` (the three graphs on each backend), ``tokenizer``
(``EmovaSpeech``) and ``onnx_export`` (the ONNX graphs and their TensorRT engines)."""
from .tokenizer import EmovaSpeech

__all__ = ["EmovaSpeech"]
