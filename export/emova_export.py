"""Export an EMOVA speech tokenizer checkpoint to ONNX (and TensorRT engines on a GPU machine).

    python export/emova_export.py CHECKPOINT_DIR OUT_DIR [--tensorrt] [--precision fp16|bf16|fp32] [--overwrite]

Writes ``emova_u2s_text``, ``emova_u2s_wave`` and ``emova_s2u`` ONNX graphs (opset 17) into OUT_DIR
(see ``dynin_rt.export.emova_onnx``); with ``--tensorrt`` also builds the engines under OUT_DIR/engines
(the wave graph in ``--precision``, the others fp32). Loading a checkpoint with
``EmovaSpeech.from_pretrained(dir, backend="onnx" | "tensorrt", export_dir=OUT_DIR)`` reuses them.
"""
from __future__ import annotations

import argparse
import os

from dynin_rt.export.emova_onnx import emova_profiles, export_emova_onnx
from dynin_rt.tokenizers.emova import EmovaSpeech
from dynin_rt.tokenizers.emova_runners import WAVE_GRAPH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs a GPU)")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    sp = EmovaSpeech.from_pretrained(args.checkpoint, backend="torch", device="cpu")
    paths = export_emova_onnx(sp.vocoder, sp.spiral, args.out_dir, overwrite=args.overwrite)
    for graph, path in paths.items():
        print(f"{graph}: {path}")
    if args.tensorrt:
        from dynin_rt.export.tensorrt import build_engine

        trt_paths = export_emova_onnx(sp.vocoder, sp.spiral, args.out_dir, wave_precision=args.precision,
                                      overwrite=args.overwrite)
        profiles = emova_profiles(sp.vocoder, sp.spiral)
        for graph, path in trt_paths.items():
            label = args.precision if graph == WAVE_GRAPH else "fp32"
            engine = build_engine(path, profiles[graph], precision=label,
                                  cache_dir=os.path.join(args.out_dir, "engines"), rebuild=args.overwrite)
            print(f"{graph} engine ({label}): {engine}")


if __name__ == "__main__":
    main()
