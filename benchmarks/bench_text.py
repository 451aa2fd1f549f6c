"""Text generation on the C++ runtime vs the PyTorch reference (and, optionally, the official code)
on the ~170M CPU config: prompt 256, 64 new tokens, 64 steps, block 32 (issue 5's setting).

    python benchmarks/bench_text.py [--repeats 3] [--warmup 1] [--dtype fp32|bf16] [--json out.json]
                                    [--official-models DIR] [--skip-reference]

Every side loads the same checkpoint in the same dtype, runs on the CPU, gets the same untimed
warm-up calls, and in exact mode must produce the runtime's tokens (``identical_to_runtime_exact``).
--official-models points at a local copy of AIDASLab/Dynin-Omni's models/ package (needs
transformers); its mmu_generate then runs on the same weights. Ratios are medians measured in this
one run. Fast mode is approximate: its token agreement with exact mode is reported.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BENCH_CONFIG, bench_checkpoint, median_seconds, write_json  # noqa: E402

import dynin_rt  # noqa: E402
from dynin_rt.bench import machine  # noqa: E402
from dynin_rt.noise import CounterNoise  # noqa: E402
from dynin_rt.reference import DyninOmni  # noqa: E402

PROMPT, GEN, STEPS, BLOCK = 256, 64, 64, 32
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Random weights never reach the threshold, so threshold decoding commits one token per step here:
# these rows time the KV reuse; what each setting costs in accuracy is bench_quality.py's.
FAST_VARIANTS = (
    ("runtime_fast_dual_threshold0.9", dict(mode="fast", cache="dual", refresh_every=0)),
    ("runtime_prefix_cache_exact_schedule", dict(cache="prefix")),
    ("runtime_dual_cache_exact_schedule", dict(cache="dual")),
)


def official_generate(models_dir: str, ckpt: str, dtype: torch.dtype):
    sys.path.insert(0, os.path.dirname(os.path.abspath(models_dir)))
    from models.modeling_dynin_omni import DyninOmniModelLM  # noqa: PLC0415

    model = DyninOmniModelLM.from_pretrained(ckpt, dtype=dtype).eval()

    def run(prompt):
        with torch.no_grad():
            return model.mmu_generate(prompt, max_new_tokens=GEN, steps=STEPS, block_length=BLOCK)

    return run


class Timings(dict):
    """name -> {"median_s", "times_s", ...}: each side timed the same way."""

    def __init__(self, repeats: int, warmup: int):
        super().__init__()
        self.repeats, self.warmup = repeats, warmup

    def run(self, name: str, fn):
        """Median of ``repeats`` calls after ``warmup`` untimed ones; returns the last output."""
        out = {}

        def call():
            out["ids"] = fn()

        seconds, all_times = median_seconds(call, self.repeats, self.warmup)
        self[name] = {"median_s": round(seconds, 3), "times_s": [round(t, 3) for t in all_times]}
        return out["ids"]


def _runtime(model, prompt: torch.Tensor, timings: Timings) -> np.ndarray:
    """The runtime in exact mode, its fast variants, and one full-logits forward; returns exact ids."""
    kw = dict(gen_length=GEN, steps=STEPS, block_length=BLOCK)
    exact = timings.run("runtime_exact", lambda: model.generate_text(prompt.numpy(), **kw))
    timings["runtime_exact"]["stats"] = model.last_stats.to_dict()
    gen = slice(PROMPT, PROMPT + GEN)
    for name, extra in FAST_VARIANTS:
        ids = timings.run(name, lambda: model.generate_text(prompt.numpy(), **kw, **extra))
        timings[name]["token_agreement_with_exact"] = float((ids[0, gen] == exact[0, gen]).mean())
        timings[name]["stats"] = model.last_stats.to_dict()
    canvas = np.concatenate([prompt.numpy(), np.full((1, GEN), 126336)], axis=1)
    forward_s = median_seconds(lambda: model.logits(canvas), timings.repeats, timings.warmup)[0]
    timings["runtime_full_logits_forward"] = {"median_s": round(forward_s, 4)}
    return exact


def _baselines(ckpt: str, prompt: torch.Tensor, exact: np.ndarray, args, timings: Timings) -> None:
    """The reference and (optionally) the official code on the same weights, dtype and device."""
    if not args.skip_reference:
        ref = DyninOmni.from_pretrained(ckpt)  # the checkpoint's own dtype, as the runtime loaded it
        r = timings.run("reference", lambda: ref.generate_text(
            prompt, gen_length=GEN, steps=STEPS, block_length=BLOCK, noise=CounterNoise(0)).numpy())
        timings["reference"]["identical_to_runtime_exact"] = bool(np.array_equal(r, exact))
    if args.official_models:
        run = official_generate(args.official_models, ckpt, TORCH_DTYPES[args.dtype])
        o = timings.run("official_mmu_generate", lambda: run(prompt).numpy())
        timings["official_mmu_generate"]["identical_to_runtime_exact"] = bool(np.array_equal(o, exact))


def _ratios(timings: Timings) -> None:
    base_name = "official_mmu_generate" if "official_mmu_generate" in timings else "reference"
    base = timings.get(base_name)
    for name, r in timings.items():
        if base and name.startswith("runtime_") and "forward" not in name:
            r["speedup_vs_" + ("official" if base_name == "official_mmu_generate" else "reference")] = round(
                base["median_s"] / r["median_s"], 2)
        if "stats" in r:
            r["forwards_per_s"] = round(r["stats"]["forwards"] / r["median_s"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before the timed ones, on every side")
    parser.add_argument("--dtype", choices=list(TORCH_DTYPES), default="fp32")
    parser.add_argument("--json", default=None)
    parser.add_argument("--official-models", default=None)
    parser.add_argument("--skip-reference", action="store_true", help="runtime only (the reference takes minutes)")
    args = parser.parse_args()

    ckpt = bench_checkpoint(dtype=args.dtype)
    timings = Timings(args.repeats, args.warmup)
    prompt = torch.randint(0, 126000, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DYNIN_RT_CACHE"] = cache
        exact = _runtime(dynin_rt.load(ckpt, backend="cpu", progress=False), prompt, timings)
        _baselines(ckpt, prompt, exact, args, timings)
    _ratios(timings)
    write_json(args.json, {
        "benchmark": "text generation (LLaDA block sampler)",
        "config": BENCH_CONFIG,
        "dtype": args.dtype,
        "setting": {"prompt": PROMPT, "gen_length": GEN, "steps": STEPS, "block_length": BLOCK},
        "warmup": args.warmup,
        "results": dict(timings),
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
