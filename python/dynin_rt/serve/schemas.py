"""Request validation: an OpenAI-shaped request (JSON body or multipart form) -> a :class:`Job`,
the ``dynin_rt.generate`` keywords plus what the answer needs, or an :class:`ApiError` (400, 404,
413) naming the field.

Fields of the OpenAI API the model has no use for (``top_p``, ``user``, ``language``...) are
ignored; fields that would change the answer in a way the server cannot honour (``n`` > 1, tools,
logprobs, several turns) are refused. The diffusion options come as extra fields (``extra_body`` in
the openai client): steps, block_length, mode, threshold, cfg_scale, seed; for speech
max_new_tokens; for image and video questions resolution and frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..api import select_task, voice_style
from ..tasks import registry
from . import inputs
from .errors import ApiError
from .inputs import MediaPolicy

# OpenAI voice names -> Dynin-Omni voices (EMOVA styles: gender-emotion[-speed[-pitch]]).
OPENAI_VOICES = {
    "alloy": "female-neutral", "ash": "male-neutral", "ballad": "male-neutral-slow-low", "coral": "female-happy",
    "echo": "male-neutral-normal-low", "fable": "male-happy", "onyx": "male-neutral-normal-low",
    "nova": "female-happy-normal-high", "sage": "female-neutral-slow", "shimmer": "female-neutral-normal-high",
    "verse": "male-happy", "marin": "female-neutral", "cedar": "male-neutral",
}
SPEECH_FORMATS = ("mp3", "wav", "flac", "opus", "pcm")
CHAT_AUDIO_FORMATS = ("wav", "mp3", "flac", "opus", "pcm16")
DIFFUSION_OPTIONS = ("steps", "block_length", "mode", "threshold", "cfg_scale", "max_new_tokens", "resolution", "frames")
MAX_INPUT_CHARS = 4096  # the speech endpoint's input limit, as OpenAI's


@dataclass
class Limits:
    """What requests may ask: the served model's name and context, and the media policy."""

    model_name: str
    max_context: int
    media: MediaPolicy = field(default_factory=MediaPolicy)


@dataclass
class Job:
    """One validated request.

    request: ``dynin_rt.generate`` keywords. task: the task it selects. stream: answer as SSE.
    max_tokens: text tasks, the tokens to answer (the run rounds up to whole blocks). voice, fmt:
    speech out (the speech endpoint, or chat with ``modalities: ["audio"]``). include_usage: the
    streamed chat's usage chunk.
    """

    request: dict
    task: str
    stream: bool = False
    max_tokens: int | None = None
    voice: str | None = None
    fmt: str | None = None
    include_usage: bool = False
    speech: dict = field(default_factory=dict)


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def check_model(body, limits: Limits) -> None:
    name = body.get("model")
    if name is not None and name != limits.model_name:
        raise ApiError(404, f"the model {name!r} does not exist: this server serves {limits.model_name!r}",
                       param="model", code="model_not_found")


def _int(body, name: str, lo: int, hi: int, default=None):
    value = body.get(name, default)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():  # multipart fields are strings
        value = int(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(f"{name} must be an integer in [{lo}, {hi}], got {value!r}", name)
    return value


def _float(body, name: str, lo: float, hi: float):
    value = body.get(name)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _bad(f"{name} must be a number, got {value!r}", name) from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _bad(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}", name)
    return float(value)


def _choice(body, name: str, choices, default=None):
    value = body.get(name, default)
    if value not in choices:
        raise _bad(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", name)
    return value


def _one(body, name: str, what: str) -> None:
    if _int(body, name, 1, 1 << 30, default=1) != 1:
        raise _bad(f"{name} must be 1: one {what} per request (send several requests; the server batches them)", name)


def _diffusion(body, limits: Limits, names=("steps", "block_length", "mode", "threshold", "cfg_scale")) -> dict:
    """The extra_body diffusion options present in the request, checked for type and range; those
    that do not apply to the endpoint are refused rather than ignored."""
    for name in DIFFUSION_OPTIONS:
        if name not in names and body.get(name) is not None:
            raise _bad(f"{name} does not apply here (this endpoint takes {', '.join(names)}, temperature, seed)", name)
    out = {
        "steps": _int(body, "steps", 1, 16384) if "steps" in names else None,
        "block_length": _int(body, "block_length", 1, limits.max_context) if "block_length" in names else None,
        "mode": _choice(body, "mode", ("exact", "fast", None)) if "mode" in names else None,
        "threshold": _float(body, "threshold", 0.0, 1.0) if "threshold" in names else None,
        "cfg_scale": _float(body, "cfg_scale", 0.0, 100.0) if "cfg_scale" in names else None,
        "max_new_tokens": _int(body, "max_new_tokens", 1, limits.max_context) if "max_new_tokens" in names else None,
        "resolution": _int(body, "resolution", 16, 4096) if "resolution" in names else None,
        "frames": _int(body, "frames", 1, 64) if "frames" in names else None,
        "temperature": _float(body, "temperature", 0.0, 10.0),
        "seed": _int(body, "seed", -(1 << 63), (1 << 64) - 1),
    }
    return {k: v for k, v in out.items() if v is not None}


def text_schedule(task: str, max_tokens: int | None, options: dict) -> dict:
    """max_new_tokens / block_length / steps of a text task for an answer of max_tokens tokens.

    Unset, they are the task's official values. With max_tokens alone, the block is the official
    block (or max_tokens, if shorter), the new tokens are max_tokens rounded up to whole blocks and
    the steps keep the official steps per token.
    """
    if max_tokens is None and "block_length" not in options and "steps" not in options:
        return {}
    official = registry.get(task).defaults
    want = max_tokens or official["max_new_tokens"]
    block = options.get("block_length") or min(official["block_length"], want)
    gen = math.ceil(want / block) * block
    blocks = gen // block
    steps = options.get("steps")
    if steps is None:
        per_token = official["steps"] / official["max_new_tokens"]
        steps = max(1, math.ceil(per_token * gen / blocks)) * blocks
    elif steps % blocks:
        raise _bad(f"steps {steps} must be a multiple of the number of blocks ({gen} new tokens in blocks of {block})",
                   "steps")
    return {"max_new_tokens": gen, "block_length": block, "steps": steps}


# -- chat ------------------------------------------------------------------------------------------
def _turn(messages) -> tuple[str, list]:
    """The one user turn (system and developer text go before it) -> (text, its media parts)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    system, user = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise _bad(f"messages[{i}] must be an object with a role of system, developer, user", f"messages[{i}]")
        if m["role"] in ("assistant", "tool"):
            raise _bad("the model's chat template takes one user turn: send the conversation as one user message",
                       f"messages[{i}]")
        (user if m["role"] == "user" else system).append((i, m.get("content")))
    if len(user) != 1:
        raise _bad("one user message per request (the model's chat template takes one turn)", "messages")
    texts, media = [], []
    for i, content in system + user:
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise _bad("content must be a string or a list of parts", f"messages[{i}].content")
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in ("image_url", "input_audio", "video_url") and i == user[0][0]:
                media.append((kind, part.get(kind), f"messages[{i}].content[{j}]"))
            else:
                raise _bad("parts are text, image_url, input_audio or video_url (media in the user message)",
                           f"messages[{i}].content[{j}]")
    return "\n\n".join(t for t in texts if t), media


def _chat_media(media: list, policy: MediaPolicy) -> dict:
    if not media:
        return {}
    if len(media) > 1:
        raise _bad("one image, audio or video per request", media[1][2])
    kind, value, param = media[0]
    if kind == "input_audio":
        if not isinstance(value, dict) or value.get("format", "wav") not in inputs.AUDIO_FORMATS:
            raise _bad(f"input_audio is {{data: base64, format: one of {', '.join(inputs.AUDIO_FORMATS)}}}", param)
        samples, rate = inputs.audio(inputs.b64decode(value.get("data"), param), policy, param)
        return {"audio": samples, "sample_rate": rate}
    url = value.get("url") if isinstance(value, dict) else value
    data = inputs.url_bytes(url, policy, param)
    if kind == "image_url":
        return {"image": inputs.image(data, policy, param)}
    return {"video": inputs.video(data, param)}


def chat(body: dict, limits: Limits) -> Job:
    """POST /v1/chat/completions."""
    check_model(body, limits)
    _one(body, "n", "choice")
    for name in ("tools", "functions", "logprobs", "top_logprobs"):
        if body.get(name):
            raise _bad(f"{name} is not supported by this model", name)
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise _bad("response_format must be {\"type\": \"text\"}", "response_format")
    text, media = _turn(body.get("messages"))
    request = {"prompt": text or None, **_chat_media(media, limits.media)}
    try:
        task = select_task(request["prompt"], request.get("image"), request.get("video"), request.get("audio"), "text")
    except ValueError as exc:
        raise _bad(str(exc), "messages") from exc
    options = _diffusion(body, limits, names=("steps", "block_length", "mode", "threshold", "cfg_scale", "resolution",
                                              "frames"))
    max_tokens = _int(body, "max_completion_tokens", 1, limits.max_context)
    max_tokens = _int(body, "max_tokens", 1, limits.max_context) if max_tokens is None else max_tokens
    options.update(text_schedule(task, max_tokens, options))
    job = Job({**request, **options}, task, stream=_stream_flag(body), max_tokens=max_tokens)
    job.include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if job.stream else False
    _chat_audio(body, job, limits)
    return job


def _stream_flag(body) -> bool:
    value = body.get("stream", False)
    if not isinstance(value, bool):
        raise _bad("stream must be true or false", "stream")
    return value


def _chat_audio(body: dict, job: Job, limits: Limits) -> None:
    """modalities ["audio"]: the answer is spoken too; extra field speech_options: the speech
    sampler's options (max_new_tokens, steps, block_length, cfg_scale, mode, threshold, temperature)."""
    modalities = body.get("modalities") or ["text"]
    if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"}:
        raise _bad("modalities is a list of text and audio", "modalities")
    if "audio" not in modalities:
        return
    if job.stream:
        raise _bad("spoken answers are not streamed: drop stream, or use /v1/audio/speech with stream_format sse",
                   "stream")
    audio = body.get("audio") or {}
    job.voice = _voice(audio.get("voice"), "audio.voice")
    job.fmt = _choice(audio, "format", CHAT_AUDIO_FORMATS, default="wav")
    speech = body.get("speech_options") or {}
    if not isinstance(speech, dict):
        raise _bad("speech_options must be an object", "speech_options")
    job.speech = _diffusion(speech, limits, names=("steps", "block_length", "mode", "threshold", "cfg_scale",
                                                   "max_new_tokens"))
    job.speech.setdefault("seed", job.request.get("seed", 0))


def _voice(voice, param: str) -> str:
    if voice is None:
        return "female-neutral"
    if isinstance(voice, dict):  # {"id": ...} custom voices of newer clients
        voice = voice.get("id")
    if not isinstance(voice, str):
        raise _bad("voice must be a string", param)
    name = OPENAI_VOICES.get(voice.lower(), voice)
    try:
        voice_style(name)
    except ValueError as exc:
        raise _bad(f"{exc}; OpenAI voice names ({', '.join(OPENAI_VOICES)}) are accepted too", param) from exc
    return name


# -- speech, images, transcription -----------------------------------------------------------------
def speech(body: dict, limits: Limits) -> Job:
    """POST /v1/audio/speech: text -> mp3 / wav / flac / opus / pcm; stream_format "sse" streams."""
    check_model(body, limits)
    text = body.get("input")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_INPUT_CHARS:
        raise _bad(f"input must be a non-empty string of at most {MAX_INPUT_CHARS} characters", "input")
    stream = _choice(body, "stream_format", ("audio", "sse"), default="audio") == "sse"
    fmt = _choice(body, "response_format", SPEECH_FORMATS, default="pcm" if stream else "mp3")
    if stream and fmt != "pcm":
        raise _bad("stream_format sse sends pcm chunks: set response_format to pcm", "response_format")
    voice = _voice(body.get("voice"), "voice")
    speed = _float(body, "speed", 0.25, 4.0)
    if speed is not None and abs(speed - 1.0) > 0.15 and len(voice.split("-")) == 2:
        voice += "-fast" if speed > 1.0 else "-slow"  # the EMOVA styles have three speeds
    options = _diffusion(body, limits, names=("steps", "block_length", "mode", "threshold", "cfg_scale", "max_new_tokens"))
    request = {"prompt": text, "output": "speech", "voice": voice, **options}
    return Job(request, "t2s", stream=stream, voice=voice, fmt=fmt)


def _size(body: dict, limits: Limits) -> dict:
    size = body.get("size")
    if size in (None, "auto"):
        return {}
    parts = size.split("x") if isinstance(size, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != parts[1] or int(parts[0]) % 16:
        raise _bad(f"size must be square WxW with W a multiple of 16 (e.g. 256x256, 512x512), got {size!r}", "size")
    side = int(parts[0])
    if not 16 <= side or (side // 16) ** 2 + 160 > limits.max_context:
        raise _bad(f"size {size} does not fit the model's context of {limits.max_context} tokens", "size")
    return {"resolution": side}


def _image_common(body, limits: Limits) -> dict:
    check_model(body, limits)
    _one(body, "n", "image")
    _choice(body, "response_format", ("b64_json",), default="b64_json")
    if body.get("stream") in (True, "true"):
        raise _bad("image streaming is not supported", "stream")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("prompt must be a non-empty string", "prompt")
    return {"prompt": prompt, "output": "image", **_size(body, limits),
            **_diffusion(body, limits, names=("steps", "mode", "cfg_scale"))}


def image_generation(body: dict, limits: Limits) -> Job:
    """POST /v1/images/generations (JSON)."""
    return Job(_image_common(body, limits), "t2i")


def _upload(form, names: tuple[str, ...], param: str) -> bytes:
    for name in names:
        values = form.getlist(name) if hasattr(form, "getlist") else [form.get(name)]
        files = [v for v in values if hasattr(v, "read")]
        if len(files) > 1:
            raise _bad("one file per request", name)
        if files:
            return files[0].file.read()
    raise _bad(f"the multipart field {param} (a file) is missing", param)


def image_edit(form, limits: Limits) -> Job:
    """POST /v1/images/edits (multipart: image, prompt, ...)."""
    if form.get("mask") is not None:
        raise _bad("masks are not supported: the model edits the whole image from the prompt", "mask")
    request = _image_common(form, limits)
    data = _upload(form, ("image", "image[]"), "image")
    request["image"] = inputs.image(data, limits.media, "image")
    return Job(request, "i2i")


def transcription(form, limits: Limits) -> Job:
    """POST /v1/audio/transcriptions (multipart: file, model, response_format json or text)."""
    check_model(form, limits)
    if form.get("stream") in ("true", "True", True):
        raise _bad("transcripts are not streamed", "stream")
    fmt = _choice(form, "response_format", ("json", "text"), default="json")
    samples, rate = inputs.audio(_upload(form, ("file",), "file"), limits.media, "file")
    options = _diffusion(form, limits)
    max_tokens = _int(form, "max_tokens", 1, limits.max_context)
    options.update(text_schedule("s2t", max_tokens, options))
    return Job({"audio": samples, "sample_rate": rate, **options}, "s2t", max_tokens=max_tokens, fmt=fmt)
