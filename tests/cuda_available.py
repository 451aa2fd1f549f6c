"""Whether the CUDA tests can run here, and why not when they cannot."""
import dynin_rt
from dynin_rt import _C, _native


def cuda_skip_reason() -> str | None:
    if not dynin_rt.build_info()["cuda"]:
        return "this build of dynin_rt has no CUDA backend (nvcc or the cuBLASLt header was missing at build time)"
    if _C.cuda_device_count() == 0:
        return "no CUDA device on this machine (the CUDA tests run in benchmarks/device_check.sh on a GPU)"
    _native.preload_cublaslt()
    return None
