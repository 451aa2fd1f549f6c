"""The dynin-rt command: generate (every task), export, bench, demo, serve.

Each command's options and body live beside the code it runs (bench.py, demo.py, export/, serve/);
this file only assembles them, so a script and its CLI command cannot drift apart.
"""
from __future__ import annotations

import argparse
import os
import sys

from .errors import DyninError

# What a user can cause and fix: reported as one line, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, DyninError)
GENERATE_OPTIONS = ("steps", "block_length", "max_new_tokens", "temperature", "cfg_scale", "resolution", "frames",
                    "threshold", "voice", "think")


def _generate(args) -> int:
    from . import load
    from .api import generate
    from .tasks import registry

    model = load(args.model, backend=args.backend, dtype=args.dtype, image_tokenizer=args.image_tokenizer,
                 speech_tokenizer=args.speech_tokenizer)
    options = {k: getattr(args, k) for k in GENERATE_OPTIONS}
    result = generate(model, args.prompt, image=args.image, video=args.video, audio=args.audio, output=args.output,
                      seed=args.seed, mode=args.mode, stream=args.stream, **options)
    if args.stream:
        final = None
        for part in result:
            if part.partial and part.text is not None:
                print(part.delta, end="", flush=True)
            final = part
        print()
        result = final
    elif result.text is not None:
        print(result.text)
    default_out = "output" + os.path.splitext(registry.get(result.task).output_file)[1]
    path = result.save(args.out or default_out)
    stats = result.stats
    print(f"wrote {path}  ({stats.get('seconds')}, {stats.get('forwards')} forwards, {stats.get('steps')} steps)",
          file=sys.stderr)
    return 0


def _add_generate(sub) -> None:
    from .tasks import registry

    g = sub.add_parser("generate", help="run one task and write .txt / .png / .wav")
    g.add_argument("model", help="HF checkpoint or exported dynin_rt directory")
    g.add_argument("prompt", nargs="?", default=None)
    g.add_argument("--image")
    g.add_argument("--video")
    g.add_argument("--audio")
    g.add_argument("--output", choices=registry.outputs(), default="text")
    g.add_argument("--out", help="output file (default output.txt / .png / .wav)")
    g.add_argument("--steps", type=int)
    g.add_argument("--block-length", dest="block_length", type=int)
    g.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--cfg-scale", dest="cfg_scale", type=float)
    g.add_argument("--resolution", type=int)
    g.add_argument("--frames", type=int)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mode", choices=registry.MODES, default="exact")
    g.add_argument("--threshold", type=float)
    g.add_argument("--voice")
    g.add_argument("--think", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--stream", action="store_true")
    g.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    g.add_argument("--dtype", choices=["fp32", "bf16", "fp16"])
    g.add_argument("--image-tokenizer", dest="image_tokenizer")
    g.add_argument("--speech-tokenizer", dest="speech_tokenizer")
    g.set_defaults(func=_generate)


def _add_export(sub) -> None:
    from .export import commands

    e = sub.add_parser("export", help="runtime weights, tokenizer ONNX graphs, TensorRT engines",
                       description=commands.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands.add_arguments(e)


def _add_bench(sub) -> None:
    from . import bench

    b = sub.add_parser("bench", help="per-task latency, runtime vs reference")
    bench.add_arguments(b)
    b.set_defaults(func=bench.command)


def _add_demo(sub) -> None:
    from . import demo

    d = sub.add_parser("demo", help="every task on a tiny random checkpoint built on the spot")
    demo.add_arguments(d)
    d.set_defaults(func=demo.command)


def _add_serve(sub) -> None:
    from .serve.cli import add_parser

    add_parser(sub)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dynin-rt", description="Dynin-Omni inference runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_export, _add_bench, _add_demo, _add_serve):
        add(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        from .export.commands import legacy_argv

        argv = ["export", *legacy_argv(argv[1:])]
    return run(parser.parse_args(argv))


def run(args, prog: str = "dynin-rt") -> int:
    """``args.func(args)``, with user errors printed as one line (exit status 2)."""
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
