"""dynin_rt: fast inference for Dynin-Omni, the omnimodal masked-diffusion model."""
from ._native import build_info

__version__ = "0.1.0"

__all__ = ["__version__", "build_info"]
