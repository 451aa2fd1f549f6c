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
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_json  # noqa: E402

import dynin_rt  # noqa: E402
from dynin_rt.bench import machine  # noqa: E402
from dynin_rt.runtime import FAST_CACHE, FAST_IMAGE_CACHE, FAST_THRESHOLD  # noqa: E402
from dynin_rt.testing.train import (IMAGE_CONFIG, TrainConfig, eval_examples, generate, test_tokenizer,  # noqa: E402
                                    trained_checkpoint)
from dynin_rt.testing.tasks import DRAW, TASKS_BY_NAME  # noqa: E402

# name -> generate options on top of each task's exact schedule (gen 16, block 8, 16 steps).
# <cache>-<threshold>[-r<N>]: threshold decoding with that KV cache, refreshed every N-th step.
SETTINGS = {
    "exact": {},
    "fast": {"mode": "fast"},  # what mode="fast" does without options (runtime.FAST_THRESHOLD, FAST_CACHE)
    "exact-steps8": {"steps": 8},
    "exact-steps4": {"steps": 4},
    "none-0.95": {"mode": "fast", "threshold": 0.95, "cache": "none"},
    "none-0.9": {"mode": "fast", "threshold": 0.9, "cache": "none"},
    "none-0.8": {"mode": "fast", "threshold": 0.8, "cache": "none"},
    "none-0.7": {"mode": "fast", "threshold": 0.7, "cache": "none"},
    "prefix-1.0": {"mode": "fast", "threshold": 1.0, "cache": "prefix", "refresh_every": 0},
    "dual-1.0": {"mode": "fast", "threshold": 1.0, "cache": "dual", "refresh_every": 0},
    "prefix-0.9": {"mode": "fast", "threshold": 0.9, "cache": "prefix", "refresh_every": 0},
    "dual-0.95": {"mode": "fast", "threshold": 0.95, "cache": "dual", "refresh_every": 0},
    "dual-0.9": {"mode": "fast", "threshold": 0.9, "cache": "dual", "refresh_every": 0},
    "dual-0.8": {"mode": "fast", "threshold": 0.8, "cache": "dual", "refresh_every": 0},
    "dual-0.7": {"mode": "fast", "threshold": 0.7, "cache": "dual", "refresh_every": 0},
    "prefix-0.9-r2": {"mode": "fast", "threshold": 0.9, "cache": "prefix", "refresh_every": 2},
    "dual-0.9-r2": {"mode": "fast", "threshold": 0.9, "cache": "dual", "refresh_every": 2},
    "dual-0.9-r3": {"mode": "fast", "threshold": 0.9, "cache": "dual", "refresh_every": 3},
    "dual-factor1": {"mode": "fast", "factor": 1.0, "cache": "dual", "refresh_every": 0},
    "none-factor1": {"mode": "fast", "factor": 1.0, "cache": "none"},
}
# The image yardstick (the draw task, MaskGIT, 8 steps): the approximate mode's caches and refreshes.
IMAGE_SETTINGS = {
    "exact": {},
    "fast": {"mode": "fast"},
    "prefix": {"cache": "prefix", "refresh_every": 0},
    "prefix-r4": {"cache": "prefix", "refresh_every": 4},
    "dual": {"cache": "dual", "refresh_every": 0},
    "dual-r2": {"cache": "dual", "refresh_every": 2},
    "dual-r4": {"cache": "dual", "refresh_every": 4},
}


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
                "forwards": [], "positions": [], "tokens": [], "seconds": [], "batch_equal_single": []}
        for ex, batched in zip(exs[:n_single], outputs):
            t0 = time.perf_counter()
            single = generate(model, task, [ex], **options)[0]
            rows["seconds"].append(time.perf_counter() - t0)
            stats = model.last_stats
            rows["forwards"].append(stats.forwards)
            rows["positions"].append(stats.positions)
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
            "positions": float(np.mean(r["positions"])),
            "tokens_per_forward": float(np.sum(r["tokens"]) / max(np.sum(r["forwards"]), 1)),
            "seconds": float(np.mean(r["seconds"])),
            "batch_equal_single": float(np.mean(r["batch_equal_single"])),
            "n": len(r["ok"]),
            "n_single": len(r["forwards"]),
        }
    return res


def table(results: dict, tasks: list[str], settings: dict) -> str:
    """Markdown: one row per setting; accuracy per task, the worst change against exact over the
    tasks, agreement with exact's outputs, forwards (and how many fewer than exact, averaged over the
    tasks), positions computed relative to exact (what a cached step saves), time."""
    exact = results["exact"]
    head = ("| setting | options | " + " | ".join(tasks) + " | mean acc | worst change | agree exact | forwards | "
            "fewer forwards | tok/fwd | compute vs exact | ms/example |")
    lines = [head, "|" + "---|" * (len(tasks) + 10)]
    for name, res in results.items():
        accs = [res[t]["accuracy"] for t in tasks]
        deltas = [res[t]["accuracy"] - exact[t]["accuracy"] for t in tasks]
        fwd = np.mean([res[t]["forwards"] for t in tasks])
        ratio = np.mean([exact[t]["forwards"] for t in tasks]) / fwd  # of the means: the stricter
        compute = np.mean([res[t]["positions"] / exact[t]["positions"] for t in tasks])
        agree = np.mean([res[t]["agree_exact"] for t in tasks])
        tpf = np.mean([res[t]["tokens_per_forward"] for t in tasks])
        ms = 1e3 * np.mean([res[t]["seconds"] for t in tasks])
        cells = [f"{100 * a:.0f}" for a in accs]
        opts = _options_text(settings[name], "(official schedule)")
        lines.append(f"| {name} | {opts} | " + " | ".join(cells) + f" | {100 * np.mean(accs):.1f} | {100 * min(deltas):+.1f} | "
                     f"{100 * agree:.0f}% | {fwd:.1f} | {ratio:.1f}x | {tpf:.2f} | {compute:.2f} | {ms:.0f} |")
    return "\n".join(lines) + "\n"


def _options_text(options: dict, none: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or none


def plot(results: dict, tasks: list[str], path: str, worst: str) -> None:
    """PNG: per setting, the mean accuracy over the tasks (filled) and the accuracy on `worst`
    (hollow, named at the right, a leader line to its point) against the mean forwards."""
    from PIL import Image, ImageDraw

    w, h, left, bottom, top, right = 1000, 640, 70, 60, 30, 300
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
    d.text((w // 2 - 220, h - 25), "forwards per example (mean over tasks)", fill="black")
    d.text((10, 8), f"accuracy: filled = mean over tasks, hollow = {worst} (named at the right)", fill="black")
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
               "#31a354", "#756bb1"]
    points = []
    for i, (name, res) in enumerate(results.items()):
        c = colours[i % len(colours)]
        x, y = xy(fwd[name], np.mean([res[t]["accuracy"] for t in tasks]))
        d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=c)
        xw, yw = xy(fwd[name], res[worst]["accuracy"]) if worst in res else (x, y)
        d.ellipse([xw - 5, yw - 5, xw + 5, yw + 5], outline=c, width=2)
        points.append((yw, xw, name, c, 100 * res[worst]["accuracy"] if worst in res else float("nan")))
    # labels in a column at the right, in the order of their points' heights, 14 px apart at least
    label_x, last = w - right + 40, -1e9
    for yw, xw, name, c, acc in sorted(points):
        ly = max(yw, last + 14)
        last = ly
        d.line([(xw + 6, yw), (label_x - 4, ly)], fill=c)
        d.text((label_x, ly - 6), f"{name} ({acc:.0f}%)", fill=c)
    img.save(path)


def image_study(n: int, n_single: int, names: list[str]) -> dict:
    """The approximate MaskGIT modes on the image yardstick: accuracy, exact-output and per-code
    agreement with exact mode, positions computed, time, and the pixel PSNR between the exact and
    the approximate codes after a MAGVIT-v2 decode (a random ch-32 decoder: the decoder is the same
    on both sides, so this measures what the differing codes do to pixels, not image quality)."""
    from dynin_rt.testing.magvit import write_magvit
    from dynin_rt.tokenizers.magvit import MagvitV2

    model = dynin_rt.load(trained_checkpoint(IMAGE_CONFIG), backend="cpu")
    tok, layout = test_tokenizer()
    examples = {DRAW.name: eval_examples(DRAW, tok, layout, n)}
    with tempfile.TemporaryDirectory() as d:
        magvit = MagvitV2.from_pretrained(write_magvit(d, ch=32, seed=0), backend="torch")
    raw, results = {}, {}
    for name in names:  # "exact" first (main puts it there)
        raw[name] = run_setting(model, examples, IMAGE_SETTINGS[name], n_single)
        res = summarise(raw[name], raw["exact"])[DRAW.name]
        codes = np.array(raw[name][DRAW.name]["output"])
        if name == "exact":
            exact, exact_pixels = codes, magvit.decode(codes).astype(np.float64)
        res["code_agreement"] = float((codes == exact).mean())
        mse = np.mean((magvit.decode(codes).astype(np.float64) - exact_pixels) ** 2)
        res["psnr_db"] = float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
        results[name] = res
        print(f"image {name:10s} acc={100 * res['accuracy']:.0f} agree={100 * res['agree_exact']:.0f}% "
              f"codes={100 * res['code_agreement']:.1f}% psnr={res['psnr_db']:.1f} dB", flush=True)
    return results


def image_table(results: dict) -> str:
    exact = results["exact"]
    lines = ["| setting | options | accuracy | change | images = exact | codes = exact | PSNR vs exact (dB) | forwards | "
             "compute vs exact | ms/image |", "|" + "---|" * 10]
    for name, r in results.items():
        opts = _options_text(IMAGE_SETTINGS[name], "(official sampler)")
        lines.append(f"| {name} | {opts} | {100 * r['accuracy']:.0f} | {100 * (r['accuracy'] - exact['accuracy']):+.0f} | "
                     f"{100 * r['agree_exact']:.0f}% | {100 * r['code_agreement']:.1f}% | {r['psnr_db']:.1f} | "
                     f"{r['forwards']:.0f} | {r['positions'] / exact['positions']:.2f} | {1e3 * r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="examples per task (accuracy, one batched call each)")
    ap.add_argument("--n-single", type=int, default=16, help="of them, run one at a time (forwards, time)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    ap.add_argument("--tasks", default=",".join(TrainConfig().tasks))
    ap.add_argument("--checkpoint", help="a trained checkpoint directory (default: the cached TrainConfig() model)")
    ap.add_argument("--image-settings", default=",".join(IMAGE_SETTINGS), help="comma-separated names of IMAGE_SETTINGS "
                    "('' skips the image yardstick)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality"))
    args = ap.parse_args(argv)
    names = args.settings.split(",")
    image_names = [n for n in args.image_settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS] + [n for n in image_names if n not in IMAGE_SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; known: {list(SETTINGS)}, image: {list(IMAGE_SETTINGS)}")
    # exact mode runs first: every other setting is compared with its outputs
    names = ["exact"] + [n for n in names if n != "exact"]
    if image_names:
        image_names = ["exact"] + [n for n in image_names if n != "exact"]
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
    md = table(results, tasks, SETTINGS)
    image = image_study(args.n, args.n_single, image_names) if image_names else {}
    if image:
        md += "\nImage yardstick (the draw task, MaskGIT, 16 codes in 8 steps, temperature 1):\n\n" + image_table(image)
    print(md)
    with open(os.path.join(args.out, "quality_table.md"), "w", encoding="utf-8") as f:
        f.write(md)
    plot(results, tasks, os.path.join(args.out, "quality_plot.png"), worst="pairs")
    write_json(os.path.join(args.out, "quality.json"), {
        "checkpoint": path, "n_per_task": args.n, "machine": machine(), "settings": {n: SETTINGS[n] for n in names},
        "fast_defaults": {"threshold": FAST_THRESHOLD, "text_speech_cache": FAST_CACHE, "image_cache": FAST_IMAGE_CACHE},
        "results": results,
        "image": {"checkpoint": trained_checkpoint(IMAGE_CONFIG) if image else None,
                  "settings": {n: IMAGE_SETTINGS[n] for n in image_names}, "results": image}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
