"""The speech distances the README's streaming numbers are stated in: SNR and log-mel distance over
the common prefix, checked on signals whose answer is known."""
import numpy as np

from dynin_rt.tokenizers.emova.distance import mel_distance_db, snr_db, speech_distance

RATE = 22050
RNG = np.random.default_rng(0)
WAV = (0.3 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE) + 0.05 * RNG.standard_normal(RATE)).astype(np.float32)


def test_equal_audio_is_at_distance_zero():
    assert speech_distance(WAV, WAV.copy(), RATE) == {"snr_db": float("inf"), "mel_distance_db": 0.0,
                                                       "length_difference_samples": 0}


def test_known_answers():
    # x = ref + e with |e|^2 = |ref|^2 / 100: 20 dB.
    e = RNG.standard_normal(WAV.size)
    e *= np.sqrt(np.sum(WAV.astype(np.float64) ** 2) / np.sum(e ** 2) / 100)
    assert abs(snr_db(WAV, WAV + e) - 20.0) < 1e-6
    # Twice the amplitude is four times the power in every mel bin: 10 log10(4) dB.
    assert abs(mel_distance_db(WAV, 2 * WAV, RATE) - 10 * np.log10(4)) < 1e-6


def test_lengths_may_differ():
    d = speech_distance(WAV, np.concatenate([WAV, WAV[:1000]]), RATE)  # the common prefix is equal
    assert d["snr_db"] == float("inf") and d["mel_distance_db"] == 0.0 and d["length_difference_samples"] == 1000
    assert np.isnan(mel_distance_db(WAV[:10], WAV[:10], RATE))  # shorter than one frame
