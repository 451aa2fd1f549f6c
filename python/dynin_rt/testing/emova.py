"""Random-weight EMOVA speech tokenizer checkpoints in the official HF layout (no downloads).

``write_emova(dir)`` writes ``config.json`` (the released fields, including ``u2s_style2idx`` for all
126 styles) and ``model.safetensors`` with every tensor the released file has, under the released
names and shapes: the inference tensors, the training-only ones (posterior / reference encoders,
speaker table, duration-predictor training half, CTC head, masking embedding), the FSQ and mel
buffers, layer norms as ``GAMMA`` / ``BETA`` and weight norm as ``weight_g`` / ``weight_v``.
``small=True`` shrinks every width (recorded under the extra ``dynin_rt_arch`` config field) for fast
tests and the demo; the vocabulary, 126 styles, 22050 Hz / 16 kHz rates and 4096 units stay.

Values are random but scaled so a render is well-behaved: unit-variance activations, durations of
a few frames per unit, non-trivial splines.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from ..tokenizers.emova.config import (ARCH_FIELD, S2U_UNIT_TYPE, U2S_UNIT_TYPE, EmovaConfig, S2UArch, U2SArch,
                                       default_style_table)
from ..tokenizers.emova.s2u import SpiralNet
from ..tokenizers.emova.u2s import UVITSDecoder
from ..tokenizers.emova.u2s_text import ConvFlow, DDSConv, ElementwiseAffine
from ..tokenizers.emova.u2s_wave import WN

SMALL_U2S = dict(inter_channels=16, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=2,
                 gin_channels=256, upsample_initial_channel=32, spec_channels=33, n_speakers=4, enc_q_layers=2)
SMALL_S2U = dict(convs1=((32, 5, 2), (32, 5, 2), (32, 1, 1)), convs2=((64, 5, 1), (48, 1, 1)),
                 layers1=1, heads1=2, ffn1=64, layers2=2, heads2=4, ffn2=96, ctc_layers=1, ctc_filters=16)


def small_config() -> EmovaConfig:
    """The small variant's architecture (what ``write_emova(small=True)`` records)."""
    return EmovaConfig(u2s=U2SArch(**SMALL_U2S), s2u=S2UArch(**SMALL_S2U))


def _layout(module: nn.Module, prefix: str) -> dict[str, tuple]:
    """Checkpoint names and shapes of a twin module: GAMMA/BETA and weight_g/weight_v restored."""
    spell = {}
    for mod_name, sub in module.named_modules():
        names = getattr(sub, "checkpoint_names", {})
        for param, spelled in names.items():
            full = f"{mod_name}.{param}" if mod_name else param
            spell[full] = (mod_name, spelled, getattr(sub, "weight_norm_dim", 0))
    out = {}
    for name, t in module.state_dict().items():
        shape = tuple(t.shape)
        if name in spell:
            mod_name, spelled, dim = spell[name]
            base = f"{prefix}{mod_name}." if mod_name else prefix
            if spelled == "weight_g":
                out[base + "weight_g"] = tuple(s if a == dim else 1 for a, s in enumerate(shape))
                out[base + "weight_v"] = shape
            else:
                out[base + spelled] = shape
        else:
            out[prefix + name] = shape
    return out


def _decoder_training_layout(a: U2SArch) -> dict[str, tuple]:
    """Tensors under ``decoder.`` that only training uses (the released file still carries them)."""
    h, c = a.hidden_channels, a.hidden_channels
    out = {}
    out.update(_layout(ConvFlow(c, a.sdp_kernel_size, a.sdp_dds_layers, a.spline_bins, 5.0), "decoder.dp.flows.1."))
    out.update(_layout(nn.Conv1d(1, c, 1), "decoder.dp.post_pre."))
    out.update(_layout(nn.Conv1d(c, c, 1), "decoder.dp.post_proj."))
    out.update(_layout(DDSConv(c, a.sdp_kernel_size, a.sdp_dds_layers), "decoder.dp.post_convs."))
    out.update(_layout(ElementwiseAffine(2), "decoder.dp.post_flows.0."))
    for i in range(a.sdp_n_flows):
        out.update(_layout(ConvFlow(c, a.sdp_kernel_size, a.sdp_dds_layers, a.spline_bins, 5.0),
                           f"decoder.dp.post_flows.{2 * i + 1}."))
    out.update(_layout(nn.Conv1d(a.spec_channels, h, 1), "decoder.enc_q.pre."))
    out.update(_layout(WN(h, 5, a.enc_q_layers, a.gin_channels), "decoder.enc_q.enc."))
    out.update(_layout(nn.Conv1d(h, 2 * a.inter_channels, 1), "decoder.enc_q.proj."))
    # MelStyleEncoder(spec_channels, hidden, gin, kernel 5, 2 heads)
    for name, mod in (("spectral.0.fc", nn.Linear(a.spec_channels, h)), ("spectral.3.fc", nn.Linear(h, h)),
                      ("temporal.0.conv1.conv", nn.Conv1d(h, 2 * h, 5)),
                      ("temporal.1.conv1.conv", nn.Conv1d(h, 2 * h, 5)),
                      ("slf_attn.w_qs", nn.Linear(h, h)), ("slf_attn.w_ks", nn.Linear(h, h)),
                      ("slf_attn.w_vs", nn.Linear(h, h)), ("slf_attn.fc", nn.Linear(h, h)),
                      ("fc.fc", nn.Linear(h, a.gin_channels))):
        out.update(_layout(mod, f"decoder.enc_r.{name}."))
    out["decoder.emb_g.weight"] = (a.n_speakers, a.gin_channels)
    return out


def official_layout(cfg: EmovaConfig) -> dict[str, tuple]:
    """Every tensor name and shape of a released-layout ``model.safetensors`` for ``cfg``."""
    out = _layout(UVITSDecoder(cfg.u2s), "decoder.")
    out.update(_decoder_training_layout(cfg.u2s))
    out["style_embedding.weight"] = (cfg.num_styles, cfg.style_dim)
    s = cfg.s2u
    out.update(_layout(SpiralNet(s), "encoder."))
    out["encoder.encoder.mask_emb"] = (s.n_mels,)
    c_in = len(s.levels)
    for i in range(s.ctc_layers):
        out[f"encoder.decoder.conv_layers.{i}.conv.conv.weight"] = (s.ctc_filters, c_in, 5)
        out[f"encoder.decoder.conv_layers.{i}.conv.conv.bias"] = (s.ctc_filters,)
        c_in = s.ctc_filters
    out["encoder.decoder.decoder_layers.0.weight"] = (s.ctc_classes, c_in, 1)
    out["encoder.decoder.decoder_layers.0.bias"] = (s.ctc_classes,)
    return out


def _fill(name: str, shape: tuple, gen: torch.Generator, cfg: EmovaConfig) -> torch.Tensor:
    """A random value for one tensor, scaled by what the tensor is."""
    def randn(*s, std=1.0):
        return torch.randn(*s, generator=gen) * std

    last = name.rsplit(".", 1)[-1]
    if name.endswith("featurizer.fb") or name.endswith("featurizer.window") or "quantizer._" in name:
        ref = SpiralNet(cfg.s2u).state_dict()[name[len("encoder."):]]
        return ref.clone()
    if last in ("GAMMA",) or (last == "weight" and len(shape) == 1 and "norm" in name):
        return 1.0 + randn(*shape, std=0.1)
    if last in ("BETA", "bias"):
        return randn(*shape, std=0.02)
    if name in ("decoder.dp.flows.0.m", "decoder.dp.flows.0.logs"):
        # Flow 0 sets the log-duration: logw = (z - m) * exp(-logs) = (z + 4.4) / 4 for the spline
        # output z in [-5, 5], i.e. 1 to 10 frames per unit (~3 on average).
        return torch.tensor([[-4.4], [0.0]]) if last == "m" else torch.tensor([[float(np.log(4.0))], [0.0]])
    if last in ("m", "logs"):
        return randn(*shape, std=0.05)
    if last == "weight_g":
        return 1.0 + randn(*shape, std=0.1).abs()
    if name.endswith("emb.weight"):
        return randn(*shape, std=shape[1] ** -0.5)
    if last.startswith("emb_rel"):
        return randn(*shape, std=shape[-1] ** -0.5)
    if name.startswith("style_embedding") or name.endswith("mask_emb") or name.endswith("emb_g.weight"):
        return randn(*shape, std=0.3)
    fan_in = 1
    for s in shape[1:]:
        fan_in *= s
    if name.startswith("decoder.dec.ups.") and last == "weight_v":
        fan_in = shape[0] * shape[2] // 4     # transposed conv: [C_in, C_out, k], ~k/stride taps per output
    std = fan_in ** -0.5
    if ".proj.weight" in name and ".flows." in name:
        std *= 2.0      # make the spline bins visibly non-uniform
    if name.startswith("decoder.dec.resblocks.") or name.startswith("decoder.flow.") and "res_skip" in name:
        std *= 0.5      # keep the residual stacks from growing
    return randn(*shape, std=std)


def write_emova(path, small: bool = False, seed: int = 0) -> str:
    """Write a random-weight EMOVA speech tokenizer checkpoint directory.

    Parameters
    ----------
    path : str or os.PathLike
        Directory to create (may exist).
    small : bool
        Shrink every width (see :func:`small_config`); the layout is otherwise the released one.
    seed : int
        Seed of the random values.

    Returns
    -------
    str
        ``path``.
    """
    from safetensors.torch import save_file

    cfg = small_config() if small else EmovaConfig()
    os.makedirs(path, exist_ok=True)
    raw = {
        "architectures": ["EMOVASpeechTokenizer"],
        "model_type": "emova_speech_tokenizer",
        "s2u_unit_type": S2U_UNIT_TYPE,
        "u2s_unit_type": U2S_UNIT_TYPE,
        "u2s_num_styles": cfg.num_styles,
        "u2s_dim_styles": cfg.style_dim,
        "u2s_style2idx": default_style_table(),
        "torch_dtype": "float32",
        "transformers_version": "4.47.1",
    }
    if small:
        raw[ARCH_FIELD] = {"u2s": SMALL_U2S, "s2u": {k: v for k, v in asdict(cfg.s2u).items() if k in SMALL_S2U}}
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=2)
    gen = torch.Generator().manual_seed(seed)
    tensors = {name: _fill(name, shape, gen, cfg).float().contiguous()
               for name, shape in sorted(official_layout(cfg).items())}
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    return os.fspath(path)
