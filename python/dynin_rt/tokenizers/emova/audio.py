"""Input handling of the EMOVA speech tokenizer: what ``decode`` accepts as units and what
``encode`` accepts as audio, checked and normalised before anything runs; and the pieces long audio
is encoded in."""
from __future__ import annotations

import os
import re
import warnings

import numpy as np
import torch

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 384000
# Quieter than one 16-bit step everywhere: digital silence, which peak normalisation cannot rescue.
SILENCE_PEAK = 2.0 ** -15
MAX_CHANNELS = 8
# The released pipeline encodes up to 60 s in one pass and longer audio in 100 s pieces.
ONE_PASS_SAMPLES, PIECE_SAMPLES = 960_000, 1_600_000
_UNIT_TOKEN = re.compile(r"<\|speech_(\d+)\|>")


def check_units(units, n_units: int) -> np.ndarray:
    """Units as given to decode -> int64 [T_x] in [0, n_units), a copy; one-line errors otherwise.

    Accepts a 1-D sequence, a [1, T_x] array or tensor, or a string of ``<|speech_N|>`` tokens or
    space-separated integers; floats are accepted when they hold integers."""
    if isinstance(units, str):
        tokens = _UNIT_TOKEN.findall(units) if "<|speech_" in units else units.split()
        try:
            units = [int(t) for t in tokens]
        except ValueError as e:
            raise ValueError(f"units string must be '<|speech_N|>' tokens or space-separated integers: {e}") from e
    if isinstance(units, torch.Tensor):
        units = units.detach().cpu().numpy()
    arr = np.asarray(units)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"units must be a 1-D sequence of integers, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("units is empty; need at least one unit in [0, 4096)")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"units must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("units must be integers; got non-integer values")
    bad = np.flatnonzero((arr < 0) | (arr >= n_units))
    if bad.size:
        raise ValueError(f"unit {arr[bad[0]].item()} at position {bad[0]} is outside [0, {n_units}) "
                         f"({bad.size} such units); ids from the LLM must be made relative first")
    return arr.astype(np.int64)


def read_audio(wav, sample_rate) -> tuple[np.ndarray, float]:
    """Audio as given to encode -> (mono float32 [N], rate in Hz); one-line errors otherwise.

    A path is read with soundfile at its own rate; C <= 8 channels ([N, C] or [C, N]) are averaged
    with a warning, as the released pipeline's loader does; integer PCM is scaled to [-1, 1]."""
    if isinstance(wav, (str, os.PathLike)):
        import soundfile as sf

        if not os.path.isfile(wav):
            raise FileNotFoundError(f"audio file not found: {wav}")
        data, file_rate = sf.read(os.fspath(wav), dtype="float32", always_2d=False)
        if sample_rate is not None and sample_rate != file_rate:
            raise ValueError(f"{wav} is sampled at {file_rate} Hz but sample_rate={sample_rate} was passed")
        wav, sample_rate = data, file_rate
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    arr = np.asarray(wav)
    if sample_rate is None:
        raise ValueError("sample_rate is required for array input")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) \
            or not np.isfinite(sample_rate) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate!r} is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz")
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.complexfloating) or arr.dtype.kind not in "iuf":
        raise ValueError(f"audio must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        channel_axis = int(np.argmin(arr.shape))
        if arr.shape[channel_axis] > MAX_CHANNELS:
            raise ValueError(f"audio of shape {arr.shape} is not [samples] or [samples, channels] with at most "
                             f"{MAX_CHANNELS} channels")
        if arr.shape[channel_axis] > 1:
            warnings.warn(f"encode: mixing {arr.shape[channel_axis]} channels down to mono (their mean), as the "
                          "released pipeline does", stacklevel=3)
        arr = arr.astype(np.float64).mean(axis=channel_axis)
    elif arr.ndim != 1:
        raise ValueError(f"audio must be [samples] or [samples, channels], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("audio is empty")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"audio holds non-finite values (NaN or inf), first at sample {first}")
    if np.abs(arr).max() < SILENCE_PEAK:
        raise ValueError("audio is silent (every sample below 2^-15 in magnitude); nothing to encode")
    return arr, float(sample_rate)


def encoder_pieces(samples: np.ndarray, min_len: int) -> list[np.ndarray]:
    """16 kHz samples [N] -> the pieces the encoder runs on: one up to 60 s, else 100 s pieces (a
    last piece shorter than ``min_len`` joins the one before)."""
    if samples.size <= ONE_PASS_SAMPLES:
        return [samples]
    pieces = [samples[i: i + PIECE_SAMPLES] for i in range(0, samples.size, PIECE_SAMPLES)]
    if pieces[-1].size < min_len:   # too short to encode alone: let the previous piece absorb it
        pieces[-2:] = [np.concatenate(pieces[-2:])]
    return pieces
