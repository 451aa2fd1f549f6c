"""The tasks: ``registry.py`` holds one TaskSpec per task; the modules that register them hold
what runs per output family: ``text_out`` (t2t, i2t, v2t, s2t), ``image_out`` (t2i, i2i),
``speech_out`` (t2s). ``common`` is what every task shares (Denoiser, Result, Phases)."""
from . import registry

registry.load_builtin()
