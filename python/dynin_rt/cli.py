"""The dynin-rt command: generate (every task), export, bench, demo, serve."""
from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = {"text": "output.txt", "image": "output.png", "speech": "output.wav"}


def _generate(args) -> int:
    from . import load
    from .api import generate

    model = load(args.model, backend=args.backend, dtype=args.dtype, image_tokenizer=args.image_tokenizer,
                 speech_tokenizer=args.speech_tokenizer)
    options = {k: getattr(args, k) for k in ("steps", "block_length", "max_new_tokens", "temperature", "cfg_scale",
                                             "resolution", "frames", "threshold", "voice", "think")}
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
    path = result.save(args.out or DEFAULT_OUT[args.output])
    stats = result.stats
    print(f"wrote {path}  ({stats.get('seconds')}, {stats.get('forwards')} forwards, {stats.get('steps')} steps)",
          file=sys.stderr)
    return 0


def _export(args) -> int:
    from .export import export_weights

    out = export_weights(args.hf_dir, args.out_dir, dtype=args.dtype, progress=True)
    print(f"exported {args.hf_dir} -> {out} ({args.dtype})")
    return 0


def _bench(args) -> int:
    from . import load
    from .bench import format_table, run_all, write_reports
    from .tasks.common import TASKS

    if args.model:
        model_dir = args.model
    else:
        import tempfile

        from .demo import build_checkpoint

        model_dir = build_checkpoint(os.path.join(tempfile.gettempdir(), "dynin_rt_demo_checkpoint"))
    model = load(model_dir, backend=args.backend, progress=False)
    reference = None
    if not args.no_reference:
        from .reference import DyninOmni

        reference = DyninOmni.from_pretrained(model_dir)
    tasks = TASKS if args.task == "all" else tuple(args.task.split(","))
    rows = run_all(model, tasks=tasks, reference=reference, repeats=args.repeats, official=args.official, mode=args.mode)
    print(format_table(rows))
    write_reports(rows, json_path=args.json, csv_path=args.csv)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dynin-rt", description="Dynin-Omni inference runtime")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="run one task and write .txt / .png / .wav")
    g.add_argument("model", help="HF checkpoint or exported dynin_rt directory")
    g.add_argument("prompt", nargs="?", default=None)
    g.add_argument("--image")
    g.add_argument("--video")
    g.add_argument("--audio")
    g.add_argument("--output", choices=["text", "image", "speech"], default="text")
    g.add_argument("--out", help="output file (default output.txt / .png / .wav)")
    g.add_argument("--steps", type=int)
    g.add_argument("--block-length", dest="block_length", type=int)
    g.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--cfg-scale", dest="cfg_scale", type=float)
    g.add_argument("--resolution", type=int)
    g.add_argument("--frames", type=int)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mode", choices=["exact", "fast"], default="exact")
    g.add_argument("--threshold", type=float)
    g.add_argument("--voice")
    g.add_argument("--think", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--stream", action="store_true")
    g.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    g.add_argument("--dtype", choices=["fp32", "bf16", "fp16"])
    g.add_argument("--image-tokenizer", dest="image_tokenizer")
    g.add_argument("--speech-tokenizer", dest="speech_tokenizer")
    g.set_defaults(func=_generate)

    e = sub.add_parser("export", help="HF checkpoint -> runtime weights")
    e.add_argument("hf_dir")
    e.add_argument("out_dir")
    e.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    e.set_defaults(func=_export)

    b = sub.add_parser("bench", help="per-task latency, runtime vs reference")
    b.add_argument("--model", help="checkpoint directory (default: the demo's tiny random checkpoint)")
    b.add_argument("--task", default="all", help="all, or a comma list of t2t,i2t,v2t,s2t,t2i,i2i,t2s")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--mode", choices=["exact", "fast"], default="exact")
    b.add_argument("--official", action="store_true", help="the official per-task defaults instead of quick settings")
    b.add_argument("--no-reference", action="store_true")
    b.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    b.add_argument("--json")
    b.add_argument("--csv")
    b.set_defaults(func=_bench)

    d = sub.add_parser("demo", help="every task on a tiny random checkpoint built on the spot")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--checkpoint", default=None)
    d.add_argument("--no-reference", action="store_true")
    d.set_defaults(func=lambda a: __import__("dynin_rt.demo", fromlist=["main"]).main(
        ["--out", a.out] + (["--checkpoint", a.checkpoint] if a.checkpoint else []) + (["--no-reference"] if a.no_reference else [])))

    from .serve.cli import add_parser as add_serve_parser

    add_serve_parser(sub)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"dynin-rt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
