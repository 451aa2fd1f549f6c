"""Media in and out: images, video frames and audio from paths, PIL images or arrays, with one-line
errors that name the fix. Inputs are never modified.

Media past the limits below is refused before it is decoded (from the file size and the headers),
so a hostile or mistaken input costs neither the memory nor the time of decoding it. A video is
decoded frame by frame and only the frames the task samples are kept. The limits are far above what
the tasks use (images are resized to at most 512 pixels a side, video to a few frames, speech
recognition reads seconds); README, "Media limits".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")




@dataclass(frozen=True)
class MediaLimits:
    """The largest inputs accepted. bytes: file size; pixels: width x height of an image or of one
    video frame; seconds: video and audio duration; video_frames: frames in a video;
    video_decoded_bytes: the decoded frames kept from one video."""

    image_bytes: int = 100 * 2**20
    image_pixels: int = 64_000_000       # PIL itself warns above ~89 Mpx
    video_bytes: int = 2 * 2**30
    video_pixels: int = 4096 * 2304      # 4K, per frame
    video_seconds: float = 600.0
    video_frames: int = 100_000
    video_decoded_bytes: int = 4 * 2**30  # the RGB frames a call holds (all of them without num_frames)
    audio_bytes: int = 1 * 2**30
    audio_seconds: float = 600.0


LIMITS = MediaLimits()


def _existing(path, kind: str, max_bytes: int) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{kind} file {path!r} does not exist")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{kind} file {path!r} is not readable")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{kind} file {path!r} is {size / 2**20:.0f} MiB, "
                         f"over the limit of {max_bytes / 2**20:.0f} MiB")
    return path


def _check_pixels(kind: str, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise ValueError(f"the {kind} is {width}x{height}, over the limit of {limit / 1e6:.3g} Mpx; downscale it first")


def _check_seconds(kind: str, seconds: float, limit: float) -> None:
    if seconds > limit:
        raise ValueError(f"the {kind} lasts {seconds:.0f} s, over the limit of {limit:g} s; cut it first")


def load_image(image, limits: MediaLimits = LIMITS):
    """Path, PIL image or uint8 array [H, W, 3] (or [H, W] / [H, W, 4]) -> RGB PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        _check_pixels("image", image.width, image.height, limits.image_pixels)
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        path = _existing(image, "image", limits.image_bytes)
        try:
            with Image.open(path) as im:  # reads the header only
                _check_pixels("image", im.width, im.height, limits.image_pixels)
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ValueError(f"cannot read image {path!r} ({exc}); use PNG, JPEG or WebP") from exc
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 [H, W, 3], got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or 0 in arr.shape:
        raise ValueError(f"image arrays must be uint8 [H, W, 3], got shape {arr.shape}")
    _check_pixels("image", arr.shape[1], arr.shape[0], limits.image_pixels)
    return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))


def load_video(video, num_frames: int | None = None, limits: MediaLimits = LIMITS) -> np.ndarray:
    """Path (decoded with PyAV) or frames [T, H, W, 3] uint8 / list of images -> uint8 [T, H, W, 3].

    With ``num_frames``, a file gives only the frames the video tasks keep (``sample_frame_indices``
    of its T frames, in order, repeats included: [num_frames, H, W, 3]); the others are decoded and
    dropped, never converted or stored. Arrays and lists are returned whole (the task samples them).
    """
    if isinstance(video, (str, os.PathLike)):
        return _decode_video(_existing(video, "video", limits.video_bytes), num_frames, limits)
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("the video has no frames")
        return np.stack([np.asarray(load_image(f, limits)) for f in video])
    arr = np.asarray(video)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or 0 in arr.shape:
        raise ValueError(f"video arrays must be uint8 [T, H, W, 3], got {arr.dtype} {arr.shape}")
    _check_pixels("video frame", arr.shape[2], arr.shape[1], limits.video_pixels)
    return arr


def _decode_video(path: str, num_frames: int | None, limits: MediaLimits) -> np.ndarray:
    import av

    try:
        with av.open(path) as container:  # headers and packets only: T before any frame is decoded
            if not container.streams.video:
                raise ValueError("it has no video stream")
            stream = container.streams.video[0]
            _check_video_header(container, stream, limits)
            total = sum(1 for packet in container.demux(stream) if packet.size)
        if total > limits.video_frames:
            raise ValueError(f"it has {total} frames, over the limit of {limits.video_frames}")
        if total == 0:
            raise ValueError("it has no frames")
        held = (num_frames or total) * stream.codec_context.width * stream.codec_context.height * 3
        if held > limits.video_decoded_bytes:
            raise ValueError(f"its {num_frames or total} frames would take {held / 2**20:.0f} MiB decoded, over the "
                             f"limit of {limits.video_decoded_bytes / 2**20:.0f} MiB; pass fewer frames")
        with av.open(path) as container:
            return _sampled_frames(container.decode(video=0), total, num_frames, limits)
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"cannot decode video {path!r} ({exc}); use MP4, MOV, MKV or WebM") from exc
    except ValueError as exc:
        raise ValueError(f"video {path!r}: {exc}") from exc


def _check_video_header(container, stream, limits: MediaLimits) -> None:
    import av

    _check_pixels("video frame", stream.codec_context.width, stream.codec_context.height, limits.video_pixels)
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = (container.duration or 0) / av.time_base
    _check_seconds("video", seconds, limits.video_seconds)


def _sampled_frames(frames, total: int, num_frames: int | None, limits: MediaLimits) -> np.ndarray:
    """The frames at the sampled indices of T = ``total`` (all of them without ``num_frames``)."""
    from .tokenizers.magvit.image import sample_frame_indices

    wanted = sample_frame_indices(total, num_frames) if num_frames else np.arange(total)
    wanted_set = set(wanted.tolist())
    kept: dict[int, np.ndarray] = {}
    last = None
    for index, frame in enumerate(frames):
        if index > wanted[-1]:
            break
        # A frame's size can change mid-stream: check each one before converting it.
        _check_pixels("video frame", frame.width, frame.height, limits.video_pixels)
        if index in wanted_set:
            kept[index] = last = frame.to_ndarray(format="rgb24")
    if last is None:
        raise ValueError("it has no frames")
    # Fewer decodable frames than packets (a damaged tail): the last decoded frame stands in.
    return np.stack([kept.get(i, last) for i in wanted])


def load_audio(audio, sample_rate: int | None = None, limits: MediaLimits = LIMITS) -> tuple[np.ndarray, int]:
    """Path (read with soundfile) or array + sample_rate -> (float32 samples, sample rate).

    Multi-channel input is passed on as [S, C]; the speech encoder mixes it down.
    """
    if isinstance(audio, (str, os.PathLike)):
        path = _existing(audio, "audio", limits.audio_bytes)
        import soundfile

        if sample_rate is not None:
            raise ValueError("sample_rate applies to audio arrays; a file carries its own")
        try:
            with soundfile.SoundFile(path) as f:  # the header gives the length before any sample is read
                _check_seconds("audio", f.frames / f.samplerate, limits.audio_seconds)
                data, rate = f.read(dtype="float32", always_2d=False), f.samplerate
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise ValueError(f"cannot read audio {path!r} ({exc}); use WAV, FLAC or OGG") from exc
        return data, int(rate)
    if sample_rate is None:
        raise ValueError("audio arrays need sample_rate= (e.g. 16000)")
    arr = np.asarray(audio)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"audio arrays must be numeric, got dtype {arr.dtype}")
    if int(sample_rate) > 0:
        _check_seconds("audio", (arr.shape[0] if arr.ndim else 0) / int(sample_rate), limits.audio_seconds)
    return arr, int(sample_rate)
