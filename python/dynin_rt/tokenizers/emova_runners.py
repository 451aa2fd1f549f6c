"""The three EMOVA graphs behind one interface, for each backend (PyTorch, onnxruntime, TensorRT).

Every runner takes and returns numpy arrays:

* ``text(ids [1, T_x] int64 (int32 inside the graphs), g [1, G, 1], sdp_noise [1, 2, T_x])``
  ``-> (m_p, logs_p [1, D, T_x], logw [1, 1, T_x])``
* ``wave(z_p [1, D, T_y], g [1, G, 1]) -> wav [1, 1, hop * T_y]``
* ``units(feats [1, n_mels, T]) -> units [1, ceil(T / 4)] int64``

so :class:`~dynin_rt.tokenizers.emova.EmovaSpeech` runs the same host code whatever the backend.
"""
from __future__ import annotations

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
