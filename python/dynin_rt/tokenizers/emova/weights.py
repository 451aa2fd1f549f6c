"""Strict loading of the released EMOVA speech tokenizer ``model.safetensors`` into the PyTorch twins.

The released file (``Emova-ollm/emova_speech_tokenizer_hf``) is the state dict of the HF wrapper:
``encoder.*`` (speech-to-units), ``decoder.*`` (units-to-speech), ``style_embedding.weight``. Three
naming quirks are undone here, and only here:

* layer norms of the vocoder store ``GAMMA`` / ``BETA`` (the original ``G_*.pth`` files used
  lowercase ``gamma`` / ``beta``); both map to ``weight`` / ``bias``;
* weight-normed convs store ``weight_g`` / ``weight_v`` (or, when re-saved by a recent PyTorch,
  ``parametrizations.weight.original0`` / ``original1``); they are folded into one ``weight`` =
  v * g / ||v||, the norm taken over every axis where g has size 1 (dim 0 for the vocoder, dim 2 for
  the SPIRAL positional conv);
* training-only tensors (posterior encoder, reference encoder, speaker table, CTC head, ...) are
  dropped by an explicit prefix list.

Invariant: every tensor of the file is either loaded, dropped by name, or reported; every tensor the
twins need must be present with the right shape. Errors name the checkpoint key.
"""
from __future__ import annotations

import os

import torch

from ...errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"

# Layer-norm parameter spellings -> the torch name.
_NORM_SUFFIX = {"GAMMA": "weight", "gamma": "weight", "BETA": "bias", "beta": "bias"}
_WN_PAIRS = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def read_safetensors(path) -> dict[str, torch.Tensor]:
    """All tensors of ``<path>/model.safetensors`` (or of ``path`` itself if it is the file), as float32.

    Raises
    ------
    CheckpointError
        The file is missing, unreadable, or holds a non-floating tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.fspath(path)
    file = os.path.join(path, WEIGHTS_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise CheckpointError(f"weights not found: {file} "
                              f"(an emova_speech_tokenizer_hf directory holds {WEIGHTS_FILE})")
    try:
        raw = load_file(file)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {file}: {e}") from e
    out = {}
    for key, t in raw.items():
        if not t.is_floating_point():
            raise CheckpointError(f"{file}: tensor {key!r} has dtype {t.dtype}; every tensor must be floating point")
        out[key] = t.float()
    return out


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Weight-norm folding: v * g / ||v||, the norm over every axis where ``g`` has size 1.

    Parameters
    ----------
    g : torch.Tensor
        Magnitudes, e.g. ``[C_out, 1, 1]`` (dim 0) or ``[1, 1, K]`` (dim 2).
    v : torch.Tensor
        Directions, same rank as ``g``.

    Returns
    -------
    torch.Tensor
        The effective weight, shape of ``v``.
    """
    if g.dim() != v.dim() or any(gs not in (1, vs) for gs, vs in zip(g.shape, v.shape)):
        raise ValueError(f"weight_g {tuple(g.shape)} does not broadcast against weight_v {tuple(v.shape)}")
    axes = [a for a in range(v.dim()) if g.shape[a] == 1]
    norm = v.pow(2).sum(dim=axes, keepdim=True).sqrt() if axes else v.abs()
    return v * (g / norm)


class CheckpointLedger:
    """The tensors of one checkpoint, with a record of which were used or dropped.

    Parameters
    ----------
    tensors : dict of str to torch.Tensor
        From :func:`read_safetensors`.
    where : str
        Path for error messages.
    """

    def __init__(self, tensors: dict, where: str):
        self.tensors = tensors
        self.where = where
        self.used: set[str] = set()

    def take(self, key: str) -> torch.Tensor:
        """One tensor by its checkpoint name (marked used)."""
        if key not in self.tensors:
            raise CheckpointError(f"{self.where}: missing tensor {key!r}")
        self.used.add(key)
        return self.tensors[key]

    def drop(self, prefixes) -> None:
        """Mark every tensor under one of ``prefixes`` as deliberately unused."""
        for key in self.tensors:
            if key.startswith(tuple(prefixes)):
                self.used.add(key)

    def finish(self) -> None:
        """Raise if any tensor was neither used nor dropped."""
        left = sorted(set(self.tensors) - self.used)
        if left:
            more = f" (and {len(left) - 5} more)" if len(left) > 5 else ""
            raise CheckpointError(f"{self.where}: unexpected tensors {left[:5]}{more}; is this an EMOVA speech "
                                  "tokenizer checkpoint of the supported version?")

    def load_module(self, module: torch.nn.Module, prefix: str, optional=()) -> None:
        """Load every parameter and buffer of ``module`` from the tensors under ``prefix``.

        Parameters
        ----------
        module : torch.nn.Module
            Its state-dict names are the checkpoint names after the quirks above are undone.
        prefix : str
            E.g. ``"decoder."``.
        optional : iterable of str
            Module state names that may be absent from the checkpoint (buffers the module can
            compute itself, e.g. the mel filterbank); when present they are loaded like the rest.
        """
        wanted = module.state_dict()
        canon: dict[str, torch.Tensor] = {}
        source: dict[str, str] = {}
        keys = [k for k in self.tensors if k.startswith(prefix) and k not in self.used]
        by_name = set(keys)
        for key in keys:
            name = key[len(prefix):]
            stem, _, last = name.rpartition(".")
            target, value = None, None
            if last in _NORM_SUFFIX and stem:
                target, value = f"{stem}.{_NORM_SUFFIX[last]}", self.tensors[key]
            else:
                for g_name, v_name in _WN_PAIRS:
                    if name.endswith("." + g_name):
                        base = name[: -len(g_name) - 1]
                        v_key = f"{prefix}{base}.{v_name}"
                        if v_key not in by_name:
                            raise CheckpointError(f"{self.where}: {key!r} has no matching {v_key!r}")
                        try:
                            value = fold_weight_norm(self.tensors[key], self.tensors[v_key])
                        except ValueError as e:
                            raise CheckpointError(f"{self.where}: {key!r}: {e}") from e
                        target = f"{base}.weight"
                        self.used.add(v_key)
                        break
                    if name.endswith("." + v_name):
                        g_key = f"{prefix}{name[: -len(v_name)]}{g_name}"
                        if g_key not in by_name:
                            raise CheckpointError(f"{self.where}: {key!r} has no matching {g_key!r}")
                        target = "skip"
                        break
                if target is None:
                    target, value = name, self.tensors[key]
            if target == "skip":
                continue
            if target not in wanted:
                raise CheckpointError(f"{self.where}: unexpected tensor {key!r} (no {prefix}{target} in the model)")
            if target in canon:
                raise CheckpointError(f"{self.where}: {key!r} and {source[target]!r} both give {prefix}{target}")
            if tuple(value.shape) != tuple(wanted[target].shape):
                raise CheckpointError(f"{self.where}: tensor {key!r} has shape {tuple(value.shape)}, "
                                      f"expected {tuple(wanted[target].shape)}")
            canon[target] = value
            source[target] = key
            self.used.add(key)
        missing = [k for k in wanted if k not in canon and k not in optional]
        if missing:
            spelled = _checkpoint_spellings(module)
            names = [prefix + spelled.get(k, k) for k in missing[:5]]
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise CheckpointError(f"{self.where}: missing tensors {names}{more}")
        module.load_state_dict(canon, strict=False)


def _checkpoint_spellings(module: torch.nn.Module) -> dict[str, str]:
    """Module state name -> checkpoint spelling, for submodules that declare ``checkpoint_names``.

    A submodule may carry ``checkpoint_names = {"weight": "GAMMA", ...}`` (the names its tensors have
    in the released file); used only to phrase "missing tensor" errors the way the file spells them.
    """
    out = {}
    for mod_name, sub in module.named_modules():
        for param, spelled in getattr(sub, "checkpoint_names", {}).items():
            full = f"{mod_name}.{param}" if mod_name else param
            out[full] = f"{mod_name}.{spelled}" if mod_name else spelled
    return out
