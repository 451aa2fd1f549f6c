"""The dynin-rt command: generate (every task), export, bench, demo, serve.

Each command's options and body live beside the code it runs (bench.py, demo.py, export/, serve/);
this file only assembles them, so a script and its CLI command cannot drift apart.
"""
from __future__ import annotations

import argparse
import os
import sys

from .errors import DyninError

# What a user can cause and fix: one line and exit status 2. Anything else is one line and exit
# status 1 (with the traceback when DYNIN_RT_TRACEBACK=1).
USER_ERRORS = (ValueError, OSError, DyninError)
GENERATE_OPTIONS = ("steps", "block_length", "max_new_tokens", "temperature", "cfg_scale", "resolution", "frames",
                    "threshold", "voice", "think")


def _generate(args) -> int:
    from . import load
    from .api import generate, select_task
    from .tasks import registry
    from .tasks.common import check_save_path, output_kind

    # Everything that can be checked without the model is checked before loading it.
    spec = registry.get(select_task(args.prompt, args.image, args.video, args.audio, args.output))
    out = check_save_path(args.out or "output" + os.path.splitext(spec.output_file)[1], output_kind(spec.output_file))
    model = load(args.model, backend=args.backend, dtype=args.dtype, image_tokenizer=args.image_tokenizer,
                 speech_tokenizer=args.speech_tokenizer)
    _check_tokenizers(spec, model, args)
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
    path = result.save(out)
    stats = result.stats
    print(f"wrote {path}  ({stats.get('seconds')}, {stats.get('forwards')} forwards, {stats.get('steps')} steps)",
          file=sys.stderr)
    return 0


def _check_tokenizers(spec, model, args) -> None:
    for kind in spec.tokenizers:
        if getattr(model, f"{kind}_tokenizer_dir", None) is None:
            released = "snu-aidas/magvitv2" if kind == "image" else "emova_speech_tokenizer_hf"
            raise ValueError(f"{spec.title} needs the {kind} tokenizer and none was found in or beside {args.model}: "
                             f"pass --{kind}-tokenizer DIR (the released {released})")


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


def _add_cache(sub) -> None:
    c = sub.add_parser("cache", help="the exports of HF checkpoints kept in $DYNIN_RT_CACHE: list, size, clear")
    actions = c.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="one line per exported checkpoint")
    actions.add_parser("size", help="bytes in the cache")
    clear = actions.add_parser("clear", help="remove one entry or all (an export in progress is left alone)")
    clear.add_argument("key", nargs="?", help="the entry to remove (see `dynin-rt cache list`); default all")
    c.set_defaults(func=_cache)


def _cache(args) -> int:
    from . import export_cache

    root = export_cache.cache_root()
    if args.action == "clear":
        keys = {e["key"] for e in export_cache.entries()}
        if args.key is not None and args.key not in keys:
            raise ValueError(f"no cache entry {args.key!r} in {root} (see `dynin-rt cache list`)")
        print(f"freed {_size(export_cache.clear(args.key))} in {root}")
        return 0
    entries = export_cache.entries()
    if args.action == "size":
        print(f"{_size(sum(e['bytes'] for e in entries))} in {len(entries)} entries ({root})")
        return 0
    print(f"{root}: {len(entries)} entries")
    for e in entries:
        state = f"{e.get('dtype')}  {e.get('source')}" if e["complete"] else "incomplete (rebuilt on next use)"
        print(f"{e['key']}  {_size(e['bytes']):>9}  {e['last_used']}  {state}")
    return 0


def _size(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def _add_serve(sub) -> None:
    from .serve.cli import add_parser

    add_parser(sub)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dynin-rt", description="Dynin-Omni inference runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_export, _add_bench, _add_demo, _add_cache, _add_serve):
        add(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        from .export.commands import legacy_argv

        argv = ["export", *legacy_argv(argv[1:])]
    return run(parser.parse_args(argv))


def run(args, prog: str = "dynin-rt") -> int:
    """``args.func(args)``; every failure is one line on stderr and a non-zero exit status: 2 for
    what the user can fix, 130 for Ctrl-C, 1 for anything else."""
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort of a command line
        if os.environ.get("DYNIN_RT_TRACEBACK"):
            raise
        print(f"{prog}: error: {type(exc).__name__}: {_one_line(exc)} (unexpected; DYNIN_RT_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
