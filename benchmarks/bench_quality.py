"""What every approximate decoding setting costs in accuracy, on a model genuinely trained on tasks
with exact answers (dynin_rt.testing.train), all measured in one run against exact mode.

    python benchmarks/bench_quality.py [--n 100] [--n-single 16] [--settings exact,dual-0.9,...] [--out DIR]

Per setting and task: accuracy and agreement with exact mode's output (all examples, one batched
call), forwards per example, tokens committed per forward and seconds per example (the first
--n-single examples, one at a time). Writes DIR/quality.json, DIR/quality_table.md and
DIR/quality_plot.png (accuracy vs forwards, one point per setting; drawn with PIL). The trained
checkpoint comes from the cache (trained on first use, a few CPU-minutes).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_json  # noqa: E402

import dynin_rt  # noqa: E402
from dynin_rt.testing.train import TrainConfig, eval_examples, generate, test_tokenizer, trained_checkpoint  # noqa: E402
from dynin_rt.testing.tasks import TASKS_BY_NAME  # noqa: E402

# name -> generate options on top of each task's exact schedule (gen 16, block 8, 16 steps)
SETTINGS = {
    "exact": {},
    "exact-steps8": {"steps": 8},
    "exact-steps4": {"steps": 4},
    "none-0.9": {"mode": "fast", "threshold": 0.9, "cache": "none"},
    "none-0.7": {"mode": "fast", "threshold": 0.7, "cache": "none"},
    "prefix-1.0": {"mode": "fast", "threshold": 1.0, "cache": "prefix"},
    "dual-1.0": {"mode": "fast", "threshold": 1.0, "cache": "dual"},
    "prefix-0.95": {"mode": "fast", "threshold": 0.95, "cache": "prefix"},
    "prefix-0.9": {"mode": "fast", "threshold": 0.9, "cache": "prefix"},
    "prefix-0.8": {"mode": "fast", "threshold": 0.8, "cache": "prefix"},
    "prefix-0.7": {"mode": "fast", "threshold": 0.7, "cache": "prefix"},
    "dual-0.95": {"mode": "fast", "threshold": 0.95, "cache": "dual"},
    "dual-0.9": {"mode": "fast", "threshold": 0.9, "cache": "dual"},
    "dual-0.8": {"mode": "fast", "threshold": 0.8, "cache": "dual"},
    "dual-0.7": {"mode": "fast", "threshold": 0.7, "cache": "dual"},
    "dual-factor1": {"mode": "fast", "factor": 1.0, "cache": "dual"},
    "none-factor1": {"mode": "fast", "factor": 1.0, "cache": "none"},
}
DEFAULT_FAST = "dual-0.9"  # what mode="fast" does without options today


def run_setting(model, examples, options, n_single: int) -> dict:
    """examples: {task: [Example]} -> {task: outputs, correctness, and for the first n_single examples
    run one at a time: forwards, committed tokens, seconds, equal to the batched output}.

    Accuracy comes from one batched call per task (rows are independent, so a row's output is its
    batch-of-one output; the single runs check it); forwards and time per example need batch 1."""
    out = {}
    for name, exs in examples.items():
        task = TASKS_BY_NAME[name]
        outputs = generate(model, task, exs, **options)
        rows = {"ok": [bool(task.correct(e, np.array(o))) for e, o in zip(exs, outputs)], "output": outputs,
                "forwards": [], "tokens": [], "seconds": [], "batch_equal_single": []}
        for ex, batched in zip(exs[:n_single], outputs):
            t0 = time.perf_counter()
            single = generate(model, task, [ex], **options)[0]
            rows["seconds"].append(time.perf_counter() - t0)
            stats = model.last_stats
            rows["forwards"].append(stats.forwards)
            rows["tokens"].append(sum(stats.committed_per_step))
            rows["batch_equal_single"].append(single == batched)
        out[name] = rows
    return out


def summarise(rows, exact_rows) -> dict:
    """Per task numbers of one setting, against exact mode's per-example outputs."""
    res = {}
    for name, r in rows.items():
        e = exact_rows[name]
        res[name] = {
            "accuracy": float(np.mean(r["ok"])),
            "agree_exact": float(np.mean([a == b for a, b in zip(r["output"], e["output"])])),
            "forwards": float(np.mean(r["forwards"])),
            "tokens_per_forward": float(np.sum(r["tokens"]) / max(np.sum(r["forwards"]), 1)),
            "seconds": float(np.mean(r["seconds"])),
            "batch_equal_single": float(np.mean(r["batch_equal_single"])),
            "n": len(r["ok"]),
            "n_single": len(r["forwards"]),
        }
    return res


def table(results: dict, tasks: list[str]) -> str:
    """Markdown: one row per setting; accuracy per task (and the change against exact), forwards."""
    exact = results["exact"]
    head = "| setting | " + " | ".join(tasks) + " | mean acc | worst change | forwards | fewer forwards | tok/fwd | ms/example |"
    lines = [head, "|" + "---|" * (len(tasks) + 7)]
    for name, res in results.items():
        accs = [res[t]["accuracy"] for t in tasks]
        deltas = [res[t]["accuracy"] - exact[t]["accuracy"] for t in tasks]
        fwd = np.mean([res[t]["forwards"] for t in tasks])
        ratio = np.mean([exact[t]["forwards"] for t in tasks]) / fwd
        tpf = np.mean([res[t]["tokens_per_forward"] for t in tasks])
        ms = 1e3 * np.mean([res[t]["seconds"] for t in tasks])
        cells = [f"{100 * a:.0f}" for a in accs]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * np.mean(accs):.1f} | {100 * min(deltas):+.1f} | "
                     f"{fwd:.1f} | {ratio:.1f}x | {tpf:.2f} | {ms:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, tasks: list[str], path: str, worst: str) -> None:
    """PNG: mean accuracy (filled) and the accuracy on `worst` (hollow) vs mean forwards per setting."""
    from PIL import Image, ImageDraw

    w, h, left, bottom, top, right = 900, 600, 70, 60, 30, 200
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    fwd = {n: np.mean([r[t]["forwards"] for t in tasks]) for n, r in results.items()}
    x_max = max(fwd.values()) * 1.05

    def xy(f, a):
        return left + (w - left - right) * f / x_max, h - bottom - (h - bottom - top) * a

    d.line([xy(0, 0), xy(x_max, 0)], fill="black")
    d.line([xy(0, 0), xy(0, 1)], fill="black")
    for a in np.linspace(0, 1, 6):
        x, y = xy(0, a)
        d.line([(x - 4, y), (x, y)], fill="black")
        d.text((x - 40, y - 6), f"{100 * a:.0f}%", fill="black")
    for f in range(0, int(x_max) + 1, 2):
        x, y = xy(f, 0)
        d.line([(x, y), (x, y + 4)], fill="black")
        d.text((x - 4, y + 8), str(f), fill="black")
    d.text((w // 2 - 120, h - 25), "forwards per example (mean over tasks)", fill="black")
    d.text((10, 8), f"accuracy: filled = mean over tasks, hollow = {worst}", fill="black")
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf"]
    for i, (name, res) in enumerate(results.items()):
        c = colours[i % len(colours)]
        x, y = xy(fwd[name], np.mean([res[t]["accuracy"] for t in tasks]))
        d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=c)
        xw, yw = xy(fwd[name], res[worst]["accuracy"]) if worst in res else (x, y)
        d.ellipse([xw - 5, yw - 5, xw + 5, yw + 5], outline=c, width=2)
        d.text((w - right + 10, top + 16 * i), f"o {name}", fill=c)
    img.save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="examples per task (accuracy, one batched call each)")
    ap.add_argument("--n-single", type=int, default=16, help="of them, run one at a time (forwards, time)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    ap.add_argument("--tasks", default=",".join(TrainConfig().tasks))
    ap.add_argument("--checkpoint", help="a trained checkpoint directory (default: the cached TrainConfig() model)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality"))
    args = ap.parse_args(argv)
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; known: {list(SETTINGS)}")
    if "exact" not in names:
        names = ["exact"] + names
    tasks = args.tasks.split(",")
    path = args.checkpoint or trained_checkpoint()
    model = dynin_rt.load(path, backend="cpu")
    tok, layout = test_tokenizer()
    examples = {t: eval_examples(TASKS_BY_NAME[t], tok, layout, args.n) for t in tasks}
    raw, results = {}, {}
    for name in names:
        t0 = time.perf_counter()
        raw[name] = run_setting(model, examples, SETTINGS[name], args.n_single)
        results[name] = summarise(raw[name], raw["exact"])
        accs = " ".join(f"{t}={100 * results[name][t]['accuracy']:.0f}" for t in tasks)
        print(f"{name:14s} {time.perf_counter() - t0:6.1f}s  {accs}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    md = table(results, tasks)
    print(md)
    with open(os.path.join(args.out, "quality_table.md"), "w", encoding="utf-8") as f:
        f.write(md)
    plot(results, tasks, os.path.join(args.out, "quality_plot.png"), worst="pairs")
    write_json(os.path.join(args.out, "quality.json"), {
        "checkpoint": path, "n_per_task": args.n, "machine": machine(), "settings": {n: SETTINGS[n] for n in names},
        "default_fast": DEFAULT_FAST, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
