"""dynin_rt: fast inference for Dynin-Omni, the omnimodal masked-diffusion model."""
from ._native import build_info
from ._native import _C
from .api import generate
from .errors import Cancelled
from .runtime import Model, load

CancelToken = _C.CancelToken

__version__ = "0.1.0"

__all__ = ["CancelToken", "Cancelled", "Model", "__version__", "build_info", "generate", "load"]
