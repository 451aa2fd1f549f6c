"""ONNX export of the MAGVIT-v2 decoder and encoder (opset 17), from the PyTorch twin
(docs/tokenizers.md, "Exported graphs").

Graphs
------
decoder   ``codes`` int32 [B, h, w] -> ``pixels`` float32 [B, 3, 16h, 16w]   (codebook Gather included)
encoder   ``pixels`` float32 [B, 3, H, W] -> ``latent`` float32 [B, 13, H/16, W/16] (before the sign step)

Batch and grid axes are dynamic. The decoder takes the grid as a 3-D input, so no square root is
computed in the graph; the LFQ sign step of the encoder is left to the host, where it is exact and
where the latent's distance from 0 explains any code that differs between backends.

``precision="fp32"`` is the reference graph that onnxruntime runs. ``"fp16"`` / ``"bf16"`` write a
mixed-precision graph for TensorRT's strongly typed mode (the only mode in TensorRT 11, where the
FP16/BF16 builder flags are gone): weights and activations in the reduced type, GroupNorm and the
attention logits and softmax in fp32 (``GroupNorm32`` and ``AttnBlock`` cast explicitly), graph
inputs and outputs fp32. bf16 is untested: ONNX Conv only admits bfloat16 from opset 22.

NOTE(export): the TorchScript-based exporter (``dynamo=False``) is used on purpose. At opset 17 it
writes GroupNorm as Reshape -> InstanceNormalization -> Reshape -> Mul/Add, which TensorRT imports
as a native normalization layer (the opset-18 GroupNormalization op has per-group affine semantics
and opset 21's fails in TensorRT 10.7, NVIDIA/TensorRT#4336). It also needs no onnxscript and writes
a plain Gather for the codebook.
"""
from __future__ import annotations

import copy
import os
import warnings

import torch
from torch import nn

from .checkpoint import load_magvit_model
from .net import DOWNSAMPLE, MagvitModel

OPSET = 17
# Bumped whenever the exported graphs change, so stale cached files are not reused.
EXPORT_VERSION = 1
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Token grids the runtime uses (336, 480 and 512 px); TensorRT gets one optimization profile each.
DEFAULT_GRIDS = (21, 30, 32)


def onnx_file_name(part: str, precision: str = "fp32") -> str:
    """File name of an exported graph, e.g. ``magvit_decoder.v1.fp16.onnx``."""
    return f"magvit_{part}.v{EXPORT_VERSION}.{precision}.onnx"


def _cast_model(model: MagvitModel, precision: str) -> MagvitModel:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return model
    # A copy, so the caller's fp32 model is untouched; integer buffers (power_vals) keep their type.
    return copy.deepcopy(model).to(PRECISIONS[precision])


class DecoderGraph(nn.Module):
    """``codes`` int32 [B, h, w] -> ``pixels`` float32 [B, 3, 16h, 16w]."""

    def __init__(self, model: MagvitModel):
        super().__init__()
        self.model = model

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode_codes(codes).float()


class EncoderGraph(nn.Module):
    """``pixels`` float32 [B, 3, H, W] -> ``latent`` float32 [B, 13, H/16, W/16]."""

    def __init__(self, model: MagvitModel):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = self.model.encoder.conv_in.weight.dtype
        return self.model.encoder(pixels.to(dtype)).float()


def _export(module: nn.Module, example: torch.Tensor, out_path: str, in_name: str, out_name: str,
            axes: dict) -> str:
    tmp = f"{out_path}.tmp{os.getpid()}"
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo (see the NOTE at the top) and
        # chats about constant folding of dynamic Slice ops and about GroupNorm's batch-size check
        # (a training-time error path) being traced as a constant; none of it is actionable here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module.eval(),
            (example,),
            tmp,
            opset_version=OPSET,
            dynamo=False,
            input_names=[in_name],
            output_names=[out_name],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    os.replace(tmp, out_path)  # atomic: a reader never sees a half-written file
    return out_path


def export_decoder_onnx(model: MagvitModel, out_path: str, precision: str = "fp32",
                        example_grid: int = 2) -> str:
    """Write the decoder graph.

    Parameters
    ----------
    model : MagvitModel
        fp32 model on CPU (not modified).
    out_path : str
        Destination ``.onnx`` file.
    precision : str
        ``"fp32"``, ``"fp16"`` or ``"bf16"`` (see the module docstring).
    example_grid : int
        Grid side used for tracing (any value; the grid axes are dynamic).

    Returns
    -------
    str
        ``out_path``.
    """
    example = torch.zeros(1, example_grid, example_grid, dtype=torch.int32)
    axes = {"codes": {0: "batch", 1: "h", 2: "w"}, "pixels": {0: "batch", 2: "height", 3: "width"}}
    return _export(DecoderGraph(_cast_model(model, precision)), example, out_path, "codes", "pixels", axes)


def export_encoder_onnx(model: MagvitModel, out_path: str, precision: str = "fp32",
                        example_grid: int = 2) -> str:
    """Write the encoder graph.

    Parameters
    ----------
    model : MagvitModel
        fp32 model on CPU (not modified).
    out_path : str
        Destination ``.onnx`` file.
    precision : str
        ``"fp32"``, ``"fp16"`` or ``"bf16"`` (see the module docstring).
    example_grid : int
        Token grid side of the tracing input (pixels are 16x that).

    Returns
    -------
    str
        ``out_path``.
    """
    side = DOWNSAMPLE * example_grid
    example = torch.zeros(1, 3, side, side, dtype=torch.float32)
    axes = {"pixels": {0: "batch", 2: "height", 3: "width"}, "latent": {0: "batch", 2: "h", 3: "w"}}
    return _export(EncoderGraph(_cast_model(model, precision)), example, out_path, "pixels", "latent", axes)


def export_magvit_onnx(ckpt_dir, out_dir, precision: str = "fp32", overwrite: bool = False) -> dict[str, str]:
    """Export both graphs of a checkpoint directory, reusing files already in ``out_dir``.

    Parameters
    ----------
    ckpt_dir : str or os.PathLike
        MAGVIT checkpoint directory (``showlab/magvitv2`` layout).
    out_dir : str or os.PathLike
        Output directory; its name should identify the weights (the caller keys it by a hash).
    precision : str
        ``"fp32"`` (onnxruntime), ``"fp16"`` or ``"bf16"`` (TensorRT strongly typed builds).
    overwrite : bool
        Re-export even when the files exist.

    Returns
    -------
    dict of str to str
        ``{"decoder": path, "encoder": path}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {part: os.path.join(out_dir, onnx_file_name(part, precision)) for part in ("decoder", "encoder")}
    if not overwrite and all(os.path.isfile(p) for p in paths.values()):
        return paths
    model = load_magvit_model(ckpt_dir, "cpu")
    with torch.inference_mode(False), torch.no_grad():
        export_decoder_onnx(model, paths["decoder"], precision)
        export_encoder_onnx(model, paths["encoder"], precision)
    return paths


def magvit_profiles(part: str, grids: tuple[int, ...], max_batch: int) -> list[dict[str, tuple]]:
    """TensorRT optimization profiles: one per grid (batch 1..max_batch) and a catch-all for others.

    Parameters
    ----------
    part : str
        ``"decoder"`` (input ``codes`` [B, s, s]) or ``"encoder"`` (input ``pixels`` [B, 3, 16s, 16s]).
    grids : tuple of int
        Grid sides s.
    max_batch : int

    Returns
    -------
    list of dict
        ``{input_name: (min_shape, opt_shape, max_shape)}`` per profile.
    """
    def shape(b, s):
        return (b, s, s) if part == "decoder" else (b, 3, DOWNSAMPLE * s, DOWNSAMPLE * s)

    name = "codes" if part == "decoder" else "pixels"
    top = max(grids)
    profiles = [{name: (shape(1, s), shape(1, s), shape(max_batch, s))} for s in sorted(set(grids))]
    profiles.append({name: (shape(1, 1), shape(1, top), shape(max_batch, top))})
    return profiles


def build_magvit_engines(ckpt_dir, out_dir, precision: str = "fp16", grids: tuple[int, ...] = DEFAULT_GRIDS,
                         max_batch: int = 4, device: int = 0, rebuild: bool = False) -> dict[str, str]:
    """Export both graphs in ``precision`` (reusing files already in ``out_dir``) and build (or reuse)
    their TensorRT engines under ``out_dir/engines``: one profile per grid plus a catch-all.

    Returns
    -------
    dict of str to str
        ``{"decoder": engine path, "encoder": engine path}``.
    """
    from ..tensorrt import build_engine

    paths = export_magvit_onnx(ckpt_dir, out_dir, precision, overwrite=rebuild)
    return {part: build_engine(path, magvit_profiles(part, grids, max_batch), precision=precision,
                               cache_dir=os.path.join(out_dir, "engines"), device=device, rebuild=rebuild)
            for part, path in paths.items()}
