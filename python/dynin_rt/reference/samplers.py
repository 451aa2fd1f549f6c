"""The three official samplers (docs/samplers.md), with every quirk kept.

* :func:`llada_generate` — LLaDA semi-autoregressive block sampler (``mmu_generate`` /
  ``generate``): text chat, image/video understanding, speech recognition.
* :func:`maskgit_generate` — MaskGIT (``t2i_generate`` / ``i2i_generate``): text-to-image and edits.
* :func:`t2s_generate` — ``t2s_generate_mmu_like``: text-to-speech.

Randomness comes from a :mod:`dynin_rt.noise` source: ``TorchNoise(generator)`` (the official draw
pattern; the default) or ``CounterNoise(seed)`` (shared with the C++ runtime). Inputs are never
modified: the samplers work on copies.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..noise import TorchNoise, gumbel_from_uniform
from ..tokens import EOA_ID, EOS_ID, MASK_ID

REMASKING = ("low_confidence", "random")


def get_num_transfer_tokens(mask_index: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, L] bool -> [B, steps] int64: base n // steps each, the first n % steps steps get +1."""
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    out = torch.zeros(mask_num.size(0), steps, device=mask_index.device, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        out[i, : remainder[i]] += 1
    return out


def _noise_source(noise, generator):
    if noise is not None and generator is not None:
        raise ValueError("pass either noise= or generator=, not both")
    return noise if noise is not None else TorchNoise(generator)


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_non_negative(**values):
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or math.isinf(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_llada_lengths(gen_length: int, steps: int, block_length: int) -> int:
    """Validate the block-sampler lengths; returns the steps per block."""
    _check_positive(gen_length=gen_length, steps=steps, block_length=block_length)
    if gen_length % block_length:
        raise ValueError(f"gen_length {gen_length} is not divisible by block_length {block_length}")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ValueError(f"steps {steps} is not divisible by the number of blocks {num_blocks}")
    return steps // num_blocks


@torch.no_grad()
def llada_generate(
    model,
    prompt_ids: torch.Tensor,
    *,
    gen_length: int = 128,
    steps: int = 128,
    block_length: int = 128,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise=None,
    on_block=None,
) -> torch.Tensor:
    """LLaDA block sampler. prompt_ids [B, P] -> ids [B, P + gen_length].

    attention_mask [B, P] keep-mask for the prompt (generated positions are always real); as in the
    official code a bias is built only when it contains a 0, and the CFG pass uses none.
    on_block(block, canvas) is called with a numpy copy of the canvas [B, P + gen_length] after each
    finished block (streaming).
    """
    model.check_ids(prompt_ids)
    steps_per_block = check_llada_lengths(gen_length, steps, block_length)
    _check_non_negative(temperature=temperature, cfg_scale=cfg_scale)
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    noise = _noise_source(noise, generator)
    device = model.device
    batch, prompt_len = prompt_ids.shape
    x = torch.full((batch, prompt_len + gen_length), MASK_ID, dtype=torch.long, device=device)
    x[:, :prompt_len] = prompt_ids.to(device)
    prompt_index = x != MASK_ID

    keep = None
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (batch, prompt_len):
            raise ValueError(f"attention_mask shape {list(attention_mask.shape)} != prompt {[batch, prompt_len]}")
        full = torch.cat([attention_mask.to(device).long(), torch.ones(batch, gen_length, dtype=torch.long, device=device)], 1)
        if (full == 0).any():
            keep = full

    for num_block in range(gen_length // block_length):
        block_start = prompt_len + num_block * block_length
        block_end = block_start + block_length
        num_transfer = get_num_transfer_tokens(x[:, block_start:block_end] == MASK_ID, steps_per_block)
        for i in range(steps_per_block):
            logits = _llada_logits(model, x, keep, prompt_index, cfg_scale)
            _llada_commit(x, logits, block_end, num_transfer[:, i], temperature, remasking, noise,
                          num_block * steps_per_block + i)
        if on_block is not None:
            on_block(num_block, x.cpu().numpy().copy())
    return x


def _llada_logits(model, x: torch.Tensor, keep, prompt_index: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Logits [B, T, V] of the canvas; with guidance, against the canvas with its prompt masked, both
    rows in one batch without a keep-mask (as the official code)."""
    if cfg_scale <= 0.0:
        return model(x, keep)
    un_x = x.clone()
    un_x[prompt_index] = MASK_ID
    logits, un_logits = torch.chunk(model(torch.cat([x, un_x], dim=0)), 2, dim=0)
    return un_logits + (cfg_scale + 1) * (logits - un_logits)


def _llada_commit(x: torch.Tensor, logits: torch.Tensor, block_end: int, k: torch.Tensor, temperature: float,
                  remasking: str, noise, step: int) -> None:
    """One step in place on the canvas x [B, T]: choose a token per masked position, rank the masked
    positions before ``block_end`` by confidence, commit the k[b] best of each row."""
    batch = x.shape[0]
    mask_index = x == MASK_ID
    if temperature == 0:
        x0 = torch.argmax(logits, dim=-1)
    else:
        # candidates: masked positions before the block end (later ones get -inf below)
        candidates = mask_index[:, :block_end].any(dim=0).nonzero()[:, 0]
        x0 = noise.llada_tokens(logits, temperature, step, candidates)
    if remasking == "low_confidence":
        p = F.softmax(logits.to(torch.float64), dim=-1)
        x0_p = torch.gather(p, dim=-1, index=x0.unsqueeze(-1)).squeeze(-1)
    else:
        x0_p = noise.llada_remask_uniform(batch, x.shape[1], step, x.device)
    x0_p[:, block_end:] = -np.inf

    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, -np.inf)
    transfer_index = torch.zeros_like(x0, dtype=torch.bool)
    for j in range(batch):
        _, select_index = torch.topk(confidence[j], k=int(k[j]))
        transfer_index[j, select_index] = True
    x[transfer_index] = x0[transfer_index]


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    return torch.cos(t * math.pi * 0.5)


def _mask_len(num_tokens: int, step: int, timesteps: int, unknown_count: torch.Tensor) -> torch.Tensor:
    # Official arithmetic, float32 ratio included: floor(N cos(pi/2 (s+1)/T)) clamped to [1, unknown-1].
    ratio = 1.0 * (step + 1) / timesteps
    mask_ratio = cosine_schedule(torch.tensor(ratio))
    mask_len = (num_tokens * mask_ratio).floor().unsqueeze(0).to(unknown_count.device)
    return torch.max(torch.tensor([1], device=unknown_count.device), torch.min(unknown_count - 1, mask_len))


def maskgit_floors(num_tokens: int, timesteps: int) -> list[int]:
    """floor(N cos(pi/2 (s+1)/T)) for every step, in the reference's float32 arithmetic; the C++
    MaskGIT loop takes this table so both sides clamp the same numbers."""
    one = torch.ones(1, 1, dtype=torch.long)
    return [int(_mask_len(num_tokens, s, timesteps, one * (num_tokens + 2))[0, 0]) for s in range(timesteps)]


def maskgit_schedule(num_tokens: int, timesteps: int) -> list[int]:
    """How many positions stay masked after each step when starting fully masked (the table in
    docs/samplers.md, "MaskGIT image sampler")."""
    unknown = num_tokens
    out = []
    for step in range(timesteps):
        n = int(_mask_len(num_tokens, step, timesteps, torch.tensor([[unknown]]))[0, 0])
        out.append(n)
        unknown = n
    return out


@torch.no_grad()
def maskgit_generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    uncond_input_ids: torch.Tensor | None = None,
    uncond_attention_mask: torch.Tensor | None = None,
    seq_len: int = 1024,
    timesteps: int = 18,
    guidance_scale: float = 0.0,
    temperature: float = 1.0,
    resolution: int = 512,
    generator: torch.Generator | None = None,
    noise=None,
) -> torch.Tensor:
    """MaskGIT over the image region ``input_ids[:, -(seq_len+1):-1]`` -> codes [B, seq_len].

    Official quirks kept: the unconditional stream is ``uncond_input_ids[:, :resolution+1]`` followed by
    the conditional stream's tail; CFG is ``(1+g) c - g u``; the temperature compounds
    (``T *= 1 - r`` each step); the last step's samples are returned for every position.
    """
    model.check_ids(input_ids)
    _check_positive(seq_len=seq_len, timesteps=timesteps, resolution=resolution)
    _check_non_negative(guidance_scale=guidance_scale, temperature=temperature)
    if input_ids.shape[1] < seq_len + 2:
        raise ValueError(f"input_ids of length {input_ids.shape[1]} cannot hold {seq_len} image tokens + <|eoi|>")
    use_cfg = uncond_input_ids is not None and guidance_scale > 0
    if use_cfg:
        model.check_ids(uncond_input_ids)
        if uncond_attention_mask is None or attention_mask is None:
            raise ValueError("classifier-free guidance needs attention_mask and uncond_attention_mask")
    noise = _noise_source(noise, generator)
    offset = model.layout.image_offset
    codebook = model.layout.image_codebook
    device = model.device
    input_ids = input_ids.to(device).clone()
    region = slice(input_ids.shape[1] - (seq_len + 1), input_ids.shape[1] - 1)
    rel = input_ids[:, region]
    rel = torch.where(rel == MASK_ID, MASK_ID, rel - offset)
    if use_cfg:
        uncond_prefix = uncond_input_ids.to(device)[:, : resolution + 1]
        keep = torch.cat([attention_mask, uncond_attention_mask], dim=0).to(device)
    else:
        keep = attention_mask.to(device) if attention_mask is not None else None
    positions = torch.arange(seq_len, device=device)

    for step in range(timesteps):
        if use_cfg:
            uncond = torch.cat([uncond_prefix, input_ids[:, resolution + 1 :]], dim=1)
            cond_logits, uncond_logits = torch.chunk(model(torch.cat([input_ids, uncond]), keep), 2, dim=0)
            logits = (1 + guidance_scale) * cond_logits - guidance_scale * uncond_logits
        else:
            logits = model(input_ids, keep)
        logits = logits[:, region, offset : offset + codebook]

        probs = logits.softmax(dim=-1)
        sampled = noise.categorical(logits, probs, step, positions)
        unknown = rel == MASK_ID
        sampled = torch.where(unknown, sampled, rel)
        ratio = 1.0 * (step + 1) / timesteps
        selected = torch.gather(probs, -1, sampled.long()[..., None]).squeeze(-1)
        selected = torch.where(unknown, selected, torch.finfo(selected.dtype).max)
        mask_len = _mask_len(seq_len, step, timesteps, unknown.sum(dim=-1, keepdim=True))
        temperature = temperature * (1.0 - ratio)
        u = noise.maskgit_uniform(selected, step)
        confidence = torch.log(selected.clamp(min=1e-20)) + temperature * gumbel_from_uniform(u)
        cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len.long())
        masking = confidence < cut_off
        input_ids[:, region] = torch.where(masking, MASK_ID, sampled + offset)
        rel = torch.where(masking, MASK_ID, sampled)
    return sampled


@torch.no_grad()
def t2s_generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    max_new_tokens: int | None = None,
    steps: int = 256,
    block_length: int = 128,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    generator: torch.Generator | None = None,
    noise=None,
    on_block=None,
) -> list[torch.Tensor]:
    """Text-to-speech (``t2s_generate_mmu_like``) -> per row, speech units [n] in [0, 4096).

    The speech region is the contiguous [MASK] run found in row 0. Logits are restricted to the 4096
    units + <|eoa|> + EOS; tokens are sampled at every temperature (there is no greedy branch); the
    unconditional pass (speech region all [MASK], prompt kept) is the same at every step, so it is
    computed once. Output is cut at the first <|eoa|> / EOS and leftover [MASK]s are dropped.
    on_block(block, canvas) gets a numpy copy of the canvas after each finished block.
    """
    model.check_ids(input_ids)
    _check_positive(steps=steps, block_length=block_length)
    _check_non_negative(temperature=temperature, cfg_scale=cfg_scale)
    noise = _noise_source(noise, generator)
    layout = model.layout
    work = input_ids.to(model.device).clone()
    keep = attention_mask.to(model.device) if attention_mask is not None else None
    mask_full, mask_cols = _speech_region(work)
    max_new = mask_cols.numel() if max_new_tokens is None else min(max_new_tokens, mask_cols.numel())
    _check_positive(max_new_tokens=max_new)
    block_length = max(1, min(block_length, max_new))
    num_blocks = math.ceil(max_new / block_length)
    inner_steps = max(1, steps // num_blocks)
    speech_indices = mask_cols[:max_new]

    uncond_all = None
    if cfg_scale > 0.0:
        uncond = work.clone()
        uncond[:, speech_indices] = MASK_ID
        uncond_all = _speech_logits(model(uncond, keep), speech_indices, layout)

    for block_idx in range(num_blocks):
        lo, hi = block_idx * block_length, min((block_idx + 1) * block_length, max_new)
        curr = speech_indices[lo:hi]
        num_transfer = get_num_transfer_tokens(mask_full[:, curr], inner_steps)
        for inner in range(inner_steps):
            logits = _speech_logits(model(work, keep), curr, layout)
            if uncond_all is not None:
                un = uncond_all[:, lo:hi]
                logits = un + (cfg_scale + 1.0) * (logits - un)
            _t2s_step(work, mask_full, curr, logits, num_transfer[:, inner], temperature, noise,
                      block_idx * inner_steps + inner, layout)
            if not mask_full[:, curr].any():
                break
        if on_block is not None:
            on_block(block_idx, work.cpu().numpy().copy())
    return _speech_units(work[:, mask_cols[0] : mask_cols[0] + mask_cols.numel()], layout)


def _speech_region(work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """canvas [B, T] -> (its [MASK] map [B, T], the masked columns of row 0 [R]); every row must hold
    the same number of masks."""
    mask_full = work == MASK_ID
    if not mask_full.any():
        raise ValueError("no [MASK] positions for the speech region in input_ids")
    mask_cols = torch.where(mask_full[0])[0]
    if not torch.all(mask_full.sum(dim=1) == mask_cols.numel()):
        raise ValueError("every row must hold the same number of masked speech positions")
    return mask_full, mask_cols


def _speech_logits(logits: torch.Tensor, cols: torch.Tensor, layout) -> torch.Tensor:
    """[B, T, V] -> [B, len(cols), 4098]: the units, then <|eoa|>, then EOS."""
    block = logits.index_select(1, cols)
    start, units = layout.speech_offset, layout.speech_codebook
    return torch.cat([block[:, :, start : start + units], block[:, :, EOA_ID : EOA_ID + 1], block[:, :, EOS_ID : EOS_ID + 1]],
                     dim=-1)


def _t2s_step(work, mask_full, curr, logits, k, temperature, noise, step, layout) -> None:
    """One step over the block's positions ``curr``: sample each from its 4098-way logits [B, n] and
    commit, per row, the k[b] most confident still-masked ones (in place in ``work``, ``mask_full``)."""
    if temperature > 0.0:
        logits = logits / max(temperature, 1e-5)
    probs = F.softmax(logits, dim=-1)
    sampled = noise.categorical(logits, probs, step, curr)
    selected = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1)
    rel_eoa, rel_eos = layout.speech_codebook, layout.speech_codebook + 1
    absolute = torch.where(
        sampled == rel_eos,
        torch.full_like(sampled, EOS_ID),
        torch.where(sampled == rel_eoa, torch.full_like(sampled, EOA_ID), sampled + layout.speech_offset),
    )
    current = work.index_select(1, curr)
    mask_current = current == MASK_ID
    confidence = torch.where(mask_current, selected, torch.full_like(selected, float("-inf")))
    finalize = torch.zeros_like(mask_current)
    for b in range(work.shape[0]):
        transfer = min(int(k[b]), int(mask_current[b].sum()))
        if transfer <= 0:
            continue
        _, idxs = torch.topk(confidence[b], k=transfer, largest=True)
        finalize[b, idxs] = True
    updates = torch.where(finalize, absolute, torch.full_like(absolute, MASK_ID))
    new_block = torch.where(mask_current, updates, current)
    work[:, curr] = new_block
    mask_full[:, curr] = new_block == MASK_ID


def _speech_units(region: torch.Tensor, layout) -> list[torch.Tensor]:
    """The speech region [B, R] -> per row the relative units, cut at the first <|eoa|> / EOS, with
    leftover [MASK]s dropped."""
    rel_eoa, rel_eos = layout.speech_codebook, layout.speech_codebook + 1
    outputs = []
    for seq in region:
        relative = torch.where(
            seq == MASK_ID,
            seq,
            torch.where(seq == EOA_ID, rel_eoa, torch.where(seq == EOS_ID, rel_eos, seq - layout.speech_offset)),
        )
        ends = (relative >= rel_eoa).nonzero(as_tuple=True)[0]
        if ends.numel():
            relative = relative[: ends[0]]
        outputs.append(relative[relative != MASK_ID].cpu())
    return outputs
