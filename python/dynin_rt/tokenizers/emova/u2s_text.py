"""UVITS text side: the unit encoder (``enc_p``) and the stochastic duration predictor (``dp``), inference only.

Everything here runs on one unpadded sequence (batch 1), so the official length masks are all ones
and are left out. Attribute names mirror the released checkpoint (``decoder.enc_p.*``,
``decoder.dp.*``) so loading is a rename of the layer-norm and weight-norm quirks only.

Facts (from the EMOVA UVITS code, re-implemented):
* enc_p: embedding * sqrt(hidden); post-LN transformer layers with relative-position attention
  (keys and values get a learned embedding per offset in [-window, window], shared by heads; other
  offsets get none); FFN = conv k -> ReLU -> conv k with same padding; 1x1 ``proj`` -> (m, logs).
* dp, reverse direction only: the input is ``pre`` + ``cond(g)``, DDSConv, ``proj``; the noise
  [1, 2, T] goes through Flip, ConvFlow 7, Flip, ConvFlow 5, Flip, ConvFlow 3, Flip and the inverse of
  the elementwise affine flow 0 (ConvFlow 1 is skipped by the original code); channel 0 is log w.
* ConvFlow: inverse rational-quadratic spline with linear tails outside [-B, B], written without
  boolean indexing so it exports to ONNX / TensorRT.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import U2SArch

GAMMA_BETA = {"weight": "GAMMA", "bias": "BETA"}


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of ``[B, C, T]`` (eps 1e-5); stored as GAMMA / BETA."""

    checkpoint_names = GAMMA_BETA

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels   # a Python int, so export sees a constant normalized shape
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):  # [B, C, T] -> [B, C, T]
        return F.layer_norm(x.transpose(1, 2), (self.channels,), self.weight, self.bias, 1e-5).transpose(1, 2)


class RelPosAttention(nn.Module):
    """Self-attention with relative-position key/value embeddings (offsets -window..window)."""

    def __init__(self, channels: int, n_heads: int, window: int):
        super().__init__()
        self.n_heads, self.window = n_heads, window
        self.d_k = channels // n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window + 1, self.d_k))
        self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window + 1, self.d_k))

    def forward(self, x):  # [1, C, T] -> [1, C, T]
        b, c, t = x.shape
        q = self.conv_q(x).view(b, self.n_heads, self.d_k, t).transpose(2, 3) / math.sqrt(self.d_k)
        k = self.conv_k(x).view(b, self.n_heads, self.d_k, t).transpose(2, 3)
        v = self.conv_v(x).view(b, self.n_heads, self.d_k, t).transpose(2, 3)
        # band[i, j, r] = 1 when key j sits at offset r - window from query i: a dense one-hot of the
        # offsets inside the window, so the relative terms are two small matmuls (export-friendly).
        pos = torch.arange(t, device=x.device, dtype=x.dtype)   # float: exact for integers, simple in TensorRT
        offsets = torch.arange(-self.window, self.window + 1, device=x.device, dtype=x.dtype)
        band = ((pos[None, :] - pos[:, None])[:, :, None] == offsets).to(x.dtype)   # [T, T, R]
        rel_logits = q @ self.emb_rel_k[0].transpose(0, 1)                          # [B, h, T, R]
        scores = q @ k.transpose(2, 3) + (rel_logits.unsqueeze(3) @ band.transpose(1, 2)).squeeze(3)
        p = torch.softmax(scores, dim=-1)                                           # [B, h, T, T]
        rel_weights = (p.unsqueeze(3) @ band).squeeze(3)                            # [B, h, T, R]
        out = p @ v + rel_weights @ self.emb_rel_v[0]                              # [B, h, T, d_k]
        return self.conv_o(out.transpose(2, 3).reshape(b, c, t))


class FFN(nn.Module):
    """conv k -> ReLU -> conv k, same padding (left (k-1)//2, right k//2)."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x):  # [1, C, T] -> [1, C, T]
        x = torch.relu(self.conv_1(F.pad(x, self.pad)))
        return self.conv_2(F.pad(x, self.pad))


class AttentionStack(nn.Module):
    """Post-LN transformer: x = LN(x + attn(x)); x = LN(x + ffn(x)), repeated."""

    def __init__(self, a: U2SArch):
        super().__init__()
        h = a.hidden_channels
        self.attn_layers = nn.ModuleList(RelPosAttention(h, a.n_heads, a.window_size) for _ in range(a.n_layers))
        self.norm_layers_1 = nn.ModuleList(ChannelNorm(h) for _ in range(a.n_layers))
        self.ffn_layers = nn.ModuleList(FFN(h, a.filter_channels, a.kernel_size) for _ in range(a.n_layers))
        self.norm_layers_2 = nn.ModuleList(ChannelNorm(h) for _ in range(a.n_layers))

    def forward(self, x):  # [1, H, T] -> [1, H, T]
        for attn, norm_1, ffn, norm_2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = norm_1(x + attn(x))
            x = norm_2(x + ffn(x))
        return x


class TextEncoder(nn.Module):
    """``enc_p``: symbol ids -> hidden states and the prior's mean / log-std per unit."""

    def __init__(self, a: U2SArch):
        super().__init__()
        self.hidden = a.hidden_channels
        self.emb = nn.Embedding(a.n_vocab, a.hidden_channels)
        self.encoder = AttentionStack(a)
        self.proj = nn.Conv1d(a.hidden_channels, 2 * a.inter_channels, 1)

    def forward(self, ids):
        """ids: [1, T_x] int64 -> (hidden [1, H, T_x], m_p [1, D, T_x], logs_p [1, D, T_x])."""
        x = (self.emb(ids) * math.sqrt(self.hidden)).transpose(1, 2)
        x = self.encoder(x)
        m_p, logs_p = self.proj(x).chunk(2, dim=1)
        return x, m_p, logs_p


class DDSConv(nn.Module):
    """Dilated depth-separable conv stack (dilation k**i), residual; erf GELU."""

    def __init__(self, channels: int, kernel_size: int, n_layers: int):
        super().__init__()
        self.convs_sep, self.convs_1x1 = nn.ModuleList(), nn.ModuleList()
        self.norms_1, self.norms_2 = nn.ModuleList(), nn.ModuleList()
        for i in range(n_layers):
            dil = kernel_size ** i
            self.convs_sep.append(nn.Conv1d(channels, channels, kernel_size, groups=channels, dilation=dil,
                                            padding=(kernel_size * dil - dil) // 2))
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(ChannelNorm(channels))
            self.norms_2.append(ChannelNorm(channels))

    def forward(self, x):  # [1, C, T] -> [1, C, T]
        for sep, pw, n1, n2 in zip(self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2):
            x = x + F.gelu(n2(pw(F.gelu(n1(sep(x))))))
        return x


def inverse_spline(y, widths_u, heights_u, derivs_u, tail_bound: float,
                   min_width: float = 1e-3, min_height: float = 1e-3, min_derivative: float = 1e-3):
    """Inverse of a monotone rational-quadratic spline on [-B, B] with identity (linear) tails.

    Parameters
    ----------
    y : torch.Tensor
        ``[...]`` values to invert.
    widths_u, heights_u : torch.Tensor
        ``[..., K]`` unnormalized bin widths and heights.
    derivs_u : torch.Tensor
        ``[..., K - 1]`` unnormalized inner knot derivatives (the two outer ones are fixed to 1).
    tail_bound : float
        B.

    Returns
    -------
    torch.Tensor
        ``[...]`` x with spline(x) = y; y outside [-B, B] is returned unchanged.
    """
    k = widths_u.shape[-1]
    inside = (y >= -tail_bound) & (y <= tail_bound)
    yc = y.clamp(-tail_bound, tail_bound)
    # Outer derivatives: softplus(c) = 1 - min_derivative, so min_derivative + softplus(c) = 1.
    edge = float(np.log(np.expm1(1.0 - min_derivative)))
    derivs = min_derivative + F.softplus(F.pad(derivs_u, (1, 1), value=edge))          # [..., K + 1]

    def knots(unnorm, min_bin):
        frac = min_bin + (1.0 - min_bin * k) * torch.softmax(unnorm, dim=-1)
        cum = F.pad(torch.cumsum(frac, dim=-1), (1, 0)) * (2 * tail_bound) - tail_bound
        # The end knots are exactly -B and B (the cumulative sum can miss 1 by rounding).
        inner = cum[..., 1:-1]
        cum = torch.cat([torch.full_like(cum[..., :1], -tail_bound), inner,
                         torch.full_like(cum[..., :1], tail_bound)], dim=-1)
        return cum, cum[..., 1:] - cum[..., :-1]

    cumw, widths = knots(widths_u, min_width)
    cumh, heights = knots(heights_u, min_height)
    # Bin search on the height knots; the last knot is nudged up by 1e-6 as in the original so that
    # y = B lands in the last bin.
    search = torch.cat([cumh[..., :-1], cumh[..., -1:] + 1e-6], dim=-1)
    idx = ((yc.unsqueeze(-1) >= search).sum(dim=-1, keepdim=True) - 1).clamp(0, k - 1)   # [..., 1]

    def at(t):
        return t.gather(-1, idx).squeeze(-1)

    x_lo, w, y_lo, h = at(cumw), at(widths), at(cumh), at(heights)
    d0, d1 = at(derivs), at(derivs[..., 1:])
    delta = h / w
    dy = yc - y_lo
    s = d0 + d1 - 2 * delta
    a = dy * s + h * (delta - d0)
    b = h * d0 - dy * s
    c = -delta * dy
    root = (2 * c) / (-b - torch.sqrt((b * b - 4 * a * c).clamp_min(0.0)))
    return torch.where(inside, root * w + x_lo, y)


class ConvFlow(nn.Module):
    """Spline coupling on 2 channels: channel 0 conditions the spline applied to channel 1."""

    def __init__(self, filter_channels: int, kernel_size: int, n_layers: int, bins: int, tail_bound: float):
        super().__init__()
        self.filter_channels, self.bins, self.tail_bound = filter_channels, bins, tail_bound
        self.pre = nn.Conv1d(1, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers)
        self.proj = nn.Conv1d(filter_channels, 3 * bins - 1, 1)

    def reverse(self, x, cond):  # x [1, 2, T], cond [1, C, T] -> [1, 2, T]
        x0, x1 = x[:, :1], x[:, 1:]
        h = self.proj(self.convs(self.pre(x0) + cond))                     # [1, 3K - 1, T]
        h = h.transpose(1, 2)                                               # [1, T, 3K - 1]
        scale = 1.0 / math.sqrt(self.filter_channels)
        widths, heights = h[..., : self.bins] * scale, h[..., self.bins: 2 * self.bins] * scale
        x1 = inverse_spline(x1[:, 0], widths, heights, h[..., 2 * self.bins:], self.tail_bound)
        return torch.cat([x0, x1.unsqueeze(1)], dim=1)


class ElementwiseAffine(nn.Module):
    """Flow 0 of the duration predictor: y = m + exp(logs) * x per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def reverse(self, y):  # [1, C, T] -> [1, C, T]
        return (y - self.m) * torch.exp(-self.logs)


class StochasticDurationPredictor(nn.Module):
    """``dp`` in the reverse (sampling) direction: hidden states + noise -> log durations.

    ``flows`` keeps the original indices (0 affine, odd ConvFlows, even Flips as placeholders); the
    original reverse pass never uses ConvFlow 1, so the loader drops its tensors.
    """

    def __init__(self, a: U2SArch):
        super().__init__()
        c = a.hidden_channels  # the original forces filter_channels = in_channels
        self.pre = nn.Conv1d(c, c, 1)
        self.proj = nn.Conv1d(c, c, 1)
        self.convs = DDSConv(c, a.sdp_kernel_size, a.sdp_dds_layers)
        self.cond = nn.Conv1d(a.gin_channels, c, 1)
        flows = [ElementwiseAffine(2)]
        for i in range(a.sdp_n_flows):
            used = i > 0
            flows.append(ConvFlow(c, a.sdp_kernel_size, a.sdp_dds_layers, a.spline_bins, a.spline_tail_bound)
                         if used else nn.Identity())
            flows.append(nn.Identity())
        self.flows = nn.ModuleList(flows)

    def forward(self, hidden, g, noise):
        """hidden [1, H, T_x], g [1, G, 1], noise [1, 2, T_x] (already times noise_scale_w) -> log w [1, 1, T_x]."""
        x = self.proj(self.convs(self.pre(hidden) + self.cond(g)))
        z = noise
        for i in range(len(self.flows) - 2, 1, -2):        # ConvFlows 7, 5, 3, each after a Flip
            z = self.flows[i].reverse(torch.flip(z, [1]), x)
        z = self.flows[0].reverse(torch.flip(z, [1]))
        return z[:, :1]
