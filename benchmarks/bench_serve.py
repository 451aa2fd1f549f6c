"""Load test of `dynin-rt serve` on 127.0.0.1: throughput and p50/p99 latency per task with batching
on (--max-batch 8) and off (--max-batch 1), a fixed number of requests at a fixed concurrency.

Each configuration gets its own server process (`python -m dynin_rt.cli serve`), started and
stopped here; the load comes from this process (asyncio + httpx). Nothing may be lost: every
request must answer 200, and every answer must equal the unbatched answer to the same request
(same prompt and seed), or the run fails. The headline is the throughput ratio batched /
unbatched at concurrency 8.

    python benchmarks/bench_serve.py                       # the tiny demo checkpoint
    python benchmarks/bench_serve.py --model DIR --tasks t2t --requests 64 --repeats 3 --json serve.json
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

from dynin_rt.demo_inputs import sample_speech
from dynin_rt.serve.local import free_port

TASKS = ("t2t", "t2i", "t2s", "s2t")


def _wav(seconds: float) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, sample_speech(seconds), 16000, format="WAV")
    return buf.getvalue()


def request_of(task: str, i: int, temperature: float = 1.0) -> dict:
    """The i-th request of a task: its own prompt and seed, tiny settings (httpx keywords)."""
    seed = 1000 + i
    if task == "t2t":
        body = {"messages": [{"role": "user", "content": f"Question {i}: " + "why " * (i % 7)}], "max_tokens": 32,
                "block_length": 32, "steps": 16, "seed": seed, "temperature": temperature}
        return {"url": "/v1/chat/completions", "json": body}
    if task == "t2i":
        return {"url": "/v1/images/generations", "json": {"prompt": f"a red fox number {i}", "size": "64x64", "steps": 8,
                                                          "seed": seed}}
    if task == "t2s":
        return {"url": "/v1/audio/speech", "json": {"input": f"Hello number {i}", "voice": "alloy", "response_format": "wav",
                                                    "max_new_tokens": 32, "steps": 16, "block_length": 16, "seed": seed}}
    return {"url": "/v1/audio/transcriptions", "files": {"file": ("a.wav", _wav(0.5 + 0.1 * (i % 5)), "audio/wav")},
            "data": {"max_tokens": "16", "steps": "16", "seed": str(seed)}}


def answer_of(task: str, response: httpx.Response):
    """What must not depend on batching: the text, the image's pixels, the speech samples."""
    if task == "t2t":
        return response.json()["choices"][0]["message"]["content"]
    if task == "t2i":
        from PIL import Image

        png = base64.b64decode(response.json()["data"][0]["b64_json"])
        return np.asarray(Image.open(io.BytesIO(png))).tobytes()
    if task == "t2s":
        return response.content
    return response.json()["text"]


async def load(base: str, task: str, n: int, concurrency: int, temperature: float) -> dict:
    """n requests of a task, at most `concurrency` in flight; latencies, wall time and answers."""
    gate = asyncio.Semaphore(concurrency)
    requests = [request_of(task, i, temperature) for i in range(n)]

    async def one(client, req):
        async with gate:
            t0 = time.perf_counter()
            r = await client.post(base + req["url"], **{k: v for k, v in req.items() if k != "url"})
            return time.perf_counter() - t0, r

    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(client, r) for r in requests))
        wall = time.perf_counter() - t0
    failed = [r.status_code for _, r in done if r.status_code != 200]
    if failed:
        raise SystemExit(f"{task}: {len(failed)} of {n} requests failed (status {sorted(set(failed))}): lost requests")
    latencies = sorted(s for s, _ in done)
    return {"wall_s": wall, "rps": n / wall, "p50_s": statistics.median(latencies),
            "p99_s": latencies[min(n - 1, int(round(0.99 * (n - 1))))], "answers": [answer_of(task, r) for _, r in done]}


class Server:
    """`dynin-rt serve MODEL --max-batch N` in a child process on a free loopback port."""

    def __init__(self, model: str, max_batch: int, window_ms: float):
        self.port = free_port()
        cmd = [sys.executable, "-m", "dynin_rt.cli", "serve", model, "--port", str(self.port), "--max-batch",
               str(max_batch), "--batch-window-ms", str(window_ms), "--max-queue", "1024", "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {self.proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 300 s")
            try:
                if httpx.get(self.base + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def run(model: str, tasks, n: int, concurrency: int, repeats: int, window_ms: float, max_batch: int,
        temperature: float) -> list[dict]:
    rows = []
    for label, batch in (("unbatched", 1), ("batched", max_batch)):
        server = Server(model, batch, window_ms)
        try:
            for task in tasks:
                asyncio.run(load(server.base, task, min(n, concurrency), concurrency, temperature))  # warm-up
                runs = [asyncio.run(load(server.base, task, n, concurrency, temperature)) for _ in range(repeats)]
                best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]  # the median run
                rows.append({"task": task, "config": label, "max_batch": batch, "requests": n, "concurrency": concurrency,
                             "rps": best["rps"], "rps_all": [round(r["rps"], 3) for r in runs], "p50_s": best["p50_s"],
                             "p99_s": best["p99_s"], "answers": runs[0]["answers"]})
        finally:
            server.stop()
    return rows


def check_and_report(rows: list[dict]) -> list[dict]:
    """Every batched answer equals the unbatched one; the table; rows without answers (for JSON)."""
    by = {(r["task"], r["config"]): r for r in rows}
    out = []
    print(f"{'task':5} {'config':10} {'req/s':>8} {'p50 s':>8} {'p99 s':>8}  {'runs (req/s)'}")
    for r in rows:
        print(f"{r['task']:5} {r['config']:10} {r['rps']:8.3f} {r['p50_s']:8.3f} {r['p99_s']:8.3f}  {r['rps_all']}")
    for task in dict.fromkeys(r["task"] for r in rows):
        off, on = by[(task, "unbatched")], by[(task, "batched")]
        same = off["answers"] == on["answers"]
        ratio = on["rps"] / off["rps"]
        print(f"{task}: batched / unbatched throughput at concurrency {on['concurrency']}: {ratio:.2f}x; "
              f"answers identical: {same}")
        if not same:
            raise SystemExit(f"{task}: a batched answer differs from the unbatched answer to the same request")
        out += [dict({k: v for k, v in r.items() if k != "answers"}, ratio=ratio) for r in (off, on)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint directory (default: the tiny demo checkpoint, built in a temp folder)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma list of {','.join(TASKS)}")
    parser.add_argument("--requests", type=int, default=32, help="requests per task and run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="runs per task and configuration (the median is kept)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="chat's temperature (official 1.0; at 0 the sampler skips the noise over the vocabulary)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if not set(tasks) <= set(TASKS):
        parser.error(f"--tasks takes {','.join(TASKS)}")
    with tempfile.TemporaryDirectory(prefix="dynin_rt_bench_serve_") as scratch:
        model = args.model
        if model is None:
            from dynin_rt.demo import build_checkpoint

            os.environ["DYNIN_RT_CACHE"] = os.path.join(scratch, "cache")  # the servers inherit it
            model = build_checkpoint(os.path.join(scratch, "checkpoint"))
        rows = run(model, tasks, args.requests, args.concurrency, args.repeats, args.batch_window_ms, args.max_batch,
                   args.temperature)
    out = check_and_report(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
