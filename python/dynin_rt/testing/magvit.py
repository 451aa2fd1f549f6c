"""Random-weight MAGVIT-v2 checkpoints in the ``showlab/magvitv2`` layout, for tests, benchmarks, demos.

``write_magvit(dir)`` writes ``config.json`` + ``pytorch_model.safetensors`` (fp32) with exactly the
official key names and shapes (382 tensors, 95.39 M parameters including the two LFQ buffers). A
smaller width (``ch=32``) or fewer blocks are recorded in ``config.json`` under ``dynin_rt_magvit``,
an entry the released config does not have (absent = official architecture).

The weights are random but scaled so that the network behaves like a trained one in the ways the
tests rely on: GroupNorm affine parameters are not the identity, decoded pixels spread over
[-1, 1] with some outside it (so clamping is exercised), and encoder latents are rarely near 0.
"""
from __future__ import annotations

import json
import os

import torch

from ..tokenizers.magvit.checkpoint import ARCH_KEY, CONFIG_NAME, OPTIONAL_KEYS, WEIGHTS_NAME
from ..tokenizers.magvit.net import LFQuantizer, MagvitConfig, MagvitModel

# Stand-in for the released config.json, which holds class/library metadata only (66 bytes;
# its exact fields are not known here, and the loader reads none of them).
OFFICIAL_CONFIG = {"_class_name": "MAGVITv2", "_diffusers_version": "0.21.4"}
# Final-layer gains chosen so random outputs have a spread similar to real ones (std ~0.6 for
# pixels, ~1 for latents); measured once on the official width, not needed for correctness.
_DECODER_OUT_GAIN = 1.2
_ENCODER_OUT_GAIN = 2.0


def random_magvit_state_dict(cfg: MagvitConfig | None = None, seed: int = 0, with_buffers: bool = True) -> dict:
    """A random fp32 state dict with the official key names and shapes.

    Parameters
    ----------
    cfg : MagvitConfig, optional
        Architecture; default the released one.
    seed : int
        Seeds every tensor, so a (cfg, seed) pair always gives the same weights.
    with_buffers : bool
        Include ``quantize.embedding`` and ``quantize.power_vals``.

    Returns
    -------
    dict of str to torch.Tensor
    """
    cfg = cfg or MagvitConfig()
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # shapes only: no time spent on an init that is thrown away
        model = MagvitModel(cfg)
    buffers = {f"quantize.{k}": v for k, v in LFQuantizer().state_dict().items()}
    state = {}
    for name, ref in model.state_dict().items():
        if name in OPTIONAL_KEYS:
            if with_buffers:
                state[name] = buffers[name]
            continue
        shape = ref.shape
        if ".norm" in name:
            base = 1.0 if name.endswith(".weight") else 0.0
            t = base + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(".weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=gen) / fan_in**0.5
            if name in ("decoder.conv_out.weight", "encoder.quant_conv.weight"):
                t = t * (_DECODER_OUT_GAIN if name.startswith("decoder") else _ENCODER_OUT_GAIN)
        else:
            t = 0.02 * torch.randn(shape, generator=gen)
        state[name] = t.float().contiguous()
    return state


def write_magvit(
    path,
    ch: int = 128,
    seed: int = 0,
    encoder_num_res_blocks: tuple[int, ...] | None = None,
    decoder_num_res_blocks: tuple[int, ...] | None = None,
    with_buffers: bool = True,
) -> str:
    """Write a random MAGVIT-v2 checkpoint directory.

    Parameters
    ----------
    path : str or os.PathLike
        Directory to create or fill.
    ch : int
        Base width; 128 is the release (official layout, no extra config field), 32 is a fast variant.
    seed : int
        Weight seed.
    encoder_num_res_blocks, decoder_num_res_blocks : tuple of int, optional
        Five per-level block counts; default the release's.
    with_buffers : bool
        Store the two LFQ buffers (the released file is believed to have them).

    Returns
    -------
    str
        ``path``.
    """
    fields = {"ch": ch}
    if encoder_num_res_blocks is not None:
        fields["encoder_num_res_blocks"] = tuple(encoder_num_res_blocks)
    if decoder_num_res_blocks is not None:
        fields["decoder_num_res_blocks"] = tuple(decoder_num_res_blocks)
    cfg = MagvitConfig(**fields)
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    config = dict(OFFICIAL_CONFIG)
    arch = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if getattr(MagvitConfig(), k) != v}
    if arch:
        config[ARCH_KEY] = arch
    with open(os.path.join(path, CONFIG_NAME), "w") as f:
        json.dump(config, f, indent=2)
    save_file(random_magvit_state_dict(cfg, seed, with_buffers), os.path.join(path, WEIGHTS_NAME))
    return os.fspath(path)
