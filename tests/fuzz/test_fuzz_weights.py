"""Coverage-guided fuzzing of the native weight-file readers: csrc/fuzz/fuzz_weights.cc (JSON header
parser, safetensors validator, the check of a runtime weight file against a model config) built with
clang's libFuzzer, ASan and UBSan, then run from the seed corpus in tests/fuzz/corpus/ for
DYNIN_RT_FUZZ_SECONDS (default 35). A crash, a sanitizer report or an exception other than the
loader's own errors fails the test, with the reproducer in the test's folder. Costs about 70 s on 2 busy cores
(build ~25 s on 2 cores, then the run)."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SECONDS = int(os.environ.get("DYNIN_RT_FUZZ_SECONDS", "35"))


def _clang_with_libfuzzer(tmp_path) -> str | None:
    """A clang++ that links -fsanitize=fuzzer (clang without libclang-rt has no libFuzzer)."""
    candidates = ["clang++"] + [f"clang++-{v}" for v in range(20, 13, -1)]
    probe = tmp_path / "probe.cc"
    probe.write_text('extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n')
    for name in filter(None, map(shutil.which, candidates)):
        built = subprocess.run([name, "-fsanitize=fuzzer,address", str(probe), "-o", str(tmp_path / "probe")],
                               capture_output=True, timeout=120)
        if built.returncode == 0:
            return name
    return None


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz_build")
    clang = _clang_with_libfuzzer(tmp)
    if clang is None:
        pytest.skip("no clang++ with libFuzzer here (apt-get install clang-14 libclang-rt-14-dev; .ci/run does)")
    build = tmp / "build"
    for cmd in (["cmake", "-S", os.path.join(ROOT, "csrc", "fuzz"), "-B", str(build), "-G", "Ninja",
                 f"-DCMAKE_CXX_COMPILER={clang}"],
                ["cmake", "--build", str(build), "-j2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return str(build / "fuzz_weights")


def test_the_seed_corpus_is_in_the_repository():
    names = sorted(os.listdir(CORPUS))
    assert {"weights_f32", "weights_f16", "json_nested", "safetensors_small"} <= set(names)


def test_weight_file_readers_survive_libfuzzer(fuzzer, tmp_path):
    work = tmp_path / "corpus"  # new units go here, not into the repository's corpus
    work.mkdir()
    run = subprocess.run(
        [fuzzer, str(work), CORPUS, f"-max_total_time={SECONDS}", "-max_len=8192", "-rss_limit_mb=2048",
         "-seed=1", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=SECONDS + 120)
    log = run.stderr
    found = [f for kind in ("crash", "leak", "oom", "timeout") for f in glob.glob(str(tmp_path / f"{kind}-*"))]
    assert run.returncode == 0 and not found, f"fuzzer finding {found}:\n{log[-4000:]}"
    executed = int(log.split("stat::number_of_executed_units:")[1].split()[0])
    assert executed > 1000, log[-2000:]  # it ran, from the seeds
    assert "INITED" in log and "files found in" in log
