"""dynin_rt.generate for all seven tasks: the runtime's output equals the reference pipeline's for
the same seed (exact mode), streaming ends with the non-streamed tokens (and text), streamed speech
is exactly the result's audio, bad input is a one-line error, and inputs are never modified."""
import numpy as np
import pytest
import soundfile

import dynin_rt
from dynin_rt.api import select_task, voice_style
from dynin_rt.reference import DyninOmni
from dynin_rt.tasks import registry
from pipeline_check import assert_task_equals_reference, separate_tokenizers

RNG = np.random.default_rng(0)
IMAGE = (RNG.random((120, 160, 3)) * 255).astype(np.uint8)
VIDEO = (RNG.random((9, 48, 64, 3)) * 255).astype(np.uint8)
WAV = (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220)).astype(np.float32)

TASKS = {
    "t2t": dict(prompt="Explain diffusion LMs", think=True, max_new_tokens=16, steps=8, block_length=8),
    "i2t": dict(prompt="What is in this picture?", image=IMAGE, max_new_tokens=16, steps=8, block_length=8, resolution=64),
    "v2t": dict(prompt="Describe the video", video=VIDEO, max_new_tokens=16, steps=8, block_length=16, resolution=32, frames=3),
    "s2t": dict(audio=WAV, sample_rate=16000, max_new_tokens=8, steps=8, block_length=2),
    "t2i": dict(prompt="A red fox in the snow", output="image", resolution=128, steps=6),
    "i2i": dict(prompt="Make it night", image=IMAGE, output="image", resolution=64, steps=6),
    "t2s": dict(prompt="Hello there", output="speech", max_new_tokens=24, steps=24, block_length=8, voice="male-happy"),
}


def test_every_registered_task_has_test_settings():
    assert set(TASKS) == set(registry.names())


@pytest.fixture(scope="module")
def omni(tiny_omni, runtime_cache):
    model = dynin_rt.load(tiny_omni, backend="cpu")
    ref = DyninOmni.from_pretrained(tiny_omni)
    return model, ref


@pytest.fixture(scope="module")
def ref_tokenizers(omni):
    return separate_tokenizers(omni[0])


@pytest.mark.parametrize("task", list(TASKS))
def test_runtime_equals_reference_pipeline(omni, ref_tokenizers, task):
    model, ref = omni
    kw = TASKS[task]
    got = assert_task_equals_reference(model, ref, ref_tokenizers, task, kw)
    output = registry.get(task).output
    if output == "image":
        assert got.image.size == (kw["resolution"],) * 2
    elif output == "speech":
        assert got.sample_rate == 22050 and got.audio.dtype == np.float32
    else:
        assert isinstance(got.text, str)
    assert got.stats["seconds"]["generate"] > 0 and got.stats["forwards"] >= 1


@pytest.mark.parametrize("task", ["t2t", "i2t", "s2t", "t2s", "t2i"])
def test_stream_ends_with_the_non_streamed_result(omni, task):
    model, _ = omni
    kw = TASKS[task]
    whole = model.generate(seed=5, progress=False, **kw)
    parts = list(model.generate(seed=5, progress=False, stream=True, **kw))
    final = parts[-1]
    assert not final.partial and all(p.partial for p in parts[:-1])
    assert np.array_equal(final.tokens, whole.tokens)
    if registry.get(task).stream is None:  # images: no partial results, only the final one
        assert len(parts) == 1
    elif task == "t2s":
        assert final.audio.dtype == np.float32 and final.sample_rate == whole.sample_rate
        if whole.tokens.size:
            assert sum(p.audio.size for p in parts[:-1]) > 0  # chunks came before the end
        # The result holds exactly what was streamed (an incremental render, compared with the
        # one-shot render in test_streamed_speech_is_the_result_audio).
        assert np.array_equal(final.audio, np.concatenate([p.audio for p in parts[:-1]] or [np.zeros(0, np.float32)]))
    else:
        assert final.text == whole.text
        blocks = kw["max_new_tokens"] // kw["block_length"]
        assert len(parts) - 1 == blocks
        assert parts[-2].text == whole.text


def test_streamed_speech_is_the_result_audio(omni, monkeypatch):
    """A streamed t2s call vocodes once (through decode_stream, never decode) and its result's audio
    is the joined chunks, bit for bit. 64 units in blocks of 16: enough for decode_stream to render
    32 units before the last block arrives (it waits for 16 more as lookahead)."""
    model, _ = omni
    kw = dict(TASKS["t2s"], max_new_tokens=64, steps=32, block_length=16)
    whole = model.generate(seed=7, progress=False, **kw)
    monkeypatch.setattr(type(model.speech_tokenizer), "decode", lambda *a, **k: pytest.fail("streaming ran decode"))
    parts = list(model.generate(seed=7, progress=False, stream=True, **kw))
    final, chunks = parts[-1], [p.audio for p in parts[:-1]]
    assert np.array_equal(final.tokens, whole.tokens) and whole.tokens.size == 64
    assert len(chunks) > 1 and np.array_equal(final.audio, np.concatenate(chunks))
    assert final.stats["seconds"]["decode"] > 0 and final.stats["forwards"] == whole.stats["forwards"]


LONG_CHAT = dict(prompt="Tell a long story", max_new_tokens=32, steps=32, block_length=8)


def test_a_cancelled_token_stops_generation(omni):
    model, _ = omni
    token = dynin_rt.CancelToken()
    token.cancel()
    with pytest.raises(dynin_rt.Cancelled):
        dynin_rt.generate(model, cancel=token, progress=False, **LONG_CHAT)


def test_fast_mode_runs_and_reports_commits(omni):
    model, _ = omni
    r = model.generate("Hi", max_new_tokens=16, steps=16, block_length=8, mode="fast", threshold=0.5, progress=False)
    assert r.stats["steps"] <= 16 and sum(r.stats["committed_per_step"]) == 16


def test_image_fast_mode_reuses_the_prompt_and_is_labelled(omni):
    model, _ = omni
    kw = dict(output="image", resolution=64, steps=6, seed=1, progress=False)
    exact = model.generate("a red fox", **kw)
    fast = model.generate("a red fox", mode="fast", **kw)
    # the same steps, fewer positions computed (the prompt's K/V come from the cache between refreshes)
    assert fast.stats["forwards"] == exact.stats["forwards"]
    assert fast.stats["positions"] < exact.stats["positions"]
    assert fast.image.size == exact.image.size == (64, 64)


def test_inputs_are_not_modified(omni):
    model, _ = omni
    image, wav = IMAGE.copy(), WAV.copy()
    model.generate("what?", image=image, max_new_tokens=8, steps=8, block_length=8, resolution=32, progress=False)
    model.generate(audio=wav, sample_rate=16000, max_new_tokens=4, steps=4, block_length=2, progress=False)
    assert np.array_equal(image, IMAGE) and np.array_equal(wav, WAV)


def test_media_from_files_and_save(omni, tmp_path):
    from PIL import Image

    model, _ = omni
    Image.fromarray(IMAGE).save(tmp_path / "cat.png")
    soundfile.write(tmp_path / "speech.wav", WAV, 16000)
    r = model.generate("what?", image=tmp_path / "cat.png", max_new_tokens=8, steps=8, block_length=8, resolution=32,
                       progress=False)
    assert open(r.save(tmp_path / "out.txt")).read() == r.text
    r = model.generate(audio=str(tmp_path / "speech.wav"), max_new_tokens=4, steps=4, block_length=2, progress=False)
    assert isinstance(r.text, str)
    r = model.generate("a fox", output="image", resolution=64, steps=4, progress=False)
    r.save(tmp_path / "fox.png")
    assert Image.open(tmp_path / "fox.png").size == (64, 64)
    r = model.generate("hi", output="speech", max_new_tokens=16, steps=16, block_length=8, progress=False)
    r.save(tmp_path / "hi.wav")
    data, rate = soundfile.read(tmp_path / "hi.wav")
    assert rate == 22050 and data.shape == r.audio.shape


def test_save_checks_the_path_in_one_line(tmp_path):
    from dynin_rt.tasks.common import Result

    speech = Result(task="t2s", audio=np.zeros(100, np.float32), sample_rate=22050)
    with pytest.raises(FileNotFoundError, match=r"^cannot save to .*: the folder .* does not exist$"):
        speech.save(tmp_path / "missing" / "a.wav")
    with pytest.raises(ValueError, match=r"a speech result is saved as .wav, .flac or .ogg, not '.txt'"):
        speech.save(tmp_path / "a.txt")
    assert speech.save(tmp_path / "a.wav") == str(tmp_path / "a.wav")
    from PIL import Image

    with pytest.raises(ValueError, match="an image result"):
        Result(task="t2i", image=Image.new("RGB", (4, 4))).save(tmp_path / "a.wav")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(prompt="x", audio=WAV, sample_rate=16000, output="image"), ValueError, "not audio="),
        (dict(prompt="x", image=IMAGE, audio=WAV, sample_rate=16000), ValueError, "one of image=, video=, audio="),
        (dict(prompt="x", output="video"), ValueError, "output must be one of"),
        (dict(prompt=None), ValueError, "text prompt"),
        (dict(prompt="x", image="/no/such.png"), FileNotFoundError, "does not exist"),
        (dict(prompt="x", output="speech", voice="robot"), ValueError, "unknown voice"),
        (dict(prompt="x", steps=0), ValueError, "steps must be a positive integer"),
        (dict(prompt="x", temperature=-1.0), ValueError, "temperature"),
        (dict(prompt="x", resolution=100, output="image"), ValueError, "multiple of 16"),
        (dict(prompt="x", think=True, output="image"), ValueError, "think= applies to text chat"),
        (dict(prompt="x", output="image", mode="fast", threshold=0.5), ValueError, "image sampler's fast mode"),
        (dict(prompt="x", threshold=0.5), ValueError, "mode='fast'"),
        (dict(prompt="x", audio=WAV), ValueError, "sample_rate="),
        (dict(prompt="x " * 3000, max_new_tokens=8, steps=8, block_length=8), ValueError, "exceeds the context"),
        (dict(prompt="x", max_new_tokens=6, block_length=4, steps=2), ValueError,
         r"max_new_tokens \(6\) must be a multiple of block_length \(4\)"),
        (dict(prompt="x", max_new_tokens=16, block_length=4, steps=6), ValueError, "steps .6. must be a multiple"),
        (dict(prompt=b"hello"), ValueError, "not bytes: decode it first"),
        (dict(prompt=7), ValueError, "must be a str, not int"),
        (dict(prompt=" \n\t "), ValueError, "only whitespace"),
        (dict(prompt="  ", image=IMAGE), ValueError, "only whitespace"),
        (dict(prompt="x", frames=3), ValueError, "frames= does not apply"),
    ],
)
def test_bad_input_is_a_one_line_error(omni, tmp_path, kwargs, error, message):
    model, _ = omni
    with pytest.raises(error, match=message) as info:
        dynin_rt.generate(model, progress=False, **kwargs)
    assert "\n" not in str(info.value)


def test_unreadable_media_files(omni, tmp_path):
    model, _ = omni
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="cannot read image"):
        model.generate("x", image=bad, progress=False)
    bad_audio = tmp_path / "noise.wav"
    bad_audio.write_bytes(b"RIFF0000")
    with pytest.raises(ValueError, match="cannot read audio"):
        model.generate(audio=bad_audio, progress=False)
    bad_video = tmp_path / "clip.mp4"
    bad_video.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="cannot decode video"):
        model.generate("x", video=bad_video, progress=False)


def test_task_selection_table():
    assert select_task("q", None, None, None, "text") == "t2t"
    assert select_task("q", 1, None, None, "text") == "i2t"
    assert select_task("q", None, 1, None, "text") == "v2t"
    assert select_task(None, None, None, 1, "text") == "s2t"
    assert select_task("q", None, None, None, "image") == "t2i"
    assert select_task("q", 1, None, None, "image") == "i2i"
    assert select_task("q", None, None, None, "speech") == "t2s"


def test_voice_names():
    assert voice_style(None) == "gender-female_emotion-neutral_speed-normal_pitch-normal"
    assert voice_style("male-sad-slow-low") == "gender-male_emotion-sad_speed-slow_pitch-low"
    full = "gender-female_emotion-happy_speed-fast_pitch-high"
    assert voice_style(full) == full
