"""The CUDA runtime against the PyTorch reference at the real 8B shapes (random bf16 weights, one
GPU, same steps), for benchmarks/device_check.sh. Random weights: report forwards/s; with real
weights tokens/s = tokens committed per step x forwards/s.

    python benchmarks/bench_gpu_8b.py --json OUT.json [--weights-dir DIR] [--skip-reference] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

import dynin_rt
from dynin_rt import prompts
from dynin_rt.checkpoint import ModelConfig
from dynin_rt.export.weights import runtime_tensor_shapes, write_runtime_weights
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


def random_tensor(name: str, shape, gen: torch.Generator) -> torch.Tensor:
    if len(shape) == 1:
        return 1.0 + 0.05 * torch.randn(shape, device="cuda", generator=gen)
    return torch.randn(shape, device="cuda", generator=gen) / shape[1] ** 0.5


def timed(fn, repeats: int, warmup: int = 1):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--weights-dir", default=os.path.join(tempfile.gettempdir(), "dynin_rt_8b_random"))
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer steps (the same per-step work)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = {"gpu": torch.cuda.get_device_name(0), "config": CONFIG.to_dict(), "dtype": "bf16", "results": {}}
    res = report["results"]

    t0 = time.perf_counter()
    tok_dir = tempfile.mkdtemp()
    write_tokenizer(tok_dir)
    tok = TextTokenizer(tok_dir)
    if not os.path.isfile(os.path.join(args.weights_dir, "manifest.json")):
        gen = torch.Generator(device="cuda").manual_seed(0)
        shapes = runtime_tensor_shapes(CONFIG)
        write_runtime_weights(args.weights_dir, CONFIG, LAYOUT, "bf16", lambda n: random_tensor(n, shapes[n], gen))
        for f in os.listdir(tok_dir):
            os.replace(os.path.join(tok_dir, f), os.path.join(args.weights_dir, f))
    report["seconds_write_weights"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    model = dynin_rt.load(args.weights_dir, backend="cuda")
    report["seconds_load_runtime"] = round(time.perf_counter() - t0, 1)

    ref = None
    if not args.skip_reference:
        t0 = time.perf_counter()
        torch.set_default_dtype(torch.bfloat16)  # build the 16 GB of parameters in bf16 directly
        try:
            with torch.device("cuda"):
                ref = DyninOmni(CONFIG, LAYOUT, tok)
        finally:
            torch.set_default_dtype(torch.float32)
        gen = torch.Generator(device="cuda").manual_seed(1)
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(random_tensor("", tuple(p.shape), gen))
        ref.eval()
        report["seconds_build_reference"] = round(time.perf_counter() - t0, 1)

    scale = 4 if args.quick else 1
    g = np.random.default_rng(0)

    # -- text: prompt 512, 256 new tokens, block 32 ------------------------------------------------
    prompt = g.integers(0, 126000, (1, 512))
    gen_len, block = 256 // scale, 32
    for name, kw in (("text_exact", {}), ("text_dual_cache", dict(cache="dual")), ("text_threshold_0.9", dict(mode="fast"))):
        sec, _ = timed(lambda: model.generate_text(prompt, gen_length=gen_len, steps=gen_len, block_length=block, **kw),
                       args.repeats)
        stats = model.last_stats
        res[name] = {"seconds": round(sec, 3), "forwards": stats.forwards, "forwards_per_s": round(stats.forwards / sec, 1),
                     "tokens_per_step": round(stats.tokens_per_step, 2)}
    if ref is not None:
        ids = torch.as_tensor(prompt, device="cuda")
        sec, _ = timed(lambda: llada_generate(ref, ids, gen_length=gen_len, steps=gen_len, block_length=block,
                                              noise=CounterNoise(0)), 1, warmup=0)
        res["text_reference"] = {"seconds": round(sec, 3), "forwards_per_s": round(gen_len / sec, 1)}
        res["text_exact"]["speedup_vs_reference"] = round(sec / res["text_exact"]["seconds"], 2)

    # one dual-cache 32-token block step, against the HBM roofline of the bytes it reads
    fwd_s = 1.0 / res["text_dual_cache"]["forwards_per_s"]
    weight_bytes = 2 * (sum(int(np.prod(s)) for n, s in runtime_tensor_shapes(CONFIG).items() if n != "embed"))
    kv_bytes = 4 * 2 * CONFIG.n_layers * CONFIG.d_model * (512 + gen_len)  # fp32 K and V of every slot
    hbm = next((v for k, v in HBM_BYTES_PER_S.items() if k in report["gpu"]), None)
    if hbm:
        roofline = (weight_bytes + kv_bytes) / hbm
        res["dual_cache_step"] = {"ms": round(fwd_s * 1e3, 2), "roofline_ms": round(roofline * 1e3, 2),
                                  "fraction_of_roofline": round(roofline / fwd_s, 3)}

    # -- text to image 512 x 512: 1024 codes, 20 steps, CFG 3.5 ----------------------------------
    c = prompts.text_to_image(tok, "A red fox in the snow")
    u = prompts.text_to_image(tok, "")
    kw = dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, seq_len=1024, timesteps=20 // scale,
              guidance_scale=3.5)
    sec, _ = timed(lambda: model.generate_image(c.input_ids, c.attention_mask, **kw), args.repeats)
    res["t2i_512"] = {"seconds": round(sec, 3), "forwards_per_s": round(model.last_stats.forwards / sec, 1)}
    if ref is not None:
        cu = {k: (v.cuda() if hasattr(v, "cuda") else v) for k, v in kw.items()}
        sec, _ = timed(lambda: maskgit_generate(ref, c.input_ids.cuda(), c.attention_mask.cuda(), noise=CounterNoise(0), **cu), 1,
                       warmup=0)
        res["t2i_512"]["reference_seconds"] = round(sec, 3)
        res["t2i_512"]["speedup_vs_reference"] = round(sec / res["t2i_512"]["seconds"], 2)

    # -- text to speech: 383 units, steps 383, block 128, CFG 2.5 --------------------------------
    units = 383 // scale
    s = prompts.text_to_speech(tok, "Hello there, this is a benchmark of the speech path.", num_units=units)
    for name, mode in (("t2s_exact", "exact"), ("t2s_fast", "fast")):
        sec, _ = timed(lambda: model.generate_speech(s.input_ids, s.attention_mask, max_new_tokens=units, steps=units,
                                                     block_length=128, temperature=1.0, cfg_scale=2.5, mode=mode), args.repeats)
        res[name] = {"seconds": round(sec, 3), "forwards": model.last_stats.forwards,
                     "forwards_per_s": round(model.last_stats.forwards / sec, 1)}
    if ref is not None:
        sec, _ = timed(lambda: t2s_generate(ref, s.input_ids.cuda(), s.attention_mask.cuda(), max_new_tokens=units, steps=units,
                                            block_length=128, temperature=1.0, cfg_scale=2.5, noise=CounterNoise(0)), 1, warmup=0)
        res["t2s_exact"]["reference_seconds"] = round(sec, 3)
        res["t2s_exact"]["speedup_vs_reference"] = round(sec / res["t2s_exact"]["seconds"], 2)

    # -- speech recognition: 10 s of speech (250 units), 128 tokens, 256 steps, block 2 ------------
    a = prompts.speech_to_text(tok, LAYOUT, g.integers(0, 4096, 250).tolist())
    steps = 256 // scale
    sec, _ = timed(lambda: model.generate_text(a.input_ids.numpy(), gen_length=128 // scale, steps=steps, block_length=2),
                   args.repeats)
    res["s2t_128"] = {"seconds": round(sec, 3), "forwards_per_s": round(model.last_stats.forwards / sec, 1)}
    if ref is not None:
        sec, _ = timed(lambda: llada_generate(ref, a.input_ids.cuda(), gen_length=128 // scale, steps=steps, block_length=2,
                                              noise=CounterNoise(0)), 1, warmup=0)
        res["s2t_128"]["reference_seconds"] = round(sec, 3)
        res["s2t_128"]["speedup_vs_reference"] = round(sec / res["s2t_128"]["seconds"], 2)

    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
