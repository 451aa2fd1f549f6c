"""The `dynin-rt serve` command: load a model (or build the tiny demo checkpoint) and run the app
under uvicorn."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile


def add_parser(sub) -> argparse.ArgumentParser:
    """The serve subcommand of the dynin-rt parser."""
    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP server with request batching (dynin_rt[serve])")
    s.add_argument("model", nargs="?", help="HF checkpoint or exported dynin_rt directory")
    s.add_argument("--demo-model", action="store_true", help="serve the tiny random checkpoint of `dynin-rt demo`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-batch", type=int, default=8, help="requests per runtime call")
    s.add_argument("--batch-window-ms", type=float, default=10.0, help="how long the oldest request waits for others")
    s.add_argument("--max-queue", type=int, default=64, help="waiting requests before 429")
    s.add_argument("--api-key", default=os.environ.get("DYNIN_RT_API_KEY"),
                   help="require Authorization: Bearer KEY on /v1 (default $DYNIN_RT_API_KEY)")
    s.add_argument("--model-name", help="the model id of the API (default: the directory name, or dynin-omni-demo)")
    s.add_argument("--request-timeout", type=float, default=600.0, help="seconds before a request is cancelled (504)")
    s.add_argument("--max-body-mb", type=float, default=32.0, help="request bodies over this answer 413")
    s.add_argument("--allowed-local-media", action="append", default=[], metavar="DIR",
                   help="directories that file:// media URLs may read (repeatable; default none)")
    s.add_argument("--allow-remote-media", action="store_true", help="fetch http(s) media URLs")
    s.add_argument("--backend", choices=["auto", "cpu", "cuda"], default="auto")
    s.add_argument("--dtype", choices=["fp32", "bf16", "fp16"])
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=run)
    return s


def config_of(args, model_name: str):
    from .inputs import MediaPolicy
    from .service import ServeConfig

    limit = int(args.max_body_mb * (1 << 20))
    media = MediaPolicy(local_dirs=tuple(args.allowed_local_media), remote=args.allow_remote_media, max_bytes=limit)
    return ServeConfig(model_name=args.model_name or model_name, max_batch=args.max_batch,
                       batch_window_ms=args.batch_window_ms, max_queue=args.max_queue, api_key=args.api_key,
                       max_body_bytes=limit, request_timeout_s=args.request_timeout, media=media)


def run(args) -> int:
    try:
        import uvicorn

        from .app import build_app
    except ImportError as exc:
        raise ValueError(f"dynin-rt serve needs the serve extra ({exc.name} is missing): pip install \"dynin_rt[serve]\"") from exc
    from .. import load

    if (args.model is None) == (not args.demo_model):
        raise ValueError("pass a model directory or --demo-model (one of the two)")
    if args.max_batch < 1 or args.max_queue < 1 or args.batch_window_ms < 0:
        raise ValueError("--max-batch and --max-queue must be >= 1 and --batch-window-ms >= 0")
    scratch = None
    try:
        if args.demo_model:
            from ..demo import build_checkpoint

            scratch = tempfile.mkdtemp(prefix="dynin_rt_serve_demo_")  # private (0700), removed at exit
            os.environ["DYNIN_RT_CACHE"] = os.path.join(scratch, "cache")
            path, name = build_checkpoint(os.path.join(scratch, "checkpoint")), "dynin-omni-demo"
        else:
            path, name = args.model, os.path.basename(os.path.normpath(args.model))
        model = load(path, backend=args.backend, dtype=args.dtype, progress=True)
        app = build_app(model, config_of(args, name))
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0
