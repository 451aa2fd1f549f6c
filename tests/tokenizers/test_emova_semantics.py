"""EMOVA speech tokenizer: semantics pinned by hand-computed cases and invariants (no checkpoint)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynin_rt.tokenizers.emova.config import (DEFAULT_STYLE, EMOTIONS, GENDERS, PITCHES, SPEEDS, U2SArch,
                                              default_style_table, style_index, unknown_style_error)
from dynin_rt.tokenizers.emova.s2u import FSQ, _Conv, reduce_units, slaney_mel_filterbank, tf_padding
from dynin_rt.tokenizers.emova.u2s import (durations_from_logw, expand_frames, frame_noise, unit_noise,
                                           units_to_symbols)
from dynin_rt.tokenizers.emova.u2s_text import RelPosAttention, inverse_spline
from dynin_rt.tokenizers.emova.weights import fold_weight_norm


def test_fsq_index_hand_picked():
    # bound(z) = tanh(z + tan(0.5 / h)) * h - 0.5, h = 7 * 0.999 / 2; z = +10 -> 2.9965 -> 3, z = -10 -> -4,
    # z = 0 -> tanh(0.1430) * 3.4965 - 0.5 = 0.0001 -> 0. Index = sum (q_d + 4) * 8^d.
    fsq = FSQ((8, 8, 8, 8))
    z = torch.tensor([[10.0, -10.0, 0.0, 10.0], [-10.0, -10.0, -10.0, -10.0], [10.0, 10.0, 10.0, 10.0]])
    assert fsq(z).tolist() == [(3 + 4) + 0 * 8 + 4 * 64 + 7 * 512, 0, 4095]


def test_fsq_rounds_bins_at_the_right_places():
    fsq = FSQ((8, 8, 8, 8))
    h, shift = 7 * 0.999 / 2, math.tan(0.5 / (7 * 0.999 / 2))
    # z chosen so that bound(z) = q + 0.4 (rounds to q) and q + 0.6 (rounds to q + 1), for q = -3..1
    for q in range(-3, 2):
        for frac, expect in ((0.4, q), (0.6, q + 1)):
            z = math.atanh((q + frac + 0.5) / h) - shift
            assert fsq(torch.tensor([[z, 0.0, 0.0, 0.0]])).item() == (expect + 4) + 4 * 8 + 4 * 64 + 4 * 512


def test_unit_to_symbol_mapping():
    arch = U2SArch()
    assert units_to_symbols(np.array([0, 1, 4095]), arch).tolist() == [[178, 179, 4273]]
    assert arch.n_vocab == 178 + 4096


def test_style_table_formula():
    assert style_index("female", "neutral", "normal", "normal") == 41
    assert style_index("male", "neutral", "normal", "normal") == 104
    table = default_style_table()
    assert len(table) == 126 == len(GENDERS) * len(EMOTIONS) * len(SPEEDS) * len(PITCHES)
    assert table[DEFAULT_STYLE] == 41
    # The released table is the alphabetically sorted list of names.
    assert [table[name] for name in sorted(table)] == list(range(126))


def test_unknown_style_lists_close_names():
    msg = str(unknown_style_error("gender-female_emotion-neutral_speed-normal_pitch-norml", default_style_table()))
    assert "closest" in msg and DEFAULT_STYLE in msg


def test_stride2_padding_rule():
    # Stride 2 on an even channel count pads (k//2 - 1, k//2 + 1); otherwise (k//2, k//2).
    assert tf_padding(128, 5, 2) == (1, 3)
    assert tf_padding(127, 5, 2) == (2, 2)
    assert tf_padding(128, 5, 1) == (2, 2)


@pytest.mark.parametrize("channels", [4, 5])
@pytest.mark.parametrize("t", [5, 6, 7, 16, 33])
def test_stride2_conv_matches_zero_padded_batch(channels, t):
    # The original pads the batch with zeros to a multiple of 16 frames, pads (1, 2) for even channels
    # ((2, 2) for odd) and keeps ceil(T / 2) outputs; unpadded input must give the same outputs.
    torch.manual_seed(0)
    conv = _Conv(channels, 3, 5, 2)
    x = torch.randn(1, channels, t)
    t_pad = -(-t // 16) * 16
    official_pad = (1, 2) if channels % 2 == 0 else (2, 2)
    ref = F.conv1d(F.pad(F.pad(x, (0, t_pad - t)), official_pad), conv.conv.weight, conv.conv.bias, stride=2)
    out = conv(x)
    assert out.shape[2] == -(-t // 2)
    torch.testing.assert_close(out, ref[:, :, : out.shape[2]])


def test_fold_weight_norm_dim0_and_dim2():
    v = torch.tensor([[[3.0], [4.0]]])                   # [1, 2, 1], dim 0: one row of norm 5
    g = torch.tensor([[[10.0]]])
    assert fold_weight_norm(g, v).flatten().tolist() == [6.0, 8.0]
    v = torch.tensor([[[3.0, 1.0]], [[4.0, 0.0]]])       # [2, 1, 2], dim 2: per-tap norms 5 and 1
    g = torch.tensor([[[10.0, 2.0]]])
    assert fold_weight_norm(g, v).tolist() == [[[6.0, 2.0]], [[8.0, 0.0]]]
    with pytest.raises(ValueError):
        fold_weight_norm(torch.ones(3, 1, 1), torch.ones(2, 1, 1))


def test_reduce_units():
    assert reduce_units(np.array([5, 5, 7, 5, 5, 5, 9])).tolist() == [5, 7, 5, 9]
    assert reduce_units(np.array([], dtype=np.int64)).tolist() == []


def test_durations_are_ceil_of_scaled_exp():
    logw = np.log(np.array([0.3, 1.5, 2.2], dtype=np.float32))
    assert durations_from_logw(logw, 1.0).tolist() == [1, 2, 3]
    assert durations_from_logw(logw, 3.0).tolist() == [1, 5, 7]
    assert durations_from_logw(np.array([-30.0], np.float32), 1.0).tolist() == [1]


def test_length_regulation():
    stats = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    assert expand_frames(stats, np.array([2, 0, 1])).tolist() == [[1, 1, 3], [4, 4, 6]]
    # All durations 0: the original clamps T_y to 1 and its empty path makes that frame zero.
    assert expand_frames(stats, np.array([0, 0, 0])).tolist() == [[0.0], [0.0]]


def test_noise_of_a_prefix_does_not_depend_on_chunking():
    np.testing.assert_array_equal(unit_noise(7, 3, 5), unit_noise(7, 0, 8)[:, :, 3:])
    np.testing.assert_array_equal(frame_noise(7, 10, 4, 6), frame_noise(7, 0, 14, 6)[:, :, 10:])
    assert unit_noise(7, 0, 4).shape == (1, 2, 4) and frame_noise(7, 0, 4, 6).shape == (1, 6, 4)
    assert not np.array_equal(unit_noise(7, 0, 4), unit_noise(8, 0, 4))


def _rq_forward(x, w_u, h_u, d_u, bound):
    """Forward rational-quadratic spline (Durkan et al. 2019), scalar, from the paper's formulas."""
    k = len(w_u)
    widths = 1e-3 + (1 - 1e-3 * k) * np.exp(w_u) / np.exp(w_u).sum()
    heights = 1e-3 + (1 - 1e-3 * k) * np.exp(h_u) / np.exp(h_u).sum()
    xs = np.concatenate([[0], np.cumsum(widths)]) * 2 * bound - bound
    ys = np.concatenate([[0], np.cumsum(heights)]) * 2 * bound - bound
    xs[0], xs[-1], ys[0], ys[-1] = -bound, bound, -bound, bound
    d = np.concatenate([[1.0], 1e-3 + np.log1p(np.exp(d_u)), [1.0]])
    if not -bound <= x <= bound:
        return x
    i = min(np.searchsorted(xs, x, side="right") - 1, k - 1)
    w, hgt = xs[i + 1] - xs[i], ys[i + 1] - ys[i]
    s, th = hgt / w, (x - xs[i]) / w
    return ys[i] + hgt * (s * th ** 2 + d[i] * th * (1 - th)) / (s + (d[i + 1] + d[i] - 2 * s) * th * (1 - th))


def test_inverse_spline_inverts_the_forward_spline():
    rng = np.random.default_rng(0)
    k, bound = 10, 5.0
    for _ in range(20):
        w_u, h_u, d_u = rng.normal(size=k) * 2, rng.normal(size=k) * 2, rng.normal(size=k - 1)
        xs = np.concatenate([rng.uniform(-bound, bound, 8), [-6.0, 7.5]])
        ys = np.array([_rq_forward(x, w_u, h_u, d_u, bound) for x in xs])
        rep = lambda a: torch.tensor(np.tile(a, (len(xs), 1)), dtype=torch.float64)  # noqa: E731
        back = inverse_spline(torch.tensor(ys), rep(w_u), rep(h_u), rep(d_u), bound).numpy()
        np.testing.assert_allclose(back, xs, atol=1e-7)


def test_inverse_spline_with_uniform_bins_and_unit_slopes_is_identity():
    y = torch.linspace(-6, 6, 25, dtype=torch.float64)
    z = torch.zeros(25, 10, dtype=torch.float64)
    unit_slope = torch.full((25, 9), math.log(math.expm1(1 - 1e-3)), dtype=torch.float64)  # 1e-3 + softplus = 1
    torch.testing.assert_close(inverse_spline(y, z, z, unit_slope, 5.0), y)


def test_relative_attention_matches_a_naive_loop():
    torch.manual_seed(0)
    attn = RelPosAttention(8, 2, 2)
    with torch.no_grad():
        attn.emb_rel_k.normal_()
        attn.emb_rel_v.normal_()
    x = torch.randn(1, 8, 6)
    q = attn.conv_q(x).view(2, 4, 6) / 2.0
    k, v = attn.conv_k(x).view(2, 4, 6), attn.conv_v(x).view(2, 4, 6)
    ek, ev = attn.emb_rel_k[0], attn.emb_rel_v[0]
    out = torch.zeros(2, 4, 6)
    for h in range(2):
        scores = torch.zeros(6, 6)
        for i in range(6):
            for j in range(6):
                scores[i, j] = q[h, :, i] @ k[h, :, j] + (q[h, :, i] @ ek[j - i + 2] if abs(j - i) <= 2 else 0)
        p = torch.softmax(scores, dim=-1)
        for i in range(6):
            for j in range(6):
                out[h, :, i] += p[i, j] * (v[h, :, j] + (ev[j - i + 2] if abs(j - i) <= 2 else 0))
    ref = attn.conv_o(out.reshape(1, 8, 6))
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-5)


def test_slaney_mel_filterbank_hand_value():
    fb = slaney_mel_filterbank(16000, 512, 128)
    assert fb.shape == (128, 257) and fb.dtype == np.float32 and (fb >= 0).all()
    # Slaney mel: 200/3 Hz per mel below 1 kHz, then log steps of ln(6.4)/27. 8 kHz = 15 + 27 ln 8 / ln 6.4
    # mel; 130 equally spaced mel points; filter 0 spans 0 .. 2 * step Hz, peak at step Hz.
    top_mel = 15 + 27 * math.log(8.0) / math.log(6.4)
    step_hz = top_mel / 129 * 200 / 3
    f = 16000 / 512                                   # FFT bin 1
    expect = (2 * step_hz - f) / step_hz * 2 / (2 * step_hz)
    assert fb[0, 0] == 0.0
    assert fb[0, 1] == pytest.approx(expect, rel=1e-5)
    # Area normalisation: low (narrow) filters peak higher than high (wide) ones.
    assert fb[:10].max() > 5 * fb[-10:].max()
