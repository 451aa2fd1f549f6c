"""dynin_rt: fast inference for Dynin-Omni, the omnimodal masked-diffusion model."""
from ._native import build_info
from .api import generate
from .runtime import Model, load

__version__ = "0.1.0"

__all__ = ["Model", "__version__", "build_info", "generate", "load"]
