"""Text generation on the C++ runtime vs the PyTorch reference (and, optionally, the official code)
on the ~170M CPU config: prompt 256, 64 new tokens, 64 steps, block 32 (issue 5's setting).

    python benchmarks/bench_text.py [--repeats 3] [--dtype fp32|bf16] [--json out.json]
                                    [--official-models DIR]

--official-models points at a local copy of AIDASLab/Dynin-Omni's models/ package (needs
transformers); its mmu_generate then runs on the same weights. Ratios are medians measured in
this one run. Fast mode is approximate: its token agreement with exact mode is reported.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BENCH_CONFIG, bench_checkpoint, machine, median_seconds, write_json  # noqa: E402

import dynin_rt  # noqa: E402
from dynin_rt.noise import CounterNoise  # noqa: E402
from dynin_rt.reference import DyninOmni  # noqa: E402

PROMPT, GEN, STEPS, BLOCK = 256, 64, 64, 32


def official_generate(models_dir: str, ckpt: str):
    sys.path.insert(0, os.path.dirname(os.path.abspath(models_dir)))
    from models.modeling_dynin_omni import DyninOmniModelLM  # noqa: PLC0415

    model = DyninOmniModelLM.from_pretrained(ckpt, dtype=torch.float32).eval()

    def run(prompt):
        with torch.no_grad():
            return model.mmu_generate(prompt, max_new_tokens=GEN, steps=STEPS, block_length=BLOCK)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--json", default=None)
    parser.add_argument("--official-models", default=None)
    parser.add_argument("--skip-reference", action="store_true", help="runtime only (the reference takes minutes)")
    args = parser.parse_args()

    ckpt = bench_checkpoint(dtype=args.dtype)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DYNIN_RT_CACHE"] = cache
        model = dynin_rt.load(ckpt, backend="cpu", progress=False)
        g = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, 126000, (1, PROMPT), generator=g)
        kw = dict(gen_length=GEN, steps=STEPS, block_length=BLOCK)
        results = {}

        def timed(name, fn, repeats, warmup=1):
            out = {}

            def call():
                out["ids"] = fn()

            seconds, all_times = median_seconds(call, repeats, warmup)
            results[name] = {"median_s": round(seconds, 3), "times_s": [round(t, 3) for t in all_times]}
            return out["ids"]

        exact = timed("runtime_exact", lambda: model.generate_text(prompt.numpy(), **kw), args.repeats)
        results["runtime_exact"]["stats"] = model.last_stats.to_dict()
        for name, extra in (
            ("runtime_fast_dual_threshold0.9", dict(mode="fast")),
            ("runtime_prefix_cache_exact_schedule", dict(cache="prefix")),
            ("runtime_dual_cache_exact_schedule", dict(cache="dual")),
        ):
            ids = timed(name, lambda: model.generate_text(prompt.numpy(), **kw, **extra), args.repeats)
            gen = slice(PROMPT, PROMPT + GEN)
            results[name]["token_agreement_with_exact"] = float((ids[0, gen] == exact[0, gen]).mean())
            results[name]["stats"] = model.last_stats.to_dict()
        fwd = np.concatenate([prompt.numpy(), np.full((1, GEN), 126336)], axis=1)
        results["runtime_full_logits_forward"] = {"median_s": round(median_seconds(lambda: model.logits(fwd), args.repeats)[0], 4)}

        if not args.skip_reference:
            ref = DyninOmni.from_pretrained(ckpt)
            r = timed("reference", lambda: ref.generate_text(prompt, **kw, noise=CounterNoise(0)).numpy(), args.repeats, warmup=0)
            results["reference"]["identical_to_runtime_exact"] = bool(np.array_equal(r, exact))
        if args.official_models:
            run = official_generate(args.official_models, ckpt)
            o = timed("official_mmu_generate", lambda: run(prompt).numpy(), args.repeats, warmup=0)
            results["official_mmu_generate"]["identical_to_runtime_exact"] = bool(np.array_equal(o, exact))

    base = results.get("official_mmu_generate") or results.get("reference")
    if base:
        for name, r in results.items():
            if name.startswith("runtime_") and "forward" not in name:
                r["speedup_vs_" + ("official" if "official_mmu_generate" in results else "reference")] = round(
                    base["median_s"] / r["median_s"], 2
                )
    for name, r in results.items():
        if "stats" in r:
            r["forwards_per_s"] = round(r["stats"]["forwards"] / r["median_s"], 2)
    write_json(
        args.json,
        {
            "benchmark": "text generation (LLaDA block sampler)",
            "config": BENCH_CONFIG,
            "dtype": args.dtype,
            "setting": {"prompt": PROMPT, "gen_length": GEN, "steps": STEPS, "block_length": BLOCK},
            "results": results,
            "build": dynin_rt.build_info(),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
