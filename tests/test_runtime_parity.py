"""The C++ runtime against the reference on the same weights: logits within tolerance, and
token-identical generations in exact mode for all three samplers when both sides are fed the same
counter noise."""
import numpy as np
import pytest
import torch

import dynin_rt
from dynin_rt import prompts
from dynin_rt.noise import CounterNoise
from dynin_rt.reference import DyninOmni
from dynin_rt.testing import tiny_config, write_backbone

MASK = 126336


def prompt_ids(ref, text="hello there, how are you doing today?"):
    return torch.tensor([ref.tokenizer.encode(text)])


def test_logits_fp32(tiny_runtime, tiny_reference):
    ids = prompt_ids(tiny_reference)
    ids = torch.cat([ids, torch.full((1, 7), MASK)], dim=1)
    want = tiny_reference(ids).numpy()
    got = tiny_runtime.logits(ids.numpy())
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_logits_with_pads_are_computed_only_for_real_tokens(tiny_runtime, tiny_reference):
    ids = prompt_ids(tiny_reference)[0].tolist()
    batch = torch.tensor([[126093] * 4 + ids, [126093] * 2 + [5, 6] + ids])
    keep = torch.tensor([[0] * 4 + [1] * len(ids), [0, 0, 1, 1] + [1] * len(ids)])
    want = tiny_reference(batch, keep).numpy()
    got = tiny_runtime.logits(batch.numpy(), keep.numpy())
    real = keep.numpy().astype(bool)
    assert np.abs(got[real] - want[real]).max() <= 1e-4
    assert np.isnan(got[~real]).all()


def test_logits_bf16_within_twice_the_reference_bf16_error(tiny_ckpt, runtime_cache):
    ref32 = DyninOmni.from_pretrained(tiny_ckpt)
    ref16 = DyninOmni.from_pretrained(tiny_ckpt, dtype=torch.bfloat16)
    rt16 = dynin_rt.load(tiny_ckpt, backend="cpu", dtype="bf16")
    ids = torch.cat([prompt_ids(ref32), torch.full((1, 9), MASK)], dim=1)
    exact = ref32(ids).double()
    ref_err = (ref16(ids).double() - exact).abs().max().item()
    rt_err = (torch.from_numpy(rt16.logits(ids.numpy())).double() - exact).abs().max().item()
    assert rt_err <= 2 * ref_err, (rt_err, ref_err)


TEXT_CASES = [
    dict(),
    dict(cfg_scale=1.5),
    dict(temperature=1.0),
    dict(remasking="random"),
    dict(temperature=0.7, cfg_scale=2.0, remasking="random"),
]


@pytest.mark.parametrize("kwargs", TEXT_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "greedy")
def test_text_generation_is_token_identical(tiny_runtime, tiny_reference, kwargs):
    ids = prompt_ids(tiny_reference)
    want = tiny_reference.generate_text(ids, gen_length=32, steps=16, block_length=8, noise=CounterNoise(5), **kwargs)
    got = tiny_runtime.generate_text(ids.numpy(), gen_length=32, steps=16, block_length=8, seed=5, **kwargs)
    assert np.array_equal(got, want.numpy())


def test_text_generation_batch_with_pad_mask(tiny_runtime, tiny_reference):
    a = tiny_reference.tokenizer.encode("short prompt")
    b = tiny_reference.tokenizer.encode("a somewhat longer prompt here")
    width = max(len(a), len(b))
    ids = torch.tensor([[126081] * (width - len(a)) + a, [126081] * (width - len(b)) + b])
    keep = torch.tensor([[0] * (width - len(a)) + [1] * len(a), [0] * (width - len(b)) + [1] * len(b)])
    want = tiny_reference.generate_text(ids, gen_length=16, steps=8, block_length=8, attention_mask=keep)
    got = tiny_runtime.generate_text(ids.numpy(), gen_length=16, steps=8, block_length=8, attention_mask=keep.numpy())
    assert np.array_equal(got, want.numpy())


@pytest.mark.parametrize("cfg", [False, True])
def test_image_generation_is_token_identical(tiny_runtime, tiny_reference, cfg):
    n = 64
    c = prompts.text_to_image(tiny_reference.tokenizer, "a red fox in the snow", num_image_tokens=n)
    extra = {}
    if cfg:
        u = prompts.text_to_image(tiny_reference.tokenizer, "", num_image_tokens=n)
        extra = dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, guidance_scale=3.5, resolution=140)
    want = tiny_reference.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=6, noise=CounterNoise(3), **extra)
    got = tiny_runtime.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=6, seed=3, **extra)
    assert np.array_equal(got, want.numpy())


def test_image_edit_is_token_identical(tiny_runtime, tiny_reference):
    n = 16
    src = list(range(100, 100 + n))
    c = prompts.image_edit(tiny_reference.tokenizer, tiny_reference.layout, src, "make it night", num_image_tokens=n)
    u = prompts.image_edit(tiny_reference.tokenizer, tiny_reference.layout, src, "", num_image_tokens=n)
    kw = dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, guidance_scale=3.5, resolution=10)
    want = tiny_reference.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=5, noise=CounterNoise(2), **kw)
    got = tiny_runtime.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=5, seed=2, **kw)
    assert np.array_equal(got, want.numpy())


@pytest.mark.parametrize("kwargs", [dict(temperature=1.0), dict(temperature=1.0, cfg_scale=2.5), dict(cfg_scale=2.5)])
def test_speech_generation_is_token_identical(tiny_runtime, tiny_reference, kwargs):
    n = 24
    c = prompts.text_to_speech(tiny_reference.tokenizer, "Hello there", num_units=n)
    want = tiny_reference.generate_speech(c.input_ids, c.attention_mask, max_new_tokens=n, steps=n, block_length=8,
                                          noise=CounterNoise(9), **kwargs)
    got = tiny_runtime.generate_speech(c.input_ids, c.attention_mask, max_new_tokens=n, steps=n, block_length=8, seed=9, **kwargs)
    assert len(got) == 1 and np.array_equal(got[0], want[0].numpy())


def test_one_layer_kv_cache_is_exact(tmp_path, runtime_cache):
    # With one layer, the cached keys/values of the prefix and suffix depend only on their own
    # tokens, so prefix and dual caches must reproduce exact mode token for token.
    d = write_backbone(tmp_path, tiny_config(d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64), seed=4)
    model = dynin_rt.load(d, backend="cpu")
    ids = np.array([model.tokenizer.encode("one layer only, please")])
    exact = model.generate_text(ids, gen_length=24, steps=12, block_length=8)
    for cache in ("prefix", "dual"):
        assert np.array_equal(model.generate_text(ids, gen_length=24, steps=12, block_length=8, cache=cache), exact)
    # images: the prompt's cached K/V (and, dual, the codes committed before the last fill) depend
    # only on their own tokens; a position whose input changed must be recomputed, or it differs
    n = 16
    c = prompts.text_to_image(model.tokenizer, "a red fox", num_image_tokens=n)
    u = prompts.text_to_image(model.tokenizer, "", num_image_tokens=n)
    for kw in ({}, dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, guidance_scale=2.0)):
        exact = model.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=6, seed=5, **kw)
        for cache, every in (("prefix", 0), ("dual", 0), ("dual", 4)):
            got = model.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=6, seed=5, cache=cache,
                                       refresh_every=every, **kw)
            assert np.array_equal(got, exact), (cache, every, kw.keys())


@pytest.mark.parametrize("sampler", ["text", "speech", "image"])
def test_refreshing_every_step_is_the_uncached_forward(tiny_runtime, tiny_reference, sampler):
    # refresh_every=1 makes every step a full forward: the cache then changes nothing, so the tokens
    # are those of cache="none" with the same rule; refresh_every=2 runs cached steps in between and
    # needs fewer token-layers than that, but as many forwards
    tok = tiny_reference.tokenizer
    if sampler == "text":
        ids = prompt_ids(tiny_reference).numpy()
        run = lambda **kw: tiny_runtime.generate_text(ids, gen_length=16, steps=16, block_length=8, mode="fast",
                                                     threshold=0.5, temperature=0.8, seed=3, **kw)
    elif sampler == "speech":
        c = prompts.text_to_speech(tok, "Hello there", num_units=16)
        run = lambda **kw: tiny_runtime.generate_speech(c.input_ids, c.attention_mask, max_new_tokens=16, steps=16,
                                                       block_length=8, temperature=1.0, mode="fast", threshold=0.3, seed=9,
                                                       **kw)[0]
    else:
        c = prompts.text_to_image(tok, "a red fox", num_image_tokens=16)
        run = lambda **kw: tiny_runtime.generate_image(c.input_ids, c.attention_mask, seq_len=16, timesteps=6, seed=5, **kw)
    uncached = run(cache="none")
    assert np.array_equal(run(cache="dual", refresh_every=1), uncached)
    assert np.array_equal(run(cache="prefix", refresh_every=1), uncached)
    every_step = tiny_runtime.last_stats
    run(cache="dual", refresh_every=2)
    assert tiny_runtime.last_stats.positions < every_step.positions


def test_fast_mode_with_threshold_zero_equals_one_step_per_block(tiny_runtime, tiny_reference):
    # Threshold 0 commits the whole block at the block's first (full) forward: the exact sampler
    # with one step per block makes the same choices.
    ids = prompt_ids(tiny_reference).numpy()
    fast = tiny_runtime.generate_text(ids, gen_length=24, steps=3, block_length=8, mode="fast", threshold=0.0)
    assert tiny_runtime.last_stats.steps == 3 and tiny_runtime.last_stats.committed_per_step == [8, 8, 8]
    exact = tiny_runtime.generate_text(ids, gen_length=24, steps=3, block_length=8)
    assert np.array_equal(fast, exact)


def test_fast_mode_commits_at_least_one_token_per_step(tiny_runtime, tiny_reference):
    ids = prompt_ids(tiny_reference).numpy()
    out = tiny_runtime.generate_text(ids, gen_length=16, steps=16, block_length=8, mode="fast", threshold=1.0)
    stats = tiny_runtime.last_stats
    assert (out[0, ids.shape[1]:] != MASK).all()
    assert stats.steps == 16 and all(c == 1 for c in stats.committed_per_step)
    out = tiny_runtime.generate_text(ids, gen_length=16, steps=16, block_length=8, mode="fast", factor=1.0)
    assert (out[0, ids.shape[1]:] != MASK).all() and tiny_runtime.last_stats.steps <= 16


def test_streaming_callback_sees_each_finished_block(tiny_runtime, tiny_reference):
    ids = prompt_ids(tiny_reference).numpy()
    seen = []
    out = tiny_runtime.generate_text(ids, gen_length=24, steps=6, block_length=8, on_block=lambda b, canvas: seen.append((b, canvas.copy())))
    assert [b for b, _ in seen] == [0, 1, 2]
    p = ids.shape[1]
    for b, canvas in seen:
        done = p + 8 * (b + 1)
        assert np.array_equal(canvas[:, :done], out[:, :done]) and (canvas[:, done:] == MASK).all()


def test_concurrent_calls_from_threads_match_sequential(tiny_runtime, tiny_reference):
    from concurrent.futures import ThreadPoolExecutor

    ids = prompt_ids(tiny_reference).numpy()
    seeds = [1, 2, 3, 4]
    sequential = [tiny_runtime.generate_text(ids, gen_length=16, steps=8, block_length=8, temperature=1.0, seed=s) for s in seeds]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda s: tiny_runtime.generate_text(ids, gen_length=16, steps=8, block_length=8,
                                                                       temperature=1.0, seed=s), seeds))
    assert all(np.array_equal(a, b) for a, b in zip(sequential, parallel))
