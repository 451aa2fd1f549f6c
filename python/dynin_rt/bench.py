"""Per-task latency: the C++ runtime against the PyTorch reference on the same weights and inputs,
medians over repeats, with token equality checked in the same run. Used by ``dynin-rt bench``,
``dynin-rt demo`` and the scripts in benchmarks/."""
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
from .tasks.common import TASK_NAMES, TASKS

# Settings small enough for a CPU demo (the reference recomputes the full 138752-way head over every
# position at every step); `official` keeps each task's defaults (model-spec §8).
QUICK_SETTINGS = {
    "t2t": dict(prompt="Explain diffusion language models in one paragraph.", max_new_tokens=64, steps=32, block_length=32),
    "i2t": dict(prompt="What is in this picture?", resolution=224, max_new_tokens=64, steps=16, block_length=64),
    "v2t": dict(prompt="Describe the video.", resolution=128, max_new_tokens=32, steps=16, block_length=32),
    "s2t": dict(max_new_tokens=32, steps=32, block_length=2),
    "t2i": dict(prompt="A red fox in the snow", output="image", resolution=256, steps=16),
    "i2i": dict(prompt="Make it night", output="image", resolution=256, steps=16),
    "t2s": dict(prompt="Hello there, this is Dynin-Omni speaking.", output="speech", max_new_tokens=64, steps=32,
                block_length=32),
}
OFFICIAL_PROMPTS = {task: {k: v for k, v in s.items() if k in ("prompt", "output")} for task, s in QUICK_SETTINGS.items()}


def task_inputs(task: str, media_dir: str | None = None) -> dict:
    """The media a task reads, synthesised (and written to media_dir as files when given)."""
    if task in ("i2t", "i2i"):
        image = demo_inputs.sample_image()
        if media_dir:
            from PIL import Image

            path = os.path.join(media_dir, "input.png")
            Image.fromarray(image).save(path)
            return {"image": path}
        return {"image": image}
    if task == "v2t":
        video = demo_inputs.sample_video()
        return {"video": demo_inputs.write_video(os.path.join(media_dir, "input.mp4"), video) if media_dir else video}
    if task == "s2t":
        speech = demo_inputs.sample_speech()
        if media_dir:
            import soundfile

            path = os.path.join(media_dir, "input.wav")
            soundfile.write(path, speech, 16000)
            return {"audio": path}
        return {"audio": speech, "sample_rate": 16000}
    return {}


def _same(a, b) -> bool:
    return a.tokens is not None and b.tokens is not None and np.array_equal(a.tokens, b.tokens)


def bench_task(model, task: str, reference=None, repeats: int = 3, reference_repeats: int = 1, official: bool = False,
               mode: str = "exact", media_dir: str | None = None, seed: int = 0) -> dict:
    """Median seconds of one task on the runtime (and the reference when given), same seed."""
    settings = dict(OFFICIAL_PROMPTS[task] if official else QUICK_SETTINGS[task])
    settings.update(task_inputs(task, media_dir))
    kwargs = dict(settings, seed=seed, progress=False)
    runtime_kwargs = dict(kwargs, mode=mode) if mode != "exact" else kwargs
    result, times = None, []
    generate(model, **runtime_kwargs)  # warm-up: tokenizer load, first-touch of the weights
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = generate(model, **runtime_kwargs)
        times.append(time.perf_counter() - t0)
    row = {
        "task": task,
        "name": TASK_NAMES[task],
        "mode": mode,
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
        tokenizers = {}
        if task in ("i2t", "v2t", "t2i", "i2i"):
            tokenizers["image_tokenizer"] = model.image_tokenizer
        if task in ("s2t", "t2s"):
            tokenizers["speech_tokenizer"] = model.speech_tokenizer
        ref_times, ref_result = [], None
        for _ in range(reference_repeats):
            t0 = time.perf_counter()
            ref_result = generate(reference, **tokenizers, **kwargs)
            ref_times.append(time.perf_counter() - t0)
        row["reference_median_s"] = round(statistics.median(ref_times), 4)
        row["speedup"] = round(row["reference_median_s"] / row["runtime_median_s"], 2)
        row["identical_to_reference"] = _same(result, ref_result) if mode == "exact" else None
    row["result"] = result
    return row


def run_all(model, tasks=TASKS, reference=None, **kwargs) -> list[dict]:
    return [bench_task(model, task, reference=reference, **kwargs) for task in tasks]


def machine() -> dict:
    from ._native import build_info

    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "build": build_info()}


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
