#!/usr/bin/env bash
# One short visit to a GPU machine (the device tool): build the CUDA backend there for sm_90a, run
# the CUDA tests, compute-sanitizer memcheck and racecheck on the kernel tests, the 8B benchmark
# (runtime vs PyTorch reference) in a quick setting, and the tokenizers on the backends present.
# Every step has a time budget (the budgets sum to 8 minutes; one device call allows 10); the summary
# $OUT/device_check.json is written on exit, so a timeout still returns what was measured.
#
#   bash benchmarks/device_check.sh --prepare   # here, once: the wheels the GPU image lacks -> .whl/
#   bash benchmarks/device_check.sh --budgets   # the steps and their budgets
#   bash benchmarks/device_check.sh             # there, with carry [".whl"]
#
# The image has Python 3.12 with torch, numpy, pybind11, scikit-build-core, cmake, ninja,
# nvidia-cublas, onnx, onnxruntime, pytest, hypothesis, pillow, safetensors, tokenizers and tqdm, and
# no package registry. WHEELS are what the visit imports beyond that (found by tracing the visit's
# Python steps here), pinned to the versions tested here; TensorRT is not among them (PyPI serves no
# binary wheels of it: the tokenizer benchmarks use torch and onnxruntime there).
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(scipy-openblas32==0.3.34.481.3)
MAX_TREE_MIB=48
STEPS=(  # name budget_seconds command
  "install 10 python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl"
  "build 150 python3 -m pip install -q --no-build-isolation --no-deps -e . -Ccmake.define.DYNIN_RT_CUDA=ON -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90a"
  "cuda_tests 75 python3 -m pytest -q -x -rs tests/test_ops.py tests/test_runtime_cuda.py"
  "memcheck 40 compute-sanitizer --tool memcheck --error-exitcode 99 python3 -m pytest -q -x -k cuda tests/test_ops.py"
  "racecheck 35 compute-sanitizer --tool racecheck --error-exitcode 99 python3 -m pytest -q -x -k \"cuda and not gemm\" tests/test_ops.py"
  "bench_8b 130 python3 benchmarks/bench_gpu_8b.py --json \$OUT/bench_8b.json --quick --repeats 1"
  "magvit 20 python3 benchmarks/bench_magvit.py --device cuda --quick --no-parity --backends torch,onnx --json \$OUT/magvit.json"
  "emova 20 python3 benchmarks/bench_emova.py --device cuda --repeats 2 --seconds 5 --backends torch,onnx --json \$OUT/emova.json"
)
VISIT_BUDGET=480

budgets() {
  local total=0
  for s in "${STEPS[@]}"; do
    read -r name budget _ <<< "$s"
    printf '%-11s %4ss\n' "$name" "$budget"
    total=$((total + budget))
  done
  printf '%-11s %4ss (limit %ss)\n' total "$total" "$VISIT_BUDGET"
  [ "$total" -le "$VISIT_BUDGET" ]
}

prepare() {  # .whl/ is git-ignored, so it travels only when carried
  rm -rf .whl && mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
  local missing=0
  for w in "${WHEELS[@]}"; do
    local name=${w%%==*} version=${w#*==}
    if ! ls .whl/"${name//-/_}"-"$version"-*.whl > /dev/null 2>&1; then
      echo "missing wheel: $w" >&2
      missing=1
    fi
  done
  local tree whl
  tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  whl=$(du -sb .whl | cut -f1)
  echo "tracked tree $((tree / 1024)) KiB + .whl $((whl / 1024)) KiB (limit $MAX_TREE_MIB MiB)"
  [ $((tree + whl)) -le $((MAX_TREE_MIB * 1024 * 1024)) ] || { echo "too large to carry" >&2; missing=1; }
  return $missing
}

case "${1:-}" in
  --prepare) prepare; exit $? ;;
  --budgets) budgets; exit $? ;;
  "") ;;
  *) echo "usage: $0 [--prepare | --budgets]" >&2; exit 2 ;;
esac

OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export OUT PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} DYNIN_RT_TEST_REQUIRE_CUDA=1 CMAKE_BUILD_PARALLEL_LEVEL=16 PYTHONUNBUFFERED=1
LOG="$OUT/visit.log"  # every step's output, one after another (the device tool returns few files)
: > "$OUT/steps.tsv"
start=$(date +%s)

summary() {
  python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception as exc:  # a step that never wrote it
        return {"missing": str(exc)}
steps = {}
for line in open(os.path.join(out, "steps.tsv")):
    name, rc, seconds, budget = line.split()
    steps[name] = {"rc": int(rc), "seconds": int(seconds), "budget": int(budget), "timed_out": int(rc) in (124, 137)}
log = open(os.path.join(out, "visit.log"), errors="replace").read().splitlines()
tails = {}
for name in steps:
    marker = f"=== {name} "
    idx = max((i for i, l in enumerate(log) if l.startswith(marker)), default=None)
    if idx is not None:
        end = next((i for i in range(idx + 1, len(log)) if log[i].startswith("=== ")), len(log))
        tails[name] = log[max(idx + 1, end - 12):end]
gpu = open(os.path.join(out, "gpu.txt")).read().strip() if os.path.exists(os.path.join(out, "gpu.txt")) else None
summary = {"gpu": gpu, "steps": steps, "tails": tails, "bench_8b": load("bench_8b.json"), "magvit": load("magvit.json"),
           "emova": load("emova.json")}
json.dump(summary, open(os.path.join(out, "device_check.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in summary.items() if k in ("gpu", "steps")}, indent=1))
PY
}
trap summary EXIT
step_name="" step_start=0 step_budget=0 child=0
interrupted() {  # the device call's own limit: record the step that was running, stop it, summarise
  [ -n "$step_name" ] && printf '%s\t143\t%s\t%s\n' "$step_name" "$(( $(date +%s) - step_start ))" "$step_budget" >> "$OUT/steps.tsv"
  [ "$child" -gt 0 ] && kill -TERM "$child" 2> /dev/null
  exit 143
}
trap interrupted TERM INT

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
for s in "${STEPS[@]}"; do
  read -r name budget cmd <<< "$s"
  t0=$(date +%s)
  echo "=== $name (budget ${budget}s, at $((t0 - start))s): $cmd" >> "$LOG"
  step_name=$name step_start=$t0 step_budget=$budget
  timeout -k 5 "$budget" bash -c "$cmd" >> "$LOG" 2>&1 &  # waited for in the background, so a TERM is handled at once
  child=$!
  wait "$child"
  rc=$?
  step_name="" child=0
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$budget" >> "$OUT/steps.tsv"
  echo "--- $name rc=$rc" >> "$LOG"
done
