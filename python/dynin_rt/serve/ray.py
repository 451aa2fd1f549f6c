"""The same app on Ray Serve, for many GPUs: one replica per GPU, each with its own model and
batcher, Ray's proxy spreading requests over them and its autoscaler adding replicas when the
requests per replica (queued + running) pass a batch's worth.

    from dynin_rt.serve.ray import deployment
    from ray import serve
    serve.run(deployment("Dynin-Omni/"), route_prefix="/")        # then http://HOST:8000/v1/...

or ``python -m dynin_rt.serve.ray Dynin-Omni/ --max-replicas 8``. Needs ``pip install "ray[serve]"``.
"""
from __future__ import annotations

import argparse
import sys

from ray import serve

from .service import ServeConfig


@serve.ingress()
class DyninServe:
    """One replica: loads the model, then serves the app of ``dynin_rt.serve.app`` over it."""

    def __init__(self, model_path: str, config: ServeConfig, load_options: dict):
        from .. import load

        self.model = load(model_path, progress=False, **load_options)
        self.config = config

    def __serve_build_asgi_app__(self):
        from .app import build_app

        return build_app(self.model, self.config)


def deployment(model_path: str, config: ServeConfig | None = None, *, gpus_per_replica: float | None = None,
               cpus_per_replica: float = 1.0, min_replicas: int = 1, max_replicas: int | None = None,
               load_options: dict | None = None):
    """A bound Ray Serve application of the model (pass it to ``serve.run``).

    gpus_per_replica: 1 when the cluster has GPUs (None: decide from ``ray.cluster_resources()``),
    0 for CPU replicas. max_replicas: default one per GPU (or min_replicas on a CPU cluster).
    Autoscaling targets ``config.max_batch`` ongoing requests per replica; a replica takes at most
    ``max_batch + max_queue`` at once, past which Ray queues (and the replica's own queue answers 429).
    """
    import ray

    config = config or ServeConfig()
    if gpus_per_replica is None:
        gpus_per_replica = 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    if max_replicas is None:
        gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
        max_replicas = max(min_replicas, gpus if gpus_per_replica else min_replicas)
    options = dict(load_options or {})
    options.setdefault("backend", "cuda" if gpus_per_replica else "cpu")
    replica = serve.deployment(
        DyninServe,
        name="dynin_rt",
        ray_actor_options={"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica},
        max_ongoing_requests=config.max_batch + config.max_queue,
        autoscaling_config={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "target_ongoing_requests": config.max_batch},
    )
    return replica.bind(model_path, config, options)


def main(argv=None) -> int:
    import ray

    parser = argparse.ArgumentParser(prog="python -m dynin_rt.serve.ray", description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-replicas", type=int)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--api-key")
    parser.add_argument("--model-name", default="dynin-omni")
    args = parser.parse_args(argv)
    ray.init()
    serve.start(http_options={"host": args.host, "port": args.port})
    config = ServeConfig(model_name=args.model_name, max_batch=args.max_batch, max_queue=args.max_queue,
                         api_key=args.api_key)
    serve.run(deployment(args.model, config, max_replicas=args.max_replicas), route_prefix="/", blocking=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
