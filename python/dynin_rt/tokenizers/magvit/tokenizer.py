"""MAGVIT-v2 image tokenizer, public API: codes <-> uint8 images on a chosen backend
(docs/tokenizers.md, "MAGVIT-v2" and "Exported graphs").

``MagvitV2.from_pretrained(dir, backend=...)`` loads a ``showlab/magvitv2`` checkpoint directory and
runs it on PyTorch, onnxruntime or TensorRT (:mod:`dynin_rt.tokenizers.backends`). Exported ONNX
files and TensorRT engines are derived artifacts, cached under ``cache_dir`` keyed by a hash of the
weights, and rebuilt when missing.

Invariants
----------
* Codes are row-major ``[B, N]`` with ``N = s * s``; the image is ``16s x 16s``. Codes outside
  ``[0, 8192)`` are an error (the official pipeline clamps LM ids; we refuse instead, so a wrong
  offset upstream cannot pass unnoticed).
* Every backend computes the same function: the graph between codes and float pixels (or pixels
  and the continuous latent) is exported from the PyTorch twin; the LFQ sign step and the uint8
  postprocessing run on the host side in torch, identically for all backends.
* Inputs are never modified; outputs are new arrays.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..backends import BackendStatus, OnnxRunner, TensorRTRunner, default_cache_dir, file_sha256, resolve_backend
from .checkpoint import load_magvit_model, read_magvit_config, weights_path
from .image import (
    RESOLUTION_UNDERSTANDING,
    VIDEO_FRAMES,
    postprocess_pixels,
    preprocess_images,
    sample_frame_indices,
)
from .net import CODEBOOK_SIZE, DOWNSAMPLE, LFQuantizer, MagvitConfig

from .onnx_export import DEFAULT_GRIDS, PRECISIONS, build_magvit_engines, export_magvit_onnx


def validate_codes(codes) -> torch.Tensor:
    """Check MAGVIT codes and return them as a new int64 [B, s, s] CPU tensor.

    Parameters
    ----------
    codes : np.ndarray, torch.Tensor or nested list
        Integer [B, N], N a perfect square, values in [0, 8192).

    Returns
    -------
    torch.Tensor
        int64 [B, s, s], a copy.
    """
    if isinstance(codes, torch.Tensor):
        t = codes.detach().to("cpu", copy=True)
    else:
        arr = np.array(codes, copy=True)
        if arr.dtype == object:
            raise TypeError("codes must be a rectangular integer array [B, N]")
        t = torch.from_numpy(arr)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"codes must be integers, got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(f"codes must be [B, N], got shape {tuple(t.shape)}")
    b, n = t.shape
    if b == 0:
        raise ValueError("empty batch: codes has 0 rows")
    side = math.isqrt(n)
    if n == 0 or side * side != n:
        raise ValueError(f"the token count N={n} is not a positive perfect square (a square s x s grid is required)")
    t = t.to(torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= CODEBOOK_SIZE:
        raise ValueError(
            f"codes must lie in [0, {CODEBOOK_SIZE}), got values in [{lo}, {hi}]; LM token ids need the image "
            "offset subtracted first"
        )
    return t.view(b, side, side)


def validate_pixels(x) -> torch.Tensor:
    """Check normalized pixels and return them as a new float32 [B, 3, H, W] CPU tensor.

    Parameters
    ----------
    x : np.ndarray or torch.Tensor
        float [B, 3, H, W] in [-1, 1], H and W positive multiples of 16.

    Returns
    -------
    torch.Tensor
        float32 [B, 3, H, W], a copy.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", copy=True)
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.array(x, copy=True))
    else:
        raise TypeError(f"with preprocess=False, pass a float array or tensor [B, 3, H, W], not {type(x).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"with preprocess=False, pixels must be float in [-1, 1], got dtype {t.dtype}")
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"pixels must be [B, 3, H, W] (RGB, channels first), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("empty batch: pixels has 0 images")
    h, w = t.shape[2:]
    if h == 0 or w == 0 or h % DOWNSAMPLE or w % DOWNSAMPLE:
        raise ValueError(f"pixel height and width must be positive multiples of {DOWNSAMPLE}, got {h} x {w}")
    return t.float()


class MagvitV2:
    """The MAGVIT-v2 image tokenizer of Show-o / MMaDA / Dynin-Omni.

    Build it with :meth:`from_pretrained`. ``decode`` turns codes into uint8 images, ``encode`` turns
    images into codes, ``encode_video`` encodes sampled frames.

    Attributes
    ----------
    backend : str
        The concrete backend in use: ``"torch"``, ``"onnx"`` or ``"tensorrt"``.
    backend_reason : str
        What it runs on, and for ``"auto"`` why faster backends were skipped.
    device : torch.device
        Where the PyTorch twin runs (torch backend) and where TensorRT runs.
    config : MagvitConfig
    """

    codebook_size = CODEBOOK_SIZE
    downsample = DOWNSAMPLE

    def __init__(
        self, config: MagvitConfig, status: BackendStatus, device, model=None, decoder=None, encoder=None,
        max_batch: int | None = None,
    ):
        self.config = config
        self.backend = status.name
        self.backend_reason = status.reason
        self.device = torch.device(device)
        self._model = model  # the PyTorch twin (torch backend only)
        self._decoder = decoder  # runner: {"codes": int32 [B, s, s]} -> {"pixels": [B, 3, 16s, 16s]}
        self._encoder = encoder  # runner: {"pixels": [B, 3, H, W]} -> {"latent": [B, 13, H/16, W/16]}
        self._lfq = LFQuantizer()
        self._max_batch = max_batch  # TensorRT engines accept at most this many images per call

    @classmethod
    def from_pretrained(
        cls,
        path,
        backend: str = "auto",
        device=None,
        cache_dir=None,
        precision: str = "fp16",
        grids: tuple[int, ...] = DEFAULT_GRIDS,
        max_batch: int = 4,
    ) -> "MagvitV2":
        """Load a checkpoint directory (``config.json`` + ``pytorch_model.safetensors``).

        Parameters
        ----------
        path : str or os.PathLike
            Checkpoint directory in the ``showlab/magvitv2`` layout.
        backend : str
            ``"torch"``, ``"onnx"``, ``"tensorrt"`` or ``"auto"`` (TensorRT, then onnxruntime, then
            PyTorch). A forced backend that cannot run raises ``BackendUnavailableError``.
        device : str or torch.device, optional
            For the torch backend: default CUDA when available, else CPU. For onnx, ``"cpu"`` forces
            ``CPUExecutionProvider``. TensorRT always runs on CUDA.
        cache_dir : str, optional
            Where ONNX files and engines are kept; default :func:`default_cache_dir`.
        precision : str
            TensorRT engine precision: ``"fp16"`` (default), ``"bf16"`` or ``"fp32"``; normalisation,
            softmax and attention matmuls stay fp32. The torch and onnx backends always run fp32.
        grids : tuple of int
            Token grid sides that get their own TensorRT optimization profile.
        max_batch : int
            Largest batch a TensorRT engine accepts; larger batches are run in chunks.

        Returns
        -------
        MagvitV2
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
        status = resolve_backend(backend)
        config = read_magvit_config(path)
        if status.name == "torch":
            dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
            return cls(config, status, dev, model=load_magvit_model(path, dev))
        # exported files are derived from the weights: cached under a digest of them
        art_dir = os.path.join(cache_dir or default_cache_dir(), "magvit", file_sha256(weights_path(path))[:16])
        if status.name == "onnx":
            providers = list(status.providers)
            if device is not None and torch.device(device).type == "cpu":
                providers = ["CPUExecutionProvider"]  # an explicit CPU request wins over a visible GPU
            paths = export_magvit_onnx(path, art_dir, "fp32")  # reuses files already there
            runners = {part: OnnxRunner(p, providers=providers) for part, p in paths.items()}
            return cls(config, status, "cpu", decoder=runners["decoder"], encoder=runners["encoder"])
        dev = torch.device(device) if device is not None else torch.device("cuda")
        if dev.type != "cuda":
            raise ValueError(f"the tensorrt backend runs on CUDA devices only, got device={device!r}")
        engines = build_magvit_engines(path, art_dir, precision, grids, max_batch, device=dev.index or 0)
        runners = {part: TensorRTRunner(e, device=dev.index or 0) for part, e in engines.items()}
        return cls(config, status, dev, decoder=runners["decoder"], encoder=runners["encoder"], max_batch=max_batch)

    # -----------------------------------------------------------------------------------------
    # decode
    # -----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode_float(self, codes) -> torch.Tensor:
        """Codes -> unclamped float pixels, as the official ``decode_code``.

        Parameters
        ----------
        codes : array-like
            int [B, N], N = s * s, values in [0, 8192).

        Returns
        -------
        torch.Tensor
            float32 [B, 3, 16s, 16s], nominally in [-1, 1] (CPU for onnx, else on ``device``).
        """
        grid = validate_codes(codes)  # [B, s, s]
        if self.backend == "torch":
            return self._model.decode_codes(grid.to(self.device))
        if self.backend == "onnx":
            return torch.from_numpy(self._decoder({"codes": grid.to(torch.int32).numpy()})["pixels"])
        grid = grid.to(self.device, torch.int32)
        return torch.cat([self._decoder({"codes": g})["pixels"].float() for g in grid.split(self._max_batch)])

    def decode(self, codes) -> np.ndarray:
        """Codes -> uint8 RGB images.

        Parameters
        ----------
        codes : array-like
            int [B, N], N = s * s, values in [0, 8192), row-major tokens.

        Returns
        -------
        np.ndarray
            uint8 [B, 16s, 16s, 3].
        """
        return postprocess_pixels(self.decode_float(codes))

    # -----------------------------------------------------------------------------------------
    # encode
    # -----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_latent(self, pixels) -> torch.Tensor:
        """Normalized pixels -> continuous latent before quantization.

        Parameters
        ----------
        pixels : np.ndarray or torch.Tensor
            float [B, 3, H, W] in [-1, 1], H and W multiples of 16.

        Returns
        -------
        torch.Tensor
            float32 [B, 13, H/16, W/16].
        """
        x = validate_pixels(pixels)
        if self.backend == "torch":
            # Channels-last input keeps every conv in that layout (~8% faster on CPU than NCHW).
            return self._model.encoder(x.to(self.device).contiguous(memory_format=torch.channels_last))
        if self.backend == "onnx":
            return torch.from_numpy(self._encoder({"pixels": x.numpy()})["latent"])
        x = x.to(self.device)
        return torch.cat([self._encoder({"pixels": c})["latent"].float() for c in x.split(self._max_batch)])

    def encode(self, images, preprocess: bool = True, resolution: int = RESOLUTION_UNDERSTANDING) -> np.ndarray:
        """Images -> codes.

        Parameters
        ----------
        images : PIL image, list of PIL images, np.ndarray or torch.Tensor
            With ``preprocess=True``: PIL image(s) or uint8 RGB [B, H, W, 3], resized (shorter side to
            ``resolution``, bicubic) and center-cropped. With ``preprocess=False``: float
            [B, 3, H, W] in [-1, 1], H and W multiples of 16, used as is.
        preprocess : bool
            Apply the official input transform.
        resolution : int
            R for preprocessing: 336 (understanding, 441 tokens) or 512 (generation, 1024 tokens).

        Returns
        -------
        np.ndarray
            int64 [B, (H/16) * (W/16)] in [0, 8192), row-major.
        """
        pixels = preprocess_images(images, resolution) if preprocess else images
        latent = self.encode_latent(pixels)
        return self._lfq.latent_to_codes(latent.cpu()).numpy()

    def encode_video(
        self, frames, num_frames: int = VIDEO_FRAMES, resolution: int = RESOLUTION_UNDERSTANDING
    ) -> np.ndarray:
        """Sample frames as the official video loader does and encode each one.

        Parameters
        ----------
        frames : list of PIL images or np.ndarray
            All T frames of the video (uint8 [T, H, W, 3] for an array).
        num_frames : int
            F, frames kept at ``np.linspace(0, T - 1, F).astype(int)`` (repeats when T < F).
        resolution : int
            R of the per-frame preprocessing.

        Returns
        -------
        np.ndarray
            int64 [F, (R/16)**2], one row of codes per kept frame.
        """
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4:
                raise ValueError(f"video arrays must be uint8 [T, H, W, 3], got shape {frames.shape}")
        elif not isinstance(frames, (list, tuple)):
            raise TypeError(
                f"frames must be a list of PIL images or a uint8 array [T, H, W, 3], not {type(frames).__name__}"
            )
        idx = sample_frame_indices(len(frames), num_frames)
        picked = frames[idx] if isinstance(frames, np.ndarray) else [frames[i] for i in idx]
        return self.encode(picked, resolution=resolution)
