"""Step plans per step (the CPU's default: candidates recomputed from the canvas every step) and per
block (the device-resident loop: fixed candidates, committed ones skipped, schedule and step counter
in backend memory) give the same tokens and the same per-step commit counts, for every sampler,
cache mode and selection rule."""
import numpy as np
import pytest

import dynin_rt
from dynin_rt import prompts


@pytest.fixture(scope="module")
def model(tiny_ckpt, runtime_cache):
    return dynin_rt.load(tiny_ckpt, backend="cpu")


def both(model, call):
    out = {}
    for plans in ("step", "block"):
        model.plans = plans
        try:
            out[plans] = (call(), model.last_stats)
        finally:
            model.plans = "auto"
    return out["step"], out["block"]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(temperature=1.0, cfg_scale=1.5),
        dict(remasking="random"),
        dict(mode="fast", threshold=0.05),
        dict(mode="fast", factor=2.0, cache="prefix"),
        dict(cache="dual"),
        dict(mode="fast", threshold=0.5, cache="none", temperature=0.7),
        dict(mode="fast", threshold=0.3, cache="dual", refresh_every=2, temperature=0.7),
    ],
)
def test_text_plans_agree(model, tiny_reference, kwargs):
    ids = np.array([tiny_reference.tokenizer.encode("hello there, how are you?")])
    (a, sa), (b, sb) = both(model, lambda: model.generate_text(ids, gen_length=24, steps=12, block_length=8, seed=4, **kwargs))
    assert np.array_equal(a, b)
    assert sa.steps == sb.steps and sa.committed_per_step == sb.committed_per_step and sa.forwards == sb.forwards


def test_ragged_text_batch_plans_agree(model, tiny_reference):
    tok = tiny_reference.tokenizer
    rows = [tok.encode(t) for t in ("hi", "a longer prompt than the first one")]
    batch = np.zeros((2, max(map(len, rows))), np.int64)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    call = lambda: model.generate_text(batch, lengths=[len(r) for r in rows], gen_length=8, gen_lengths=[8, 16], steps=4,
                                       block_length=8, temperature=1.0, row_seeds=[1, 2], noise_rows=[0, 0])
    (a, _), (b, _) = both(model, call)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("cfg", [0.0, 2.0])
@pytest.mark.parametrize("cache", [dict(), dict(cache="prefix"), dict(cache="dual", refresh_every=2)])
def test_image_plans_agree(model, tiny_reference, cfg, cache):
    n = 16
    c = prompts.text_to_image(tiny_reference.tokenizer, "a red fox", num_image_tokens=n)
    u = prompts.text_to_image(tiny_reference.tokenizer, "", num_image_tokens=n)
    kw = dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, guidance_scale=cfg) if cfg else {}
    call = lambda: model.generate_image(c.input_ids, c.attention_mask, seq_len=n, timesteps=5, seed=3, **kw, **cache)
    (a, sa), (b, sb) = both(model, call)
    assert np.array_equal(a, b)
    assert sa.positions == sb.positions
    # the clamp keeps one position masked after the last step; the returned samples fill it
    assert sa.committed_per_step == sb.committed_per_step and sum(sa.committed_per_step) == n - 1


@pytest.mark.parametrize("kwargs", [dict(cfg_scale=2.5), dict(mode="fast", threshold=0.3), dict(cache="dual"),
                                    dict(mode="fast", threshold=0.3, cache="prefix", refresh_every=3)])
def test_speech_plans_agree(model, tiny_reference, kwargs):
    c = prompts.text_to_speech(tiny_reference.tokenizer, "Hello there", num_units=16)
    call = lambda: model.generate_speech(c.input_ids, c.attention_mask, max_new_tokens=16, steps=16, block_length=8,
                                         temperature=1.0, seed=9, **kwargs)
    (a, sa), (b, sb) = both(model, call)
    assert np.array_equal(a[0], b[0])
    assert sa.committed_per_step == sb.committed_per_step


def test_plans_are_validated(model):
    model.plans = "sometimes"
    try:
        with pytest.raises(ValueError, match="plans must be"):
            model.generate_text(np.array([[1, 2, 3]]), gen_length=8, steps=8, block_length=8)
    finally:
        model.plans = "auto"
