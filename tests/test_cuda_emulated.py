"""The CUDA backend's tests in CI, without a GPU: builds dynin_rt._C with DYNIN_RT_CUDA=EMULATE (the
same csrc/cuda sources compiled as host C++ on the emulation layer in csrc/cuda/emulation) into a
temporary directory, under AddressSanitizer and UBSan where the compiler has them (the build that
tests/test_sanitizers.py shares), runs the emulation's own test program, then the op and CUDA runtime
tests against that build in a subprocess, where a test that would skip for lack of a GPU fails."""
import os
import subprocess

import pytest

import dynin_rt
import variant_build

REASON = variant_build.cannot_build() or (
    "this build is the emulated one: tests/test_ops.py and tests/test_runtime_cuda.py run on it directly"
    if dynin_rt.build_info().get("cuda_emulated") else None)
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
CUDA_TESTS = ["tests/test_ops.py", "tests/test_runtime_cuda.py"]
if REASON is None:
    # the CPU op cases ran in the main suite already; a test that would skip for lack of a GPU fails
    variant_build.schedule_emulated_run("cuda", __name__, CUDA_TESTS, dict(DYNIN_RT_TEST_REQUIRE_CUDA="1",
                                        DYNIN_RT_TEST_BACKENDS="cuda"), timeout=2400)


@pytest.fixture(scope="module")
def emulated():
    build, env, _ = variant_build.emulated_build()
    if variant_build.shadowed(env):
        pytest.skip("an editable install's import hook shadows the emulated build; run from a regular install")
    info = variant_build.build_info(env)
    assert info["cuda"] and info["cuda_emulated"]
    return build, env


def test_emulation_layer_self_test(emulated):
    build, env = emulated
    proc = subprocess.run([os.path.join(build, "emulation_test")], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in env.items() if k != "LD_PRELOAD"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]


def test_cuda_ops_and_runtime_on_the_emulated_device(emulated):
    proc = variant_build.emulated_run("cuda")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
