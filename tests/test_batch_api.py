"""dynin_rt.batch: a request alone (dynin_rt.generate) and inside a batch give identical tokens in
exact mode; batch_key groups exactly the requests that can share a call; a row that fails or is
cancelled leaves the others running."""
import numpy as np
import pytest

import dynin_rt
from dynin_rt.batch import batch_key, generate_batch

TEXT = dict(steps=4, block_length=8, temperature=1.0)
SPEECH = dict(output="speech", max_new_tokens=16, steps=8, block_length=8, temperature=1.0)


@pytest.fixture(scope="module")
def omni(tiny_omni, runtime_cache):
    return dynin_rt.load(tiny_omni, backend="cpu")


def test_text_batch_of_8_equals_each_request_alone(omni):
    # ragged: prompts of different lengths, 8 or 16 new tokens (4 steps per block either way), own seeds
    requests = [dict(prompt="hi " * (1 + 3 * i), max_new_tokens=8 * (1 + i % 2), seed=100 + i,
                     **dict(TEXT, steps=4 * (1 + i % 2))) for i in range(8)]
    assert len({batch_key(r) for r in requests}) == 1
    results = generate_batch(omni, requests)
    assert {r.stats["batch_size"] for r in results} == {8}
    for request, result in zip(requests, results):
        alone = dynin_rt.generate(omni, **request)
        assert np.array_equal(result.tokens, alone.tokens) and result.text == alone.text


def test_speech_batch_of_8_equals_each_request_alone(omni, monkeypatch):
    # The vocoder is stubbed (16 real renders would cost most of this file's time): its "audio" is
    # what it was given, so equal audio shows each row reached it with its own units, voice and seed.
    def vocoder(units, style, seed):
        return np.concatenate([[hash(style) % 1000, seed], units]).astype(np.float32)

    monkeypatch.setattr(omni.speech_tokenizer, "decode", vocoder)
    requests = [dict(prompt=f"Hello number {i}", seed=7 + i, voice="male-happy" if i % 2 else None, **SPEECH)
                for i in range(8)]
    results = generate_batch(omni, requests)
    for request, result in zip(requests, results):
        alone = dynin_rt.generate(omni, **request)
        assert np.array_equal(result.tokens, alone.tokens) and result.tokens.size > 0
        assert np.array_equal(result.audio, alone.audio)


def test_image_rows_equal_each_request_alone(omni):
    requests = [dict(prompt=p, output="image", resolution=32, steps=3, seed=s) for p, s in (("a fox", 1), ("a cat", 2))]
    results = generate_batch(omni, requests)
    for request, result in zip(requests, results):
        alone = dynin_rt.generate(omni, **request)
        assert np.array_equal(result.tokens, alone.tokens)
        assert np.array_equal(np.asarray(result.image), np.asarray(alone.image))


@pytest.mark.parametrize("a, b, same", [
    (dict(prompt="x", seed=1), dict(prompt="a longer prompt", seed=2), True),  # prompt and seed are per row
    (dict(prompt="x", max_new_tokens=16, steps=16, block_length=8), dict(prompt="x", max_new_tokens=8, steps=8,
                                                                        block_length=8), True),  # 8 steps per block
    (dict(prompt="x", max_new_tokens=16, steps=8, block_length=8), dict(prompt="x", max_new_tokens=8, steps=8,
                                                                       block_length=8), False),
    (dict(prompt="x", temperature=0.0), dict(prompt="x", temperature=1.0), False),
    (dict(prompt="x"), dict(prompt="x", output="speech"), False),
    (dict(prompt="x", output="speech", voice="male-sad"), dict(prompt="y", output="speech"), True),
    (dict(prompt="x", output="speech", max_new_tokens=16), dict(prompt="y", output="speech", max_new_tokens=32), False),
    (dict(prompt="x", output="image", resolution=32), dict(prompt="x", output="image", resolution=64), False),
    (dict(prompt="x", output="image"), dict(prompt="x", output="image", mode="fast"), False),
])
def test_batch_key(a, b, same):
    assert (batch_key(a) == batch_key(b)) is same


@pytest.mark.parametrize("request_, message", [
    (dict(prompt="x", colour="red"), "unknown request keys"),
    (dict(prompt="x", max_new_tokens=12, block_length=8), "multiple of block_length"),
    (dict(prompt="x", output="image", mode="fast", threshold=0.5), "image sampler.s fast mode"),
    (dict(prompt="x", voice="alloy"), "voice= applies"),
])
def test_batch_key_refuses_what_generate_refuses(request_, message):
    with pytest.raises(ValueError, match=message):
        batch_key(request_)


def test_a_failing_and_a_cancelled_row_leave_the_others(omni, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    requests = [dict(prompt="what", image=str(broken), max_new_tokens=8, resolution=32, **TEXT),
                dict(prompt="what", image=np.zeros((32, 32, 3), np.uint8), max_new_tokens=8, resolution=32, **TEXT),
                dict(prompt="what", image=np.full((32, 32, 3), 200, np.uint8), max_new_tokens=8, resolution=32, **TEXT)]
    cancels = [None, None, dynin_rt.CancelToken()]
    cancels[2].cancel()
    out = generate_batch(omni, requests, cancels)
    assert isinstance(out[0], ValueError) and "cannot read image" in str(out[0])
    assert np.array_equal(out[1].tokens, dynin_rt.generate(omni, **requests[1]).tokens)
    assert isinstance(out[2], dynin_rt.Cancelled)


def test_incompatible_requests_are_refused(omni):
    with pytest.raises(ValueError, match="batch them apart"):
        generate_batch(omni, [dict(prompt="x", max_new_tokens=8, **TEXT), dict(prompt="x", output="speech")])
