"""Builds another configuration of dynin_rt._C from this source tree into a directory, with a site
folder whose dynin_rt package imports it, so that a test can run other test files against that build
in a subprocess. tests/test_cuda_emulated.py and tests/test_sanitizers.py share one such build,
emulated_build(): the emulated CUDA backend under AddressSanitizer and UBSan (unsanitized when the
compiler has no ASan runtime), built once per test session. The test files that use it schedule their
runs against it (schedule_emulated_run); conftest.py starts the build and those runs in the background
as soon as the suite is collected and moves their tests to the end, so that the build and the
sanitized runs overlap the rest of the suite instead of following it."""
from __future__ import annotations

import atexit
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading

import dynin_rt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def cannot_build() -> str | None:
    """Why this machine cannot build _C from source here, or None."""
    if not os.path.isfile(os.path.join(ROOT, "CMakeLists.txt")):
        return "needs the source tree"
    if tool("cmake") is None or tool("g++", "c++") is None:
        return "needs cmake and a C++ compiler"
    return None


_running: set[subprocess.Popen] = set()


@atexit.register
def _stop_builds() -> None:  # a session that ends early does not leave a compiler running
    for proc in list(_running):
        proc.kill()


def _run(cmd: list[str], niceness: int = 0, timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run, at `niceness`, killed if the session ends first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.nice(niceness), **kwargs)
    _running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        _running.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def build(build_dir: str, build_type: str, defines: dict[str, str], targets: tuple[str, ...] = ("_C",)) -> str:
    """Configures and builds `targets`; returns the path of the built _C module."""
    import pybind11

    configure = [
        "cmake", "-S", ROOT, "-B", build_dir, f"-DCMAKE_BUILD_TYPE={build_type}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}", *(f"-D{k}={v}" for k, v in defines.items()),
    ]
    if tool("ninja"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2), "--target", *targets]):
        # at a lower priority: a background build takes the cores the foreground tests leave idle
        proc = _run(cmd, niceness=5)
        assert proc.returncode == 0, f"{' '.join(cmd[:4])} ... failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    built = glob.glob(os.path.join(build_dir, "_C*" + sysconfig.get_config_var("EXT_SUFFIX")))
    assert built, "the module was not built"
    return built[0]


def make_site(site_dir: str, module: str) -> str:
    """A copy of the installed dynin_rt package whose _C is `module`; returns the folder for PYTHONPATH."""
    shutil.copytree(os.path.dirname(dynin_rt.__file__), os.path.join(site_dir, "dynin_rt"),
                    ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    shutil.copy(module, os.path.join(site_dir, "dynin_rt"))
    return site_dir


def build_info(env: dict[str, str]) -> dict | None:
    """dynin_rt.build_info() as the subprocess environment `env` sees it (None: import failed)."""
    proc = subprocess.run([sys.executable, "-c", "import json, dynin_rt; print(json.dumps(dynin_rt.build_info()))"], env=env,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def run_pytest(tests: list[str], env: dict[str, str], timeout: int, niceness: int = 0) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "pytest", "-q", "-x", "-rs", "-p", "no:cacheprovider", *tests], niceness, timeout,
                cwd=ROOT, env=env)


ASAN_OPTIONS = "detect_leaks=0:abort_on_error=1:detect_odr_violation=0:alloc_dealloc_mismatch=0:new_delete_type_mismatch=0"
UBSAN_OPTIONS = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"


class _Background:
    """One call run in a daemon thread; result() waits for it and returns or raises what it did."""

    def __init__(self, fn):
        self._done = threading.Event()
        self._value = self._error = None

        def run():
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - raised again in result()
                self._error = exc
            self._done.set()

        threading.Thread(target=run, name="emulated-build", daemon=True).start()

    def result(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


_emulated: _Background | None = None
_emulated_lock = threading.Lock()
_one_run_at_a_time = threading.Lock()


def start_emulated_build() -> None:
    """Starts emulated_build() in the background (once per session)."""
    global _emulated
    with _emulated_lock:
        if _emulated is None:
            _emulated = _Background(_build_emulated)


def emulated_build() -> tuple[str, dict[str, str], bool]:
    """(build directory, environment whose dynin_rt is the build, whether it is sanitized) of _C and the
    emulation's test program with DYNIN_RT_CUDA=EMULATE, under ASan + UBSan where the compiler has them."""
    start_emulated_build()
    return _emulated.result()


@dataclasses.dataclass
class EmulatedRun:
    """Test files run in a subprocess against the emulated build, on behalf of the module `owner`."""

    owner: str
    tests: list[str]
    env: dict[str, str]
    timeout: int
    sanitized_only: bool = False  # skipped (None) when the compiler has no ASan runtime
    started: _Background | None = None


_runs: dict[str, EmulatedRun] = {}


def schedule_emulated_run(name: str, owner: str, tests: list[str], env: dict[str, str], timeout: int,
                          sanitized_only: bool = False) -> None:
    """Declares a run (at a test module's import); it starts with start_scheduled_runs()."""
    _runs[name] = EmulatedRun(owner, tests, env, timeout, sanitized_only)


def start_scheduled_runs(owners: set[str]) -> None:
    """Starts the build and, after it, one at a time, the runs whose owner has collected tests, all in
    the background and at a lower priority: the rest of the suite runs meanwhile."""
    for run in _runs.values():
        if run.owner in owners and run.started is None:
            _start(run)


def owns_scheduled_run(module: str) -> bool:
    return any(run.owner == module for run in _runs.values())


def emulated_run(name: str) -> subprocess.CompletedProcess | None:
    """Waits for a scheduled run (starting it if it was not) and returns its pytest process, or None
    when it needs ASan and the build has none."""
    run = _runs[name]
    if run.started is None:
        _start(run)
    return run.started.result()


def _start(run: EmulatedRun) -> None:
    run.started = _Background(lambda: _execute(run))


def _execute(run: EmulatedRun) -> subprocess.CompletedProcess | None:
    _, env, sanitized = emulated_build()
    if run.sanitized_only and not sanitized:
        return None
    with _one_run_at_a_time:
        return run_pytest(run.tests, dict(env, **run.env), run.timeout, niceness=5)


def _build_emulated() -> tuple[str, dict[str, str], bool]:
    libasan, libstdcxx = (
        subprocess.run(["g++", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        for lib in ("libasan.so", "libstdc++.so.6")
    )
    sanitized = os.path.isfile(libasan)
    root = tempfile.mkdtemp(prefix="dynin_rt_emulated_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    build_dir = os.path.join(root, "build")
    defines = {"DYNIN_RT_CUDA": "EMULATE", "SKBUILD_PROJECT_VERSION": "0.0.0+emulated"}
    if sanitized:
        defines.update(DYNIN_RT_SANITIZE="ON", SKBUILD_PROJECT_VERSION="0.0.0+emulated.sanitized")
    module = build(build_dir, "RelWithDebInfo" if sanitized else "Release", defines, targets=("_C", "emulation_test"))
    env = dict(os.environ, PYTHONPATH=make_site(os.path.join(root, "site"), module), ASAN_OPTIONS=ASAN_OPTIONS,
               UBSAN_OPTIONS=UBSAN_OPTIONS)
    if sanitized:
        # libstdc++ preloaded too, so ASan's __cxa_throw interceptor finds the real one at start-up
        env["LD_PRELOAD"] = f"{libasan} {libstdcxx}"
    return build_dir, env, sanitized


def shadowed(env: dict[str, str]) -> bool:
    """Whether an editable install's import hook hides the variant build from the subprocess."""
    info = build_info(env)
    assert info is not None, "the variant build does not import"
    return "emulated" not in info["version"]
