"""Latency of the PyTorch reference on the ~170M CPU config: the baseline the runtime must beat.

    python benchmarks/bench_reference.py [--repeats 3] [--json out.json]

Reports the median forward latency over a prompt-256 + 64-token canvas and the median time of a
text generation (prompt 256, 64 new tokens, 64 steps, block 32, greedy).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BENCH_CONFIG, bench_checkpoint, median_seconds, write_json  # noqa: E402

from dynin_rt.bench import machine  # noqa: E402
from dynin_rt.reference import DyninOmni  # noqa: E402

PROMPT, GEN, STEPS, BLOCK = 256, 64, 64, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    model = DyninOmni.from_pretrained(bench_checkpoint(dtype=args.dtype))
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 126000, (1, PROMPT), generator=g)
    canvas = torch.cat([prompt, torch.full((1, GEN), 126336)], dim=1)
    forward_s, _ = median_seconds(lambda: model(canvas), args.repeats)
    generate_s, _ = median_seconds(
        lambda: model.generate_text(prompt, gen_length=GEN, steps=STEPS, block_length=BLOCK), args.repeats, warmup=0
    )
    write_json(
        args.json,
        {
            "benchmark": "reference",
            "config": BENCH_CONFIG,
            "dtype": args.dtype,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "forward_tokens": PROMPT + GEN,
            "forward_median_s": round(forward_s, 4),
            "generate": {"prompt": PROMPT, "gen_length": GEN, "steps": STEPS, "block_length": BLOCK},
            "generate_median_s": round(generate_s, 3),
            "forwards_per_s": round(STEPS / generate_s, 2),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
