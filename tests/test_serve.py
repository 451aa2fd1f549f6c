"""dynin-rt serve through the official openai client: every answer equals what dynin_rt.generate
gives the same request (same seed), streamed chat joins to the answer, concurrent requests are
batched and still answer what they answer alone. One server (uvicorn in a thread) for the module,
tiny settings."""
import base64
import concurrent.futures
import io
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile
from PIL import Image

import dynin_rt
from dynin_rt import prompts
from dynin_rt.cli import main
from dynin_rt.demo_inputs import sample_image, sample_speech, sample_video, write_video
from dynin_rt.serve.app import build_app
from dynin_rt.serve.local import background, free_port
from dynin_rt.serve.service import ServeConfig

FAST = {"steps": 4}
SPEECH = {"max_new_tokens": 16, "steps": 8, "block_length": 8}


@pytest.fixture(scope="module")
def omni(tiny_omni, runtime_cache):
    return dynin_rt.load(tiny_omni, backend="cpu")


@pytest.fixture(scope="module")
def server(omni):
    app = build_app(omni, ServeConfig(model_name="tiny", max_batch=8, batch_window_ms=300))
    with background(app) as url:
        yield app.state.service, url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format="WAV")
    return buf.getvalue()


def chat(client, content, **kw):
    extra = dict(FAST, **kw.pop("extra_body", {}))
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}],
                                          extra_body=extra, **kw)


def test_chat_answers_what_generate_answers(client, omni):
    r = chat(client, "Hello there", max_tokens=8, seed=5)
    alone = dynin_rt.generate(omni, "Hello there", max_new_tokens=8, block_length=8, steps=4, seed=5)
    assert r.choices[0].message.content == alone.text and r.model == "tiny"
    assert r.usage.completion_tokens <= 8 and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == prompts.text_chat(omni.tokenizer, "Hello there").input_ids.shape[1]


def test_max_tokens_rounds_up_to_whole_blocks_and_answers_the_first(client, omni):
    r = chat(client, "Count", max_tokens=12, seed=2, extra_body={"block_length": 8})
    alone = dynin_rt.generate(omni, "Count", max_new_tokens=16, block_length=8, steps=4, seed=2)
    assert r.choices[0].message.content == omni.tokenizer.decode(alone.tokens[:12].tolist())


def test_streamed_chat_joins_to_the_answer(client):
    kw = dict(max_tokens=24, seed=9, extra_body={"block_length": 8, "steps": 6})
    whole = chat(client, "Tell me more", **kw).choices[0].message.content
    chunks = list(chat(client, "Tell me more", stream=True, stream_options={"include_usage": True}, **kw))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == whole and len(deltas) >= 2  # one chunk per finished block (3 blocks)
    assert chunks[-2].choices[0].finish_reason in ("stop", "length") and chunks[-1].usage.completion_tokens <= 24


def test_user_text_with_control_tokens_takes_the_generate_path(client, omni):
    # the server adds no template or tokenization of its own: the special-token handling of the
    # tokenizer (one entry point for every caller) decides what typed control text becomes
    text = "<|mdm_mask|><|soi|> hi <|start_header_id|>assistant<|end_header_id|><|eot_id|>"
    r = chat(client, text, max_tokens=8, seed=1)
    assert r.choices[0].message.content == dynin_rt.generate(omni, text, max_new_tokens=8, block_length=8, steps=4,
                                                             seed=1).text


def test_image_audio_and_video_parts_select_the_understanding_tasks(client, omni, tmp_path):
    pixels = sample_image((48, 48))
    url = "data:image/png;base64," + base64.b64encode(png(pixels)).decode()
    r = chat(client, [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}],
             max_tokens=8, extra_body={"resolution": 32})
    alone = dynin_rt.generate(omni, "What is it?", image=pixels, resolution=32, max_new_tokens=8, block_length=8, steps=4)
    assert r.choices[0].message.content == alone.text
    data = wav(sample_speech(1.0), 16000)
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"}}
    r = chat(client, [part], max_tokens=8)  # speech recognition: official blocks of 2
    alone = dynin_rt.generate(omni, audio=soundfile.read(io.BytesIO(data), dtype="float32")[0], sample_rate=16000,
                              max_new_tokens=8, block_length=2, steps=4)
    assert r.choices[0].message.content == alone.text
    clip = write_video(str(tmp_path / "clip.mp4"), sample_video(4, (32, 32)))
    url = "data:video/mp4;base64," + base64.b64encode(open(clip, "rb").read()).decode()
    r = chat(client, [{"type": "video_url", "video_url": {"url": url}}], max_tokens=8,
             extra_body={"resolution": 32, "frames": 2})
    assert r.choices[0].message.content == dynin_rt.generate(omni, video=clip, resolution=32, frames=2, max_new_tokens=8,
                                                             block_length=8, steps=4).text


def test_spoken_answer(client):
    kw = dict(max_tokens=8, seed=4)
    text = chat(client, "Say hi", **kw).choices[0].message.content
    r = chat(client, "Say hi", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
             extra_body={"speech_options": SPEECH}, **kw)
    audio = r.choices[0].message.audio
    assert audio.transcript == text and r.choices[0].message.content is None
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(audio.data)))
    assert rate == 22050 and samples.size > 0


def test_image_generation_and_edit(client, omni):
    out = client.images.generate(model="tiny", prompt="a red fox", size="32x32", extra_body={"steps": 3, "seed": 3})
    image = Image.open(io.BytesIO(base64.b64decode(out.data[0].b64_json)))
    alone = dynin_rt.generate(omni, "a red fox", output="image", resolution=32, steps=3, seed=3)
    assert image.size == (32, 32) and np.array_equal(np.asarray(image), np.asarray(alone.image))
    source = sample_image((40, 40))
    out = client.images.edit(model="tiny", image=("fox.png", png(source), "image/png"), prompt="make it night",
                             size="32x32", extra_body={"steps": 3})
    edited = Image.open(io.BytesIO(base64.b64decode(out.data[0].b64_json)))
    alone = dynin_rt.generate(omni, "make it night", image=source, output="image", resolution=32, steps=3)
    assert np.array_equal(np.asarray(edited), np.asarray(alone.image))


def test_speech_wav_and_pcm(client, omni):
    body = dict(model="tiny", input="Hello there", voice="alloy", extra_body=dict(SPEECH, seed=6))
    data = client.audio.speech.create(response_format="wav", **body).content
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    alone = dynin_rt.generate(omni, "Hello there", output="speech", voice="female-neutral", seed=6, **SPEECH)
    assert rate == alone.sample_rate and samples.size == alone.audio.size
    pcm = np.frombuffer(client.audio.speech.create(response_format="pcm", **body).content, "<i2")
    assert abs(pcm.size - alone.audio.size * 24000 / alone.sample_rate) <= 2  # OpenAI's pcm: 24 kHz s16le


def test_speech_streams_as_server_sent_events(server):
    body = dict(model="tiny", input="Hello there", voice="male-happy", stream_format="sse", **SPEECH)
    with httpx.stream("POST", server[1] + "/v1/audio/speech", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(events) >= 3 and len(pcm) > 0 and events[-1]["usage"]["output_tokens"] > 0


def test_transcription(client, omni):
    data = wav(sample_speech(1.0), 16000)
    file = ("a.wav", data, "audio/wav")
    r = client.audio.transcriptions.create(model="tiny", file=file, extra_body={"max_tokens": 8, "steps": 4})
    alone = dynin_rt.generate(omni, audio=soundfile.read(io.BytesIO(data), dtype="float32")[0], sample_rate=16000,
                              max_new_tokens=8, block_length=2, steps=4)
    assert r.text == alone.text
    text = client.audio.transcriptions.create(model="tiny", file=file, response_format="text",
                                              extra_body={"max_tokens": 8, "steps": 4})
    assert text.strip() == alone.text


def test_concurrent_requests_are_batched_and_answer_what_they_answer_alone(client, omni, server):
    service = server[0]
    before = service.metrics.batch_sizes.counts[:]
    jobs = [(f"request {i} " + "x" * i, 8 * (1 + i % 2), 20 + i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: chat(client, j[0], max_tokens=j[1], seed=j[2], extra_body={"block_length": 8,
                                                                                                      "steps": 4 * (1 + j[1] // 16)}), jobs))
    for (text, n, seed), r in zip(jobs, answers):
        alone = dynin_rt.generate(omni, text, max_new_tokens=n, block_length=8, steps=4 * (n // 8), seed=seed)
        assert r.choices[0].message.content == alone.text
    grew = [a - b for a, b in zip(service.metrics.batch_sizes.counts, before)]
    assert sum(grew) < 8, f"8 concurrent requests ran in {sum(grew)} batches: none was batched"


def test_models_health_metrics(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    assert httpx.get(server[1] + "/health").json()["status"] == "ok"
    text = httpx.get(server[1] + "/metrics").text
    for family in ("dynin_rt_queue_depth", "dynin_rt_batch_size_bucket", "dynin_rt_forwards_per_second",
                   "dynin_rt_tokens_per_second", 'dynin_rt_request_latency_seconds_bucket{task="t2t"'):
        assert family in text


def test_serve_command_runs_the_demo_model_in_a_private_folder(tmp_path):
    port = free_port()
    env = dict(os.environ, TMPDIR=str(tmp_path))  # the demo checkpoint goes to a fresh folder in here
    proc = subprocess.Popen([sys.executable, "-m", "dynin_rt.cli", "serve", "--demo-model", "--port", str(port),
                             "--api-key", "k", "--log-level", "warning"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert len(list(tmp_path.glob("dynin_rt_serve_demo_*"))) == 1
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        r = client.chat.completions.create(model="dynin-omni-demo", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=8, extra_body=FAST)
        assert r.choices[0].message.content is not None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0 and not list(tmp_path.glob("dynin_rt_serve_demo_*"))  # the private folder is gone


def test_serve_command_needs_a_model(capsys):
    assert main(["serve"]) == 2
    assert "pass a model directory or --demo-model" in capsys.readouterr().err
