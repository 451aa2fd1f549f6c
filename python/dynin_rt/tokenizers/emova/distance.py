"""How far one render of speech is from another: waveform SNR and a log-mel distance.

Used to state how far streamed speech (an incremental render, ``decode_stream`` fed unit blocks)
is from a one-shot ``decode`` of the same units. The two can differ in length (a unit's duration
depends on the units its encoder has seen), so both measures compare the common prefix and the
length difference is reported beside them.
"""
from __future__ import annotations

import numpy as np

from .s2u import slaney_mel_filterbank

N_FFT, HOP, N_MELS = 1024, 256, 80  # the vocoder's own frame: 256 samples at 22.05 kHz


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - x|^2) over the common prefix of two [S] waveforms (inf when equal)."""
    n = min(ref.size, x.size)
    ref64 = ref[:n].astype(np.float64)
    err = np.sum((ref64 - x[:n]) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref64 ** 2) / err))


def log_mel(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """[S] waveform -> [N_MELS, frames] log10 mel power (Hann window, no padding)."""
    if wav.size < N_FFT:
        return np.zeros((N_MELS, 0))
    frames = np.lib.stride_tricks.sliding_window_view(wav.astype(np.float64), N_FFT)[::HOP]  # [T, N_FFT]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2                        # [T, N_FFT/2+1]
    fb = slaney_mel_filterbank(sample_rate, N_FFT, N_MELS, fmax=sample_rate / 2)                 # [N_MELS, N_FFT/2+1]
    return np.log10(fb @ power.T + 1e-10)


def mel_distance_db(ref: np.ndarray, x: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference of the log-mel spectrograms over their common frames, in dB
    (0 when equal; a few dB is audible, tens of dB is other audio)."""
    a, b = log_mel(ref, sample_rate), log_mel(x, sample_rate)
    n = min(a.shape[1], b.shape[1])
    return float(10 * np.mean(np.abs(a[:, :n] - b[:, :n]))) if n else float("nan")


def speech_distance(ref: np.ndarray, x: np.ndarray, sample_rate: int) -> dict:
    """SNR and log-mel distance of ``x`` from ``ref`` (common prefix) and their length difference."""
    return {"snr_db": round(snr_db(ref, x), 2), "mel_distance_db": round(mel_distance_db(ref, x, sample_rate), 3),
            "length_difference_samples": int(x.size - ref.size)}
