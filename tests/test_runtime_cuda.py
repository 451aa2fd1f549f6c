"""The CUDA runtime against the reference on the same weights: fp32 logits to 1e-4, bf16 within
twice the reference's own bf16 error, token-identical generations for all three samplers."""
import numpy as np
import pytest
import torch

import dynin_rt
from dynin_rt import prompts
from dynin_rt.noise import CounterNoise

from cuda_available import cuda_skip_reason

REASON = cuda_skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
MASK = 126336


@pytest.fixture(scope="module")
def cuda_model(tiny_ckpt, runtime_cache):
    return dynin_rt.load(tiny_ckpt, backend="cuda")


def ids_of(ref, text="hello there, how are you doing today?"):
    return torch.tensor([ref.tokenizer.encode(text)])


def test_logits_fp32(cuda_model, tiny_reference):
    ids = torch.cat([ids_of(tiny_reference), torch.full((1, 7), MASK)], dim=1)
    want = tiny_reference(ids).numpy()
    got = cuda_model.logits(ids.numpy())
    assert np.abs(got - want).max() <= 1e-4


def test_logits_bf16(tiny_ckpt, tiny_reference, runtime_cache):
    from dynin_rt.reference import DyninOmni

    ids = torch.cat([ids_of(tiny_reference), torch.full((1, 9), MASK)], dim=1)
    exact = tiny_reference(ids).double()
    ref16 = DyninOmni.from_pretrained(tiny_ckpt, dtype=torch.bfloat16)
    ref_err = (ref16(ids).double() - exact).abs().max().item()
    rt = dynin_rt.load(tiny_ckpt, backend="cuda", dtype="bf16")
    rt_err = (torch.from_numpy(rt.logits(ids.numpy())).double() - exact).abs().max().item()
    assert rt_err <= 2 * ref_err


@pytest.mark.parametrize("kwargs", [dict(), dict(cfg_scale=1.5), dict(temperature=1.0), dict(remasking="random")])
def test_text_tokens(cuda_model, tiny_reference, kwargs):
    ids = ids_of(tiny_reference)
    want = tiny_reference.generate_text(ids, gen_length=32, steps=16, block_length=8, noise=CounterNoise(5), **kwargs)
    got = cuda_model.generate_text(ids.numpy(), gen_length=32, steps=16, block_length=8, seed=5, **kwargs)
    assert np.array_equal(got, want.numpy())


def test_image_tokens(cuda_model, tiny_reference):
    n = 64
    c = prompts.text_to_image(tiny_reference.tokenizer, "a red fox", num_image_tokens=n)
    u = prompts.text_to_image(tiny_reference.tokenizer, "", num_image_tokens=n)
    kw = dict(uncond_input_ids=u.input_ids, uncond_attention_mask=u.attention_mask, guidance_scale=3.5, seq_len=n, timesteps=6)
    want = tiny_reference.generate_image(c.input_ids, c.attention_mask, noise=CounterNoise(3), **kw)
    got = cuda_model.generate_image(c.input_ids, c.attention_mask, seed=3, **kw)
    assert np.array_equal(got, want.numpy())


def test_speech_tokens(cuda_model, tiny_reference):
    n = 24
    c = prompts.text_to_speech(tiny_reference.tokenizer, "Hello there", num_units=n)
    kw = dict(max_new_tokens=n, steps=n, block_length=8, temperature=1.0, cfg_scale=2.5)
    want = tiny_reference.generate_speech(c.input_ids, c.attention_mask, noise=CounterNoise(9), **kw)
    got = cuda_model.generate_speech(c.input_ids, c.attention_mask, seed=9, **kw)
    assert np.array_equal(got[0], want[0].numpy())


def test_fast_mode_runs_on_the_device(cuda_model, tiny_reference):
    ids = ids_of(tiny_reference).numpy()
    out = cuda_model.generate_text(ids, gen_length=32, steps=32, block_length=16, mode="fast")
    assert (out[0, ids.shape[1]:] != MASK).all()
