"""ONNX export (opset 17) and TensorRT engines of the EMOVA speech tokenizer's three graphs
(docs/tokenizers.md, "Exported graphs").

Graphs (file stems from :mod:`dynin_rt.tokenizers.emova.runners`)
-----------------------------------------------------------------
``emova_u2s_text``  ids int32 [1, T_x], g [1, 256, 1], sdp_noise [1, 2, T_x] (already times noise_scale_w)
                    -> m_p, logs_p [1, 192, T_x], logw [1, 1, T_x]. Text encoder + stochastic duration
                    predictor; the noise is an input, so every backend sees the same noise.
``emova_u2s_wave``  z_p [1, 192, T_y], g [1, 256, 1] -> wav [1, 1, 256 T_y]. Flow (reverse) + HiFi-GAN.
``emova_s2u``       feats [1, 128, T] -> units int32 [1, ceil(ceil(T/2)/2)]. SPIRAL stacks + FSQ.

Length regulation (ceil, repeat), the prior sample and the mel front end stay on the host, so no
graph has a data-dependent shape chain (what TensorRT cannot build) and no random op.

Precision: the text and encoder graphs are always fp32 (the spline, layer norms and softmax, and the
FSQ rounding that must give the same units, need it). The wave graph, all of the vocoder's compute and
free of normalisations, can be exported in fp16 / bf16 for TensorRT's strongly typed mode: weights
and activations in the reduced type, fp32 at the graph's inputs and outputs. onnxruntime runs fp32.

NOTE(export): the TorchScript-based exporter (``dynamo=False``) is used, as for MAGVIT: it needs no
onnxscript and writes plain ops (the spline's bin lookup becomes a GatherElements, the relative
positions a float one-hot band and two MatMuls).
"""
from __future__ import annotations

import copy
import hashlib
import os
import warnings

import torch
from torch import nn

from .runners import TEXT_GRAPH, UNITS_GRAPH, WAVE_GRAPH
from .s2u import SpiralNet
from .u2s import EmovaVocoder, VocoderText

OPSET = 17
# Bumped whenever an exported graph changes, so stale cached files are not reused.
EXPORT_VERSION = 2
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# TensorRT optimization profiles: (min, opt, max) of the dynamic axis of each graph.
TEXT_UNITS = (1, 128, 2048)      # units per render (2048 ~ 80 s of unreduced 25 Hz units)
WAVE_FRAMES = (1, 256, 2048)     # frames per vocoder call (2048 ~ 23.8 s); longer renders are windowed
MEL_FRAMES = (16, 1504, 6016)    # 10 ms frames per encoder pass (6016 > the 60 s one-pass limit)


def onnx_file_name(graph: str, precision: str = "fp32") -> str:
    """e.g. ``emova_u2s_wave.v1.fp16.onnx``."""
    return f"{graph}.v{EXPORT_VERSION}.{precision}.onnx"


def checkpoint_digest(ckpt_dir) -> str:
    """16 hex digits identifying a checkpoint: sha256 of config.json and model.safetensors."""
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with open(os.path.join(os.fspath(ckpt_dir), name), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class _WaveGraph(nn.Module):
    """``(z_p, g) -> wav`` with the network in ``dtype`` and fp32 at the boundary."""

    def __init__(self, vocoder: EmovaVocoder, dtype: torch.dtype):
        super().__init__()
        self.vocoder, self.dtype = vocoder, dtype

    def forward(self, z_p, g):
        return self.vocoder.wave(z_p.to(self.dtype), g.to(self.dtype)).float()


def _export(module: nn.Module, args: tuple, out_path: str, inputs: list, outputs: list, axes: dict) -> str:
    tmp = f"{out_path}.tmp{os.getpid()}"
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of dynamo; see the NOTE at the top.
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch.flip becomes a Slice with step -1, which the folder declines to fold: harmless.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(module.eval(), args, tmp, opset_version=OPSET, dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
    os.replace(tmp, out_path)   # atomic: a reader never sees a half-written file
    return out_path


def export_text_onnx(vocoder: EmovaVocoder, out_path: str) -> str:
    """Write ``emova_u2s_text`` (fp32). ``vocoder``: fp32, on CPU, not modified. Returns ``out_path``."""
    a = vocoder.arch
    t = 16
    args = (torch.full((1, t), a.unit_offset, dtype=torch.int32), torch.zeros(1, a.gin_channels, 1),
            torch.zeros(1, 2, t))
    axes = {"ids": {1: "T_x"}, "sdp_noise": {2: "T_x"}, "m_p": {2: "T_x"}, "logs_p": {2: "T_x"}, "logw": {2: "T_x"}}
    return _export(VocoderText(vocoder), args, out_path, ["ids", "g", "sdp_noise"], ["m_p", "logs_p", "logw"], axes)


def export_wave_onnx(vocoder: EmovaVocoder, out_path: str, precision: str = "fp32") -> str:
    """Write ``emova_u2s_wave`` in ``precision`` (``"fp32"``, ``"fp16"``, ``"bf16"``). Returns ``out_path``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    a = vocoder.arch
    net = vocoder if precision == "fp32" else copy.deepcopy(vocoder).to(PRECISIONS[precision])
    args = (torch.zeros(1, a.inter_channels, 32), torch.zeros(1, a.gin_channels, 1))
    axes = {"z_p": {2: "T_y"}, "wav": {2: "S"}}
    return _export(_WaveGraph(net, PRECISIONS[precision]), args, out_path, ["z_p", "g"], ["wav"], axes)


def export_units_onnx(spiral: SpiralNet, out_path: str) -> str:
    """Write ``emova_s2u`` (fp32). ``spiral``: fp32, on CPU, not modified. Returns ``out_path``."""
    args = (torch.zeros(1, spiral.arch.n_mels, 64),)
    axes = {"feats": {2: "T"}, "units": {1: "T_units"}}
    return _export(spiral, args, out_path, ["feats"], ["units"], axes)


def export_emova_onnx(vocoder: EmovaVocoder, spiral: SpiralNet, out_dir, wave_precision: str = "fp32",
                      overwrite: bool = False) -> dict[str, str]:
    """Export the three graphs into ``out_dir``, reusing files already there.

    Parameters
    ----------
    vocoder, spiral : EmovaVocoder, SpiralNet
        Loaded fp32 twins (any device; copied to CPU for export, not modified).
    out_dir : str or os.PathLike
        Output directory; its name should identify the weights (see :func:`checkpoint_digest`).
    wave_precision : str
        Precision of the wave graph.
    overwrite : bool
        Re-export even when the files exist.

    Returns
    -------
    dict of str to str
        ``{TEXT_GRAPH: path, WAVE_GRAPH: path, UNITS_GRAPH: path}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {TEXT_GRAPH: os.path.join(out_dir, onnx_file_name(TEXT_GRAPH)),
             WAVE_GRAPH: os.path.join(out_dir, onnx_file_name(WAVE_GRAPH, wave_precision)),
             UNITS_GRAPH: os.path.join(out_dir, onnx_file_name(UNITS_GRAPH))}
    voc_cpu = spi_cpu = None
    for graph, path in paths.items():
        if os.path.isfile(path) and not overwrite:
            continue
        if graph == UNITS_GRAPH:
            if spi_cpu is None:
                spi_cpu = copy.deepcopy(spiral).cpu()
            export_units_onnx(spi_cpu, path)
        else:
            if voc_cpu is None:
                voc_cpu = copy.deepcopy(vocoder).cpu()
            if graph == TEXT_GRAPH:
                export_text_onnx(voc_cpu, path)
            else:
                export_wave_onnx(voc_cpu, path, wave_precision)
    return paths


def emova_profiles(vocoder: EmovaVocoder, spiral: SpiralNet) -> dict[str, list]:
    """TensorRT optimization profiles of the three graphs (one profile each)."""
    a, s = vocoder.arch, spiral.arch

    def axis(fixed_before, sizes, fixed_after=()):
        return tuple((*fixed_before, n, *fixed_after) for n in sizes)

    g = ((1, a.gin_channels, 1),) * 3
    return {
        TEXT_GRAPH: [{"ids": axis((1,), TEXT_UNITS), "g": g, "sdp_noise": axis((1, 2), TEXT_UNITS)}],
        WAVE_GRAPH: [{"z_p": axis((1, a.inter_channels), WAVE_FRAMES), "g": g}],
        UNITS_GRAPH: [{"feats": axis((1, s.n_mels), MEL_FRAMES)}],
    }


def build_emova_engines(vocoder: EmovaVocoder, spiral: SpiralNet, out_dir, precision: str = "fp16", device: int = 0,
                        rebuild: bool = False) -> dict[str, str]:
    """Export the three graphs for TensorRT (the wave graph in ``precision``, the others fp32;
    reusing files already in ``out_dir``) and build (or reuse) their engines under ``out_dir/engines``.

    Returns
    -------
    dict of str to str
        ``{TEXT_GRAPH: engine path, WAVE_GRAPH: engine path, UNITS_GRAPH: engine path}``.
    """
    from ..tensorrt import build_engine

    paths = export_emova_onnx(vocoder, spiral, out_dir, wave_precision=precision, overwrite=rebuild)
    profiles = emova_profiles(vocoder, spiral)
    return {graph: build_engine(path, profiles[graph], precision=precision if graph == WAVE_GRAPH else "fp32",
                                cache_dir=os.path.join(out_dir, "engines"), device=device, rebuild=rebuild)
            for graph, path in paths.items()}
