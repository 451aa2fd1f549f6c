"""Answers in the OpenAI wire shapes: chat completions and their stream chunks, images, speech in
the asked format, transcripts, and Server-Sent Events framing."""
from __future__ import annotations

import base64
import io
import json
import time
import uuid

import numpy as np

from ..tasks.common import Result
from ..tokens import EOS_ID, EOT_ID

PCM_RATE = 24000  # OpenAI's pcm: 16-bit little-endian mono at 24 kHz
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg", "pcm": "audio/pcm",
               "pcm16": "audio/pcm"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def sse(payload) -> bytes:
    """One Server-Sent Event carrying JSON (or the literal [DONE])."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


# -- text ----------------------------------------------------------------------------------------
def answer(tokenizer, result: Result, max_tokens: int | None) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason) of a text result cut to max_tokens tokens: the run
    rounds the new tokens up to whole blocks, the answer keeps the first max_tokens."""
    tokens = result.tokens if max_tokens is None else result.tokens[:max_tokens]
    ends = np.flatnonzero(np.isin(tokens, (EOS_ID, EOT_ID)))
    used = int(ends[0]) if ends.size else int(tokens.size)
    text = result.text if tokens.size == result.tokens.size else cut_text(tokenizer, tokens, result.task)
    return text, used, "stop" if ends.size else "length"


def cut_text(tokenizer, tokens: np.ndarray, task: str) -> str:
    text = tokenizer.decode(tokens.tolist(), skip_special_tokens=True)
    return text.strip() if task == "s2t" else text


def usage(result: Result, completion: int) -> dict:
    prompt = int(result.stats.get("prompt_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(model: str, text: str | None, finish: str, use: dict, audio: dict | None = None) -> dict:
    message = {"role": "assistant", "content": text}
    if audio is not None:
        message = {"role": "assistant", "content": None, "audio": audio}
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}], "usage": use}


def chat_chunk(chunk_id: str, model: str, delta: dict | None, finish: str | None = None, use: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    out = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": choices}
    if use is not None:
        out["usage"] = use
    return out


class TextDeltas:
    """The new text of each finished block. A block can end inside a multi-byte character, which
    decodes to U+FFFD until the next block completes it: that tail is held back, so the deltas
    joined are the final text."""

    def __init__(self, tokenizer, task: str, max_tokens: int | None):
        self.tokenizer, self.task, self.max_tokens, self.said = tokenizer, task, max_tokens, ""

    def delta(self, tokens: np.ndarray, final: bool = False) -> str:
        tokens = tokens if self.max_tokens is None else tokens[: self.max_tokens]
        text = cut_text(self.tokenizer, tokens, self.task)
        if not final:
            text = text.rstrip("\ufffd")
            if self.task == "s2t":  # the final transcript is stripped: hold back trailing space too
                text = text.rstrip()
        if not text.startswith(self.said):
            return ""
        new, self.said = text[len(self.said):], text
        return new


# -- audio and images ------------------------------------------------------------------------------
def encode_audio(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """float32 samples [S] at rate -> a file in fmt (mp3, wav, flac, opus) or raw pcm (24 kHz s16le)."""
    import soundfile

    samples = np.asarray(samples, np.float32)
    if fmt in ("pcm", "pcm16"):
        return pcm16(resample(samples, rate, PCM_RATE))
    buf = io.BytesIO()
    if fmt == "opus":  # Opus takes 8, 12, 16, 24 or 48 kHz
        soundfile.write(buf, resample(samples, rate, 48000), 48000, format="OGG", subtype="OPUS")
    else:
        soundfile.write(buf, samples, rate, format=fmt.upper(), subtype=None if fmt == "mp3" else "PCM_16")
    return buf.getvalue()


def resample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to or samples.size == 0:
        return samples
    import soxr

    return soxr.resample(samples, rate, to).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def png_b64(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def images(image) -> dict:
    return {"created": int(time.time()), "data": [{"b64_json": png_b64(image)}]}
