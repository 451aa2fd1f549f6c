"""Export a MAGVIT-v2 checkpoint to ONNX (and TensorRT engines on a GPU machine).

    python export/magvit_export.py CHECKPOINT_DIR OUT_DIR [--precision fp32|fp16|bf16] [--tensorrt]
                                   [--grids 21,30,32] [--max-batch 4] [--overwrite]

Writes ``magvit_decoder.v1.<precision>.onnx`` (codes int32 [B, h, w] -> pixels [B, 3, 16h, 16w]) and
``magvit_encoder.v1.<precision>.onnx`` (pixels -> latent [B, 13, H/16, W/16]) into OUT_DIR, opset 17
(see ``dynin_rt.export.magvit_onnx``). fp32 is what onnxruntime runs; fp16/bf16 are the mixed-precision
graphs for TensorRT. With ``--tensorrt`` also builds the engines under OUT_DIR/engines, one
optimization profile per grid plus a catch-all. ``MagvitV2.from_pretrained`` builds the same files
itself, under its cache directory, when they are missing.
"""
from __future__ import annotations

import argparse
import os

from dynin_rt.export.magvit_onnx import export_magvit_onnx
from dynin_rt.tokenizers.magvit import magvit_profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"],
                        help="graph precision (default fp32, or fp16 with --tensorrt)")
    parser.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs a GPU)")
    parser.add_argument("--grids", default="21,30,32", help="token grid sides with their own TensorRT profile")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    precision = args.precision or ("fp16" if args.tensorrt else "fp32")
    paths = export_magvit_onnx(args.checkpoint, args.out_dir, precision, overwrite=args.overwrite)
    for part, path in paths.items():
        print(f"{part} ({precision}): {path}")
    if args.tensorrt:
        from dynin_rt.export.tensorrt import build_engine

        grids = tuple(int(g) for g in args.grids.split(","))
        for part, path in paths.items():
            engine = build_engine(path, magvit_profiles(part, grids, args.max_batch), precision=precision,
                                  cache_dir=os.path.join(args.out_dir, "engines"), rebuild=args.overwrite)
            print(f"{part} engine ({precision}): {engine}")


if __name__ == "__main__":
    main()
