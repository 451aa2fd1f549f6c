"""dynin-rt serve under raw HTTP: malformed bodies, wrong content types, oversize bodies, unknown
models and routes, bad fields and media that do not decode answer 400/404/405/413/415 with an
OpenAI-style error object, never a 500; a full queue answers 429 with Retry-After; a missing key
401; a passed deadline 504; a client that leaves stops its row within a step."""
import base64
import io
import threading
import time

import httpx
import pytest
from PIL import Image

import dynin_rt
from dynin_rt.serve.app import build_app
from dynin_rt.serve.inputs import MediaPolicy
from dynin_rt.serve.local import background
from dynin_rt.serve.service import ServeConfig

LIMIT = 64 << 10
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def omni(tiny_omni, runtime_cache):
    return dynin_rt.load(tiny_omni, backend="cpu")


@pytest.fixture(scope="module")
def url(omni):
    config = ServeConfig(model_name="tiny", max_body_bytes=LIMIT, media=MediaPolicy(max_pixels=40 * 40, max_bytes=LIMIT))
    with background(build_app(omni, config)) as base:
        yield base


def png(side: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), "red").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def user(content):
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8, "steps": 4}


def image_part(url_):
    return user([{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url_}}])


JSON = {"content-type": "application/json"}
CASES = [  # (path, request keywords, status, code or None)
    (CHAT, dict(content=b"{not json", headers=JSON), 400, "invalid_json"),
    (CHAT, dict(content=b"[1, 2]", headers=JSON), 400, "invalid_json"),
    (CHAT, dict(content=b'{"a": "\xff\xfe"}', headers=JSON), 400, "invalid_json"),
    (CHAT, dict(content=b"{}", headers={"content-type": "text/plain"}), 415, "unsupported_media_type"),
    (CHAT, dict(content=b"{}"), 415, "unsupported_media_type"),
    ("/v1/images/edits", dict(json={"prompt": "x"}), 415, "unsupported_media_type"),
    ("/v1/images/edits", dict(content=b"garbage", headers={"content-type": "multipart/form-data; boundary=zz"}), 400, None),
    ("/v1/audio/transcriptions", dict(data={"model": "tiny"}, files={"other": ("a", b"x")}), 400, None),
    (CHAT, dict(json=dict(user("hi"), model="gpt-4o")), 404, "model_not_found"),
    ("/v1/nothing", dict(json={}), 404, "not_found"),
    (CHAT, dict(json=dict(user("hi"), n=2)), 400, None),
    (CHAT, dict(json=dict(user("hi"), temperature=-1)), 400, None),
    (CHAT, dict(content=b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', headers=JSON), 400, None),
    (CHAT, dict(json=dict(user("hi"), max_tokens="ten")), 400, None),
    (CHAT, dict(json=dict(user("hi"), max_tokens=16, block_length=8, steps=3)), 400, None),
    (CHAT, dict(json=dict(user("hi"), resolution=64)), 400, None),  # no image: not an option of chat
    (CHAT, dict(json=dict(user("hi"), tools=[{"type": "function"}])), 400, None),
    (CHAT, dict(json={"model": "tiny", "messages": []}), 400, None),
    (CHAT, dict(json={"model": "tiny", "messages": "hi"}), 400, None),
    (CHAT, dict(json={"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}), 400, None),
    (CHAT, dict(json=user([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + png(8)}}] * 2)), 400, None),
    (CHAT, dict(json=user([{"type": "mystery"}])), 400, None),
    (CHAT, dict(json=image_part("data:image/png;base64,!!!")), 400, "invalid_media"),
    (CHAT, dict(json=image_part("data:image/png;base64," + base64.b64encode(b"hello").decode())), 400, "invalid_media"),
    (CHAT, dict(json=image_part("data:image/png;base64," + png(64))), 413, None),  # over the pixel limit
    (CHAT, dict(json=image_part("file:///etc/passwd")), 400, "invalid_media"),
    (CHAT, dict(json=image_part("http://127.0.0.1:9/cat.png")), 400, "invalid_media"),
    (CHAT, dict(json=image_part("ftp://x/cat.png")), 400, "invalid_media"),
    (CHAT, dict(json=user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}])), 400, "invalid_media"),
    (CHAT, dict(json=user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "midi"}}])), 400, None),
    (CHAT, dict(json=user([{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}}])), 400, "invalid_media"),
    ("/v1/audio/speech", dict(json={"input": "hi", "voice": "robot"}), 400, None),
    ("/v1/audio/speech", dict(json={"input": "hi", "response_format": "aac"}), 400, None),
    ("/v1/audio/speech", dict(json={"input": ""}), 400, None),
    ("/v1/audio/speech", dict(json={"input": "hi", "stream_format": "sse", "response_format": "wav"}), 400, None),
    ("/v1/images/generations", dict(json={"prompt": "x", "size": "64x32"}), 400, None),
    ("/v1/images/generations", dict(json={"prompt": "x", "size": "4096x4096"}), 400, None),
    ("/v1/images/generations", dict(json={"prompt": "x", "response_format": "url"}), 400, None),
    ("/v1/images/generations", dict(json={"prompt": "x", "mode": "fast", "threshold": 0.5}), 400, None),
    ("/v1/images/generations", dict(json={"prompt": "x", "mode": "approximate"}), 400, None),
    ("/v1/images/generations", dict(json={"size": "32x32"}), 400, None),
    ("/v1/audio/transcriptions", dict(files={"file": ("a.wav", b"RIFF....WAVEfmt garbage")}), 400, "invalid_media"),
    ("/v1/audio/transcriptions", dict(files={"file": ("a.wav", b"x")}, data={"response_format": "srt"}), 400, None),
    ("/v1/images/edits", dict(files={"image": ("a.png", b"not a png")}, data={"prompt": "x"}), 400, "invalid_media"),
    ("/v1/images/edits", dict(files={"image": ("a.png", b"x"), "mask": ("m.png", b"x")}, data={"prompt": "x"}), 400, None),
    (CHAT, dict(content=b"x" * (LIMIT + 1), headers=JSON), 413, "request_too_large"),
    # no Content-Length (chunked): cut off as the body arrives
    (CHAT, dict(content=iter([b"{" + b" " * 4096] * 32), headers=JSON), 413, "request_too_large"),
]


@pytest.mark.parametrize("path, kw, status, code", CASES)
def test_bad_requests_get_an_openai_error_object(url, path, kw, status, code):
    r = httpx.post(url + path, timeout=60, **kw)
    assert r.status_code == status, r.text[:300]
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert code is None or error["code"] == code


def test_wrong_method_and_the_server_still_answers(url):
    r = httpx.get(url + CHAT)
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.post(url + CHAT, json=user("still there?"), timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None


def test_api_key(omni):
    with background(build_app(omni, ServeConfig(model_name="tiny", api_key="sekrit"))) as base:
        assert httpx.get(base + "/v1/models").status_code == 401
        r = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(base + "/v1/models", headers={"Authorization": "Bearer sekrit"}).status_code == 200
        assert httpx.get(base + "/health").status_code == 200  # probes need no key


def held(app):
    """Hold the app's worker until the returned event is set (the batches then run as usual)."""
    batcher = app.state.service.batcher
    release, real = threading.Event(), batcher.run_batch

    def run_batch(tickets):
        release.wait(30)
        return real(tickets)

    batcher.run_batch = run_batch
    return release


def until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_full_queue_answers_429_with_retry_after(omni):
    app = build_app(omni, ServeConfig(model_name="tiny", max_batch=1, max_queue=1, batch_window_ms=0))
    release, service = held(app), app.state.service
    with background(app) as base:
        post = lambda: httpx.post(base + CHAT, json=user("hi"), timeout=60)  # noqa: E731
        first = threading.Thread(target=post)
        first.start()
        until(lambda: service.metrics.running == 1)
        second = threading.Thread(target=post)
        second.start()
        until(lambda: service.batcher.queue_depth == 1)
        r = post()
        release.set()
        first.join()
        second.join()
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_passed_deadline_answers_504(omni):
    app = build_app(omni, ServeConfig(model_name="tiny", request_timeout_s=0.5))
    release = held(app)
    with background(app) as base:
        r = httpx.post(base + CHAT, json=user("hi"), timeout=60)
        release.set()
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    assert app.state.service.metrics.requests[("t2t", "timeout")] == 1


def test_a_client_that_leaves_stops_its_row(omni):
    app = build_app(omni, ServeConfig(model_name="tiny"))
    service = app.state.service
    steps = 256  # one token per step: alone this row runs 256 forwards
    with background(app) as base:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(base + CHAT, json=dict(user("hi"), max_tokens=steps, block_length=steps, steps=steps), timeout=1.0)
        until(lambda: service.metrics.requests.get(("t2t", "cancelled")) == 1)
        until(lambda: service.metrics.running == 0)
    assert 0 < service.metrics.forwards < steps
