"""EMOVA speech-to-units encoder (SPIRAL conv + transformer stacks, linear 768 -> 4, FSQ [8, 8, 8, 8]).

Pipeline, for one 16 kHz mono signal (batch 1):

1. :class:`MelFrontEnd` (host side for every backend; it is cheap and keeps the FFT in torch):
   peak normalisation x / (max|x| + 1e-5); pre-emphasis 0.97 (first sample kept); STFT n_fft 512,
   hop 160, symmetric Hann window of 320 zero-padded to 512, centred with reflect padding; power;
   128-bin Slaney mel (librosa's default filterbank, 0-8 kHz); log(x + 2^-24); per-bin
   normalisation over the ceil(N / 160) valid frames with the unbiased std + 1e-5.
2. :class:`SpiralNet` (the exported graph): convs and two pre-LN transformers, ``pre_quant``, FSQ.

Batch 1 means no padded frames, so the original's length masks are not needed; the one place where
its padding shows is the odd "TF-style" conv padding. The original picks the pad from
``x.size(-2)``, which for a 1-D conv is the *channel* count: a stride-2 conv on an even number of
channels pads (k//2 - 1) on the left, otherwise k//2. The right pad here is k - 1 - left, which
makes every conv emit ceil(T / stride) frames from unpadded input exactly as the original does from
its zero-padded batch (its extra zero frames are never read by a valid output).

FSQ: bound(z) = tanh(z + atanh-free shift tan(0.5 / h)) * h - 0.5 with h = (L - 1)(1 - 1e-3) / 2 for
even L, rounded half-to-even to an integer q in [-L/2, L/2 - 1]; unit = sum_d (q_d + L/2) * prod(L_<d)
(dimension 0 least significant).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import S2UArch

# Checkpoint tensors under "encoder." that inference never reads: the CTC head and the masking
# embedding of pre-training.
ENCODER_UNUSED = ("encoder.decoder.", "encoder.encoder.mask_emb")
# Buffers the twin computes itself and takes from the checkpoint when present.
ENCODER_OPTIONAL = ("encoder.wav2spec.featurizer.fb", "encoder.wav2spec.featurizer.window",
                    "quantizer._levels_np", "quantizer._basis")


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                          fmax: float | None = None) -> np.ndarray:
    """librosa's default mel filterbank (Slaney mel scale, Slaney area normalisation).

    Returns
    -------
    np.ndarray
        ``[n_mels, n_fft // 2 + 1]`` float32.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        log_part = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
        return np.where(f >= min_log_hz, log_part, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


class _Featurizer(nn.Module):
    """Holds the ``window`` and ``fb`` buffers under the original names."""

    def __init__(self, a: S2UArch):
        super().__init__()
        self.register_buffer("window", torch.hann_window(a.win_length, periodic=False))
        self.register_buffer("fb", torch.from_numpy(slaney_mel_filterbank(a.sample_rate, a.n_fft, a.n_mels))[None])


class MelFrontEnd(nn.Module):
    """Waveform -> normalised log-mel features (``wav2spec`` of the original)."""

    def __init__(self, a: S2UArch):
        super().__init__()
        self.arch = a
        self.featurizer = _Featurizer(a)

    def forward(self, wav):
        """wav: [N] float32 at 16 kHz, N > hop -> features [1, n_mels, ceil(N / hop)]."""
        a = self.arch
        n_frames = -(-wav.shape[0] // a.hop_length)
        x = wav / (wav.abs().max() + 1e-5)
        x = torch.cat([x[:1], x[1:] - 0.97 * x[:-1]])
        spec = torch.stft(x, n_fft=a.n_fft, hop_length=a.hop_length, win_length=a.win_length,
                          window=self.featurizer.window, center=True, pad_mode="reflect", return_complex=True)
        # Magnitude then power, in the original's order (it squares the sqrt of re^2 + im^2).
        power = torch.view_as_real(spec).pow(2).sum(-1).sqrt().pow(2)
        mel = torch.log(self.featurizer.fb[0] @ power + 2.0 ** -24)[:, :n_frames]       # [n_mels, T]
        mel = (mel - mel.mean(dim=1, keepdim=True)) / (mel.std(dim=1, keepdim=True) + 1e-5)
        return mel[None]


def tf_padding(in_channels: int, kernel: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding of a SPIRAL conv; see the module docstring for the odd rule."""
    left = kernel // 2 - 1 if stride == 2 and in_channels % 2 == 0 else kernel // 2
    return left, kernel - 1 - left


class _Conv(nn.Module):
    """The original's ``Conv`` wrapper: holds ``conv`` (so names read ``conv.conv.weight``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.pad = tf_padding(c_in, kernel, stride) if kernel > 1 else (0, 0)
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride)

    def forward(self, x):  # [1, C_in, T] -> [1, C_out, ceil(T / stride)]
        return self.conv(F.pad(x, self.pad))


class ConvNormAct(nn.Module):
    """conv -> LayerNorm over channels -> optional ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, relu: bool):
        super().__init__()
        self.conv = _Conv(c_in, c_out, kernel, stride)
        self.norm = nn.LayerNorm(c_out, eps=1e-5)
        self.relu = relu

    def forward(self, x):  # [1, C_in, T] -> [1, C_out, T']
        x = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
        return torch.relu(x) if self.relu else x


class SelfAttention(nn.Module):
    """fairseq MultiheadAttention (separate q/k/v/out projections), no masks (batch 1)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):  # [1, T, D] -> [1, T, D]
        b, t, d = x.shape
        q = (self.q_proj(x) * self.head_dim ** -0.5).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        out = torch.softmax(q @ k.transpose(2, 3), dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer with an erf-GELU FFN."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x):  # [1, T, D] -> [1, T, D]
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class SpiralTransformer(nn.Module):
    """Conv positional embedding (weight-normed over dim 2, last frame dropped, GELU) + layers + final LN."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, pos_kernel: int, pos_groups: int):
        super().__init__()
        conv = nn.Conv1d(dim, dim, pos_kernel, padding=pos_kernel // 2, groups=pos_groups)
        conv.checkpoint_names = {"weight": "weight_g"}
        conv.weight_norm_dim = 2   # fairseq normalises the positional conv per kernel tap
        self.pos_conv = nn.ModuleList([conv])
        self.trim = pos_kernel % 2 == 0   # an even kernel with padding k // 2 yields one extra frame
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn) for _ in range(layers))
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x):  # [1, D, T] -> [1, D, T]
        pos = self.pos_conv[0](x)
        if self.trim:
            pos = pos[:, :, :-1]
        h = (x + F.gelu(pos)).transpose(1, 2)
        for layer in self.layers:
            h = layer(h)
        return self.layer_norm(h).transpose(1, 2)


class _FeatureEncoder(nn.Module):
    """``feature_encoder``: one flat ``block_modules`` list as in the original."""

    def __init__(self, a: S2UArch):
        super().__init__()
        blocks, c = [], a.n_mels
        for convs, (layers, heads, ffn) in ((a.convs1, (a.layers1, a.heads1, a.ffn1)),
                                            (a.convs2, (a.layers2, a.heads2, a.ffn2))):
            for c_out, kernel, stride in convs:
                blocks.append(ConvNormAct(c, c_out, kernel, stride, relu=kernel > 1))
                c = c_out
            blocks.append(SpiralTransformer(c, layers, heads, ffn, a.pos_conv_kernel, a.pos_conv_groups))
        self.block_modules = nn.ModuleList(blocks)

    def forward(self, x):  # [1, n_mels, T] -> [1, D, ceil(T / 4)]
        for block in self.block_modules:
            x = block(x)
        return x


class _Encoder(nn.Module):
    """``encoder`` of the original VQCTCFinetuneModel (front end + feature encoder)."""

    def __init__(self, a: S2UArch):
        super().__init__()
        self.wav2spec = MelFrontEnd(a)
        self.feature_encoder = _FeatureEncoder(a)


class FSQ(nn.Module):
    """Finite scalar quantiser: ``[..., d]`` -> unit indices ``[...]`` int32 (as the original's ``.to(torch.int)``)."""

    def __init__(self, levels):
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("_levels_np", lv)
        self.register_buffer("_basis", torch.cat([torch.ones(1), torch.cumprod(lv[:-1], 0)]))

    def forward(self, z):
        levels = self._levels_np
        half_l = (levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(levels % 2 == 1, 0.0, 0.5)
        q = torch.round(torch.tanh(z + torch.tan(offset / half_l)) * half_l - offset)
        half_w = torch.floor(levels / 2)
        return ((q + half_w) * self._basis).sum(-1).to(torch.int32)


class SpiralNet(nn.Module):
    """Features -> units; the part of the encoder that is exported (attribute names as the checkpoint)."""

    def __init__(self, a: S2UArch):
        super().__init__()
        self.arch = a
        self.encoder = _Encoder(a)
        self.pre_quant = nn.Linear(a.dim2, len(a.levels))
        self.quantizer = FSQ(a.levels)

    def forward(self, feats):
        """feats [1, n_mels, T] -> unreduced units [1, ceil(ceil(T / 2) / 2)] int32."""
        h = self.encoder.feature_encoder(feats).transpose(1, 2)     # [1, T', D]
        return self.quantizer(self.pre_quant(h))

    def features(self, wav):
        """wav [N] float32 (16 kHz) -> [1, n_mels, ceil(N / hop)]."""
        return self.encoder.wav2spec(wav)

    def load(self, ledger) -> None:
        """Fill every tensor from a :class:`~dynin_rt.tokenizers.emova.weights.CheckpointLedger`."""
        from ...errors import CheckpointError

        ledger.drop(ENCODER_UNUSED)
        ledger.load_module(self, "encoder.", optional=ENCODER_OPTIONAL)
        expect = torch.tensor(self.arch.levels, dtype=torch.float32)
        if not torch.equal(self.quantizer._levels_np, expect):
            raise CheckpointError(f"{ledger.where}: encoder.quantizer._levels_np is "
                                  f"{self.quantizer._levels_np.tolist()}, expected {list(self.arch.levels)}")
        basis = torch.cat([torch.ones(1), torch.cumprod(expect[:-1], 0)])
        if not torch.equal(self.quantizer._basis, basis):
            raise CheckpointError(f"{ledger.where}: encoder.quantizer._basis is {self.quantizer._basis.tolist()}, "
                                  f"expected {basis.tolist()}")


def reduce_units(units: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicates: [5, 5, 7, 5] -> [5, 7, 5]. ``[N]`` -> ``[M]``, M <= N."""
    units = np.asarray(units)
    if units.size == 0:
        return units.copy()
    keep = np.ones(units.shape[0], dtype=bool)
    keep[1:] = units[1:] != units[:-1]
    return units[keep]
