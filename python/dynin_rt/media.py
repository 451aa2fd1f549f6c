"""Media in and out: images, video frames and audio from paths, PIL images or arrays, with one-line
errors that name the fix. Inputs are never modified."""
from __future__ import annotations

import os

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def _existing(path, kind: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{kind} file {path!r} does not exist")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{kind} file {path!r} is not readable")
    return path


def load_image(image):
    """Path, PIL image or uint8 array [H, W, 3] (or [H, W] / [H, W, 4]) -> RGB PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        path = _existing(image, "image")
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read image {path!r} ({exc}); use PNG, JPEG or WebP") from exc
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 [H, W, 3], got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or 0 in arr.shape:
        raise ValueError(f"image arrays must be uint8 [H, W, 3], got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))


def load_video(video) -> np.ndarray:
    """Path (decoded with PyAV) or frames [T, H, W, 3] uint8 / list of images -> uint8 [T, H, W, 3]."""
    if isinstance(video, (str, os.PathLike)):
        path = _existing(video, "video")
        import av

        try:
            with av.open(path) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        except (av.error.FFmpegError, ValueError, IndexError) as exc:
            raise ValueError(f"cannot decode video {path!r} ({exc}); use MP4, MOV, MKV or WebM") from exc
        if not frames:
            raise ValueError(f"video {path!r} has no frames")
        return np.stack(frames)
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("the video has no frames")
        return np.stack([np.asarray(load_image(f)) for f in video])
    arr = np.asarray(video)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or 0 in arr.shape:
        raise ValueError(f"video arrays must be uint8 [T, H, W, 3], got {arr.dtype} {arr.shape}")
    return arr


def load_audio(audio, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Path (read with soundfile) or array + sample_rate -> (float32 samples, sample rate).

    Multi-channel input is passed on as [S, C]; the speech encoder mixes it down.
    """
    if isinstance(audio, (str, os.PathLike)):
        path = _existing(audio, "audio")
        import soundfile

        if sample_rate is not None:
            raise ValueError("sample_rate applies to audio arrays; a file carries its own")
        try:
            data, rate = soundfile.read(path, dtype="float32", always_2d=False)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise ValueError(f"cannot read audio {path!r} ({exc}); use WAV, FLAC or OGG") from exc
        return data, int(rate)
    if sample_rate is None:
        raise ValueError("audio arrays need sample_rate= (e.g. 16000)")
    arr = np.asarray(audio)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"audio arrays must be numeric, got dtype {arr.dtype}")
    return arr, int(sample_rate)
