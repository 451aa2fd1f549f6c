"""The server's counters, gauges and histograms, written as Prometheus text (GET /metrics).

No client library: the format is a few lines per family. Rates (forwards/s, tokens/s) are
exported both as counters, for PromQL's rate(), and as gauges over the last WINDOW_S seconds, for a
reader without Prometheus.
"""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque

WINDOW_S = 60.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, acc = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets + (float("inf"),), self.counts):
            acc += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {acc}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {self.n}"]
        return out


class Metrics:
    """Thread-safe: the batcher's worker thread records, the event loop renders."""

    def __init__(self):
        self._lock = threading.Lock()
        self.queue_depth = 0
        self.running = 0
        self.requests: dict[tuple[str, str], int] = {}  # (task, outcome) -> count
        self.forwards = 0
        self.tokens: dict[str, int] = {}  # task -> generated tokens
        self.batch_sizes = _Histogram(BATCH_BUCKETS)
        self.latency: dict[str, _Histogram] = {}  # task -> seconds from arrival to answer
        self.queue_wait: dict[str, _Histogram] = {}  # task -> seconds from arrival to the start of its batch
        self._recent: deque = deque()  # (time, forwards, tokens) of finished batches

    def set_queue(self, depth: int, running: int) -> None:
        with self._lock:
            self.queue_depth, self.running = depth, running

    def batch(self, size: int, forwards: int, tokens: dict[str, int], waits: list[tuple[str, float]]) -> None:
        """One finished batch: its rows, forward passes, new tokens per task, each row's queue wait."""
        now = time.monotonic()
        with self._lock:
            self.batch_sizes.observe(size)
            self.forwards += forwards
            for task, n in tokens.items():
                self.tokens[task] = self.tokens.get(task, 0) + n
            for task, wait in waits:
                self.queue_wait.setdefault(task, _Histogram(LATENCY_BUCKETS)).observe(wait)
            self._recent.append((now, forwards, sum(tokens.values())))

    def request(self, task: str, outcome: str, seconds: float | None = None) -> None:
        """One answered request; outcome: ok, cancelled, timeout, rejected, error."""
        with self._lock:
            self.requests[(task, outcome)] = self.requests.get((task, outcome), 0) + 1
            if seconds is not None:
                self.latency.setdefault(task, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def rates(self) -> tuple[float, float]:
        """(forwards/s, tokens/s) over the last WINDOW_S seconds."""
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - WINDOW_S:
                self._recent.popleft()
            forwards = sum(r[1] for r in self._recent)
            tokens = sum(r[2] for r in self._recent)
        return forwards / WINDOW_S, tokens / WINDOW_S

    def render(self) -> str:
        forwards_s, tokens_s = self.rates()
        p = "dynin_rt_"
        with self._lock:
            lines = [
                f"# HELP {p}queue_depth Requests waiting for a batch.", f"# TYPE {p}queue_depth gauge",
                f"{p}queue_depth {self.queue_depth}",
                f"# HELP {p}running_requests Requests in the batch now running.", f"# TYPE {p}running_requests gauge",
                f"{p}running_requests {self.running}",
                f"# HELP {p}forwards_per_second Forward passes per second over the last {WINDOW_S:g} s.",
                f"# TYPE {p}forwards_per_second gauge", f"{p}forwards_per_second {forwards_s:.4f}",
                f"# HELP {p}tokens_per_second New tokens per second over the last {WINDOW_S:g} s.",
                f"# TYPE {p}tokens_per_second gauge", f"{p}tokens_per_second {tokens_s:.4f}",
                f"# HELP {p}forwards_total Forward passes.", f"# TYPE {p}forwards_total counter",
                f"{p}forwards_total {self.forwards}",
                f"# HELP {p}generated_tokens_total New tokens (text ids, image codes, speech units) per task.",
                f"# TYPE {p}generated_tokens_total counter",
            ]
            lines += [f'{p}generated_tokens_total{{task="{t}"}} {n}' for t, n in sorted(self.tokens.items())]
            lines += [f"# HELP {p}requests_total Answered requests per task and outcome.", f"# TYPE {p}requests_total counter"]
            lines += [f'{p}requests_total{{task="{t}",outcome="{o}"}} {n}' for (t, o), n in sorted(self.requests.items())]
            lines += [f"# HELP {p}batch_size Rows per runtime call.", f"# TYPE {p}batch_size histogram"]
            lines += self.batch_sizes.lines(f"{p}batch_size", "")
            for name, family, what in (("request_latency_seconds", self.latency, "arrival to answer"),
                                       ("queue_wait_seconds", self.queue_wait, "arrival to the start of its batch")):
                lines += [f"# HELP {p}{name} Seconds from {what}, per task.", f"# TYPE {p}{name} histogram"]
                for task, hist in sorted(family.items()):
                    lines += hist.lines(f"{p}{name}", f'task="{task}"')
        return "\n".join(lines) + "\n"
