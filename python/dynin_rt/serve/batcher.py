"""The request queue: compatible requests that arrive within a batch window run as one batch.

One worker thread owns the model. It takes the oldest waiting request, waits up to the batch
window (counted from that request's arrival, so a backlog goes at once) for up to ``max_batch``
requests with the same batch key (``dynin_rt.batch.batch_key``), and runs them as one call. The
queue holds at most ``max_queue`` waiting requests: past that, :meth:`Batcher.submit` raises
:class:`QueueFull` with a Retry-After estimate. Every request has a cancel token: a client that
leaves or a deadline that passes cancels it (:func:`wait`), which removes a waiting request and
stops a running one at its next step while the rest of its batch goes on.

Requests that cannot share a call (a streamed speech render) carry a ``solo`` function that the
worker runs alone.
"""
from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .._native import _C
from ..errors import Cancelled
from .metrics import Metrics


class QueueFull(Exception):
    """The queue holds max_queue requests; retry_after: seconds to wait (whole, at least 1)."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server queue is full: retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The request's deadline passed before it finished."""


class ClientGone(Exception):
    """The client closed the connection."""


_ids = itertools.count()


@dataclass(eq=False)
class Ticket:
    """One request in the queue.

    request: ``dynin_rt.generate`` keywords; key: its batch key; task: its task name (metrics);
    deadline: time.monotonic() by which it must finish; on_block(block, tokens): text rows' finished
    blocks (called on the worker thread); solo: a function run alone instead of in a batch.
    """

    request: dict
    key: tuple
    task: str
    deadline: float
    on_block: Callable | None = None
    solo: Callable[[], object] | None = None
    cancel: object = field(default_factory=_C.CancelToken)
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        if self.solo is not None:
            self.key = ("solo", next(_ids))  # a key no other request has


class Batcher:
    """run_batch(tickets) -> one result or exception per ticket, on the worker thread."""

    def __init__(self, run_batch: Callable[[list[Ticket]], list], max_batch: int = 8, batch_window_s: float = 0.01,
                 max_queue: int = 64, metrics: Metrics | None = None):
        if max_batch < 1 or max_queue < 1 or batch_window_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and the batch window >= 0")
        self.run_batch = run_batch
        self.max_batch, self.window, self.max_queue = max_batch, batch_window_s, max_queue
        self.metrics = metrics or Metrics()
        self._pending: list[Ticket] = []
        self._running = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._batch_seconds = 1.0  # running mean of a batch's duration, for Retry-After
        self._thread = threading.Thread(target=self._work, name="dynin_rt-batcher", daemon=True)
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------------
    def submit(self, ticket: Ticket) -> Ticket:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            if len(self._pending) >= self.max_queue:
                waves = math.ceil((len(self._pending) + 1) / self.max_batch)
                raise QueueFull(max(1, math.ceil(waves * self._batch_seconds)))
            self._pending.append(ticket)
            self._publish()
            self._cond.notify_all()
        return ticket

    def drop(self, ticket: Ticket) -> None:
        """Cancel a ticket: out of the queue if it waits, stopped at its next step if it runs."""
        ticket.cancel.cancel()
        with self._cond:
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for t in self._pending:
                t.future.set_exception(Cancelled("the server is shutting down"))
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join()

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._pending)

    # -- the worker -----------------------------------------------------------------------------
    def _publish(self) -> None:
        self.metrics.set_queue(len(self._pending), self._running)

    def _purge(self) -> None:
        """Answer and remove the waiting tickets that were cancelled or ran out of time."""
        now = time.monotonic()
        keep = []
        for t in self._pending:
            if t.cancel.cancelled:
                t.future.set_exception(Cancelled("generation cancelled"))
            elif now > t.deadline:
                t.cancel.cancel()
                t.future.set_exception(DeadlineExceeded("the request's deadline passed while it waited"))
            else:
                keep.append(t)
        self._pending = keep

    def _next_batch(self) -> list[Ticket] | None:
        """The oldest ticket and up to max_batch - 1 others with its key, after the batch window."""
        with self._cond:
            while True:
                self._purge()
                if self._stopped:
                    return None
                if not self._pending:
                    self._cond.wait()
                    continue
                first = self._pending[0]
                same = [t for t in self._pending if t.key == first.key][: self.max_batch]
                left = first.arrived + self.window - time.monotonic()
                if len(same) < self.max_batch and left > 0 and first.solo is None:
                    self._cond.wait(left)
                    continue
                self._pending = [t for t in self._pending if t not in same]
                self._running = len(same)
                self._publish()
                return same

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.monotonic()
            try:
                results = [batch[0].solo()] if batch[0].solo is not None else self.run_batch(batch)
            except Exception as exc:  # noqa: BLE001 - every ticket of the batch gets the error
                results = [exc] * len(batch)
            seconds = time.monotonic() - start
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
            self._record(batch, results, start)
            for ticket, result in zip(batch, results):
                if isinstance(result, BaseException):
                    ticket.future.set_exception(result)
                else:
                    ticket.future.set_result(result)
            with self._cond:
                self._running = 0
                self._publish()

    def _record(self, batch: list[Ticket], results: list, start: float) -> None:
        tokens: dict[str, int] = {}
        forwards = 0
        for ticket, result in zip(batch, results):
            stats = getattr(result, "stats", None) or {}
            forwards = max(forwards, int(stats.get("forwards") or 0))  # one call: every row reports its forwards
            tokens[ticket.task] = tokens.get(ticket.task, 0) + int(stats.get("generated_tokens") or 0)
        self.metrics.batch(len(batch), forwards, tokens, [(t.task, start - t.arrived) for t in batch])


async def wait(batcher: Batcher, ticket: Ticket, disconnected: Callable[[], Awaitable[bool]] | None = None,
               poll_s: float = 0.1):
    """The ticket's result on the event loop. While it waits or runs, a client that leaves
    (``disconnected()``) raises ClientGone and a passed deadline DeadlineExceeded; either cancels it."""
    future = asyncio.wrap_future(ticket.future)
    while True:
        done, _ = await asyncio.wait({future}, timeout=poll_s)
        if done:
            return future.result()
        if time.monotonic() > ticket.deadline:
            _abandon(batcher, ticket, future)
            raise DeadlineExceeded("the request's deadline passed")
        if disconnected is not None and await disconnected():
            _abandon(batcher, ticket, future)
            raise ClientGone("the client closed the connection")


def _abandon(batcher: Batcher, ticket: Ticket, future: asyncio.Future) -> None:
    batcher.drop(ticket)
    # the worker still answers the ticket (Cancelled): read that answer so that asyncio does not log it
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
