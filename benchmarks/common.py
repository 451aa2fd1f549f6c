"""Shared pieces of the benchmark scripts: the ~170M-parameter CPU config, timing, JSON output. The
machine description is dynin_rt.bench.machine, the same one ``dynin-rt bench`` records."""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

# d_model 512, 8 layers, the real 138752-row vocabulary: 169M parameters, 142M of them in the
# embedding and the LM head, like the real model's head-heavy byte budget at a CPU-friendly width.
BENCH_CONFIG = dict(d_model=512, n_layers=8, n_heads=4, mlp_hidden_size=1536)


def bench_checkpoint(directory: str | None = None, dtype: str = "fp32") -> str:
    """Write (once) the benchmark checkpoint and return its directory."""
    import torch

    from dynin_rt.testing import tiny_config, write_backbone

    directory = directory or os.path.join(tempfile.gettempdir(), f"dynin_rt_bench_170m_{dtype}")
    if not os.path.isfile(os.path.join(directory, "config.json")):
        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        write_backbone(directory, tiny_config(**BENCH_CONFIG), seed=0, dtype=torch_dtype)
    return directory


def median_seconds(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def write_json(path: str | None, payload: dict) -> None:
    text = json.dumps(payload, indent=1)
    print(text)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
