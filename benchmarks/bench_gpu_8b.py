"""The CUDA runtime against the PyTorch reference at the real 8B shapes, for benchmarks/device_check.sh:
random bf16 weights drawn once on the GPU for the reference and written from its parameters into the
runtime format, so both sides multiply the same numbers; both run on the same GPU, warmed the same
way and timed the same way (median of --repeats after one warm-up run), with the same counter noise;
where the two sides are deterministic their tokens are compared (in bf16 the runtime keeps fp32
activations, so agreement is reported as a fraction, not required). Random weights: report forwards/s;
with real weights tokens/s = tokens committed per step x forwards/s.

Each section's result (or its error) is written to the JSON file as soon as it ends, so a timeout or a
failing section keeps what was measured before it.

    python benchmarks/bench_gpu_8b.py --json OUT.json [--quick] [--repeats N] [--skip-reference]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
import traceback

import numpy as np
import torch

import dynin_rt
from dynin_rt import prompts
from dynin_rt.checkpoint import ModelConfig
from dynin_rt.export.weights import _sources, runtime_tensor_shapes, write_runtime_weights
from dynin_rt.noise import CounterNoise
from dynin_rt.reference import DyninOmni
from dynin_rt.reference.samplers import llada_generate, maskgit_generate, t2s_generate
from dynin_rt.testing import write_tokenizer
from dynin_rt.tokens import TextTokenizer, TokenLayout

CONFIG = ModelConfig(model_type="dynin_omni", d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=12288,
                     vocab_size=138752, rms_norm_eps=1e-5, rope_theta=500000.0, max_sequence_length=4096,
                     mask_token_id=126336)
LAYOUT = TokenLayout(vocab_size=138752, text_vocab=126372)
HBM_BYTES_PER_S = {"H100": 3.35e12, "H200": 4.8e12}


class Report:
    """The JSON report, rewritten after every section; a section that raises is recorded and skipped."""

    def __init__(self, path: str):
        self.path = path
        self.data = {"gpu": torch.cuda.get_device_name(0), "config": CONFIG.to_dict(), "dtype": "bf16", "results": {}}
        self.write()

    def write(self) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1)

    @contextlib.contextmanager
    def section(self, name: str):
        t0 = time.perf_counter()
        try:
            yield self.data["results"].setdefault(name, {})
        except Exception as exc:  # noqa: BLE001 (recorded; the next section still runs)
            self.data["results"][name]["error"] = f"{type(exc).__name__}: {exc}"
            self.data["results"][name]["traceback"] = traceback.format_exc(limit=4)
        self.data["results"][name]["section_seconds"] = round(time.perf_counter() - t0, 1)
        self.write()


def timed(fn, repeats: int, warmup: int = 1):
    """Median seconds of fn() after `warmup` untimed calls (the same for both sides), and its last result."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def build_reference(tok: TextTokenizer, seed: int) -> DyninOmni:
    torch.set_default_dtype(torch.bfloat16)  # build the 16 GB of parameters in bf16 directly
    try:
        with torch.device("cuda"):
            ref = DyninOmni(CONFIG, LAYOUT, tok)
    finally:
        torch.set_default_dtype(torch.float32)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, device="cuda", generator=gen))
            else:
                p.copy_(torch.randn(p.shape, device="cuda", generator=gen) / p.shape[1] ** 0.5)
    return ref.eval()


def write_weights_from(ref: DyninOmni, tok_dir: str, out_dir: str) -> None:
    """The reference's parameters in the runtime layout (the exporter's fusions), so both sides hold the same weights."""
    state = ref.state_dict()

    def tensor_of(name):
        parts = [state[s] for s in _sources(name)]
        return torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]

    # a source with a path: runtime.Model looks for tokenizers beside it
    write_runtime_weights(out_dir, CONFIG, LAYOUT, "bf16", tensor_of, source={"path": out_dir, "model_type": CONFIG.model_type})
    for f in os.listdir(tok_dir):
        os.replace(os.path.join(tok_dir, f), os.path.join(out_dir, f))


def agreement(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return round(float((a == b).mean()), 4) if a.shape == b.shape else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--weights-dir", default=os.path.join(tempfile.gettempdir(), "dynin_rt_8b_random"))
    parser.add_argument("--skip-reference", action="store_true", help="runtime only (weights drawn the same way)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and tokens (the same per-step work)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = Report(args.json)
    scale = 8 if args.quick else 1
    reps = args.repeats
    ref = model = None

    with report.section("setup") as r:
        tok_dir = tempfile.mkdtemp()
        write_tokenizer(tok_dir)
        tok = TextTokenizer(tok_dir)
        t0 = time.perf_counter()
        ref = build_reference(tok, seed=0)
        r["seconds_build_reference"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        write_weights_from(ref, tok_dir, args.weights_dir)
        r["seconds_write_runtime_weights"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        model = dynin_rt.load(args.weights_dir, backend="cuda")
        r["seconds_load_runtime"] = round(time.perf_counter() - t0, 1)
        if args.skip_reference:
            ref = None
            torch.cuda.empty_cache()
    if model is None:
        return
    res = report.data["results"]
    g = np.random.default_rng(0)
    prompt = g.integers(0, 126000, (1, 512))
    gen_len, block = max(256 // scale, 32), 32

    # -- text: prompt 512, 256 new tokens (32 quick), block 32 -----------------------------------------
    for name, kw in (("text_exact", {}), ("text_dual_cache", dict(cache="dual")), ("text_threshold_0.9", dict(mode="fast"))):
        with report.section(name) as r:
            sec, out = timed(lambda: model.generate_text(prompt, gen_length=gen_len, steps=gen_len, block_length=block, seed=0, **kw),
                             reps)
            stats = model.last_stats
            r.update(seconds=round(sec, 3), forwards=stats.forwards, forwards_per_s=round(stats.forwards / sec, 1),
                     tokens_per_step=round(stats.tokens_per_step, 2))
            if name == "text_exact" and ref is not None:
                ids = torch.as_tensor(prompt, device="cuda")
                rsec, want = timed(lambda: llada_generate(ref, ids, gen_length=gen_len, steps=gen_len, block_length=block,
                                                          noise=CounterNoise(0)), reps)
                r.update(reference_seconds=round(rsec, 3), speedup_vs_reference=round(rsec / sec, 2),
                         token_agreement_with_reference=agreement(out, want.cpu().numpy()))

    with report.section("dual_cache_step") as r:  # one 32-token step against the HBM floor of the bytes it reads
        fwd_s = 1.0 / res["text_dual_cache"]["forwards_per_s"]
        weight_bytes = 2 * sum(int(np.prod(s)) for n, s in runtime_tensor_shapes(CONFIG).items() if n != "embed")
        kv_bytes = 4 * 2 * CONFIG.n_layers * CONFIG.d_model * (512 + gen_len)  # fp32 K and V of every slot
        hbm = next((v for k, v in HBM_BYTES_PER_S.items() if k in report.data["gpu"]), None)
        r["ms"] = round(fwd_s * 1e3, 2)
        if hbm:
            floor = (weight_bytes + kv_bytes) / hbm
            r.update(floor_ms=round(floor * 1e3, 2), fraction_of_floor=round(floor / fwd_s, 3))

    # -- text to image 512 x 512: 1024 codes, 20 CFG steps (4 quick) -------------------------------
    with report.section("t2i_512") as r:
        c = prompts.text_to_image(tok, "A red fox in the snow")
        u = prompts.text_to_image(tok, "")
        kw = dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, seq_len=1024, timesteps=max(20 // scale, 2),
                  guidance_scale=3.5)
        sec, out = timed(lambda: model.generate_image(c.input_ids, c.attention_mask, seed=0, **kw), reps)
        r.update(seconds=round(sec, 3), forwards=model.last_stats.forwards, forwards_per_s=round(model.last_stats.forwards / sec, 1))
        if ref is not None:
            cu = {k: (v.cuda() if hasattr(v, "cuda") else v) for k, v in kw.items()}
            rsec, want = timed(lambda: maskgit_generate(ref, c.input_ids.cuda(), c.attention_mask.cuda(), noise=CounterNoise(0), **cu),
                               reps)
            r.update(reference_seconds=round(rsec, 3), speedup_vs_reference=round(rsec / sec, 2),
                     token_agreement_with_reference=agreement(out, want.cpu().numpy()))

    # -- text to speech: 383 units (48 quick), steps = units, block 128, CFG 2.5 -------------------
    units = max(383 // scale, 32)
    s = prompts.text_to_speech(tok, "Hello there, this is a benchmark of the speech path.", num_units=units)
    for name, mode in (("t2s_exact", "exact"), ("t2s_fast", "fast")):
        with report.section(name) as r:
            kw = dict(max_new_tokens=units, steps=units, block_length=128, temperature=1.0, cfg_scale=2.5)
            sec, out = timed(lambda: model.generate_speech(s.input_ids, s.attention_mask, mode=mode, seed=0, **kw), reps)
            r.update(seconds=round(sec, 3), forwards=model.last_stats.forwards,
                     forwards_per_s=round(model.last_stats.forwards / sec, 1))
            if mode == "exact" and ref is not None:
                rsec, want = timed(lambda: t2s_generate(ref, s.input_ids.cuda(), s.attention_mask.cuda(), noise=CounterNoise(0), **kw),
                                   reps)
                r.update(reference_seconds=round(rsec, 3), speedup_vs_reference=round(rsec / sec, 2),
                         token_agreement_with_reference=agreement(out[0], want[0].cpu().numpy()))

    # -- speech recognition: 10 s of speech (250 units), 128 tokens (16 quick), block 2 -------------
    with report.section("s2t_128") as r:
        a = prompts.speech_to_text(tok, LAYOUT, g.integers(0, 4096, 250).tolist())
        new = max(128 // scale, 16)
        sec, out = timed(lambda: model.generate_text(a.input_ids.numpy(), gen_length=new, steps=new, block_length=2, seed=0), reps)
        r.update(seconds=round(sec, 3), forwards_per_s=round(model.last_stats.forwards / sec, 1))
        if ref is not None:
            rsec, want = timed(lambda: llada_generate(ref, a.input_ids.cuda(), gen_length=new, steps=new, block_length=2,
                                                      noise=CounterNoise(0)), reps)
            r.update(reference_seconds=round(rsec, 3), speedup_vs_reference=round(rsec / sec, 2),
                     token_agreement_with_reference=agreement(out, want.cpu().numpy()))
    print(json.dumps(report.data, indent=1))


if __name__ == "__main__":
    main()
