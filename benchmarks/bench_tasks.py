"""Per-task latency of dynin_rt.generate on the C++ runtime vs the PyTorch reference: the same
weights (the checkpoint the runtime was exported from, in the runtime's dtype), device, inputs and
seed, the same untimed warm-up calls on both sides, token equality checked in exact mode; medians
over repeats, JSON and CSV out. Every registered task, or the ones named:

    python benchmarks/bench_tasks.py [--task t2t,i2t,...] [--model DIR] [--repeats 3] [--warmup 1]
                                     [--official] [--mode exact|fast] [--json out.json] [--csv out.csv]
                                     [--no-reference]

Without --model the demo's tiny random checkpoint is built and used. Same as ``dynin-rt bench``.
"""
from __future__ import annotations

import argparse
import sys

from dynin_rt import bench


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(parser)
    return bench.command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
