"""The CUDA runtime (on a GPU, or in the emulated build that CI runs through test_cuda_emulated.py)
against the PyTorch reference on the same weights: every task through dynin_rt.generate, every
sampler through the Model calls, exact mode token-identical; fp32 logits to 1e-5 relative, bf16
within twice the reference's own bf16 error. The KV-cache and fast modes are approximate by design,
so they must equal the CPU runtime's tokens instead. Sizes are small: the emulated kernels run on
the CPU's cores one thread at a time."""
import numpy as np
import pytest
import torch

import dynin_rt
from dynin_rt import _C, prompts
from dynin_rt.noise import CounterNoise

from cuda_available import cuda_skip_reason
from pipeline_check import assert_task_equals_reference, separate_tokenizers

REASON = cuda_skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
MASK = 126336
RNG = np.random.default_rng(0)
IMAGE = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)
VIDEO = (RNG.random((3, 32, 32, 3)) * 255).astype(np.uint8)
WAV = (0.3 * np.sin(np.arange(8000) / 16000 * 2 * np.pi * 220)).astype(np.float32)

TASKS = {
    "t2t": dict(prompt="Explain diffusion LMs", max_new_tokens=8, steps=4, block_length=8),
    "i2t": dict(prompt="What is in this picture?", image=IMAGE, max_new_tokens=8, steps=4, block_length=8, resolution=32),
    "v2t": dict(prompt="Describe the video", video=VIDEO, max_new_tokens=8, steps=4, block_length=8, resolution=32, frames=2),
    "s2t": dict(audio=WAV, sample_rate=16000, max_new_tokens=4, steps=4, block_length=2),
    "t2i": dict(prompt="A red fox in the snow", output="image", resolution=64, steps=3),
    "i2i": dict(prompt="Make it night", image=IMAGE, output="image", resolution=32, steps=3),
    "t2s": dict(prompt="Hello there", output="speech", max_new_tokens=16, steps=8, block_length=8, voice="male-happy"),
}


@pytest.fixture(scope="module")
def cuda_model(tiny_ckpt, runtime_cache):
    return dynin_rt.load(tiny_ckpt, backend="cuda")


@pytest.fixture(scope="module")
def omni(tiny_omni, runtime_cache):
    from dynin_rt.reference import DyninOmni

    model = dynin_rt.load(tiny_omni, backend="cuda", tokenizer_backend="torch")
    return model, DyninOmni.from_pretrained(tiny_omni), separate_tokenizers(model)


def ids_of(ref, text="hello there, how are you?"):
    return torch.tensor([ref.tokenizer.encode(text)])


def test_logits_fp32(cuda_model, tiny_reference):
    ids = torch.cat([ids_of(tiny_reference), torch.full((1, 7), MASK)], dim=1)
    want = tiny_reference(ids).numpy()
    got = cuda_model.logits(ids.numpy())
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_logits_bf16(tiny_ckpt, tiny_reference, runtime_cache):
    from dynin_rt.reference import DyninOmni

    ids = torch.cat([ids_of(tiny_reference), torch.full((1, 9), MASK)], dim=1)
    exact = tiny_reference(ids).double()
    ref16 = DyninOmni.from_pretrained(tiny_ckpt, dtype=torch.bfloat16)
    ref_err = (ref16(ids).double() - exact).abs().max().item()
    rt = dynin_rt.load(tiny_ckpt, backend="cuda", dtype="bf16")
    rt_err = (torch.from_numpy(rt.logits(ids.numpy())).double() - exact).abs().max().item()
    assert rt_err <= 2 * ref_err


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_equals_the_reference_pipeline(omni, task):
    assert_task_equals_reference(*omni, task, TASKS[task])


@pytest.mark.parametrize("kwargs", [dict(), dict(cfg_scale=1.5), dict(temperature=1.0), dict(remasking="random")],
                         ids=["greedy", "cfg", "gumbel", "random_remasking"])
def test_text_sampler_tokens(cuda_model, tiny_reference, kwargs):
    ids = ids_of(tiny_reference)
    want = tiny_reference.generate_text(ids, gen_length=16, steps=8, block_length=8, noise=CounterNoise(5), **kwargs)
    got = cuda_model.generate_text(ids.numpy(), gen_length=16, steps=8, block_length=8, seed=5, **kwargs)
    assert np.array_equal(got, want.numpy())


@pytest.mark.parametrize(
    "kwargs",
    [dict(cache="prefix"), dict(cache="dual"), dict(mode="fast"), dict(mode="fast", factor=1.0),
     dict(mode="fast", cache="prefix", threshold=0.5)],
    ids=["exact_prefix_cache", "exact_dual_cache", "fast_threshold", "fast_factor", "fast_prefix_cache"],
)
def test_cache_and_fast_modes_equal_the_cpu_runtime(cuda_model, tiny_runtime, tiny_reference, kwargs):
    ids = ids_of(tiny_reference).numpy()
    got = cuda_model.generate_text(ids, gen_length=16, steps=16, block_length=8, temperature=0.5, seed=7, **kwargs)
    want = tiny_runtime.generate_text(ids, gen_length=16, steps=16, block_length=8, temperature=0.5, seed=7, **kwargs)
    assert np.array_equal(got, want)
    assert cuda_model.last_stats.committed_per_step == tiny_runtime.last_stats.committed_per_step


@pytest.mark.parametrize("cfg", [False, True])
def test_image_tokens(cuda_model, tiny_reference, cfg):
    n = 16
    c = prompts.text_to_image(tiny_reference.tokenizer, "a red fox", num_image_tokens=n)
    kw = dict(seq_len=n, timesteps=4)
    if cfg:
        u = prompts.text_to_image(tiny_reference.tokenizer, "", num_image_tokens=n)
        kw.update(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, guidance_scale=3.5)
    want = tiny_reference.generate_image(c.input_ids, c.attention_mask, noise=CounterNoise(3), **kw)
    got = cuda_model.generate_image(c.input_ids, c.attention_mask, seed=3, **kw)
    assert np.array_equal(got, want.numpy())


def test_speech_tokens(cuda_model, tiny_reference):
    n = 16
    c = prompts.text_to_speech(tiny_reference.tokenizer, "Hello there", num_units=n)
    kw = dict(max_new_tokens=n, steps=n // 2, block_length=8, temperature=1.0, cfg_scale=2.5)
    want = tiny_reference.generate_speech(c.input_ids, c.attention_mask, noise=CounterNoise(9), **kw)
    got = cuda_model.generate_speech(c.input_ids, c.attention_mask, seed=9, **kw)
    assert np.array_equal(got[0], want[0].numpy())


# The reference's speech sampler computes the whole canvas's logits at every step (tens of seconds
# here), so the other speech modes are held to the CPU runtime, itself equal to the reference
# (tests/test_runtime_parity.py).
@pytest.mark.parametrize("kwargs", [dict(cfg_scale=2.5), dict(temperature=1.0, cfg_scale=2.5, mode="fast")], ids=["greedy", "fast"])
def test_speech_modes_equal_the_cpu_runtime(cuda_model, tiny_runtime, tiny_reference, kwargs):
    c = prompts.text_to_speech(tiny_reference.tokenizer, "Hello there", num_units=16)
    kw = dict(max_new_tokens=16, steps=16, block_length=8, seed=4, **kwargs)
    got = cuda_model.generate_speech(c.input_ids, c.attention_mask, **kw)
    want = tiny_runtime.generate_speech(c.input_ids, c.attention_mask, **kw)
    assert np.array_equal(got[0], want[0])


@pytest.mark.skipif(not dynin_rt.build_info().get("cuda_emulated"), reason="reads the emulated device's counters")
def test_device_allocations_do_not_grow_with_the_steps(cuda_model, tiny_reference):
    ids = ids_of(tiny_reference).numpy()

    def allocations(steps):
        cuda_model.generate_text(ids, gen_length=16, steps=steps, block_length=16, seed=1)  # warm: scratch at full size
        before = _C.emulation_counters()
        cuda_model.generate_text(ids, gen_length=16, steps=steps, block_length=16, seed=1)
        after = _C.emulation_counters()
        return after["mallocs"] - before["mallocs"], after["frees"] - before["frees"]

    assert allocations(4) == allocations(16)


# --- recorded steps (CUDA graphs) and the device-resident loop -----------------------------------
# Three ways to run the same call: graphs replaying the recorded step, the same per-block plans
# enqueued op by op, and plans rebuilt from the canvas before every step.
WAYS = [("block", True), ("block", False), ("step", False)]


def three_ways(model, call):
    out = []
    for plans, graphs in WAYS:
        model.plans, model.graphs = plans, graphs
        try:
            out.append((call(), model.last_stats))
        finally:
            model.plans, model.graphs = "auto", True
    return out


def assert_same_and_replayed(runs, tokens=lambda r: r):
    (got, stats), *others = runs
    for other, other_stats in others:
        assert np.array_equal(tokens(got), tokens(other))
        assert other_stats.committed_per_step == stats.committed_per_step
        assert other_stats.device["graph_replays"] == 0
    assert stats.device["graph_replays"] > 0  # the graphs did run


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(temperature=1.0, cfg_scale=1.5), dict(remasking="random"), dict(cache="dual"),
     dict(mode="fast", cache="prefix", threshold=0.5), dict(mode="fast", factor=1.0)],
    ids=["greedy", "gumbel_cfg", "random_remasking", "dual_cache", "fast_prefix_cache", "fast_factor"],
)
def test_text_tokens_with_and_without_graphs(cuda_model, tiny_reference, kwargs):
    ids = ids_of(tiny_reference).numpy()
    assert_same_and_replayed(three_ways(cuda_model, lambda: cuda_model.generate_text(
        ids, gen_length=8, steps=4, block_length=8, seed=2, **kwargs)))


def test_image_tokens_with_and_without_graphs(cuda_model, tiny_reference):
    c = prompts.text_to_image(tiny_reference.tokenizer, "a red fox", num_image_tokens=16)
    u = prompts.text_to_image(tiny_reference.tokenizer, "", num_image_tokens=16)
    assert_same_and_replayed(three_ways(cuda_model, lambda: cuda_model.generate_image(
        c.input_ids, c.attention_mask, u.input_ids, u.attention_mask, seq_len=16, timesteps=4, guidance_scale=3.5, seed=3)))


def test_speech_tokens_with_and_without_graphs(cuda_model, tiny_reference):
    c = prompts.text_to_speech(tiny_reference.tokenizer, "Hello there", num_units=8)
    assert_same_and_replayed(three_ways(cuda_model, lambda: cuda_model.generate_speech(
        c.input_ids, c.attention_mask, max_new_tokens=8, steps=4, block_length=8, temperature=1.0, cfg_scale=2.5, seed=4)),
        tokens=lambda r: r[0])


# With graphs, what a call launches, waits for and allocates must not depend on its number of steps:
# the host waits only between blocks (the canvas and the step log are read back: two waits, plus one
# per buffer the next block's plan frees), except in fast mode, which reads how many candidates
# remain after every step. Each step after a plan's first replays its graph.
@pytest.mark.parametrize("kwargs", [dict(), dict(cache="dual"), dict(mode="fast", threshold=0.5)],
                         ids=["exact", "exact_dual_cache", "fast"])
def test_a_recorded_step_launches_waits_and_allocates_nothing(cuda_model, tiny_reference, kwargs):
    ids = ids_of(tiny_reference).numpy()
    blocks = 2
    fast = kwargs.get("mode") == "fast"

    emulated = dynin_rt.build_info().get("cuda_emulated")

    def device(steps):
        before = _C.emulation_counters() if emulated else None
        cuda_model.generate_text(ids, gen_length=16, steps=steps, block_length=8, seed=1, **kwargs)
        d = cuda_model.last_stats.device
        if emulated:  # the backend's counts are the device's (frees at the call's end come after the stats)
            seen = {k: v - before[k] for k, v in _C.emulation_counters().items()}
            assert (seen["kernel_launches"], seen["graph_launches"], seen["mallocs"]) == (
                d["kernel_launches"], d["graph_replays"], d["allocations"])
        step_reads = cuda_model.last_stats.steps if fast else 0
        assert d["host_syncs"] - d["frees"] <= 2 * blocks + step_reads
        return d

    few, many = device(4), device(16)
    for name in ("host_syncs", "allocations", "frees") + (() if fast else ("kernel_launches",)):
        assert few[name] == many[name], name
    if not fast:  # launches: the eager run of each plan's first step, nothing per step
        assert many["graph_replays"] >= 16 - 2 * blocks
