"""dynin_rt.serve.ray: the app deployed on a local Ray instance with a CPU replica answers a chat
request as dynin_rt.generate does (about a minute: Ray's start-up dominates)."""
import openai
import pytest
import ray
from ray import serve

import dynin_rt
from dynin_rt.serve.local import free_port
from dynin_rt.serve.ray import deployment
from dynin_rt.serve.service import ServeConfig


@pytest.fixture(scope="module")
def ray_url(tiny_omni, runtime_cache):
    # the replica inherits this process's environment (DYNIN_RT_CACHE, PYTHONPATH) through ray.init
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(tiny_omni, ServeConfig(model_name="tiny", max_batch=4), gpus_per_replica=0), route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_ray_serve_answers_a_chat_request(ray_url, tiny_omni):
    client = openai.OpenAI(base_url=ray_url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
                                       seed=3, extra_body={"steps": 4})
    alone = dynin_rt.generate(dynin_rt.load(tiny_omni, backend="cpu"), "Hello", max_new_tokens=8, block_length=8, steps=4,
                              seed=3)
    assert r.choices[0].message.content == alone.text
