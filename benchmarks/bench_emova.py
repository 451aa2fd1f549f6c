"""EMOVA speech tokenizer: vocoder real-time factor and encoder time for 15 s of speech, per backend.

    python benchmarks/bench_emova.py [--device cpu|cuda] [--repeats 3] [--seconds 15] [--json out.json]
                                     [--checkpoint DIR] [--small] [--backends torch,onnx,tensorrt]
                                     [--precision fp16|bf16|fp32] [--threads N]

Without ``--checkpoint`` a random-weight checkpoint in the released layout and at the released widths
is written once to the temp folder (``--small``: the small test variant). For each available backend:

* vocoder: median wall time of ``decode`` of enough units for ``--seconds`` of audio (noise on), the
  real-time factor (time / audio seconds), and the median first-chunk latency of ``decode_stream``
  (from "the units are final" to the first audio chunk);
* encoder: median wall time of ``encode`` of ``--seconds`` of 16 kHz audio;
* parity with the PyTorch twin on the same noise: vocoder SNR in dB and the fraction of identical
  encoder units;
* streaming agreement (PyTorch): whole-sequence streaming vs ``decode`` (SNR dB), and incremental
  streaming (units arriving in 128-unit blocks, as a streamed t2s call feeds them) vs ``decode``:
  fraction of equal durations, SNR and log-mel distance over the common prefix, length difference;
  the same measures for a ``decode`` with another noise seed as the yardstick.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_seconds, write_json  # noqa: E402

from dynin_rt.bench import machine  # noqa: E402
from dynin_rt.testing.emova import write_emova  # noqa: E402
from dynin_rt.tokenizers.backends import probe_all  # noqa: E402
from dynin_rt.tokenizers.emova import EmovaSpeech  # noqa: E402
from dynin_rt.tokenizers.emova.distance import speech_distance  # noqa: E402

T2S_BLOCK = 128  # the speech sampler's official block_length: units reach a streamed render in these


def _snr(ref, x) -> float:
    if ref.shape != x.shape:
        return float("nan")
    err = np.sum((ref.astype(np.float64) - x) ** 2)
    return float("inf") if err == 0 else round(float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / err)), 2)


def _units_for(sp: EmovaSpeech, seconds: float, seed: int = 0) -> np.ndarray:
    """Random units whose render lasts about ``seconds`` (durations with the default noise)."""
    rng = np.random.default_rng(seed)
    units = rng.integers(0, 4096, 64)
    per_unit = sp.durations(units, seed=seed).mean() * sp.hop_length / sp.sample_rate
    n = max(1, int(round(seconds / per_unit)))
    return rng.integers(0, 4096, n)


def _speech(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(1)
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _first_chunk_latency(sp: EmovaSpeech, units, repeats: int) -> float:
    lat = []
    for _ in range(repeats + 1):
        stream = sp.decode_stream(units, seed=0)
        next(stream)
        stream.close()
        lat.append(sp.last_stream.first_chunk_latency)
    return float(np.median(lat[1:]))


def _args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--backends", default="torch,onnx,tensorrt")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no GPU")
    return args


def _checkpoint(args) -> str:
    if args.checkpoint:
        return args.checkpoint
    ckpt = os.path.join(tempfile.gettempdir(), "dynin_rt_bench_emova_small" if args.small else "dynin_rt_bench_emova")
    if not os.path.isfile(os.path.join(ckpt, "model.safetensors")):
        write_emova(ckpt, small=args.small)
    return ckpt


def _bench_backend(sp: EmovaSpeech, setup_s: float, units, audio, reference: dict, args) -> dict:
    """Vocoder and encoder times of one backend, and its agreement with the PyTorch twin."""
    dec_s, _ = median_seconds(lambda: sp.decode(units, seed=0), args.repeats)
    enc_s, _ = median_seconds(lambda: sp.encode(audio), args.repeats)
    wav = sp.decode(units, seed=0)
    got_units, ref_units = sp.encode(audio, reduced=False), reference["units"]
    same_size = got_units.size == ref_units.size
    return {
        "backend_reason": sp.backend_reason,
        "setup_s": round(setup_s, 2),
        "vocoder_median_s": round(dec_s, 4),
        "vocoder_rtf": round(dec_s / reference["audio_s"], 5),
        "first_chunk_latency_s": round(_first_chunk_latency(sp, units, args.repeats), 5),
        "encoder_median_s": round(enc_s, 4),
        "encoder_s_per_audio_s": round(enc_s / args.seconds, 5),
        "vocoder_snr_vs_torch_db": _snr(reference["wav"], wav),
        "encoder_units_identical_to_torch": same_size and bool(np.all(got_units == ref_units)),
        "encoder_unit_agreement": round(float(np.mean(got_units == ref_units)) if same_size else 0.0, 5),
    }


def _streaming(ref: EmovaSpeech, units, ref_wav) -> dict:
    """Streaming agreement with the whole render, PyTorch twin, same seed. The incremental case is
    what a streamed t2s call returns (units arriving in the sampler's 128-unit blocks); a one-shot
    render with another noise seed is the yardstick."""
    whole_stream = np.concatenate(list(ref.decode_stream(units, seed=0)))
    blocks = iter(np.array_split(units, max(1, -(-units.size // T2S_BLOCK))))
    inc_stream = np.concatenate(list(ref.decode_stream(blocks, seed=0)))
    same_dur = np.mean(np.array(ref.last_stream.durations) == ref.durations(units, seed=0))
    return {
        "whole_sequence_snr_db": _snr(ref_wav, whole_stream),
        f"incremental_{T2S_BLOCK}_unit_blocks": {
            "equal_durations": round(float(same_dur), 4),
            **speech_distance(ref_wav, inc_stream, ref.sample_rate),
            "note": "the text encoder is bidirectional: units rendered before the sentence is complete can get "
                    "other durations; with random weights attention is not local, so this is a floor",
        },
        "one_shot_other_seed": speech_distance(ref_wav, ref.decode(units, seed=1), ref.sample_rate),
    }


def main() -> None:
    args = _args()
    ckpt = _checkpoint(args)
    export_dir = os.path.join(tempfile.gettempdir(), f"dynin_rt_bench_emova_export_{os.path.basename(ckpt)}")
    status = probe_all()
    ref = EmovaSpeech.from_pretrained(ckpt, backend="torch", device=args.device)
    units = _units_for(ref, args.seconds)
    audio = _speech(args.seconds)
    ref_wav = ref.decode(units, seed=0)
    reference = {"wav": ref_wav, "units": ref.encode(audio, reduced=False), "audio_s": ref_wav.size / ref.sample_rate}

    results = {}
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if not status[name].available:
            results[name] = {"skipped": status[name].reason}
            continue
        if name == "onnx" and args.device == "cuda" and "CUDAExecutionProvider" not in status["onnx"].providers:
            results[name] = {"skipped": "onnxruntime has no CUDA provider here"}
            continue
        t0 = time.perf_counter()
        sp = ref if name == "torch" else EmovaSpeech.from_pretrained(
            ckpt, backend=name, device=args.device, export_dir=export_dir, precision=args.precision)
        results[name] = _bench_backend(sp, time.perf_counter() - t0, units, audio, reference, args)

    write_json(args.json, {
        "benchmark": "emova",
        "checkpoint": ckpt if args.checkpoint else ("random small" if args.small else "random full width"),
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "audio_seconds": round(reference["audio_s"], 3),
        "units": int(units.size),
        "encoder_input_seconds": args.seconds,
        "repeats": args.repeats,
        "backends": results,
        "streaming": _streaming(ref, units, ref_wav),
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
