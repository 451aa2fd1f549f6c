"""The runtime's C++ under AddressSanitizer and UBSan: the sanitized build of dynin_rt._C with the
emulated CUDA backend (variant_build.emulated_build, shared with tests/test_cuda_emulated.py, which runs
the CUDA op and runtime tests and the emulation's test program on it) runs the hostile-input, fuzz and
runtime tests in a subprocess. Any sanitizer report aborts that subprocess and fails this test. The
emulation annotates its fiber switches for ASan, and every emulated cudaMalloc and dynamic shared
memory block is an exact-size heap block, so a CUDA kernel's out-of-bounds access is an ASan report."""
import pytest

import variant_build

SANITIZED_TESTS = [
    "tests/test_runtime_errors.py",
    "tests/test_fuzz_loader.py",
    "tests/test_runtime_parity.py::test_one_layer_kv_cache_is_exact",
    # of the sampler cases, the two that reach every branch (the rest differ in the reference's time)
    "tests/test_runtime_parity.py::test_text_generation_is_token_identical[greedy]",
    "tests/test_runtime_parity.py::test_text_generation_is_token_identical[temperature=0.7,cfg_scale=2.0,remasking=random]",
    "tests/test_runtime_parity.py::test_image_generation_is_token_identical",
    "tests/test_runtime_parity.py::test_speech_generation_is_token_identical[kwargs1]",
    "tests/test_runtime_parity.py::test_fast_mode_commits_at_least_one_token_per_step",
    "tests/test_runtime_parity.py::test_streaming_callback_sees_each_finished_block",
    "tests/test_runtime_parity.py::test_concurrent_calls_from_threads_match_sequential",
]

REASON = variant_build.cannot_build()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
if REASON is None:
    variant_build.schedule_emulated_run("sanitizers", __name__, SANITIZED_TESTS, dict(DYNIN_RT_FUZZ_RUNS="2000"),
                                        timeout=1500, sanitized_only=True)


def test_runtime_is_clean_under_asan_and_ubsan():
    _, env, sanitized = variant_build.emulated_build()
    if not sanitized:
        pytest.skip("the compiler has no AddressSanitizer runtime")
    if variant_build.shadowed(env):
        pytest.skip("an editable install's import hook shadows the sanitized build; run from a regular install")
    proc = variant_build.emulated_run("sanitizers")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
