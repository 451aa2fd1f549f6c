"""MAGVIT-v2 network (Show-o ``MAGVITv2``): encoder, lookup-free quantizer, decoder
(docs/tokenizers.md, "MAGVIT-v2").

Module and parameter names reproduce the released ``showlab/magvitv2`` state dict exactly, so the
checkpoint loads with strict key matching; the layout is described by :class:`MagvitConfig`.

Invariants
----------
* The encoder and decoder are asymmetric: encoder ``ch_mult (1, 2, 2, 4, 4)`` with
  ``(4, 3, 4, 3, 4)`` blocks per level, decoder ``ch_mult (1, 1, 2, 2, 4)`` with ``(4, 4, 3, 4, 3)``.
  Exactly ``num_res_blocks[level]`` blocks per level (not taming's +1), no attention outside the
  mid block, four 2x resamplings: a ``h x w`` token grid is a ``16h x 16w`` image.
* LFQ: 13 channels, code ``k`` <-> channel ``c`` holds ``2 * bit(12 - c, k) - 1`` (MSB first);
  quantization is ``z > 0`` (exactly 0 maps to bit 0). Tokens are row-major: ``t = y * w + x``.
* GroupNorm(32 groups, eps 1e-6), swish, no tanh or clamp on the decoder output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CODEBOOK_BITS = 13
CODEBOOK_SIZE = 1 << CODEBOOK_BITS  # 8192
DOWNSAMPLE = 16  # pixels per token side
GN_GROUPS = 32
GN_EPS = 1e-6


@dataclass(frozen=True)
class MagvitConfig:
    """Architecture of a MAGVIT-v2 tokenizer; the defaults are the released ``showlab/magvitv2``.

    The official ``config.json`` carries no architecture fields, so a checkpoint without the
    ``dynin_rt_magvit`` entry (see :mod:`dynin_rt.testing.magvit`) is this default. Only the width and
    block counts may vary (for small test checkpoints); the code is always 13-bit LFQ.
    """

    ch: int = 128
    encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)
    encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)

    def __post_init__(self):
        if self.ch % GN_GROUPS:
            raise ValueError(f"ch={self.ch} must be a multiple of {GN_GROUPS} (GroupNorm groups)")
        for side in ("encoder", "decoder"):
            mult, blocks = getattr(self, f"{side}_ch_mult"), getattr(self, f"{side}_num_res_blocks")
            # Four 2x resamplings make the 16x token stride the public API relies on.
            if len(mult) != 5 or len(blocks) != 5 or min(blocks) < 1:
                raise ValueError(f"{side}: need 5 levels with >= 1 block each, got ch_mult={mult}, blocks={blocks}")


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, eps 1e-6) that always normalizes in fp32, whatever the activation dtype.

    In an fp16/bf16 copy of the network (the reduced-precision ONNX export) the variance would
    otherwise overflow or lose precision. The casts are skipped in fp32 so that the exported fp32
    graph carries no identity Casts (the dtype test runs once, at trace time).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        y = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


def _norm(channels: int) -> nn.GroupNorm:
    return GroupNorm32(GN_GROUPS, channels, eps=GN_EPS, affine=True)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


def _conv1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3 -> GN -> swish -> conv3, plus a 1x1 ``nin_shortcut`` when widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = _conv3(cin, cout)
        self.norm2 = _norm(cout)
        self.conv2 = _conv3(cout, cout)
        if cin != cout:
            self.nin_shortcut = _conv1(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, cin, H, W] -> [B, cout, H, W]
        # In-place swish and residual add on fresh intermediates only (never on ``x``): at 512 px
        # these tensors are 128 MiB each, and skipping the extra allocations is measurably faster on CPU.
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h.add_(self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x)


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, scale C^-0.5, 1x1-conv projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = _conv1(channels, channels)
        self.k = _conv1(channels, channels)
        self.v = _conv1(channels, channels)
        self.proj_out = _conv1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H, W]
        b, c, h, w = x.shape
        n = self.norm(x)

        def heads(t):  # [B, C, H, W] -> [B, 1, H*W, C]
            return t.flatten(2).transpose(1, 2).unsqueeze(1)

        # SDPA's default scale 1/sqrt(head_dim) with one head of width C is the official C^-0.5.
        # Logits and softmax in fp32 even in a reduced-precision copy (C = 512 logits overflow fp16).
        q, k, v = (heads(p(n)) for p in (self.q, self.k, self.v))
        if x.dtype == torch.float32:
            a = F.scaled_dot_product_attention(q, k, v)
        else:
            a = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(x.dtype)
        a = a.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(a)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv (taming's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H/2, W/2]
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, 2H, 2W]
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution level: ``block.{j}`` plus an optional ``downsample`` / ``upsample``.

    The official levels also own an ``attn`` list that is always empty for this model (its
    attention resolution never occurs), so it has no parameters and is left out.
    """

    def __init__(self, cin: int, cout: int, num_blocks: int, resample: str | None):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if j == 0 else cout, cout) for j in range(num_blocks))
        if resample == "down":
            self.downsample = Downsample(cout)
        elif resample == "up":
            self.upsample = Upsample(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.block:
            x = blk(x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        return x


class Encoder(nn.Module):
    """Pixels in [-1, 1] -> continuous latent before quantization (``quant_conv`` included)."""

    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        mult, blocks = cfg.encoder_ch_mult, cfg.encoder_num_res_blocks
        self.conv_in = _conv3(3, cfg.ch)
        widths = [cfg.ch] + [cfg.ch * m for m in mult]
        last = len(mult) - 1
        self.down = nn.ModuleList(
            _Level(widths[i], widths[i + 1], blocks[i], "down" if i != last else None) for i in range(len(mult))
        )
        top = widths[-1]
        self.mid = _Mid(top)
        self.norm_out = _norm(top)
        self.conv_out = _conv3(top, CODEBOOK_BITS)
        self.quant_conv = _conv1(CODEBOOK_BITS, CODEBOOK_BITS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, 16h, 16w] -> [B, 13, h, w]
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        x = self.mid(x)
        x = self.conv_out(F.silu(self.norm_out(x), inplace=True))
        return self.quant_conv(x)


class Decoder(nn.Module):
    """Quantized latent (+-1 per channel) -> pixels, nominally in [-1, 1] but not clamped."""

    def __init__(self, cfg: MagvitConfig):
        super().__init__()
        mult, blocks = cfg.decoder_ch_mult, cfg.decoder_num_res_blocks
        top = cfg.ch * mult[-1]
        self.post_quant_conv = _conv1(CODEBOOK_BITS, CODEBOOK_BITS)
        self.conv_in = _conv3(CODEBOOK_BITS, top)
        self.mid = _Mid(top)
        # ``up`` is indexed by level (up.0 = full resolution) but runs from the top level down; the
        # input width of level i is the output width of level i + 1.
        widths_in = [cfg.ch * m for m in mult[1:]] + [top]
        self.up = nn.ModuleList(
            _Level(widths_in[i], cfg.ch * mult[i], blocks[i], "up" if i != 0 else None) for i in range(len(mult))
        )
        self.norm_out = _norm(cfg.ch * mult[0])
        self.conv_out = _conv3(cfg.ch * mult[0], 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, 13, h, w] -> [B, 3, 16h, 16w]
        x = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True))


class LFQuantizer(nn.Module):
    """13-bit lookup-free quantizer. Its two buffers are the official ``quantize.*`` entries.

    ``embedding`` [8192, 13] float32 is the code table (row k = the +-1 bits of k, MSB first);
    ``power_vals`` [13] int64 = 2**[12 .. 0]. Decoding gathers table rows rather than extracting
    bits arithmetically, because a constant Gather exports to every ONNX/TensorRT target.
    """

    def __init__(self):
        super().__init__()
        power_vals = torch.tensor([1 << (CODEBOOK_BITS - 1 - c) for c in range(CODEBOOK_BITS)], dtype=torch.int64)
        bits = (torch.arange(CODEBOOK_SIZE).unsqueeze(1) & power_vals) != 0  # [8192, 13]
        self.register_buffer("embedding", bits.float() * 2 - 1)
        self.register_buffer("power_vals", power_vals)

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:  # [B, h, w] int -> [B, 13, h, w]
        # NOTE(magvit): left as the permuted view, i.e. channels-last memory; the convs keep that
        # layout through the whole decoder, which measured 10-20% faster on CPU than NCHW.
        return self.embedding[codes].permute(0, 3, 1, 2)

    def latent_to_codes(self, z: torch.Tensor) -> torch.Tensor:  # [B, 13, h, w] -> [B, h*w] int64
        bits = (z > 0).to(torch.int64)
        return (bits * self.power_vals.view(1, -1, 1, 1)).sum(1).flatten(1)


class MagvitModel(nn.Module):
    """``encoder`` + ``decoder`` + ``quantize``, named as the official ``MAGVITv2`` module."""

    def __init__(self, cfg: MagvitConfig | None = None):
        super().__init__()
        self.config = cfg or MagvitConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quantize = LFQuantizer()

    def encode_codes(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels -> codes.

        Parameters
        ----------
        pixels : torch.Tensor
            [B, 3, 16h, 16w] float in [-1, 1].

        Returns
        -------
        torch.Tensor
            [B, h*w] int64 in [0, 8192), row-major.
        """
        return self.quantize.latent_to_codes(self.encoder(pixels))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes -> pixels.

        Parameters
        ----------
        codes : torch.Tensor
            [B, h, w] integer codes in [0, 8192) (not validated here).

        Returns
        -------
        torch.Tensor
            [B, 3, 16h, 16w] float, nominally in [-1, 1], unclamped.
        """
        return self.decoder(self.quantize.codes_to_latent(codes))
