"""The PyTorch reference of the LLaDA/Dynin-Omni backbone (docs/model.md).

Written to reproduce the official ``modeling_llada.py`` numerics operation by operation (same dtypes,
same casts, same order), because every faster path in dynin_rt is tested against it. Notable:

* RMSNorm normalises in fp32, casts back to the weight dtype, *then* multiplies by the weight.
* RoPE tables and the rotation run in fp32 (``rope_full_precision``) with positions 0..T-1 that
  count left pads; half rotation (NeoX style).
* A keep-mask m [B, T] becomes the official float bias: 1.0 where both query and key are real,
  finfo(float32).min elsewhere, cast to the compute dtype with -inf replaced by that dtype's min.
  Pad query rows therefore attend uniformly; their outputs are never read.
* Logits at position i are for token i (no autoregressive shift); the head is untied.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import ModelConfig, iter_tensors, read_config
from ..errors import TokenizerMissingError
from ..tokens import TextTokenizer, TokenLayout


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    xf = x.to(torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def rope_tables(length: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """sin, cos [length, head_dim] in fp32, exactly as RotaryEmbedding.get_rotary_embedding."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float) / head_dim))
    seq = torch.arange(length, device=device, dtype=torch.float)
    freqs = torch.einsum("i , j -> i j", seq, inv_freq)
    positions = torch.cat((freqs, freqs), dim=-1)
    return positions.sin(), positions.cos()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    b, nh, t, hs = x.shape
    x1, x2 = x.view(b, nh, t, 2, hs // 2).unbind(dim=-2)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    # x: [B, H, T, D] in the model dtype; the rotation happens in fp32 and is cast back.
    xf = x.float()
    return ((xf * cos) + (rotate_half(xf) * sin)).type_as(x)


def keep_mask_bias(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] keep-mask (1 real, 0 pad) -> the official additive bias [B, 1, T, T] in ``dtype``."""
    allowed = (keep[:, :, None].bool() & keep[:, None, :].bool()).unsqueeze(1)
    bias = allowed.to(torch.float)
    bias.masked_fill_(bias == 0.0, torch.finfo(torch.float).min)
    if dtype != torch.float:
        bias = bias.to(dtype)
        bias.masked_fill_(bias == float("-inf"), torch.finfo(dtype).min)
    return bias


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, h = cfg.d_model, cfg.mlp_hidden_size
        self.attn_norm = nn.Module()
        self.attn_norm.weight = nn.Parameter(torch.ones(d))
        self.ff_norm = nn.Module()
        self.ff_norm.weight = nn.Parameter(torch.ones(d))
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_proj = nn.Linear(d, h, bias=False)
        self.up_proj = nn.Linear(d, h, bias=False)
        self.ff_out = nn.Linear(h, d, bias=False)

    def forward(self, x, cfg: ModelConfig, sin, cos, bias):
        b, t, c = x.shape
        nh, hd = cfg.n_heads, cfg.head_dim
        h = rms_norm(x, self.attn_norm.weight, cfg.rms_norm_eps)
        q = self.q_proj(h).view(b, t, nh, hd).transpose(1, 2)
        k = self.k_proj(h).view(b, t, nh, hd).transpose(1, 2)
        v = self.v_proj(h).view(b, t, nh, hd).transpose(1, 2)
        q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=0.0, is_causal=False)
        x = x + self.attn_out(att.transpose(1, 2).contiguous().view(b, t, c))
        h = rms_norm(x, self.ff_norm.weight, cfg.rms_norm_eps)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class DyninOmni(nn.Module):
    """Dynin-Omni (or MMaDA-8B / LLaDA-8B) backbone with the official numerics.

    ``m(input_ids, attention_mask=None) -> logits [B, T, V]``; ``attention_mask`` is the keep-mask
    (1 = real token, 0 = pad), applied to rows and columns. Samplers live in
    :mod:`dynin_rt.reference.samplers` and are exposed as methods here.
    """

    def __init__(self, cfg: ModelConfig, layout: TokenLayout, tokenizer: TextTokenizer | None = None):
        super().__init__()
        self.config = cfg
        self.layout = layout
        self._tokenizer = tokenizer
        self.model = nn.Module()
        self.model.transformer = nn.Module()
        tr = self.model.transformer
        tr.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        tr.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        tr.ln_f = nn.Module()
        tr.ln_f.weight = nn.Parameter(torch.ones(cfg.d_model))
        tr.ff_out = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._rope_cache: dict = {}

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        text_vocab_size: int | None = None,
    ) -> "DyninOmni":
        """Load an HF checkpoint directory unchanged (config.json + safetensors, single or sharded).

        dtype: convert the weights (None keeps the checkpoint's dtype). text_vocab_size: L for a
        directory without tokenizer files (otherwise L = len(tokenizer)).
        """
        directory = os.fspath(directory)
        if dtype is not None and dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, not {dtype}")
        cfg = read_config(directory)
        tokenizer = None
        if os.path.isfile(os.path.join(directory, "tokenizer.json")):
            tokenizer = TextTokenizer(directory)
            if text_vocab_size is not None and text_vocab_size != len(tokenizer):
                raise ValueError(f"text_vocab_size {text_vocab_size} != len(tokenizer) {len(tokenizer)}")
            text_vocab_size = len(tokenizer)
        layout = TokenLayout(vocab_size=cfg.vocab_size, text_vocab=text_vocab_size)
        layout.validate(cfg.model_type)
        with torch.device("meta"):
            model = cls(cfg, layout, tokenizer)
        state = {}
        for name, tensor in iter_tensors(directory, cfg):
            state[name] = tensor.to(device=device, dtype=dtype or tensor.dtype)
        dtypes = {t.dtype for t in state.values()}
        if len(dtypes) != 1:
            target = dtype or torch.float32
            state = {k: v.to(target) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        model.eval().requires_grad_(False)
        return model

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            raise TokenizerMissingError(
                "this checkpoint has no tokenizer.json: text-level calls need the tokenizer files "
                "(token-level calls such as forward and generate_text on ids still work)"
            )
        return self._tokenizer

    @property
    def dtype(self) -> torch.dtype:
        return self.model.transformer.wte.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.transformer.wte.weight.device

    # -- forward -------------------------------------------------------------------------------
    def _rope(self, length: int, device):
        # The official code builds the table for max_sequence_length once and slices it.
        n = max(length, self.config.max_sequence_length)
        key = (n, str(device))
        if key not in self._rope_cache:
            self._rope_cache = {key: rope_tables(n, self.config.head_dim, self.config.rope_theta, device)}
        sin, cos = self._rope_cache[key]
        return sin[:length], cos[:length]

    def check_ids(self, input_ids: torch.Tensor) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a 2-D integer tensor [B, T]")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be int64 or int32, not {input_ids.dtype}")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids is empty (shape {list(input_ids.shape)})")
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= self.config.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} outside [0, {self.config.vocab_size})")

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, V] in the model dtype.

        attention_mask [B, T] (1 real, 0 pad) adds the official row-and-column pad bias; None means
        no bias at all (every position attends to every other).
        """
        self.check_ids(input_ids)
        b, t = input_ids.shape
        cfg = self.config
        if t > cfg.max_sequence_length:
            raise ValueError(f"sequence of {t} tokens exceeds max_sequence_length {cfg.max_sequence_length}")
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (b, t):
                raise ValueError(f"attention_mask shape {list(attention_mask.shape)} != input_ids {[b, t]}")
            bias = keep_mask_bias(attention_mask.to(self.device), self.dtype)
        else:
            bias = None
        tr = self.model.transformer
        x = tr.wte(input_ids.to(self.device).long())
        sin, cos = self._rope(t, self.device)
        for block in tr.blocks:
            x = block(x, cfg, sin, cos, bias)
        x = rms_norm(x, tr.ln_f.weight, cfg.rms_norm_eps)
        return tr.ff_out(x)

    # -- samplers (dynin_rt.reference.samplers) --------------------------------------------------
    def generate_text(self, prompt_ids, **kwargs):
        """LLaDA block sampler; see :func:`dynin_rt.reference.samplers.llada_generate`."""
        from .samplers import llada_generate

        return llada_generate(self, prompt_ids, **kwargs)

    def generate_image(self, input_ids, attention_mask, **kwargs):
        """MaskGIT sampler; see :func:`dynin_rt.reference.samplers.maskgit_generate`."""
        from .samplers import maskgit_generate

        return maskgit_generate(self, input_ids, attention_mask, **kwargs)

    def generate_speech(self, input_ids, attention_mask, **kwargs):
        """Text-to-speech sampler; see :func:`dynin_rt.reference.samplers.t2s_generate`."""
        from .samplers import t2s_generate

        return t2s_generate(self, input_ids, attention_mask, **kwargs)
