"""Per-task latency of dynin_rt.generate on the C++ runtime vs the PyTorch reference (same weights,
same seed, token equality checked), medians over repeats, JSON and CSV out.

    python benchmarks/bench_t2t.py [--model DIR] [--repeats 3] [--official] [--mode exact|fast]
                                   [--json out.json] [--csv out.csv] [--no-reference]

Without --model the demo's tiny random checkpoint is built and used. The seven bench_<task>.py
scripts call main() with their task; this file runs them all.
"""
from __future__ import annotations

import argparse
import os
import tempfile


def main(task: str | None = None, argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--official", action="store_true", help="the official per-task defaults (slow for the reference)")
    parser.add_argument("--mode", choices=["exact", "fast"], default="exact")
    parser.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)

    import dynin_rt
    from dynin_rt.bench import format_table, run_all, write_reports
    from dynin_rt.demo import build_checkpoint
    from dynin_rt.tasks.common import TASKS

    model_dir = args.model or build_checkpoint(os.path.join(tempfile.gettempdir(), "dynin_rt_demo_checkpoint"))
    model = dynin_rt.load(model_dir, backend=args.backend, progress=False)
    reference = None
    if not args.no_reference:
        from dynin_rt.reference import DyninOmni

        reference = DyninOmni.from_pretrained(model_dir, device="cuda" if model.backend == "cuda" else "cpu")
    rows = run_all(model, tasks=(task,) if task else TASKS, reference=reference, repeats=args.repeats,
                   reference_repeats=args.reference_repeats, official=args.official, mode=args.mode)
    print(format_table(rows))
    write_reports(rows, json_path=args.json, csv_path=args.csv)


if __name__ == "__main__":
    main()
