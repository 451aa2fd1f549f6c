"""UVITS waveform side: the normalizing flow (``flow``) in reverse and the HiFi-GAN generator (``dec``).

Batch 1, no padding, so the official frame masks are all ones and are left out. Weight-normed convs
are plain convs here (the loader folds ``weight_g`` / ``weight_v``); they carry ``checkpoint_names``
only so that "missing tensor" errors name ``weight_g`` the way the released file does.

Facts (from the EMOVA UVITS code, re-implemented):
* flow: 4 mean-only affine couplings, each followed by a channel Flip; reversed, every step is
  Flip then x1 -= post(WN(pre(x0), g)). WN: gated tanh * sigmoid units over dilation-1 convs, the
  style vector enters through one 1x1 ``cond_layer`` sliced per layer, skip outputs summed.
* dec: conv_pre k7 + cond(g); per stage LeakyReLU(0.1), transposed conv (kernel k, stride u,
  padding (k - u) // 2), mean of the multi-receptive-field ResBlock1s; then LeakyReLU with slope
  0.01 (PyTorch's default, not 0.1), conv_post k7 without bias, tanh.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import U2SArch

LRELU_SLOPE = 0.1
WEIGHT_NORM_NAMES = {"weight": "weight_g"}


def _wn(conv: nn.Module) -> nn.Module:
    """Mark a conv as weight-normed in the checkpoint (for error messages only)."""
    conv.checkpoint_names = WEIGHT_NORM_NAMES
    return conv


class WN(nn.Module):
    """WaveNet-style gated conv stack conditioned on the style vector."""

    def __init__(self, hidden: int, kernel_size: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden = hidden
        self.cond_layer = _wn(nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1))
        self.in_layers = nn.ModuleList(
            _wn(nn.Conv1d(hidden, 2 * hidden, kernel_size, padding=kernel_size // 2)) for _ in range(n_layers))
        self.res_skip_layers = nn.ModuleList(
            _wn(nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1)) for i in range(n_layers))

    def forward(self, x, g):  # x [1, H, T], g [1, G, 1] -> [1, H, T]
        h = self.hidden
        g_all = self.cond_layer(g)
        out = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (inp, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            z = inp(x) + g_all[:, 2 * h * i: 2 * h * (i + 1)]
            acts = torch.tanh(z[:, :h]) * torch.sigmoid(z[:, h:])
            rs = res_skip(acts)
            if i < last:
                x = x + rs[:, :h]
                out = out + rs[:, h:]
            else:
                out = out + rs
        return out


class MeanOnlyCoupling(nn.Module):
    """Affine coupling without scale: x1 <- x1 - m(x0)."""

    def __init__(self, a: U2SArch):
        super().__init__()
        self.half = a.inter_channels // 2
        self.pre = nn.Conv1d(self.half, a.hidden_channels, 1)
        self.enc = WN(a.hidden_channels, a.flow_kernel_size, a.flow_n_layers, a.gin_channels)
        self.post = nn.Conv1d(a.hidden_channels, self.half, 1)

    def reverse(self, x, g):  # [1, D, T] -> [1, D, T]
        x0, x1 = x[:, : self.half], x[:, self.half:]
        m = self.post(self.enc(self.pre(x0), g))
        return torch.cat([x0, x1 - m], dim=1)


class ResidualFlow(nn.Module):
    """``flow``: couplings at even indices, Flips (no parameters) at odd ones."""

    def __init__(self, a: U2SArch):
        super().__init__()
        mods = []
        for _ in range(a.flow_n_flows):
            mods += [MeanOnlyCoupling(a), nn.Identity()]
        self.flows = nn.ModuleList(mods)

    def reverse(self, z, g):  # [1, D, T_y] -> [1, D, T_y]
        for i in range(len(self.flows) - 2, -1, -2):
            z = self.flows[i].reverse(torch.flip(z, [1]), g)
        return z


class ResBlock1(nn.Module):
    """Three (LReLU, dilated conv, LReLU, conv) residual pairs."""

    def __init__(self, channels: int, kernel_size: int, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2))
            for d in dilations)
        self.convs2 = nn.ModuleList(
            _wn(nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)) for _ in dilations)

    def forward(self, x):  # [1, C, T] -> [1, C, T]
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """``dec``: HiFi-GAN V1-style generator, [1, D, T_y] -> [1, 1, hop * T_y] in [-1, 1]."""

    def __init__(self, a: U2SArch):
        super().__init__()
        ch = a.upsample_initial_channel
        self.n_kernels = len(a.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(a.inter_channels, ch, 7, padding=3)
        self.cond = nn.Conv1d(a.gin_channels, ch, 1)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(a.upsample_rates, a.upsample_kernel_sizes)):
            c_in, c_out = ch // 2 ** i, ch // 2 ** (i + 1)
            self.ups.append(_wn(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2)))
            for rk, rd in zip(a.resblock_kernel_sizes, a.resblock_dilations):
                self.resblocks.append(ResBlock1(c_out, rk, rd))
        self.conv_post = nn.Conv1d(ch // 2 ** len(a.upsample_rates), 1, 7, padding=3, bias=False)

    def forward(self, z, g):  # z [1, D, T_y], g [1, G, 1] -> [1, 1, hop * T_y]
        x = self.conv_pre(z) + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.n_kernels: (i + 1) * self.n_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / self.n_kernels
        # NOTE: the final LeakyReLU uses PyTorch's default slope 0.01, unlike every other one (0.1).
        return torch.tanh(self.conv_post(F.leaky_relu(x, 0.01)))
