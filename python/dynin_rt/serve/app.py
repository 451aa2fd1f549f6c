"""The OpenAI-compatible HTTP app (Starlette): routes -> validated jobs (schemas) -> the batcher
(service) -> answers in OpenAI's shapes (responses).

POST /v1/chat/completions, /v1/images/generations, /v1/images/edits, /v1/audio/speech,
/v1/audio/transcriptions; GET /v1/models, /health, /metrics.

Every refusal is an OpenAI-style error object: 400 (malformed JSON, bad fields, media that do not
decode), 401 (no bearer key when one is set), 404 (unknown model or route), 413 (oversize body
or media), 415 (wrong content type), 429 + Retry-After (full queue), 504 (deadline).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import time

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .._native import _C
from ..api import generate
from . import responses, schemas
from .errors import ApiError
from .service import ServeConfig, Service, api_error


class BodyTooLarge(Exception):
    """The body grew past the limit while it arrived."""


class Guard:
    """ASGI middleware in front of the routes: the bearer key (401) and the body size (413),
    counted as the body arrives, so a body without Content-Length is cut off too."""

    def __init__(self, app, config: ServeConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.config.api_key and scope["path"].startswith("/v1/"):
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.config.api_key}".encode()):
                error = ApiError(401, "a valid API key is required: Authorization: Bearer KEY", code="invalid_api_key")
                return await error_response(error)(scope, receive, send)
        limit = self.config.max_body_bytes
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return await error_response(too_large(limit))(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge()
            return message

        return await self.app(scope, counted, send)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is over the limit of {limit} bytes", code="request_too_large")


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


# -- bodies ----------------------------------------------------------------------------------------
def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _unsupported(request: Request, want: str) -> ApiError:
    return ApiError(415, f"send Content-Type: {want}, not {_content_type(request) or 'none'!r}",
                    code="unsupported_media_type")


async def json_body(request: Request) -> dict:
    if _content_type(request) != "application/json":
        raise _unsupported(request, "application/json")
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return body


async def form_body(request: Request):
    if _content_type(request) != "multipart/form-data":
        raise _unsupported(request, "multipart/form-data")
    try:
        return await request.form(max_files=4, max_fields=64)
    except BodyTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart and starlette raise several kinds
        raise ApiError(400, f"the multipart body does not parse ({exc.__class__.__name__})",
                       code="invalid_multipart") from exc


async def parse(parser, body, limits: schemas.Limits) -> schemas.Job:
    """A schemas parser, off the event loop (decoding media blocks)."""
    return await anyio.to_thread.run_sync(parser, body, limits)


def sse_response(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def sse_error(exc: BaseException):
    error = api_error(exc)
    if not isinstance(error, ApiError):
        raise error
    yield responses.sse(error.body())


# -- routes ----------------------------------------------------------------------------------------
def _service(request: Request) -> Service:
    return request.app.state.service


async def chat_completions(request: Request) -> Response:
    svc = _service(request)
    job = await parse(schemas.chat, await json_body(request), svc.limits)
    if job.stream:
        return _stream_chat(svc, job, request)
    result = await svc.run(job, request.is_disconnected)
    text, used, finish = responses.answer(svc.model.tokenizer, result, job.max_tokens)
    audio = None
    if job.voice is not None:  # modalities ["audio"]: the answer, spoken
        audio = await _spoken(svc, job, text, request)
    body = responses.chat_completion(svc.config.model_name, text, finish, responses.usage(result, used), audio)
    return JSONResponse(body)


async def _spoken(svc: Service, job: schemas.Job, text: str, request: Request) -> dict:
    if not text.strip():
        samples, rate = [], 22050
    else:
        speech = schemas.Job({"prompt": text, "output": "speech", "voice": job.voice, **job.speech}, "t2s")
        spoken = await svc.run(speech, request.is_disconnected)
        samples, rate = spoken.audio, spoken.sample_rate
    data = responses.encode_audio(samples, rate, job.fmt)
    return {"id": responses.new_id("audio"), "data": base64.b64encode(data).decode(),
            "expires_at": int(time.time()) + 3600, "transcript": text}


def _stream_chat(svc: Service, job: schemas.Job, request: Request) -> Response:
    """One SSE chunk per finished block (the text it adds), then the finish reason, the usage when
    asked, and [DONE]."""
    loop = asyncio.get_running_loop()
    posted: asyncio.Queue = asyncio.Queue()
    ticket = svc.ticket(job, on_block=lambda block, tokens: loop.call_soon_threadsafe(posted.put_nowait, tokens.copy()))
    model, chunk_id = svc.config.model_name, responses.new_id("chatcmpl")
    deltas = responses.TextDeltas(svc.model.tokenizer, job.task, job.max_tokens)

    async def events():
        yield responses.sse(responses.chat_chunk(chunk_id, model, {"role": "assistant", "content": ""}))
        try:
            async for item in svc.events(ticket, posted, request.is_disconnected):
                if isinstance(item, responses.np.ndarray):
                    new = deltas.delta(item)
                else:
                    result, new = item, deltas.delta(item.tokens, final=True)
                if new:
                    yield responses.sse(responses.chat_chunk(chunk_id, model, {"content": new}))
        except BaseException as exc:  # noqa: BLE001 - the stream has started: the error goes in it
            async for event in sse_error(exc):
                yield event
            return
        _, used, finish = responses.answer(svc.model.tokenizer, result, job.max_tokens)
        yield responses.sse(responses.chat_chunk(chunk_id, model, {}, finish))
        if job.include_usage:
            yield responses.sse(responses.chat_chunk(chunk_id, model, None, use=responses.usage(result, used)))
        yield responses.sse("[DONE]")

    return sse_response(events())


async def image_generations(request: Request) -> Response:
    svc = _service(request)
    job = await parse(schemas.image_generation, await json_body(request), svc.limits)
    result = await svc.run(job, request.is_disconnected)
    return JSONResponse(await anyio.to_thread.run_sync(responses.images, result.image))


async def image_edits(request: Request) -> Response:
    svc = _service(request)
    job = await parse(schemas.image_edit, await form_body(request), svc.limits)
    result = await svc.run(job, request.is_disconnected)
    return JSONResponse(await anyio.to_thread.run_sync(responses.images, result.image))


async def speech(request: Request) -> Response:
    svc = _service(request)
    job = await parse(schemas.speech, await json_body(request), svc.limits)
    if job.stream:
        return _stream_speech(svc, job, request)
    result = await svc.run(job, request.is_disconnected)
    data = await anyio.to_thread.run_sync(responses.encode_audio, result.audio, result.sample_rate, job.fmt)
    return Response(data, media_type=responses.MEDIA_TYPES[job.fmt])


def _stream_speech(svc: Service, job: schemas.Job, request: Request) -> Response:
    """SSE speech.audio.delta events (base64 pcm, 24 kHz s16le) as the vocoder renders each block,
    then speech.audio.done. Runs alone: a streamed render is not batched."""
    import soxr

    loop = asyncio.get_running_loop()
    posted: asyncio.Queue = asyncio.Queue()
    cancel = _C.CancelToken()

    def solo():
        final = None
        for part in generate(svc.model, **job.request, stream=True, cancel=cancel, progress=False):
            if part.partial:
                loop.call_soon_threadsafe(posted.put_nowait, part.audio)
            final = part
        return final

    ticket = svc.ticket(job, solo=solo, cancel=cancel)

    async def events():
        resampler = None
        try:
            async for item in svc.events(ticket, posted, request.is_disconnected):
                if not isinstance(item, responses.np.ndarray):
                    result = item
                    break
                resampler = resampler or soxr.ResampleStream(svc.model.speech_tokenizer.sample_rate,
                                                             responses.PCM_RATE, 1, dtype="float32")
                pcm = responses.pcm16(resampler.resample_chunk(item.astype("float32")))
                yield responses.sse({"type": "speech.audio.delta", "audio": base64.b64encode(pcm).decode()})
        except BaseException as exc:  # noqa: BLE001 - the stream has started: the error goes in it
            async for event in sse_error(exc):
                yield event
            return
        if resampler is not None:
            tail = responses.pcm16(resampler.resample_chunk(responses.np.zeros(0, "float32"), last=True))
            yield responses.sse({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode()})
        units = int(result.tokens.size) if result.tokens is not None else 0
        yield responses.sse({"type": "speech.audio.done",
                             "usage": {"input_tokens": 0, "output_tokens": units, "total_tokens": units}})

    return sse_response(events())


async def transcriptions(request: Request) -> Response:
    svc = _service(request)
    job = await parse(schemas.transcription, await form_body(request), svc.limits)
    result = await svc.run(job, request.is_disconnected)
    text, used, _ = responses.answer(svc.model.tokenizer, result, job.max_tokens)
    if job.fmt == "text":
        return PlainTextResponse(text)
    prompt = int(result.stats.get("prompt_tokens", 0))
    return JSONResponse({"text": text, "usage": {"type": "tokens", "input_tokens": prompt, "output_tokens": used,
                                                 "total_tokens": prompt + used}})


async def models(request: Request) -> Response:
    svc = _service(request)
    card = {"id": svc.config.model_name, "object": "model", "created": svc.started, "owned_by": "dynin_rt"}
    if "model" in request.path_params:
        if request.path_params["model"] != svc.config.model_name:
            schemas.check_model({"model": request.path_params["model"]}, svc.limits)
        return JSONResponse(card)
    return JSONResponse({"object": "list", "data": [card]})


async def health(request: Request) -> Response:
    svc = _service(request)
    return JSONResponse({"status": "ok", "model": svc.config.model_name, "queue_depth": svc.batcher.queue_depth})


async def metrics(request: Request) -> Response:
    return PlainTextResponse(_service(request).metrics.render(), media_type="text/plain; version=0.0.4")


# -- the app ---------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return error_response(ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None))


async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
    return error_response(too_large(request.app.state.service.config.max_body_bytes))


async def _internal(request: Request, exc: Exception) -> Response:
    return error_response(api_error(exc))


def build_app(model, config: ServeConfig | None = None) -> Starlette:
    """The ASGI app serving ``model`` (a dynin_rt.Model); ``app.state.service`` holds its batcher."""
    config = config or ServeConfig()
    service = Service(model, config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await anyio.to_thread.run_sync(service.batcher.stop)

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/images/generations", image_generations, methods=["POST"]),
        Route("/v1/images/edits", image_edits, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, BodyTooLarge: _too_large, Exception: _internal}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(Guard, config=config)],
                    lifespan=lifespan)
    app.state.service = service
    return app
