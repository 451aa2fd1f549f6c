"""EMOVA units-to-speech vocoder ("UVITS"): the PyTorch twin and the host-side glue shared by all backends.

A render is split into two graphs with the data-dependent step on the host, so that every backend
(PyTorch, onnxruntime, TensorRT) runs the same two fixed-rank graphs:

1. ``text``  (:class:`VocoderText`): unit symbols [1, T_x], style g [1, G, 1], SDP noise [1, 2, T_x]
   -> m_p, logs_p [1, D, T_x], log w [1, 1, T_x].
2. host: durations = ceil(exp(log w) * length_scale); T_y = max(sum, 1); each unit's m_p / logs_p is
   repeated for its frames (the original's ``generate_path`` + matmul); z_p = m + noise * exp(logs) *
   noise_scale.
3. ``wave``  (:class:`VocoderWave`): z_p [1, D, T_y], g -> waveform [1, 1, hop * T_y].

Noise is explicit: the original draws ``randn`` inside the model; here the caller passes standard
normal SDP noise (one pair per unit) and prior noise (one D-vector per frame). :func:`unit_noise`
and :func:`frame_noise` draw them from numpy generators in a position-major order, so a prefix of a
sequence always gets the same noise as the whole sequence (what streaming relies on) and every
backend and device sees identical noise for a seed.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import U2SArch
from .u2s_text import StochasticDurationPredictor, TextEncoder
from .u2s_wave import Generator, ResidualFlow

# Checkpoint tensors under "decoder." that inference never reads: the posterior and reference
# encoders and the speaker table (training only), the training half of the duration predictor, and
# ConvFlow 1, which the original reverse pass skips.
DECODER_UNUSED = ("enc_q.", "enc_r.", "emb_g.", "dp.post_", "dp.flows.1.")


class UVITSDecoder(nn.Module):
    """The inference part of the UVITS SynthesizerTrn; state names are the checkpoint's under ``decoder.``."""

    def __init__(self, arch: U2SArch):
        super().__init__()
        self.enc_p = TextEncoder(arch)
        self.dp = StochasticDurationPredictor(arch)
        self.flow = ResidualFlow(arch)
        self.dec = Generator(arch)


class EmovaVocoder(nn.Module):
    """UVITS decoder plus the style table, named like the HF wrapper (``decoder``, ``style_embedding``)."""

    def __init__(self, arch: U2SArch, num_styles: int):
        super().__init__()
        self.arch = arch
        self.decoder = UVITSDecoder(arch)
        self.style_embedding = nn.Embedding(num_styles, arch.gin_channels)

    def style_vector(self, row: int) -> torch.Tensor:
        """g for one style row: [1, G, 1]."""
        return self.style_embedding.weight[row].view(1, -1, 1)

    def text(self, ids, g, sdp_noise):
        """ids [1, T_x] int64, g [1, G, 1], sdp_noise [1, 2, T_x] (times noise_scale_w)
        -> (m_p [1, D, T_x], logs_p [1, D, T_x], logw [1, 1, T_x])."""
        hidden, m_p, logs_p = self.decoder.enc_p(ids)
        return m_p, logs_p, self.decoder.dp(hidden, g, sdp_noise)

    def wave(self, z_p, g):
        """z_p [1, D, T_y], g [1, G, 1] -> waveform [1, 1, hop * T_y]."""
        return self.decoder.dec(self.decoder.flow.reverse(z_p, g), g)

    def load(self, ledger) -> None:
        """Fill every tensor from a :class:`~dynin_rt.tokenizers.emova.weights.CheckpointLedger`."""
        ledger.drop(["decoder." + p for p in DECODER_UNUSED])
        ledger.load_module(self.decoder, "decoder.")
        ledger.load_module(self.style_embedding, "style_embedding.")


class VocoderText(nn.Module):
    """Graph 1 for export: ``(ids, g, sdp_noise) -> (m_p, logs_p, logw)``."""

    def __init__(self, vocoder: EmovaVocoder):
        super().__init__()
        self.vocoder = vocoder

    def forward(self, ids, g, sdp_noise):
        return self.vocoder.text(ids, g, sdp_noise)


class VocoderWave(nn.Module):
    """Graph 2 for export: ``(z_p, g) -> wav``."""

    def __init__(self, vocoder: EmovaVocoder):
        super().__init__()
        self.vocoder = vocoder

    def forward(self, z_p, g):
        return self.vocoder.wave(z_p, g)


def units_to_symbols(units: np.ndarray, arch: U2SArch) -> np.ndarray:
    """Unit u -> symbol id ``unit_offset + u`` (178 + u in the released table).

    Parameters
    ----------
    units : np.ndarray
        ``[T_x]`` integers in [0, n_units).

    Returns
    -------
    np.ndarray
        ``[1, T_x]`` int64.
    """
    return (np.asarray(units, dtype=np.int64) + arch.unit_offset)[None, :]


def durations_from_logw(logw: np.ndarray, length_scale: float) -> np.ndarray:
    """Frames per unit: ceil(exp(log w) * length_scale).

    Parameters
    ----------
    logw : np.ndarray
        ``[T_x]`` float.

    Returns
    -------
    np.ndarray
        ``[T_x]`` int64, each >= 0.
    """
    w = np.exp(logw.astype(np.float32)) * np.float32(length_scale)
    return np.ceil(w).astype(np.int64)


def expand_frames(stats: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Repeat each unit's column ``durations[i]`` times; an all-zero duration vector gives one zero frame.

    Parameters
    ----------
    stats : np.ndarray
        ``[C, T_x]`` per-unit values (m_p or logs_p).
    durations : np.ndarray
        ``[T_x]`` int64 frames per unit.

    Returns
    -------
    np.ndarray
        ``[C, max(sum(durations), 1)]``. The original clamps T_y to at least 1 and its alignment path
        is empty when every duration is 0, which makes that single frame zero.
    """
    out = np.repeat(stats, durations, axis=1)
    if out.shape[1] == 0:
        out = np.zeros((stats.shape[0], 1), dtype=stats.dtype)
    return out


def unit_noise(seed: int, start: int, count: int) -> np.ndarray:
    """Standard-normal SDP noise for units [start, start + count): ``[1, 2, count]`` float32.

    Drawn position-major (two values per unit) from ``np.random.default_rng([seed, 0])``, so the noise
    of unit i does not depend on how the sequence is chunked.
    """
    rng = np.random.default_rng([seed, 0])
    if start:
        rng.standard_normal(2 * start)
    return rng.standard_normal((count, 2)).T[None].astype(np.float32)


def frame_noise(seed: int, start: int, count: int, channels: int) -> np.ndarray:
    """Standard-normal prior noise for frames [start, start + count): ``[1, channels, count]`` float32.

    Drawn frame-major from ``np.random.default_rng([seed, 1])`` (``channels`` values per frame).
    """
    rng = np.random.default_rng([seed, 1])
    if start:
        rng.standard_normal(channels * start)
    return rng.standard_normal((count, channels)).T[None].astype(np.float32)


def prior_sample(m: np.ndarray, logs: np.ndarray, noise: np.ndarray, noise_scale: float) -> np.ndarray:
    """z_p = m + noise * exp(logs) * noise_scale, all ``[1, D, T_y]`` float32."""
    return (m + noise * np.exp(logs) * np.float32(noise_scale)).astype(np.float32)
