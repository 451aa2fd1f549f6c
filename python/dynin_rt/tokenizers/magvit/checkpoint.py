"""Reading a MAGVIT-v2 checkpoint directory in the ``showlab/magvitv2`` layout
(docs/tokenizers.md, "MAGVIT-v2").

The directory holds ``config.json`` (official: class/version metadata only) and
``pytorch_model.safetensors`` (fp32; note Show-o's non-standard file name). Loading is strict:
every parameter of the network must be present with its exact shape, and any extra key is an
error; messages name the offending keys.

NOTE(magvit): the two LFQ buffers ``quantize.embedding`` and ``quantize.power_vals`` are fixed
functions of the bit count. The released file is believed to contain them (inferred, not seen), so
they are accepted when present (and must then equal the table this runtime computes, since a
different table would silently change every code), and not required when absent.
"""
from __future__ import annotations

import json
import os

import torch

from ...errors import CheckpointError
from .net import LFQuantizer, MagvitConfig, MagvitModel

WEIGHTS_NAME = "pytorch_model.safetensors"
CONFIG_NAME = "config.json"
# Extra config.json entry written by dynin_rt.testing.magvit for small-width test checkpoints; the
# released config has none, which means the official architecture.
ARCH_KEY = "dynin_rt_magvit"
OPTIONAL_KEYS = ("quantize.embedding", "quantize.power_vals")
_ARCH_FIELDS = ("ch", "encoder_ch_mult", "encoder_num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks")


def read_magvit_config(path) -> MagvitConfig:
    """Architecture of the checkpoint at ``path`` (the official default unless ``config.json`` says).

    Parameters
    ----------
    path : str or os.PathLike
        Checkpoint directory.

    Returns
    -------
    MagvitConfig
    """
    cfg_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(cfg_path):
        return MagvitConfig()
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
    arch = raw.get(ARCH_KEY)
    if arch is None:
        return MagvitConfig()
    unknown = set(arch) - set(_ARCH_FIELDS)
    if unknown:
        raise CheckpointError(f"{cfg_path}: unknown {ARCH_KEY} fields {sorted(unknown)}; known: {list(_ARCH_FIELDS)}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()}
    try:
        return MagvitConfig(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: bad {ARCH_KEY} entry: {e}") from e


def weights_path(path) -> str:
    """Path of the weight file in checkpoint directory ``path`` (raises when it is missing)."""
    if not os.path.isdir(path):
        raise CheckpointError(f"MAGVIT checkpoint directory not found: {path}")
    wp = os.path.join(path, WEIGHTS_NAME)
    if not os.path.isfile(wp):
        present = sorted(os.listdir(path))
        raise CheckpointError(f"{path} has no {WEIGHTS_NAME} (Show-o's weight file name); it holds {present}")
    return wp


def check_state_dict(model: MagvitModel, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state`` matches ``model`` key for key and shape for shape."""
    expected = model.state_dict()
    with torch.device("cpu"):
        table = LFQuantizer().state_dict()  # the reference values, even when ``model`` is on meta
    missing = [k for k in expected if k not in state and k not in OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:10]}" + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
        if unexpected:
            more = f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else ""
            parts.append(f"unexpected keys {unexpected[:10]}{more}")
        raise CheckpointError(f"{source} does not match the MAGVIT-v2 architecture {model.config}: " + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
        if k in OPTIONAL_KEYS:
            ref = table[k.removeprefix("quantize.")]
            if not torch.equal(v.to(ref.dtype), ref):
                raise CheckpointError(f"{source}: {k} differs from the 13-bit MSB-first LFQ table this runtime uses")
        elif not v.is_floating_point():
            raise CheckpointError(f"{source}: {k} has dtype {v.dtype}, expected a float tensor")


def load_magvit_model(path, device="cpu") -> MagvitModel:
    """Build the network for the checkpoint at ``path`` and load its weights strictly, in fp32.

    Parameters
    ----------
    path : str or os.PathLike
        Checkpoint directory (``config.json`` optional, ``pytorch_model.safetensors`` required).
    device : str or torch.device
        Where the returned model lives.

    Returns
    -------
    MagvitModel
        fp32, in eval mode.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = read_magvit_config(path)
    wp = weights_path(path)
    try:
        state = load_file(wp)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {wp}: {e}") from e
    # Built on the meta device so no time goes into a random init that the weights overwrite.
    with torch.device("meta"):
        model = MagvitModel(cfg)
    check_state_dict(model, state, source=wp)
    with torch.device("cpu"):
        model.quantize = LFQuantizer()
    params = {k: v.float() for k, v in state.items() if k not in OPTIONAL_KEYS}
    # strict=False only because the (already verified) LFQ buffers are computed, not loaded.
    result = model.load_state_dict(params, strict=False, assign=True)
    assert not result.unexpected_keys and set(result.missing_keys) <= set(OPTIONAL_KEYS)
    return model.to(device).eval()
