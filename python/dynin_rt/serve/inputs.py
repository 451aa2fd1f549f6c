"""Media in requests: data: URLs, base64 audio, uploaded files, local files and (when enabled)
remote URLs -> what ``dynin_rt.generate`` takes (a PIL image, frames [T, H, W, 3], (samples, rate)).

Everything is decoded before a request is queued, so media that do not decode answer 400 at once
and never reach a batch. Local files are read only under the directories the server was started
with; remote URLs are fetched only when enabled, with a size cap and a timeout.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
import warnings
from dataclasses import dataclass

from .errors import ApiError

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")


@dataclass(frozen=True)
class MediaPolicy:
    """What the server may read. local_dirs: directories whose files file:// URLs may name;
    remote: fetch http(s) URLs; max_bytes: per medium; max_pixels: per image; max_audio_s: seconds."""

    local_dirs: tuple[str, ...] = ()
    remote: bool = False
    max_bytes: int = 32 << 20
    max_pixels: int = 4096 * 4096
    max_audio_s: float = 300.0
    fetch_timeout_s: float = 10.0


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_media")


def b64decode(data: str, param: str) -> bytes:
    if not isinstance(data, str):
        raise _bad("base64 data must be a string", param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"invalid base64 data ({exc})", param) from exc


def url_bytes(url: object, policy: MediaPolicy, param: str) -> bytes:
    """The bytes a data:, file:// or http(s):// URL names, within the policy."""
    if not isinstance(url, str) or not url:
        raise _bad("the media URL must be a non-empty string", param)
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _bad("data: URLs must be base64 (data:<mime>;base64,<data>)", param)
        return b64decode(data, param)
    if url.startswith("file://"):
        return _local_file(url[len("file://"):], policy, param)
    if url.startswith(("http://", "https://")):
        return _fetch(url, policy, param)
    raise _bad("media URLs are data:, file:// or, when the server allows it, http(s)://", param)


def _local_file(path: str, policy: MediaPolicy, param: str) -> bytes:
    if not policy.local_dirs:
        raise _bad("local files are off: start the server with --allowed-local-media DIR", param)
    real = os.path.realpath(path)
    if not any(os.path.commonpath([real, os.path.realpath(d)]) == os.path.realpath(d) for d in policy.local_dirs):
        raise _bad(f"{path!r} is outside the directories the server may read", param)
    if not os.path.isfile(real):
        raise _bad(f"no file {path!r}", param)
    if os.path.getsize(real) > policy.max_bytes:
        raise ApiError(413, f"{path!r} is over the media limit of {policy.max_bytes} bytes", param=param)
    with open(real, "rb") as f:
        return f.read()


def _fetch(url: str, policy: MediaPolicy, param: str) -> bytes:
    if not policy.remote:
        raise _bad("remote media URLs are off: start the server with --allow-remote-media, or send a data: URL", param)
    import httpx

    try:
        with httpx.stream("GET", url, timeout=policy.fetch_timeout_s, follow_redirects=False) as response:
            if response.status_code != 200:
                raise _bad(f"fetching {url} answered HTTP {response.status_code}", param)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise ApiError(413, f"{url} is over the media limit of {policy.max_bytes} bytes", param=param)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise _bad(f"cannot fetch {url} ({exc.__class__.__name__})", param) from exc


def image(data: bytes, policy: MediaPolicy, param: str):
    """Encoded image bytes -> RGB PIL image, refusing images over max_pixels before decoding them."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > policy.max_pixels:
                    raise ApiError(413, f"the image is {im.width}x{im.height}, over the limit of {policy.max_pixels} pixels",
                                   param=param)
                return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise _bad(f"the image does not decode ({exc.__class__.__name__}); send PNG, JPEG or WebP", param) from exc


def audio(data: bytes, policy: MediaPolicy, param: str):
    """Encoded audio bytes (WAV, FLAC, OGG, MP3) -> (float32 samples [S] or [S, C], sample rate)."""
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            if f.frames > policy.max_audio_s * f.samplerate:
                raise ApiError(413, f"the audio lasts {f.frames / f.samplerate:.0f} s, over the limit of "
                               f"{policy.max_audio_s:g} s", param=param)
            samples = f.read(dtype="float32", always_2d=False)
            rate = f.samplerate
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as exc:
        raise _bad(f"the audio does not decode ({exc.__class__.__name__}); send WAV, FLAC, OGG or MP3", param) from exc
    if samples.size == 0:
        raise _bad("the audio holds no samples", param)
    return samples, int(rate)


def video(data: bytes, param: str):
    """Encoded video bytes -> frames [T, H, W, 3] uint8, through dynin_rt.media (PyAV)."""
    from .. import media

    with tempfile.NamedTemporaryFile(suffix=".video") as f:
        f.write(data)
        f.flush()
        try:
            return media.load_video(f.name)
        except ValueError as exc:
            raise _bad("the video does not decode; send MP4, MOV, MKV or WebM", param) from exc
