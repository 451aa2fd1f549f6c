"""The served model: its batcher, its metrics, and a validated job's way through them.

:meth:`Service.run` queues a job and waits for its result; :meth:`Service.events` does the same
for a streamed job, yielding what the worker posts (finished text blocks, speech chunks) as it
comes. Both cancel the request when the client leaves or its deadline passes, and turn every
failure into an :class:`ApiError` (a ValueError of the runtime is the request's fault: 400).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..batch import batch_key, generate_batch
from ..errors import Cancelled
from . import schemas
from .batcher import Batcher, ClientGone, DeadlineExceeded, QueueFull, Ticket, wait
from .errors import ApiError
from .inputs import MediaPolicy
from .metrics import Metrics

log = logging.getLogger("dynin_rt.serve")
POLL_S = 0.1  # how often a waiting request looks at its client and its deadline


@dataclass
class ServeConfig:
    """The server's knobs (the `dynin-rt serve` flags)."""

    model_name: str = "dynin-omni"
    max_batch: int = 8
    batch_window_ms: float = 10.0
    max_queue: int = 64
    api_key: str | None = None
    max_body_bytes: int = 32 << 20
    request_timeout_s: float = 600.0
    media: MediaPolicy = field(default_factory=MediaPolicy)


class Service:
    def __init__(self, model, config: ServeConfig):
        self.model, self.config = model, config
        self.metrics = Metrics()
        self.limits = schemas.Limits(config.model_name, model.config.max_sequence_length, config.media)
        self.batcher = Batcher(self._run_batch, config.max_batch, config.batch_window_ms / 1000.0, config.max_queue,
                               self.metrics)
        self.started = int(time.time())

    def _run_batch(self, tickets: list[Ticket]) -> list:
        """On the worker thread: one runtime call for the tickets (equal batch keys)."""
        hooks = [t.on_block for t in tickets]

        def on_block(i, block, tokens):
            if hooks[i] is not None:
                hooks[i](block, tokens)

        return generate_batch(self.model, [t.request for t in tickets], [t.cancel for t in tickets],
                              on_block=on_block if any(hooks) else None)

    def ticket(self, job: schemas.Job, **kwargs) -> Ticket:
        """Queue a job (429 when the queue is full, 400 when generate() would refuse it)."""
        try:
            key = batch_key(job.request)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        ticket = Ticket(job.request, key, job.task, time.monotonic() + self.config.request_timeout_s, **kwargs)
        try:
            return self.batcher.submit(ticket)
        except QueueFull as exc:
            self.metrics.request(job.task, "rejected")
            raise ApiError(429, str(exc), code="rate_limit_exceeded",
                           headers={"Retry-After": str(exc.retry_after)}) from exc

    async def run(self, job: schemas.Job, disconnected=None):
        """Queue the job and wait for its result; ``disconnected()``: has the client left."""
        ticket = self.ticket(job)
        try:
            result = await wait(self.batcher, ticket, disconnected, POLL_S)
        except BaseException as exc:
            self.finish(ticket, exc)
            raise api_error(exc) from exc
        self.finish(ticket, None)
        return result

    async def events(self, ticket: Ticket, posted: asyncio.Queue, disconnected=None) -> AsyncIterator:
        """What the worker posts for a streamed ticket (finished blocks, audio chunks), then its
        result. The worker posts with ``loop.call_soon_threadsafe(posted.put_nowait, item)``."""
        loop = asyncio.get_running_loop()
        ticket.future.add_done_callback(lambda f: loop.call_soon_threadsafe(posted.put_nowait, _DONE))
        try:
            while True:
                try:
                    item = await asyncio.wait_for(posted.get(), POLL_S)
                except asyncio.TimeoutError:
                    if time.monotonic() > ticket.deadline:
                        raise DeadlineExceeded("the request's deadline passed") from None
                    if disconnected is not None and await disconnected():
                        raise ClientGone("the client closed the connection") from None
                    continue
                if item is _DONE:
                    break
                yield item
            result = ticket.future.result()
        except BaseException as exc:
            self.batcher.drop(ticket)  # a no-op when the worker is done with it
            self.finish(ticket, exc)
            raise api_error(exc) from exc
        self.finish(ticket, None)
        yield result

    def finish(self, ticket: Ticket, exc: BaseException | None) -> None:
        self.metrics.request(ticket.task, outcome(exc), time.monotonic() - ticket.arrived)


_DONE = object()


def outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, (Cancelled, ClientGone, asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    if isinstance(exc, DeadlineExceeded):
        return "timeout"
    return "rejected" if isinstance(exc, ApiError) and exc.status < 500 else "error"


def api_error(exc: BaseException) -> BaseException:
    """The answer to a failed request (CancelledError and the like pass through unchanged)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DeadlineExceeded):
        return ApiError(504, str(exc), code="deadline_exceeded")
    if isinstance(exc, (ClientGone, Cancelled)):
        return ApiError(499, str(exc), code="cancelled")
    if isinstance(exc, ValueError):
        return ApiError(400, str(exc))
    if isinstance(exc, Exception):
        log.error("request failed", exc_info=exc)
        return ApiError(500, f"internal error ({exc.__class__.__name__}); see the server log", code="internal_error")
    return exc
