"""MAGVIT-v2 decode and encode latency per backend, and backend parity against fp32 PyTorch.

    python benchmarks/bench_magvit.py [--device cpu|cuda] [--backends torch,onnx,tensorrt] [--grids 21,32]
                                      [--batch 1] [--repeats 5] [--precision fp16] [--json PATH] [--quick]

Uses a random-weight checkpoint at the released width (95 M parameters, written once to a temp
dir) unless ``--ckpt`` names a real one. Latency is the median wall time of the public calls:
``decode(codes)`` (int [B, s*s] -> uint8 images, including the device->host copy) and
``encode(x, preprocess=False)`` (float [B, 3, 16s, 16s] -> codes). Throughput is reported from an
explicit conv MAC count (convolutions are >95% of the work). Parity compares each backend with the
fp32 PyTorch twin on the same device (TF32 off): decoded uint8 pixels (max |diff|, share of pixels
off by more than 1, PSNR) and codes (share identical) for the encoder run on a decoded image.

On a GPU machine: ``--device cuda`` runs torch, onnxruntime (CUDA provider when available) and
TensorRT, builds the engines on first use (cached under ``--cache-dir``), and writes everything to
``--json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_seconds, write_json  # noqa: E402

from dynin_rt.bench import machine  # noqa: E402
from dynin_rt.testing.magvit import write_magvit  # noqa: E402
from dynin_rt.tokenizers.backends import probe_all  # noqa: E402
from dynin_rt.tokenizers.magvit import MagvitV2  # noqa: E402
from dynin_rt.tokenizers.magvit.checkpoint import read_magvit_config  # noqa: E402
from dynin_rt.tokenizers.magvit.net import DOWNSAMPLE, MagvitModel  # noqa: E402


def conv_macs(cfg, part: str, grid: int) -> int:
    """Multiply-accumulates of every Conv2d in one decoder or encoder pass at batch 1, grid s x s.

    Counted from the output shape each conv produces when the network runs on the meta device
    (no data, no time): MACs = C_out * C_in * k_h * k_w * H_out * W_out.
    """
    with torch.device("meta"):
        model = MagvitModel(cfg)
    total = [0]

    def hook(mod, _inp, out):
        kh, kw = mod.kernel_size
        total[0] += mod.out_channels * mod.in_channels * kh * kw * out.shape[-2] * out.shape[-1]

    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        if part == "decode":
            model.decoder(torch.empty(1, 13, grid, grid, device="meta"))
        else:
            model.encoder(torch.empty(1, 3, DOWNSAMPLE * grid, DOWNSAMPLE * grid, device="meta"))
    return total[0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB of uint8 images; None (JSON null) when they are identical."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return None if mse == 0 else round(float(10 * np.log10(255.0**2 / mse)), 2)


def _args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="MAGVIT checkpoint dir (default: random weights at the released width)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--backends", default=None, help="comma list (default: every available one for --device)")
    ap.add_argument("--grids", default="21,32", help="token grid sides (21 = 336 px, 32 = 512 px)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"], help="TensorRT engines")
    ap.add_argument("--cache-dir", default=None, help="ONNX files and engines (default: a temp dir)")
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--quick", action="store_true", help="grid 32 only, 2 repeats")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA GPU")
    if args.quick:
        args.grids, args.repeats = "32", 2
    return args


def _timings(name: str, tok: MagvitV2, cfg, inputs: dict, args) -> list[dict]:
    """Median decode and encode times of one backend, per grid."""
    rows = []
    for s, codes in inputs.items():
        side = DOWNSAMPLE * s
        pixels = torch.rand(args.batch, 3, side, side, generator=torch.Generator().manual_seed(s)) * 2 - 1
        calls = (("decode", lambda: tok.decode(codes)), ("encode", lambda: tok.encode(pixels, preprocess=False)))
        for op, fn in calls:
            med, times = median_seconds(fn, args.repeats, warmup=1)
            gmacs = conv_macs(cfg, op, s) * args.batch / 1e9
            rows.append({
                "backend": name, "backend_detail": tok.backend_reason, "op": op, "grid": s,
                "pixels": DOWNSAMPLE * s, "batch": args.batch, "median_ms": round(med * 1e3, 2),
                "min_ms": round(min(times) * 1e3, 2), "repeats": args.repeats, "conv_gmac": round(gmacs, 1),
                "tflops": round(2 * gmacs / med / 1e3, 3),
                "precision": args.precision if name == "tensorrt" else "fp32",
            })
            print(f"{name:9s} {op} {DOWNSAMPLE * s}px b{args.batch}: {med * 1e3:9.1f} ms", file=sys.stderr)
    return rows


def _parity(toks: dict, inputs: dict, args) -> list[dict]:
    """Each non-torch backend against the fp32 PyTorch twin: decoded pixels and re-encoded codes."""
    if args.device == "cuda":
        # The reference is fp32; TF32 convs would put its own error on the same scale as fp16's.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    ref, rows = toks["torch"], []
    for s, codes in inputs.items():
        ref_img = ref.decode(codes)
        # Encoder parity on an image-like input: the reference decode, normalized back to [-1, 1].
        x = torch.from_numpy(ref_img).permute(0, 3, 1, 2).float() / 127.5 - 1
        ref_codes = ref.encode(x, preprocess=False)
        for name, tok in toks.items():
            if name == "torch":
                continue
            img = tok.decode(codes)
            diff = np.abs(img.astype(int) - ref_img.astype(int))
            rows.append({
                "backend": name, "grid": s, "precision": args.precision if name == "tensorrt" else "fp32",
                "decode_max_pixel_diff": int(diff.max()), "decode_mean_pixel_diff": round(float(diff.mean()), 4),
                "decode_frac_pixels_off_by_more_than_1": round(float((diff > 1).mean()), 6),
                "decode_psnr_db": _psnr(img, ref_img),
                "encode_code_agreement": round(float((tok.encode(x, preprocess=False) == ref_codes).mean()), 6),
            })
    return rows


def main() -> None:
    args = _args()
    grids = [int(g) for g in args.grids.split(",")]
    ckpt = args.ckpt or os.path.join(tempfile.gettempdir(), "dynin_rt_bench_magvit_ch128")
    if not args.ckpt and not os.path.isfile(os.path.join(ckpt, "pytorch_model.safetensors")):
        write_magvit(ckpt, ch=128, seed=0)
    cache_dir = args.cache_dir or os.path.join(tempfile.gettempdir(), "dynin_rt_bench_magvit_cache")
    status = probe_all()
    if args.backends:
        names = args.backends.split(",")
    else:
        names = [n for n in ["torch", "onnx"] + (["tensorrt"] if args.device == "cuda" else []) if status[n].available]

    cfg = read_magvit_config(ckpt)
    rng = np.random.default_rng(0)
    inputs = {s: rng.integers(0, 8192, (args.batch, s * s)) for s in grids}
    results, toks = [], {}
    for name in names:
        toks[name] = MagvitV2.from_pretrained(ckpt, backend=name, device=args.device, cache_dir=cache_dir,
                                              precision=args.precision, grids=tuple(grids), max_batch=max(args.batch, 1))
        results += _timings(name, toks[name], cfg, inputs, args)
    parity = _parity(toks, inputs, args) if not args.no_parity and "torch" in toks and len(toks) > 1 else []
    write_json(args.json, {
        "bench": "magvit", "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "machine": machine(), "checkpoint": args.ckpt or "random weights, released width (ch 128)",
        "backends_available": {k: {"available": v.available, "reason": v.reason} for k, v in status.items()},
        "results": results, "parity_vs_torch_fp32": parity,
    })


if __name__ == "__main__":
    main()
