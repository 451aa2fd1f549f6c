"""Per-task latency: the C++ runtime against the PyTorch reference on the same weights, device and
inputs, both warmed up the same way, medians over repeats, with token equality checked in the same
run (exact mode). What each task runs comes from its spec (tasks/registry.py). Used by
``dynin-rt bench``, ``dynin-rt demo`` and benchmarks/bench_tasks.py."""
from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import time

import numpy as np

from . import demo_inputs
from .api import generate
from .tasks import registry
from .tasks.registry import TaskSpec

TORCH_DTYPES = ("fp32", "bf16", "fp16")


def task_inputs(spec: TaskSpec, media_dir: str | None = None) -> dict:
    """The media a task reads, synthesised (and written to media_dir as files when given)."""
    if spec.media == "image":
        image = demo_inputs.sample_image()
        if media_dir:
            from PIL import Image

            path = os.path.join(media_dir, "input.png")
            Image.fromarray(image).save(path)
            return {"image": path}
        return {"image": image}
    if spec.media == "video":
        video = demo_inputs.sample_video()
        return {"video": demo_inputs.write_video(os.path.join(media_dir, "input.mp4"), video) if media_dir else video}
    if spec.media == "audio":
        speech = demo_inputs.sample_speech()
        if media_dir:
            import soundfile

            path = os.path.join(media_dir, "input.wav")
            soundfile.write(path, speech, 16000)
            return {"audio": path}
        return {"audio": speech, "sample_rate": 16000}
    return {}


def load_reference(model):
    """The PyTorch reference beside a runtime model, for a fair comparison: the HF checkpoint the
    runtime's weights were exported from, converted to the runtime's dtype (the exporter's own
    conversion, so both sides hold the same numbers), on the runtime's device."""
    import torch

    from .export.weights import read_manifest
    from .reference import DyninOmni

    source = read_manifest(model.directory).get("source") or {}
    path = source.get("path") if isinstance(source, dict) else None
    if not path or not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{model.directory} does not name the HF checkpoint it was exported from, so the reference "
                         "cannot load the same weights: load the HF directory, or skip the reference")
    dtype = dict(zip(TORCH_DTYPES, (torch.float32, torch.bfloat16, torch.float16)))[model.dtype]
    return DyninOmni.from_pretrained(path, dtype=dtype, device="cuda" if model.backend == "cuda" else "cpu")


def _timed(model, kwargs: dict, warmup: int, repeats: int):
    """Median-ready times of ``repeats`` calls after ``warmup`` untimed ones (tokenizer loads,
    first touch of the weights, allocator and thread-pool start-up); returns (last result, times)."""
    for _ in range(warmup):
        generate(model, **kwargs)
    result, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = generate(model, **kwargs)
        times.append(time.perf_counter() - t0)
    return result, times


def _same(a, b) -> bool:
    return a.tokens is not None and b.tokens is not None and np.array_equal(a.tokens, b.tokens)


def bench_task(model, task: str | TaskSpec, reference=None, repeats: int = 3, reference_repeats: int = 1,
               official: bool = False, mode: str = "exact", media_dir: str | None = None, seed: int = 0,
               warmup: int = 1) -> dict:
    """Median seconds of one task on the runtime and, when given, on the reference (see
    :func:`load_reference`): same inputs, same seed, the same ``warmup`` untimed calls on both sides;
    in exact mode the tokens of the two must be identical (``identical_to_reference``)."""
    spec = registry.get(task) if isinstance(task, str) else task
    settings = spec.bench_settings(official)
    settings.update(task_inputs(spec, media_dir))
    kwargs = dict(settings, seed=seed, progress=False)
    result, times = _timed(model, dict(kwargs, mode=mode) if mode != "exact" else kwargs, warmup, repeats)
    row = {
        "task": spec.name,
        "name": spec.title,
        "mode": mode,
        "warmup": warmup,
        "settings": {k: v for k, v in settings.items() if k not in ("image", "video", "audio")},
        "runtime_median_s": round(statistics.median(times), 4),
        "runtime_times_s": [round(t, 4) for t in times],
        "runtime_phases_s": result.stats.get("seconds"),
        "forwards": result.stats.get("forwards"),
        "steps": result.stats.get("steps"),
        "tokens_per_step": result.stats.get("tokens_per_step"),
    }
    row["forwards_per_s"] = round(row["forwards"] / result.stats["seconds"]["generate"], 2) if row["forwards"] else None
    if reference is not None:
        # the reference pipeline shares the runtime's tokenizers: only the backbone differs
        tokenizers = {f"{kind}_tokenizer": getattr(model, f"{kind}_tokenizer") for kind in spec.tokenizers}
        ref_result, ref_times = _timed(reference, dict(kwargs, **tokenizers), warmup, reference_repeats)
        row["reference_device"] = str(reference.device)
        row["reference_median_s"] = round(statistics.median(ref_times), 4)
        row["speedup"] = round(row["reference_median_s"] / row["runtime_median_s"], 2)
        row["identical_to_reference"] = _same(result, ref_result) if mode == "exact" else None
    row["result"] = result
    return row


def run_all(model, tasks=None, reference=None, **kwargs) -> list[dict]:
    """:func:`bench_task` for each task (names or specs; default every registered task)."""
    return [bench_task(model, task, reference=reference, **kwargs) for task in (tasks or registry.tasks())]


def machine() -> dict:
    """Where a benchmark ran: the platform, CPU, torch and its threads, and the dynin_rt build."""
    import torch

    from ._native import build_info

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "build": build_info(),
    }


def write_reports(rows: list[dict], json_path: str | None = None, csv_path: str | None = None) -> None:
    clean = [{k: v for k, v in r.items() if k != "result"} for r in rows]
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump({"tasks": clean, "machine": machine()}, f, indent=1)
    if csv_path:
        keys = ["task", "mode", "runtime_median_s", "reference_median_s", "speedup", "identical_to_reference",
                "forwards", "steps", "forwards_per_s", "tokens_per_step"]
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(clean)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'task':<5} {'name':<22} {'runtime':>9} {'reference':>10} {'speedup':>8}  identical"]
    for r in rows:
        ref = f"{r['reference_median_s']:.3f}s" if "reference_median_s" in r else "-"
        speed = f"{r['speedup']:.1f}x" if "speedup" in r else "-"
        same = {True: "yes", False: "NO", None: "-"}[r.get("identical_to_reference")]
        lines.append(f"{r['task']:<5} {r['name']:<22} {r['runtime_median_s']:>8.3f}s {ref:>10} {speed:>8}  {same}")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The options of ``dynin-rt bench`` and benchmarks/bench_tasks.py."""
    parser.add_argument("--model", help="checkpoint directory (default: the demo's tiny random checkpoint)")
    parser.add_argument("--task", default="all", help=f"all, or a comma list of {','.join(registry.names())}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones, on both sides")
    parser.add_argument("--mode", choices=registry.MODES, default="exact")
    parser.add_argument("--official", action="store_true",
                        help="each task's official defaults instead of the quick settings (slow for the reference)")
    parser.add_argument("--no-reference", action="store_true", help="the runtime alone")
    parser.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--json", help="write the rows and the machine here")
    parser.add_argument("--csv", help="write one line per task here")


def command(args) -> int:
    """Run the benchmark the parsed options describe, print the table, write the reports."""
    from . import load

    specs = registry.parse_list(args.task)
    if args.task == "all":  # "all" in fast mode: the tasks that have one
        specs = tuple(s for s in specs if args.mode in s.modes)
    if args.model:
        model_dir = args.model
    else:
        from .demo import demo_checkpoint

        model_dir = demo_checkpoint()
    model = load(model_dir, backend=args.backend, progress=False)
    reference = None if args.no_reference else load_reference(model)
    rows = run_all(model, tasks=specs, reference=reference, repeats=args.repeats, warmup=args.warmup,
                   reference_repeats=args.reference_repeats, official=args.official, mode=args.mode)
    print(format_table(rows))
    write_reports(rows, json_path=args.json, csv_path=args.csv)
    return 0
