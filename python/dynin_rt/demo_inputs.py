"""Synthetic media for the demo and the benchmarks: an image, a short video and a spoken-like tone,
so every task runs with no downloads."""
from __future__ import annotations

import os

import numpy as np


def sample_image(size: tuple[int, int] = (480, 640), seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: a colour gradient with a few discs."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + yy) / 40)], axis=-1)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 80)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return (img * 255).astype(np.uint8)


def sample_video(frames: int = 12, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """uint8 [T, H, W, 3]: a disc moving across a gradient."""
    out = []
    base = sample_image(size, seed=1)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(frames):
        frame = base.copy()
        cx = int(w * (t + 0.5) / frames)
        frame[(yy - h // 2) ** 2 + (xx - cx) ** 2 < 30 ** 2] = (255, 220, 0)
        out.append(frame)
    return np.stack(out)


def sample_speech(seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    """float32 [S]: a gliding harmonic tone with a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * voice * envelope).astype(np.float32)


def write_video(path: str, frames: np.ndarray, fps: int = 8) -> str:
    """Encode frames [T, H, W, 3] as an MP4 (PyAV)."""
    import av

    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return os.fspath(path)
