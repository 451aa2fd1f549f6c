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

import numpy as np
import torch

from ..backends import resolve_backend
from .audio import check_units, encoder_pieces, read_audio
from .config import DEFAULT_STYLE, EmovaConfig
from .runners import TorchRunner
from .s2u import SpiralNet, reduce_units
from .stream import ChunkedRender, ChunkSizes, StreamReport
from .u2s import (EmovaVocoder, durations_from_logw, expand_frames, frame_noise, prior_sample, unit_noise,
                        units_to_symbols)
from .weights import CheckpointLedger, read_safetensors



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
        units = check_units(units, self.config.u2s.n_units)
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
        units = check_units(units, self.config.u2s.n_units)
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
        sizes = ChunkSizes(chunk_frames, first_chunk_frames, context_frames, chunk_units, lookahead_units,
                           max_text_units)
        self._check_scales(noise_scale, noise_scale_w, length_scale)
        render = ChunkedRender(self.runner, self.config.u2s, self._style_g(style), sizes, seed, noise_scale,
                               noise_scale_w, length_scale, self.hop_length)
        self.last_stream = render.report
        n_units = self.config.u2s.n_units
        if isinstance(units, (str, np.ndarray, torch.Tensor, list, tuple)):  # a whole sequence
            render.add(check_units(units, n_units))
        else:  # an iterator of unit chunks
            for piece in units:
                render.add(check_units(np.atleast_1d(piece), n_units))
                while render.ready():
                    render.units_final()
                    render.render_units(render.done + sizes.chunk_units, last=False)
                    yield from render.audio(last=False)
        yield from render.finish()

    # ------------------------------------------------------------------------------------------
    # speech -> units
    # ------------------------------------------------------------------------------------------

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
        arr, rate = read_audio(wav, sample_rate)
        target = self.input_sample_rate
        if rate != target:
            import soxr

            arr = soxr.resample(arr, rate, target).astype(np.float32)
        min_len = self.config.s2u.n_fft // 2 + 1
        if arr.size < min_len:
            raise ValueError(f"audio is too short: {arr.size} samples at {target} Hz; need at least {min_len} "
                             f"(~{1000 * min_len / target:.0f} ms)")
        out = []
        for piece in encoder_pieces(arr, min_len):
            with torch.inference_mode():
                feats = self.spiral.features(torch.from_numpy(piece).to(self.device)).float().cpu().numpy()
            out.append(self.runner.units(feats)[0])
        units = np.concatenate(out).astype(np.int64)
        return reduce_units(units) if reduced else units

