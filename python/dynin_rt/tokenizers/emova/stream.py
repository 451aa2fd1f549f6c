"""Chunked rendering for :meth:`EmovaSpeech.decode_stream`: units in (all at once or as they become
final), audio chunks out.

Two halves, as in a whole render (u2s.py): the text graph turns units into per-frame prior samples
(``render_units``), the wave graph turns frames into samples (``audio``). The wave half is local, so
frames are vocoded a chunk at a time with ``context`` frames of overlap on each side and only each
chunk's own samples kept (overlap-discard). The text half is a bidirectional transformer, so in
incremental mode units are rendered ``chunk_units`` at a time once ``lookahead_units`` later units
have arrived, over at most the last ``max_text_units`` units. Noise is drawn per unit and per frame
position (unit_noise, frame_noise), so every chunk sees the noise a whole render would.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .config import U2SArch
from .u2s import durations_from_logw, frame_noise, prior_sample, unit_noise, units_to_symbols


@dataclass
class StreamReport:
    """What the last :meth:`EmovaSpeech.decode_stream` call did (times in seconds, ``perf_counter``).

    Attributes
    ----------
    first_units_ready : float
        When the stream had received enough units to render the first chunk.
    first_audio : float
        When the first chunk was handed out.
    durations : list of int
        Frames given to each unit so far (compare with :meth:`EmovaSpeech.durations`).
    """

    first_units_ready: float = float("nan")
    first_audio: float = float("nan")
    durations: list = field(default_factory=list)

    @property
    def first_chunk_latency(self) -> float:
        """Seconds from "the first chunk's units are final" to "its audio is out"."""
        return self.first_audio - self.first_units_ready


@dataclass(frozen=True)
class ChunkSizes:
    """Frames per chunk (64 ~ 0.74 s), of the first chunk (16 ~ 0.19 s) and of overlap (40, the
    flow's and generator's receptive field); incremental mode: units per render, units of lookahead,
    most units the text graph sees at once."""

    chunk_frames: int = 64
    first_chunk_frames: int = 16
    context_frames: int = 40
    chunk_units: int = 32
    lookahead_units: int = 16
    max_text_units: int = 512

    def __post_init__(self):
        if min(self.chunk_frames, self.first_chunk_frames, self.chunk_units, self.max_text_units) < 1 or \
                min(self.context_frames, self.lookahead_units) < 0:
            raise ValueError("chunk sizes must be >= 1 and contexts >= 0")


class ChunkedRender:
    """The state of one streamed render: units received, units rendered into prior frames, frames
    vocoded and handed out.

    runner: the three graphs (runners.py). g: the style vector [1, G, 1]. The scales and seed are
    those of :meth:`EmovaSpeech.decode`.
    """

    def __init__(self, runner, arch: U2SArch, g: np.ndarray, sizes: ChunkSizes, seed: int, noise_scale: float,
                 noise_scale_w: float, length_scale: float, hop_length: int):
        self.runner, self.arch, self.g, self.sizes = runner, arch, g, sizes
        self.seed, self.noise_scale, self.noise_scale_w, self.length_scale = seed, noise_scale, noise_scale_w, length_scale
        self.hop_length = hop_length
        self.report = StreamReport()
        self.pending: list[int] = []   # units received so far
        self.done = 0                  # units rendered into prior frames
        self.frames = 0                # prior frames so far
        self.emitted = 0               # frames vocoded and handed out
        self._z: list[np.ndarray] = []  # the prior samples, [1, D, n] pieces

    def add(self, units: np.ndarray) -> None:
        self.pending.extend(units.tolist())

    def ready(self) -> bool:
        """Enough units past the rendered ones for an incremental render."""
        return len(self.pending) - self.done >= self.sizes.chunk_units + self.sizes.lookahead_units

    def units_final(self) -> None:
        """Mark the moment the first chunk's units are known (the latency's start)."""
        if self.done == 0:
            self.report.first_units_ready = time.perf_counter()

    def render_units(self, end: int, last: bool) -> None:
        """Turn units [done, end) into prior frames; the text graph sees up to ``lookahead_units``
        more (all remaining when ``last``) and at most ``max_text_units`` in total."""
        done, sizes = self.done, self.sizes
        hi = len(self.pending) if last else min(len(self.pending), end + sizes.lookahead_units)
        lo = min(done, max(0, hi - sizes.max_text_units))
        seq = np.asarray(self.pending[lo:hi], dtype=np.int64)
        m_p, logs_p, logw = self.runner.text(units_to_symbols(seq, self.arch), self.g,
                                             unit_noise(self.seed, lo, hi - lo) * np.float32(self.noise_scale_w))
        keep = slice(done - lo, end - lo)
        dur = durations_from_logw(logw[0, 0, keep], self.length_scale)
        self.report.durations.extend(dur.tolist())
        m, logs = np.repeat(m_p[0][:, keep], dur, axis=1), np.repeat(logs_p[0][:, keep], dur, axis=1)  # [D, n]
        if m.shape[1]:
            noise = frame_noise(self.seed, self.frames, m.shape[1], m.shape[0])
            self._z.append(prior_sample(m[None], logs[None], noise, self.noise_scale))
            self.frames += m.shape[1]
        self.done = end

    def audio(self, last: bool) -> Iterator[np.ndarray]:
        """Vocode every chunk whose frames (and right context, unless ``last``) are rendered."""
        sizes = self.sizes
        size = sizes.first_chunk_frames if self.emitted == 0 else sizes.chunk_frames
        while True:
            start, n_frames = self.emitted, self.frames
            if not (n_frames - start >= size + sizes.context_frames or (last and n_frames > start)):
                return
            upto = min(n_frames, start + size)
            if len(self._z) > 1:
                self._z[:] = [np.concatenate(self._z, axis=2)]
            lo, hi = max(0, start - sizes.context_frames), min(n_frames, upto + sizes.context_frames)
            wav = self.runner.wave(np.ascontiguousarray(self._z[0][:, :, lo:hi]), self.g)[0, 0]
            self.emitted = upto
            if np.isnan(self.report.first_audio):
                self.report.first_audio = time.perf_counter()
            yield wav[(start - lo) * self.hop_length: (upto - lo) * self.hop_length]
            size = sizes.chunk_frames

    def finish(self) -> Iterator[np.ndarray]:
        """Render what is left and vocode the rest."""
        if not self.pending:
            raise ValueError("units is empty; need at least one unit in [0, 4096)")
        self.units_final()
        if self.done < len(self.pending):
            self.render_units(len(self.pending), last=True)
        if self.frames == 0:
            # Every duration was 0: like decode, one frame with zero mean and unit scale.
            zero = np.zeros((1, self.arch.inter_channels, 1), np.float32)
            self._z.append(prior_sample(zero, zero, frame_noise(self.seed, 0, 1, self.arch.inter_channels),
                                        self.noise_scale))
            self.frames = 1
        yield from self.audio(last=True)
