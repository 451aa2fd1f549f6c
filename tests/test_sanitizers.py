"""The runtime's C++ under AddressSanitizer and UBSan: builds a sanitized dynin_rt._C in a temporary
directory and runs the kernel, hostile-input, fuzz and runtime tests against it in a subprocess.
Any sanitizer report aborts that subprocess and fails this test."""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import dynin_rt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANITIZED_TESTS = [
    "tests/test_ops.py",
    "tests/test_runtime_errors.py",
    "tests/test_fuzz_loader.py",
    "tests/test_runtime_parity.py::test_one_layer_kv_cache_is_exact",
    "tests/test_runtime_parity.py::test_text_generation_is_token_identical",
    "tests/test_runtime_parity.py::test_image_generation_is_token_identical",
    "tests/test_runtime_parity.py::test_speech_generation_is_token_identical",
    "tests/test_runtime_parity.py::test_fast_mode_commits_at_least_one_token_per_step",
    "tests/test_runtime_parity.py::test_streaming_callback_sees_each_finished_block",
    "tests/test_runtime_parity.py::test_concurrent_calls_from_threads_match_sequential",
]


def _tool(*names):
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    return None


@pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "CMakeLists.txt")), reason="needs the source tree")
@pytest.mark.skipif(_tool("cmake") is None or _tool("g++", "c++") is None, reason="needs cmake and a C++ compiler")
def test_runtime_is_clean_under_asan_and_ubsan(tmp_path):
    import pybind11

    libasan, libstdcxx = (
        subprocess.run(["g++", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        for lib in ("libasan.so", "libstdc++.so.6")
    )
    if not os.path.isfile(libasan):
        pytest.skip("the compiler has no AddressSanitizer runtime")
    build = tmp_path / "build"
    configure = [
        "cmake", "-S", ROOT, "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DDYNIN_RT_SANITIZE=ON",
        "-DDYNIN_RT_CUDA=OFF", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
        "-DSKBUILD_PROJECT_VERSION=0.0.0+sanitized",
    ]
    if _tool("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)], check=True, capture_output=True)
    built = glob.glob(str(build / ("_C*" + sysconfig.get_config_var("EXT_SUFFIX"))))
    assert built, "the sanitized module was not built"

    # A copy of the package whose _C is the sanitized build.
    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(dynin_rt.__file__), site / "dynin_rt", ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    shutil.copy(built[0], site / "dynin_rt")
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(site),
        # libstdc++ preloaded too, so ASan's __cxa_throw interceptor finds the real one at start-up
        LD_PRELOAD=f"{libasan} {libstdcxx}",
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_odr_violation=0:alloc_dealloc_mismatch=0:new_delete_type_mismatch=0",
        UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1",
        DYNIN_RT_FUZZ_RUNS="20000",
    )
    which = subprocess.run(
        [sys.executable, "-c", "import dynin_rt; print(dynin_rt.build_info()['version'])"], env=env, capture_output=True, text=True
    )
    assert which.returncode == 0, which.stderr[-3000:]
    if "sanitized" not in which.stdout:
        pytest.skip("an editable install's import hook shadows the sanitized build; run from a regular install")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SANITIZED_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
