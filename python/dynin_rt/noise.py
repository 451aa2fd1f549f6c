"""Where the samplers' randomness comes from.

Two sources, one interface, so the same sampler code runs either:

* ``TorchNoise(generator)`` draws exactly what the official code draws (``rand_like`` over the full
  logits, ``torch.multinomial``, ``uniform_``), from a ``torch.Generator`` the caller can seed
  (``None``: torch's global generator, as the official scripts do).
* ``CounterNoise(seed)`` derives every uniform from a hash of (seed, stream, step, row, position,
  index). The C++ runtime computes the same hash (csrc/core/counter_rng.h), so reference and runtime
  given the same seed see the same noise, without shipping [B, T, V] tensors across. Categorical
  draws use the Gumbel-max form argmax(logits + G), an exact sample of softmax(logits).

Every uniform is in the open interval (0, 1).
"""
from __future__ import annotations

import numpy as np
import torch

_MASK64 = (1 << 64) - 1
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_K_STREAM = 0xD1B54A32D192ED03
_K_STEP = 0x8CB92BA72F3D8DD7
_K_ROW = 0xABC98388FB8FAC03
_K_POS = 0xC13FA9A902A6328F
_K_INDEX = 0x9E3779B97F4A7C15

STREAM_TOKEN = 1  # which token a masked position takes
STREAM_REMASK = 2  # which positions are committed / re-masked


def _mix64(z: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser on uint64 values (multiplication wraps modulo 2^64 by design).
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * np.uint64(_MIX_1)
        z = z ^ (z >> np.uint64(27))
        z = z * np.uint64(_MIX_2)
        return z ^ (z >> np.uint64(31))


def counter_uniform(seed: int, stream: int, step: int, rows, positions, indices=None) -> np.ndarray:
    """U(seed, stream, step, row, position[, index]) in (0, 1) as float64, broadcast over the inputs.

    rows, positions and indices are integer arrays (or scalars) that broadcast together.
    """
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(seed & _MASK64) ^ np.uint64((stream * _K_STREAM) & _MASK64))
        h = _mix64(h + np.uint64((step * _K_STEP) & _MASK64))
        h = _mix64(h + np.asarray(rows, dtype=np.uint64) * np.uint64(_K_ROW))
        h = _mix64(h + np.asarray(positions, dtype=np.uint64) * np.uint64(_K_POS))
        if indices is not None:
            h = _mix64(h + np.asarray(indices, dtype=np.uint64) * np.uint64(_K_INDEX))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """-log(-log u) with the official clamps (models/sampling.py: log clamps at 1e-20)."""
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def llada_noisy_argmax(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official add_gumbel_noise + argmax: argmax(exp(l) / (-log u)^T) in float64."""
    noisy = logits.to(torch.float64).exp() / (-torch.log(u)) ** temperature
    return noisy.argmax(dim=-1)


class TorchNoise:
    """The official draw pattern, from a seedable torch.Generator."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def llada_tokens(self, logits: torch.Tensor, temperature: float, step: int, positions: torch.Tensor) -> torch.Tensor:
        # logits: [B, T, V]; returns x0 [B, T]. Draws over the whole canvas, as the official code.
        u = torch.rand(logits.shape, dtype=torch.float64, generator=self.generator, device=logits.device)
        return llada_noisy_argmax(logits, u, temperature)

    def llada_remask_uniform(self, batch: int, length: int, step: int, device) -> torch.Tensor:
        # [B, T] float32, as torch.rand((B, T)).
        return torch.rand((batch, length), generator=self.generator, device=device)

    def categorical(self, logits: torch.Tensor, probs: torch.Tensor, step: int, positions: torch.Tensor) -> torch.Tensor:
        # probs: [B, P, K] -> sampled [B, P] by torch.multinomial.
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=self.generator)[:, 0].view(probs.shape[:-1])

    def maskgit_uniform(self, like: torch.Tensor, step: int) -> torch.Tensor:
        # [B, N] in like's dtype, as zeros_like(probs).uniform_(0, 1, generator).
        return torch.zeros_like(like).uniform_(0, 1, generator=self.generator)


class CounterNoise:
    """Counter-based noise shared with the C++ runtime; see the module docstring."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def _uniform(self, stream: int, step: int, batch: int, positions: torch.Tensor, k: int | None) -> torch.Tensor:
        rows = np.arange(batch).reshape(batch, 1, 1) if k is not None else np.arange(batch).reshape(batch, 1)
        pos = positions.cpu().numpy().astype(np.int64)
        pos = pos.reshape(1, -1, 1) if k is not None else pos.reshape(1, -1)
        idx = np.arange(k).reshape(1, 1, k) if k is not None else None
        return torch.from_numpy(counter_uniform(self.seed, stream, step, rows, pos, idx))

    def llada_tokens(self, logits: torch.Tensor, temperature: float, step: int, positions: torch.Tensor) -> torch.Tensor:
        # argmax exp(l) / (-log u)^T == argmax l + T * Gumbel(u): the log form needs no exp overflow
        # guard and is what the C++ runtime computes. Only the positions the sampler can commit need
        # noise; the others keep plain argmax.
        x0 = logits.argmax(dim=-1)
        if positions.numel():
            u = self._uniform(STREAM_TOKEN, step, logits.shape[0], positions, logits.shape[-1]).to(logits.device)
            noisy = logits[:, positions].to(torch.float64) + temperature * gumbel_from_uniform(u)
            x0[:, positions] = noisy.argmax(dim=-1)
        return x0

    def llada_remask_uniform(self, batch: int, length: int, step: int, device) -> torch.Tensor:
        return self._uniform(STREAM_REMASK, step, batch, torch.arange(length), None).to(device)

    def categorical(self, logits: torch.Tensor, probs: torch.Tensor, step: int, positions: torch.Tensor) -> torch.Tensor:
        u = self._uniform(STREAM_TOKEN, step, logits.shape[0], positions, logits.shape[-1]).to(logits.device)
        return (logits.to(torch.float64) + gumbel_from_uniform(u)).argmax(dim=-1)

    def maskgit_uniform(self, like: torch.Tensor, step: int) -> torch.Tensor:
        batch, n = like.shape
        return self._uniform(STREAM_REMASK, step, batch, torch.arange(n), None).to(like.device)
