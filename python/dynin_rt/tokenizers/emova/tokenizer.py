"""EmovaSpeech: the EMOVA speech tokenizer (4096 units at 25 Hz) used by Dynin-Omni to hear and speak.

``decode`` turns units into 22050 Hz speech with the UVITS vocoder, ``decode_stream`` does the same
in chunks so audio starts before the whole unit sequence is known, ``encode`` turns speech into the
"reduced" units (consecutive duplicates removed) that Dynin consumes. Both halves load strictly from
the released ``emova_speech_tokenizer_hf`` directory (config.json + model.safetensors) and run on one
of the shared backends (see :mod:`dynin_rt.tokenizers.backends`): the PyTorch twins, or the exported
ONNX graphs on onnxruntime or TensorRT. The host code (input checks, noise, durations, length
regulation, the mel front end) is the same for every backend.

Randomness: a render draws standard-normal noise for the duration predictor (two values per unit)
and for the prior (192 values per frame) from numpy generators seeded by ``seed``, position-major,
so backends, devices and the streaming path all see the same noise; both can also be passed in.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..backends import resolve_backend
from .config import DEFAULT_STYLE, EmovaConfig
from .runners import TorchRunner
from .s2u import SpiralNet, reduce_units
from .u2s import (EmovaVocoder, durations_from_logw, expand_frames, frame_noise, prior_sample, unit_noise,
                        units_to_symbols)
from .weights import CheckpointLedger, read_safetensors

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 384000
# Quieter than one 16-bit step everywhere: digital silence, which peak normalisation cannot rescue.
SILENCE_PEAK = 2.0 ** -15
MAX_CHANNELS = 8
# The released pipeline encodes up to 60 s in one pass and longer audio in 100 s pieces.
ONE_PASS_SAMPLES, PIECE_SAMPLES = 960_000, 1_600_000
_UNIT_TOKEN = re.compile(r"<\|speech_(\d+)\|>")


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


class EmovaSpeech:
    """Speech <-> EMOVA units.

    Build with :meth:`from_pretrained`. Attributes: ``sample_rate`` (22050, of ``decode`` output),
    ``input_sample_rate`` (16000, what ``encode`` resamples to), ``styles`` (every style name),
    ``backend`` (the backend in use), ``backend_reason`` (why), ``config``, ``checkpoint_dir``.
    """

    def __init__(self, config: EmovaConfig, vocoder: EmovaVocoder, spiral: SpiralNet, runner, device,
                 backend_reason: str = "", checkpoint_dir=None):
        self.config = config
        self.vocoder, self.spiral = vocoder, spiral
        self.runner = runner
        self.device = device
        self.backend = runner.name
        self.backend_reason = backend_reason
        self.sample_rate = config.u2s.sample_rate
        self.input_sample_rate = config.s2u.sample_rate
        self.hop_length = config.u2s.hop_length
        self.styles = tuple(sorted(config.style2idx, key=config.style2idx.get))
        self._styles = vocoder.style_embedding.weight.detach().cpu().numpy()
        self.last_stream = StreamReport()
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path, backend: str = "torch", device=None, export_dir=None,
                        precision: str = "fp16") -> "EmovaSpeech":
        """Load an ``emova_speech_tokenizer_hf`` directory.

        Parameters
        ----------
        path : str or os.PathLike
            Directory with ``config.json`` and ``model.safetensors`` (released layout).
        backend : str
            ``"torch"``, ``"onnx"``, ``"tensorrt"`` or ``"auto"`` (TensorRT, then onnxruntime, then
            PyTorch). A forced backend that cannot run here raises ``BackendUnavailableError``.
        device : str or torch.device, optional
            Where the PyTorch twins and the mel front end run; default CUDA when torch sees a GPU. With
            ``"onnx"`` a CPU device forces onnxruntime's CPU provider; ``"tensorrt"`` needs CUDA.
        export_dir : str, optional
            Where the ONNX graphs / TensorRT engines are written and reused; default a per-checkpoint
            folder under ``$DYNIN_RT_CACHE`` (``~/.cache/dynin_rt``).
        precision : str
            TensorRT precision of the wave graph (flow + generator: all the vocoder's compute, no
            normalisations), ``"fp16"``, ``"bf16"`` or ``"fp32"``; the text and encoder graphs (spline,
            layer norms, softmax, FSQ rounding) are always fp32.

        Raises
        ------
        CheckpointError
            Missing files, a tensor missing / unexpected / of the wrong shape (the message names it).
        """
        status = resolve_backend(backend)
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        config = EmovaConfig.from_dir(path)
        ledger = CheckpointLedger(read_safetensors(path), os.fspath(path))
        vocoder = EmovaVocoder(config.u2s, config.num_styles)
        spiral = SpiralNet(config.s2u)
        vocoder.load(ledger)
        spiral.load(ledger)
        ledger.finish()
        vocoder.eval().to(device)
        spiral.eval().to(device)
        if status.name == "torch":
            runner = TorchRunner(vocoder, spiral, device)
        else:
            from .runners import graph_runner

            runner = graph_runner(status, vocoder, spiral, path, export_dir=export_dir, precision=precision,
                                  device=device)
        return cls(config, vocoder, spiral, runner, device, backend_reason=status.reason,
                   checkpoint_dir=os.fspath(path))

    # ------------------------------------------------------------------------------------------
    # units -> speech
    # ------------------------------------------------------------------------------------------

    def _check_units(self, units) -> np.ndarray:
        n_units = self.config.u2s.n_units
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

    def _style_g(self, style: str) -> np.ndarray:
        return self._styles[self.config.style_row(style)].reshape(1, -1, 1).astype(np.float32)

    @staticmethod
    def _check_scales(noise_scale, noise_scale_w, length_scale):
        for name, v in (("noise_scale", noise_scale), ("noise_scale_w", noise_scale_w)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not np.isfinite(length_scale) or length_scale <= 0:
            raise ValueError(f"length_scale must be a finite number > 0, got {length_scale!r}")

    def _sdp_noise(self, sdp_noise, seed, start, count):
        if sdp_noise is None:
            return unit_noise(seed, start, count)
        arr = np.asarray(sdp_noise, dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr
        if arr.shape != (1, 2, count):
            raise ValueError(f"sdp_noise must have shape [1, 2, {count}] (one pair per unit), "
                             f"got {np.shape(sdp_noise)}")
        return arr

    def durations(self, units, style: str = DEFAULT_STYLE, noise_scale_w: float = 0.8, length_scale: float = 1.0,
                  seed: int = 0, sdp_noise=None) -> np.ndarray:
        """Frames per unit that :meth:`decode` would use (each frame is ``hop_length`` = 256 samples).

        Returns
        -------
        np.ndarray
            ``[T_x]`` int64.
        """
        units = self._check_units(units)
        self._check_scales(0.0, noise_scale_w, length_scale)
        _, _, logw = self.runner.text(units_to_symbols(units, self.config.u2s), self._style_g(style),
                                      self._sdp_noise(sdp_noise, seed, 0, units.size) * np.float32(noise_scale_w))
        return durations_from_logw(logw[0, 0], length_scale)

    def decode(self, units, style: str = DEFAULT_STYLE, noise_scale: float = 0.667, noise_scale_w: float = 0.8,
               length_scale: float = 1.0, seed: int = 0, sdp_noise=None, prior_noise=None) -> np.ndarray:
        """Units -> speech.

        Parameters
        ----------
        units : array-like of int, or str
            ``[T_x]`` units in [0, 4096) (a ``[1, T_x]`` array, a torch tensor, or a string of
            ``<|speech_N|>`` tokens / space-separated integers also work). Not modified.
        style : str
            One of :attr:`styles`; default female / neutral / normal speed / normal pitch.
        noise_scale, noise_scale_w : float
            Scales of the prior noise and of the duration-predictor noise (0 = deterministic).
        length_scale : float
            Multiplies every duration (> 1 is slower).
        seed : int
            Seed of both noises when they are not passed.
        sdp_noise : array-like, optional
            ``[1, 2, T_x]`` standard-normal duration noise (scaled by ``noise_scale_w`` here).
        prior_noise : array-like, optional
            ``[1, 192, >= T_y]`` standard-normal prior noise (scaled by ``noise_scale``); only the first
            T_y frames are used; :meth:`durations` gives T_y = max(sum, 1).

        Returns
        -------
        np.ndarray
            ``[256 * T_y]`` float32 waveform in [-1, 1] at :attr:`sample_rate`.
        """
        units = self._check_units(units)
        self._check_scales(noise_scale, noise_scale_w, length_scale)
        g = self._style_g(style)
        sdp = self._sdp_noise(sdp_noise, seed, 0, units.size) * np.float32(noise_scale_w)
        m_p, logs_p, logw = self.runner.text(units_to_symbols(units, self.config.u2s), g, sdp)
        dur = durations_from_logw(logw[0, 0], length_scale)
        m, logs = expand_frames(m_p[0], dur)[None], expand_frames(logs_p[0], dur)[None]
        t_y, channels = m.shape[2], m.shape[1]
        if prior_noise is None:
            noise = frame_noise(seed, 0, t_y, channels)
        else:
            noise = np.asarray(prior_noise, dtype=np.float32)
            if noise.ndim != 3 or noise.shape[:2] != (1, channels) or noise.shape[2] < t_y:
                raise ValueError(f"prior_noise must have shape [1, {channels}, >= {t_y}] (this render has {t_y} "
                                 f"frames), got {noise.shape}")
            noise = noise[:, :, :t_y]
        return self._vocode(prior_sample(m, logs, noise, noise_scale), g)

    def _vocode(self, z_p: np.ndarray, g: np.ndarray, context: int = 40) -> np.ndarray:
        """z_p [1, D, T_y] -> [hop * T_y]; windows with overlap-discard when T_y exceeds the runner's limit."""
        limit, t_y = self.runner.max_frames, z_p.shape[2]
        if limit is None or t_y <= limit:
            return self.runner.wave(z_p, g)[0, 0]
        step = limit - 2 * context
        out = []
        for start in range(0, t_y, step):
            lo, hi, upto = max(0, start - context), min(t_y, start + step + context), min(t_y, start + step)
            wav = self.runner.wave(np.ascontiguousarray(z_p[:, :, lo:hi]), g)[0, 0]
            out.append(wav[(start - lo) * self.hop_length: (upto - lo) * self.hop_length])
        return np.concatenate(out)

    def decode_stream(self, units, style: str = DEFAULT_STYLE, noise_scale: float = 0.667,
                      noise_scale_w: float = 0.8, length_scale: float = 1.0, seed: int = 0,
                      chunk_frames: int = 64, first_chunk_frames: int = 16, context_frames: int = 40,
                      chunk_units: int = 32, lookahead_units: int = 16, max_text_units: int = 512):
        """Units -> speech in chunks, so audio starts before the whole render is done.

        The waveform half (flow + generator: all of the compute) is local, so frames are vocoded
        ``chunk_frames`` at a time with ``context_frames`` of overlap on each side and only each
        chunk's own samples kept (overlap-discard); the first chunk is ``first_chunk_frames`` long.
        Noise is the same per unit and per frame as in :meth:`decode` with the same seed.

        Two ways to feed units:

        * a whole sequence (array, tensor, list or string): durations and the prior are computed once
          for all units, exactly as :meth:`decode`; chunked and whole renders then agree to float
          rounding (waveform SNR, tested >= 60 dB; the benchmark reports it);
        * an iterator of unit chunks as they become final (e.g. LLM blocks): the text encoder is a
          bidirectional transformer, so units are rendered ``chunk_units`` at a time once
          ``lookahead_units`` later units have arrived, each time over the whole prefix (at most
          ``max_text_units`` units). Durations of a unit can then differ from the whole render's
          (its attention has not seen the rest of the sentence); the benchmark reports the fraction
          of equal durations and the length difference.

        Parameters
        ----------
        units : sequence or iterator
            See above. Not modified.
        chunk_frames, first_chunk_frames, context_frames : int
            Frames per chunk (64 ~ 0.74 s), of the first chunk (16 ~ 0.19 s), and of overlap (40,
            covering the flow's and generator's receptive field).
        chunk_units, lookahead_units, max_text_units : int
            Incremental mode only (see above).

        Yields
        ------
        np.ndarray
            ``[S_i]`` float32 chunks at :attr:`sample_rate`. :attr:`last_stream` records when the
            first chunk's units were final and when its audio came out.
        """
        if min(chunk_frames, first_chunk_frames, chunk_units, max_text_units) < 1 or min(context_frames,
                                                                                          lookahead_units) < 0:
            raise ValueError("chunk sizes must be >= 1 and contexts >= 0")
        self._check_scales(noise_scale, noise_scale_w, length_scale)
        g = self._style_g(style)
        a = self.config.u2s
        timing = self.last_stream = StreamReport()
        pending = []                       # units received so far
        state = {"done": 0, "frames": 0, "emitted": 0}
        zs = []                            # final prior samples, [1, D, n] pieces

        def render_units(end: int, last: bool):
            done = state["done"]
            hi = len(pending) if last else min(len(pending), end + lookahead_units)
            lo = min(done, max(0, hi - max_text_units))
            seq = np.asarray(pending[lo:hi], dtype=np.int64)
            m_p, logs_p, logw = self.runner.text(units_to_symbols(seq, a), g,
                                                 unit_noise(seed, lo, hi - lo) * np.float32(noise_scale_w))
            keep = slice(done - lo, end - lo)
            dur = durations_from_logw(logw[0, 0, keep], length_scale)
            timing.durations.extend(dur.tolist())
            m, logs = np.repeat(m_p[0][:, keep], dur, axis=1), np.repeat(logs_p[0][:, keep], dur, axis=1)
            if m.shape[1]:
                noise = frame_noise(seed, state["frames"], m.shape[1], m.shape[0])
                zs.append(prior_sample(m[None], logs[None], noise, noise_scale))
                state["frames"] += m.shape[1]
            state["done"] = end

        def render_audio(last: bool):
            size = first_chunk_frames if state["emitted"] == 0 else chunk_frames
            while True:
                start, n_frames = state["emitted"], state["frames"]
                if not (n_frames - start >= size + context_frames or (last and n_frames > start)):
                    return
                upto = min(n_frames, start + size)
                if len(zs) > 1:
                    zs[:] = [np.concatenate(zs, axis=2)]
                lo, hi = max(0, start - context_frames), min(n_frames, upto + context_frames)
                wav = self.runner.wave(np.ascontiguousarray(zs[0][:, :, lo:hi]), g)[0, 0]
                state["emitted"] = upto
                if np.isnan(timing.first_audio):
                    timing.first_audio = time.perf_counter()
                yield wav[(start - lo) * self.hop_length: (upto - lo) * self.hop_length]
                size = chunk_frames

        incremental = not isinstance(units, (str, np.ndarray, torch.Tensor, list, tuple))
        if not incremental:
            whole = self._check_units(units)
            pending.extend(whole.tolist())
            timing.first_units_ready = time.perf_counter()
            render_units(len(pending), last=True)
        else:
            for piece in units:
                pending.extend(self._check_units(np.atleast_1d(piece)).tolist())
                while len(pending) - state["done"] >= chunk_units + lookahead_units:
                    if state["done"] == 0:
                        timing.first_units_ready = time.perf_counter()
                    render_units(state["done"] + chunk_units, last=False)
                    yield from render_audio(last=False)
            if not pending:
                raise ValueError("units is empty; need at least one unit in [0, 4096)")
            if state["done"] == 0:
                timing.first_units_ready = time.perf_counter()
            if state["done"] < len(pending):
                render_units(len(pending), last=True)
        if state["frames"] == 0:
            # Every duration was 0: like decode, one frame with zero mean and unit scale.
            zero = np.zeros((1, a.inter_channels, 1), np.float32)
            zs.append(prior_sample(zero, zero, frame_noise(seed, 0, 1, a.inter_channels), noise_scale))
            state["frames"] = 1
        yield from render_audio(last=True)

    # ------------------------------------------------------------------------------------------
    # speech -> units
    # ------------------------------------------------------------------------------------------

    def _check_audio(self, wav, sample_rate) -> tuple[np.ndarray, float]:
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

    def encode(self, wav, sample_rate=16000, reduced: bool = True) -> np.ndarray:
        """Speech -> EMOVA units.

        Parameters
        ----------
        wav : array-like, torch.Tensor, or path
            ``[N]`` mono samples, or ``[N, C]`` / ``[C, N]`` with C <= 8 channels, which are mixed down to
            their mean with a warning (as the released pipeline's ``librosa.load`` does). Integer PCM is
            scaled to [-1, 1]. A path is read with soundfile (its own rate is used). Not modified.
        sample_rate : float
            Rate of ``wav`` in Hz, 4000..384000; resampled to 16 kHz with soxr (HQ) when different.
        reduced : bool
            Remove consecutive duplicate units (what Dynin consumes); False gives one unit per 40 ms.

        Returns
        -------
        np.ndarray
            ``[N_units]`` int64 in [0, 4096).

        Raises
        ------
        ValueError
            Empty, silent, non-finite or too-short audio (< 257 samples at 16 kHz), too many channels,
            an absurd sample rate.
        """
        arr, rate = self._check_audio(wav, sample_rate)
        target = self.input_sample_rate
        if rate != target:
            import soxr

            arr = soxr.resample(arr, rate, target).astype(np.float32)
        min_len = self.config.s2u.n_fft // 2 + 1
        if arr.size < min_len:
            raise ValueError(f"audio is too short: {arr.size} samples at {target} Hz; need at least {min_len} "
                             f"(~{1000 * min_len / target:.0f} ms)")
        if arr.size <= ONE_PASS_SAMPLES:
            pieces = [arr]
        else:
            pieces = [arr[i: i + PIECE_SAMPLES] for i in range(0, arr.size, PIECE_SAMPLES)]
            if pieces[-1].size < min_len:   # too short to encode alone: let the previous piece absorb it
                pieces[-2:] = [np.concatenate(pieces[-2:])]
        out = []
        for piece in pieces:
            with torch.inference_mode():
                feats = self.spiral.features(torch.from_numpy(piece).to(self.device)).float().cpu().numpy()
            out.append(self.runner.units(feats)[0])
        units = np.concatenate(out).astype(np.int64)
        return reduce_units(units) if reduced else units

