"""Whether the CUDA tests can run here, and why not when they cannot. With DYNIN_RT_TEST_REQUIRE_CUDA
set (tests/test_cuda_emulated.py sets it for the emulated build), a missing device is an error."""
import os

import dynin_rt
from dynin_rt import _C, _native


def cuda_skip_reason() -> str | None:
    reason = None
    if not dynin_rt.build_info()["cuda"]:
        reason = "this build of dynin_rt has no CUDA backend (nvcc or the cuBLASLt header was missing at build time)"
    elif _C.cuda_device_count() == 0:
        reason = "no CUDA device on this machine (the CUDA tests run on the emulated build, and on a GPU in benchmarks/device_check.sh)"
    if reason and os.environ.get("DYNIN_RT_TEST_REQUIRE_CUDA"):
        raise RuntimeError(f"DYNIN_RT_TEST_REQUIRE_CUDA is set but {reason}")
    if reason is None:
        _native.preload_cublaslt()
    return reason
