"""EmovaSpeech public API on the small random checkpoint: decode, decode_stream, encode, bad inputs."""
import warnings

import numpy as np
import pytest
import torch

from dynin_rt.testing.emova import write_emova
from dynin_rt.tokenizers.emova import EmovaSpeech
from dynin_rt.tokenizers.emova.config import DEFAULT_STYLE
from dynin_rt.tokenizers.emova.u2s import frame_noise, unit_noise

UNITS = np.array([17, 4095, 0, 1234, 1234, 77, 3000, 512, 9, 2048, 4000, 15, 600, 601, 602, 3333], dtype=np.int64)


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
    return EmovaSpeech.from_pretrained(write_emova(tmp_path_factory.mktemp("emova_small"), small=True))


def _speech(n, rate=16000, seed=0):
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * (150 + 200 * t) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _snr(ref, x):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - x).astype(np.float64) ** 2), 1e-30))


def test_decode_shape_and_determinism(sp):
    wav = sp.decode(UNITS, seed=1)
    assert wav.dtype == np.float32 and wav.ndim == 1 and np.abs(wav).max() <= 1.0
    assert wav.size == 256 * sp.durations(UNITS, seed=1).sum()
    np.testing.assert_array_equal(wav, sp.decode(UNITS.tolist(), seed=1))
    assert not np.array_equal(wav, sp.decode(UNITS, seed=2))
    # String forms of the same units.
    np.testing.assert_array_equal(wav, sp.decode("".join(f"<|speech_{u}|>" for u in UNITS), seed=1))
    np.testing.assert_array_equal(wav, sp.decode(" ".join(map(str, UNITS)), seed=1))


def test_noise_is_injectable_and_scaled(sp):
    t_x = UNITS.size
    d = sp.durations(UNITS, seed=5)
    explicit = sp.decode(UNITS, sdp_noise=unit_noise(5, 0, t_x), prior_noise=frame_noise(5, 0, d.sum() + 3, 16))
    np.testing.assert_array_equal(explicit, sp.decode(UNITS, seed=5))
    # With both noise scales 0 the seed no longer matters.
    np.testing.assert_array_equal(sp.decode(UNITS, noise_scale=0, noise_scale_w=0, seed=1),
                                  sp.decode(UNITS, noise_scale=0, noise_scale_w=0, seed=2))
    with pytest.raises(ValueError, match=r"sdp_noise must have shape \[1, 2, 16\]"):
        sp.decode(UNITS, sdp_noise=np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="prior_noise"):
        sp.decode(UNITS, prior_noise=np.zeros((1, 16, 1)))


def test_length_scale_stretches_durations(sp):
    d1 = sp.durations(UNITS, noise_scale_w=0)
    d2 = sp.durations(UNITS, noise_scale_w=0, length_scale=2.0)
    assert np.all(d2 >= d1) and d2.sum() > d1.sum()


def test_styles(sp):
    assert sp.styles[41] == DEFAULT_STYLE and len(sp.styles) == 126
    a = sp.decode(UNITS, style=DEFAULT_STYLE, noise_scale=0, noise_scale_w=0)
    b = sp.decode(UNITS, style="gender-male_emotion-happy_speed-fast_pitch-high", noise_scale=0, noise_scale_w=0)
    assert a.shape != b.shape or not np.allclose(a, b)
    with pytest.raises(ValueError, match="closest.*gender-female_emotion-neutral"):
        sp.decode(UNITS, style="gender-female_emotion-neutrl_speed-normal_pitch-normal")


@pytest.mark.parametrize("bad, match", [
    ([], "empty"),
    ([0, 4096], r"4096 at position 1 is outside \[0, 4096\)"),
    ([-1, 3], "outside"),
    ([1.5, 2.0], "integers"),
    (np.zeros((2, 3), dtype=np.int64), "1-D"),
    (np.array([True, False]), "integers"),
])
def test_bad_units(sp, bad, match):
    with pytest.raises(ValueError, match=match):
        sp.decode(bad)


def test_bad_scales(sp):
    with pytest.raises(ValueError, match="length_scale"):
        sp.decode(UNITS, length_scale=0)
    with pytest.raises(ValueError, match="noise_scale"):
        sp.decode(UNITS, noise_scale=float("nan"))


def test_inputs_are_not_modified(sp):
    units = UNITS.copy()
    sp.decode(units)
    list(sp.decode_stream(units))
    np.testing.assert_array_equal(units, UNITS)
    wav = _speech(4000)
    before = wav.copy()
    sp.encode(wav)
    np.testing.assert_array_equal(wav, before)


def test_stream_of_a_whole_sequence_matches_decode(sp):
    units = np.tile(UNITS, 5)
    whole = sp.decode(units, seed=4)
    chunks = list(sp.decode_stream(units, seed=4, chunk_frames=24, first_chunk_frames=8))
    assert len(chunks) > 3 and chunks[0].size == 8 * 256
    stream = np.concatenate(chunks)
    assert stream.shape == whole.shape
    assert _snr(whole, stream) > 60
    assert sp.last_stream.first_chunk_latency > 0
    assert sp.last_stream.durations == sp.durations(units, seed=4).tolist()


def test_incremental_stream(sp):
    units = np.tile(UNITS, 4)
    whole = sp.decode(units, seed=4)
    # Lookahead covering the whole sequence: the incremental path sees what decode sees.
    pieces = iter(np.array_split(units, 8))
    full_view = np.concatenate(list(sp.decode_stream(pieces, seed=4, chunk_units=8, lookahead_units=units.size)))
    assert full_view.shape == whole.shape and _snr(whole, full_view) > 60
    # A short lookahead renders audio before the last units arrive.
    seen = []

    def feed():
        for piece in np.array_split(units, 8):
            seen.append(len(piece))
            yield piece

    stream = sp.decode_stream(feed(), seed=4, chunk_units=8, lookahead_units=4, first_chunk_frames=4)
    first = next(stream)
    assert first.size == 4 * 256 and sum(seen) < units.size
    rest = list(stream)
    # Every unit got a duration, and the chunks are exactly the rendered frames, no gap, no overlap.
    durations = sp.last_stream.durations
    assert len(durations) == units.size and len(rest) >= 2
    assert first.size + sum(c.size for c in rest) == sp.hop_length * sum(durations)


def test_encode_units(sp):
    n = 16000 + 4321
    wav = _speech(n)
    raw = sp.encode(wav, reduced=False)
    assert raw.dtype == np.int64 and raw.size == -(-(-(-(-(-n // 160)) // 2)) // 2)
    assert raw.min() >= 0 and raw.max() < 4096
    red = sp.encode(wav)
    assert np.all(red[1:] != red[:-1])
    keep = np.concatenate([[True], raw[1:] != raw[:-1]])
    np.testing.assert_array_equal(red, raw[keep])
    np.testing.assert_array_equal(sp.encode(torch.from_numpy(wav), reduced=False), raw)
    # Peak normalisation makes the input level irrelevant; int16 PCM is scaled to [-1, 1].
    np.testing.assert_array_equal(sp.encode(wav * 0.25, reduced=False), raw)
    pcm = np.round(wav / np.abs(wav).max() * 20000).astype(np.int16)
    assert sp.encode(pcm, reduced=False).size == raw.size


def test_encode_resamples(sp):
    import soxr

    wav = _speech(22050, rate=22050)
    expect = sp.encode(soxr.resample(wav, 22050, 16000).astype(np.float32), 16000, reduced=False)
    np.testing.assert_array_equal(sp.encode(wav, sample_rate=22050, reduced=False), expect)


def test_encode_mixes_channels_down(sp):
    left, right = _speech(8000, seed=1), _speech(8000, seed=2)
    mono = sp.encode((left + right) / 2, reduced=False)
    with pytest.warns(UserWarning, match="mixing 2 channels"):
        np.testing.assert_array_equal(sp.encode(np.stack([left, right], axis=1), reduced=False), mono)
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(sp.encode(np.stack([left, right], axis=0), reduced=False), mono)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp.encode(left[:, None])                       # one channel: no warning


@pytest.mark.parametrize("wav, rate, match", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.zeros(8000, np.float32), 16000, "silent"),
    (np.full(8000, 1e-6, np.float32), 16000, "silent"),
    (np.where(np.arange(8000) == 77, np.nan, 0.1).astype(np.float32), 16000, "non-finite.*sample 77"),
    (np.where(np.arange(8000) == 5, np.inf, 0.1).astype(np.float32), 16000, "non-finite"),
    (np.full(200, 0.1, np.float32), 16000, "too short"),
    (np.full(8000, 0.1, np.float32), 0, "sample_rate"),
    (np.full(8000, 0.1, np.float32), -16000, "sample_rate"),
    (np.full(8000, 0.1, np.float32), 16, "sample_rate"),
    (np.full(8000, 0.1, np.float32), 1e9, "sample_rate"),
    (np.full(8000, 0.1, np.float32), float("nan"), "sample_rate"),
    (np.full((8000, 12), 0.1, np.float32), 16000, "channels"),
    (np.full((2, 3, 800), 0.1, np.float32), 16000, "shape"),
    (np.full(8000, 0.1, np.complex64), 16000, "real"),
])
def test_bad_audio(sp, wav, rate, match):
    with pytest.raises(ValueError, match=match):
        sp.encode(wav, sample_rate=rate)
