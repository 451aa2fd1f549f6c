"""The export commands: ``dynin-rt export weights|magvit|emova|tensorrt`` and the scripts in the
repository's export/ folder, one parser for both.

Each command is a thin layer over library code that lives beside its model: the backbone's weights
(dynin_rt.export.weights), the MAGVIT-v2 and EMOVA graphs (tokenizers/magvit/onnx_export.py,
tokenizers/emova/onnx_export.py) and the TensorRT engine builder (tokenizers/tensorrt.py).
``dynin-rt export HF_DIR OUT_DIR`` (no command name) means ``export weights``.
"""
from __future__ import annotations

import argparse
import os

ONNX_PRECISIONS = ("fp32", "fp16", "bf16")


def _weights(args) -> int:
    from .weights import export_weights

    media = None if args.no_media_tokenizers else {"image": args.image_tokenizer, "speech": args.speech_tokenizer}
    out = export_weights(args.hf_dir, args.out_dir, dtype=args.dtype, progress=True, media_tokenizers=media)
    copied = [name for name in ("magvitv2", "emova_speech_tokenizer_hf") if os.path.isdir(os.path.join(out, name))]
    print(f"exported {args.hf_dir} -> {out} ({args.dtype}{', with ' + ' and '.join(copied) if copied else ''})")
    return 0


def _magvit(args) -> int:
    from ..tokenizers.magvit.onnx_export import export_magvit_onnx

    for part, path in export_magvit_onnx(args.checkpoint, args.out_dir, args.precision, overwrite=args.overwrite).items():
        print(f"magvit {part} ({args.precision}): {path}")
    return 0


def _emova(args) -> int:
    from ..tokenizers.emova import EmovaSpeech
    from ..tokenizers.emova.onnx_export import export_emova_onnx

    speech = EmovaSpeech.from_pretrained(args.checkpoint, backend="torch", device="cpu")
    paths = export_emova_onnx(speech.vocoder, speech.spiral, args.out_dir, wave_precision=args.wave_precision,
                              overwrite=args.overwrite)
    for graph, path in paths.items():
        print(f"{graph}: {path}")
    return 0


def _tensorrt(args) -> int:
    from ..tokenizers.backends import BackendUnavailableError, probe_tensorrt

    status = probe_tensorrt()  # before any export, so a machine without TensorRT fails at once
    if not status.available:
        raise BackendUnavailableError(f"cannot build TensorRT engines here: {status.reason}")
    if args.tokenizer == "magvit":
        from ..tokenizers.magvit.onnx_export import build_magvit_engines

        grids = tuple(int(g) for g in args.grids.split(","))
        engines = build_magvit_engines(args.checkpoint, args.out_dir, args.precision, grids, args.max_batch,
                                       device=args.device, rebuild=args.rebuild)
    else:
        from ..tokenizers.emova import EmovaSpeech
        from ..tokenizers.emova.onnx_export import build_emova_engines

        speech = EmovaSpeech.from_pretrained(args.checkpoint, backend="torch", device="cpu")
        engines = build_emova_engines(speech.vocoder, speech.spiral, args.out_dir, args.precision,
                                      device=args.device, rebuild=args.rebuild)
    for graph, path in engines.items():
        print(f"{args.tokenizer} {graph} engine: {path}")
    return 0


def _weights_args(w: argparse.ArgumentParser) -> None:
    w.add_argument("hf_dir")
    w.add_argument("out_dir")
    w.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    w.add_argument("--image-tokenizer", dest="image_tokenizer",
                   help="MAGVIT-v2 folder to copy in (default: the one in or beside HF_DIR)")
    w.add_argument("--speech-tokenizer", dest="speech_tokenizer",
                   help="EMOVA folder to copy in (default: the one in or beside HF_DIR)")
    w.add_argument("--no-media-tokenizers", dest="no_media_tokenizers", action="store_true",
                   help="do not copy the image and speech tokenizers (the export then needs them passed at load)")
    w.set_defaults(func=_weights)


def _magvit_args(m: argparse.ArgumentParser) -> None:
    m.add_argument("checkpoint")
    m.add_argument("out_dir")
    m.add_argument("--precision", choices=ONNX_PRECISIONS, default="fp32",
                   help="fp32 runs on onnxruntime; fp16/bf16 are the mixed-precision graphs for TensorRT")
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=_magvit)


def _emova_args(e: argparse.ArgumentParser) -> None:
    e.add_argument("checkpoint")
    e.add_argument("out_dir")
    e.add_argument("--wave-precision", choices=ONNX_PRECISIONS, default="fp32",
                   help="precision of the vocoder's wave graph (the other two are always fp32)")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=_emova)


def _tensorrt_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("tokenizer", choices=["magvit", "emova"])
    t.add_argument("checkpoint")
    t.add_argument("out_dir", help="ONNX files go here, engines under OUT_DIR/engines")
    t.add_argument("--precision", choices=ONNX_PRECISIONS, default="fp16",
                   help="MAGVIT's graphs / EMOVA's wave graph; EMOVA's other graphs stay fp32")
    t.add_argument("--grids", default="21,30,32", help="MAGVIT: token grid sides with their own profile")
    t.add_argument("--max-batch", type=int, default=4, help="MAGVIT: the largest batch of an engine")
    t.add_argument("--device", type=int, default=0, help="CUDA device to build for")
    t.add_argument("--rebuild", action="store_true", help="re-export and rebuild even when cached")
    t.set_defaults(func=_tensorrt)


# command -> (its arguments, its one-line help)
COMMANDS = {
    "weights": (_weights_args, "HF checkpoint -> runtime weights (docs/weight-format.md)"),
    "magvit": (_magvit_args, "MAGVIT-v2 checkpoint -> decoder and encoder ONNX graphs"),
    "emova": (_emova_args, "EMOVA checkpoint -> its three ONNX graphs"),
    "tensorrt": (_tensorrt_args, "a tokenizer's ONNX graphs -> TensorRT engines (needs a GPU)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The export subcommands, under ``parser`` (``dynin-rt export``)."""
    sub = parser.add_subparsers(dest="export_command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (add, help_text) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))


def legacy_argv(argv: list[str]) -> list[str]:
    """``HF_DIR OUT_DIR [options]`` (the export command before it had subcommands) -> ``weights ...``."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["weights", *argv]
    return argv


def main(command: str, argv: list[str], prog: str, description: str) -> int:
    """One export command as a script of its own (the files in export/ call this)."""
    from ..cli import run

    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    COMMANDS[command][0](parser)
    return run(parser.parse_args(argv), prog)
