"""Import of the compiled module dynin_rt._C.

OpenBLAS comes from the scipy-openblas32 wheel; loading it first (RTLD_GLOBAL) makes the extension
independent of the rpath a particular build chose.
"""
from __future__ import annotations

import ctypes
import os


def _preload_openblas() -> None:
    # OpenBLAS's idle threads spin for 2^28 cycles by default, stealing the cores that the runtime's
    # own kernels (attention, the LM head, the sampler steps) run on between GEMMs; 2^16 cycles keeps
    # them warm across consecutive GEMMs only (fast mode measured 4.3 s -> 2.9 s on 2 cores).
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")
    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    if os.path.isfile(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_openblas()
from . import _C  # noqa: E402


def preload_cublaslt() -> None:
    """Make libcublasLt visible to the CUDA backend (which opens it by soname) when it comes from the
    nvidia-cublas wheel rather than the system; harmless when it is not installed. The emulated build
    has its own CPU cuBLASLt and opens nothing."""
    if _C.build_info()["cuda_emulated"]:
        return
    try:
        import nvidia
    except ImportError:
        return
    for root in getattr(nvidia, "__path__", []):
        for sub in sorted(os.listdir(root)):
            lib_dir = os.path.join(root, sub, "lib")
            if not os.path.isdir(lib_dir):
                continue
            for name in sorted(os.listdir(lib_dir)):
                if name.startswith("libcublasLt.so"):
                    ctypes.CDLL(os.path.join(lib_dir, name), mode=ctypes.RTLD_GLOBAL)
                    return


def build_info() -> dict:
    """What the compiled runtime contains: {"version", "cuda", "cuda_emulated", "blas", "cpu_simd",
    "cpu_threads"}; "cuda_emulated" is True in a DYNIN_RT_CUDA=EMULATE build (the CUDA kernels run on
    the CPU, for tests)."""
    return dict(_C.build_info())
