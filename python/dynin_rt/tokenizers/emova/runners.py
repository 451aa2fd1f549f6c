"""The three EMOVA graphs behind one interface, for each backend (PyTorch, onnxruntime, TensorRT).

Every runner takes and returns numpy arrays:

* ``text(ids [1, T_x] int64 (int32 inside the graphs), g [1, G, 1], sdp_noise [1, 2, T_x])``
  ``-> (m_p, logs_p [1, D, T_x], logw [1, 1, T_x])``
* ``wave(z_p [1, D, T_y], g [1, G, 1]) -> wav [1, 1, hop * T_y]``
* ``units(feats [1, n_mels, T]) -> units [1, ceil(T / 4)] int64``

so :class:`~dynin_rt.tokenizers.emova.EmovaSpeech` runs the same host code whatever the backend.
"""
from __future__ import annotations

import os

import numpy as np
import torch

# Graph file stems, shared with the exporter.
TEXT_GRAPH, WAVE_GRAPH, UNITS_GRAPH = "emova_u2s_text", "emova_u2s_wave", "emova_s2u"


class TorchRunner:
    """The PyTorch twins, under ``torch.inference_mode`` on ``device``."""

    name = "torch"
    max_frames = None      # largest T_y one ``wave`` call accepts (None: unbounded)

    def __init__(self, vocoder, spiral, device):
        self.vocoder, self.spiral, self.device = vocoder, spiral, device

    def _t(self, a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def text(self, ids, g, sdp_noise):
        with torch.inference_mode():
            outs = self.vocoder.text(self._t(ids), self._t(g), self._t(sdp_noise))
        return tuple(o.float().cpu().numpy() for o in outs)

    def wave(self, z_p, g):
        with torch.inference_mode():
            return self.vocoder.wave(self._t(z_p), self._t(g)).float().cpu().numpy()

    def units(self, feats):
        with torch.inference_mode():
            return self.spiral(self._t(feats)).cpu().numpy().astype(np.int64)


class GraphRunner:
    """Exported graphs run by a generic runner (``OnnxRunner`` or ``TensorRTRunner``) per graph file.

    Parameters
    ----------
    name : str
        ``"onnx"`` or ``"tensorrt"``.
    runners : dict
        ``{TEXT_GRAPH: runner, WAVE_GRAPH: runner, UNITS_GRAPH: runner}``; each runner maps a dict of
        named numpy inputs to a dict of named numpy outputs.
    max_frames : int, optional
        Largest T_y one ``wave`` call accepts (a TensorRT profile's maximum); None: unbounded.
    """

    def __init__(self, name: str, runners: dict, max_frames: int | None = None):
        self.name, self.runners, self.max_frames = name, runners, max_frames

    def text(self, ids, g, sdp_noise):
        out = self.runners[TEXT_GRAPH]({"ids": ids.astype(np.int32), "g": g, "sdp_noise": sdp_noise})
        return out["m_p"], out["logs_p"], out["logw"]

    def wave(self, z_p, g):
        return self.runners[WAVE_GRAPH]({"z_p": z_p, "g": g})["wav"].astype(np.float32)

    def units(self, feats):
        return self.runners[UNITS_GRAPH]({"feats": feats})["units"].astype(np.int64)


def graph_runner(status, vocoder, spiral, ckpt_dir, export_dir=None, precision: str = "fp16", device=None) -> GraphRunner:
    """Export (or reuse) the graphs of a checkpoint and open them on ``status.name``'s backend.

    Parameters
    ----------
    status : BackendStatus
        A resolved ``"onnx"`` or ``"tensorrt"`` backend.
    vocoder, spiral : EmovaVocoder, SpiralNet
        The loaded twins of ``ckpt_dir``.
    ckpt_dir : str or os.PathLike
        The checkpoint directory (its digest names the cache folder).
    export_dir : str, optional
        Folder for ONNX files and engines; default ``<cache>/emova/<digest>``.
    precision : str
        TensorRT precision of the wave graph (``"fp16"``, ``"bf16"``, ``"fp32"``); onnxruntime is fp32.
    device : torch.device, optional
        onnxruntime: a CPU device forces the CPU provider. TensorRT: the CUDA device to build and run on.

    Returns
    -------
    GraphRunner
        With ``max_frames`` set to the largest ``T_y`` one wave call accepts (None: unbounded).
    """
    from ..backends import BackendUnavailableError, OnnxRunner, TensorRTRunner, default_cache_dir
    from .onnx_export import WAVE_FRAMES, build_emova_engines, checkpoint_digest, export_emova_onnx

    out_dir = export_dir or os.path.join(default_cache_dir(), "emova", checkpoint_digest(ckpt_dir))
    device = torch.device(device) if device is not None else None
    if status.name == "onnx":
        providers = ["CPUExecutionProvider"] if device is not None and device.type == "cpu" else list(status.providers)
        paths = export_emova_onnx(vocoder, spiral, out_dir)
        return GraphRunner("onnx", {g: OnnxRunner(p, providers=providers) for g, p in paths.items()})
    if device is None or device.type != "cuda":
        raise BackendUnavailableError(f"the tensorrt backend runs on a CUDA device, not {device}")
    index = device.index if device.index is not None else torch.cuda.current_device()
    engines = build_emova_engines(vocoder, spiral, out_dir, precision, device=index)
    return GraphRunner("tensorrt", {g: TensorRTRunner(e, device=index) for g, e in engines.items()},
                       max_frames=WAVE_FRAMES[2])
