#!/usr/bin/env bash
# One short visit to a GPU machine (the device tool): build the CUDA backend there, run the
# CUDA-vs-reference tests (and compute-sanitizer on the kernel tests), benchmark the runtime
# against the PyTorch reference at the real 8B shapes, and the tokenizers on the GPU. Writes
# $OUT/device_check.json (the summary) and logs beside it. Finishes well inside 10 minutes.
#
# The GPU image has no package registry. Before the visit, from the repo root here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl scipy-openblas32 soxr av tensorrt-cu13 tensorrt-cu13-libs tensorrt-cu13-bindings
# and run with carry [".whl"]:  bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
summary="$OUT/device_check.json"
start=$(date +%s)
step() { echo "== $(( $(date +%s) - start ))s: $*" | tee -a "$OUT/steps.log"; }

if [ -d .whl ]; then
  step "installing carried wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1

step "building with CUDA"
build_rc=0
python3 -m pip install -q --no-build-isolation --no-deps -e . -Ccmake.define.DYNIN_RT_CUDA=ON > "$OUT/build.log" 2>&1 || build_rc=$?
python3 -c "import dynin_rt; print(dynin_rt.build_info())" >> "$OUT/build.log" 2>&1

step "CUDA tests"
tests_rc=0
timeout 240 python3 -m pytest -q -rs tests/test_ops_cuda.py tests/test_runtime_cuda.py > "$OUT/tests.log" 2>&1 || tests_rc=$?

step "compute-sanitizer memcheck on the kernel tests"
sanitizer_rc=0
timeout 180 compute-sanitizer --tool memcheck --error-exitcode 99 python3 -m pytest -q -x tests/test_ops_cuda.py \
  > "$OUT/sanitizer.log" 2>&1 || sanitizer_rc=$?

step "8B benchmark (runtime vs reference)"
bench_rc=0
timeout 300 python3 benchmarks/bench_gpu_8b.py --json "$OUT/bench_8b.json" --repeats 3 > "$OUT/bench_8b.log" 2>&1 || bench_rc=$?

step "tokenizers on the GPU"
timeout 90 python3 benchmarks/bench_magvit.py --device cuda --grids 32 --repeats 10 --json "$OUT/bench_magvit_cuda.json" \
  > "$OUT/bench_magvit.log" 2>&1
timeout 90 python3 benchmarks/bench_emova.py --device cuda --repeats 5 --seconds 15 --json "$OUT/bench_emova_cuda.json" \
  > "$OUT/bench_emova.log" 2>&1

step "summary"
python3 - "$summary" "$OUT" "$build_rc" "$tests_rc" "$sanitizer_rc" "$bench_rc" <<'PY'
import json, os, sys
path, out, build, tests, sanitizer, bench = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception as exc:
        return {"missing": str(exc)}
def tail(name, n=15):
    try:
        return open(os.path.join(out, name)).read().splitlines()[-n:]
    except OSError:
        return []
summary = {
    "gpu": open(os.path.join(out, "gpu.txt")).read().strip() if os.path.exists(os.path.join(out, "gpu.txt")) else None,
    "build_rc": build, "tests_rc": tests, "sanitizer_rc": sanitizer, "bench_rc": bench,
    "tests_tail": tail("tests.log"), "sanitizer_tail": tail("sanitizer.log", 8),
    "bench_8b": load("bench_8b.json"), "magvit": load("bench_magvit_cuda.json"), "emova": load("bench_emova_cuda.json"),
}
json.dump(summary, open(path, "w"), indent=1)
print(json.dumps({k: v for k, v in summary.items() if k not in ("magvit", "emova")}, indent=1))
PY
step "done"
