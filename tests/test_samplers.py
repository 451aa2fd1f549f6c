"""The three samplers' decisions, checked by hand on stand-in models whose logits the test designs."""

import numpy as np
import pytest
import torch

from dynin_rt.noise import CounterNoise, TorchNoise, counter_uniform
from dynin_rt.reference import get_num_transfer_tokens, llada_generate, maskgit_generate, maskgit_schedule, t2s_generate

from fakes import IMAGE0, SPEECH0, FakeModel

MASK = 126336
EOS = 126081
EOA = 126098


@pytest.mark.parametrize(
    "masked, steps, expected",
    [(2, 4, [1, 1, 0, 0]), (10, 4, [3, 3, 2, 2]), (8, 4, [2, 2, 2, 2]), (0, 3, [0, 0, 0])],
)
def test_transfer_counts_front_load_the_remainder(masked, steps, expected):
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[0, :masked] = True
    assert get_num_transfer_tokens(mask, steps)[0].tolist() == expected


def test_maskgit_schedule_matches_spec_table():
    # docs/samplers.md, "MaskGIT image sampler": N=1024, T=20
    assert maskgit_schedule(1024, 20) == [
        1020, 1011, 995, 973, 946, 912, 873, 828, 778, 724, 665, 601, 535, 464, 391, 316, 239, 160, 80, 1,
    ]


# -- LLaDA block sampler ---------------------------------------------------------------------------

def peaked(strengths, tokens, prompt_len):
    """Position prompt_len + j prefers tokens[j] with logit strengths[j] (all others 0)."""

    def fn(ids, out):
        for j, (s, tok) in enumerate(zip(strengths, tokens)):
            out[prompt_len + j, tok] = s

    return fn


def committed(calls, prompt_len):
    return [set((c[0][0, prompt_len:] != MASK).nonzero()[:, 0].tolist()) for c in calls]


def test_llada_commits_most_confident_first_within_the_block():
    prompt = torch.tensor([[11, 12, 13]])
    m = FakeModel(peaked([10.0, 30.0, 20.0, 40.0], [101, 102, 103, 104], 3))
    out = llada_generate(m, prompt, gen_length=4, steps=4, block_length=4)
    assert out[0].tolist() == [11, 12, 13, 101, 102, 103, 104]
    assert committed(m.calls, 3) == [set(), {3}, {1, 3}, {1, 2, 3}]
    assert prompt.tolist() == [[11, 12, 13]]


def test_llada_never_commits_beyond_the_current_block():
    # the most confident position is in block 2; block 1 must finish first
    m = FakeModel(peaked([10.0, 20.0, 90.0, 30.0], [101, 102, 103, 104], 2))
    out = llada_generate(m, torch.tensor([[5, 6]]), gen_length=4, steps=4, block_length=2)
    assert out[0, 2:].tolist() == [101, 102, 103, 104]
    assert committed(m.calls, 2) == [set(), {1}, {0, 1}, {0, 1, 2}]


def test_llada_cfg_uses_u_plus_s_plus_1_times_c_minus_u():
    # cond prefers 201 (5 vs 4 for 202); uncond (prompt masked) prefers 201 strongly (5 vs 0):
    # u + 2 (c - u) gives 201: 5, 202: 8, so CFG flips the choice to 202.
    def fn(ids, out):
        uncond = bool((ids[:2] == MASK).all())
        out[2, 201] = 5.0
        out[2, 202] = 0.0 if uncond else 4.0

    m = FakeModel(fn)
    out = llada_generate(m, torch.tensor([[7, 8]]), gen_length=1, steps=1, block_length=1, cfg_scale=1.0)
    assert out[0, 2].item() == 202
    (batch, keep), = m.calls
    assert batch.shape[0] == 2 and keep is None
    assert batch[1, :2].tolist() == [MASK, MASK]
    plain = llada_generate(FakeModel(fn), torch.tensor([[7, 8]]), gen_length=1, steps=1, block_length=1)
    assert plain[0, 2].item() == 201


def test_llada_pad_mask_extends_over_generation_and_is_dropped_without_zeros():
    m = FakeModel(peaked([1.0, 2.0], [300, 301], 3))
    llada_generate(m, torch.tensor([[126093, 5, 6]]), gen_length=2, steps=2, block_length=2, attention_mask=torch.tensor([[0, 1, 1]]))
    assert m.calls[0][1].tolist() == [[0, 1, 1, 1, 1]]
    m = FakeModel(peaked([1.0, 2.0], [300, 301], 3))
    llada_generate(m, torch.tensor([[4, 5, 6]]), gen_length=2, steps=2, block_length=2, attention_mask=torch.ones(1, 3, dtype=torch.long))
    assert m.calls[0][1] is None


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_llada_sampling_is_reproducible_from_a_seeded_generator(remasking):
    def fn(ids, out):
        out[:, 100:110] = torch.linspace(0, 1, 10)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return llada_generate(FakeModel(fn), torch.tensor([[1]]), gen_length=8, steps=4, block_length=8,
                              temperature=1.0, remasking=remasking, generator=g)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    counter = lambda seed: llada_generate(FakeModel(fn), torch.tensor([[1]]), gen_length=8, steps=4, block_length=8,  # noqa: E731
                                          temperature=1.0, remasking=remasking, noise=CounterNoise(seed))
    assert torch.equal(counter(5), counter(5)) and not torch.equal(counter(5), counter(6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gen_length=6, block_length=4, steps=2), "not divisible by block_length"),
        (dict(gen_length=8, block_length=4, steps=3), "not divisible by the number of blocks"),
        (dict(gen_length=0, block_length=4, steps=2), "gen_length"),
        (dict(gen_length=4, block_length=4, steps=4, remasking="top"), "remasking"),
        (dict(gen_length=4, block_length=4, steps=4, temperature=-1.0), "temperature"),
    ],
)
def test_llada_rejects_bad_lengths(kwargs, message):
    with pytest.raises(ValueError, match=message):
        llada_generate(FakeModel(lambda ids, out: None), torch.tensor([[1]]), **kwargs)


# -- MaskGIT ---------------------------------------------------------------------------------------

def image_canvas(n, text=(7, 8, 9)):
    ids = torch.tensor([[*text, 126084] + [MASK] * n + [126085]])
    return ids, torch.ones_like(ids)


def test_maskgit_follows_the_cosine_schedule_and_reads_only_image_logits():
    n, steps = 16, 6

    def fn(ids, out):
        out[:, 5] = 1000.0  # a text id: outside the image slice, must be ignored
        out[:, IMAGE0 + 3] = 1.0

    m = FakeModel(fn)
    ids, keep = image_canvas(n)
    codes = maskgit_generate(m, ids, keep, seq_len=n, timesteps=steps, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (1, n) and ((codes >= 0) & (codes < 8192)).all()
    masked_per_call = [int((c[0][0, 4:4 + n] == MASK).sum()) for c in m.calls]
    schedule = maskgit_schedule(n, steps)
    assert masked_per_call == [n] + schedule[:-1]
    assert ids[0, 4].item() == MASK  # the caller's canvas is untouched


def test_maskgit_keeps_given_codes_and_returns_last_step_samples():
    n = 9
    ids, keep = image_canvas(n)
    ids[0, 4 + 2] = IMAGE0 + 777  # a known code
    m = FakeModel(lambda ids, out: out.__setitem__((slice(None), IMAGE0 + 5), 50.0))
    codes = maskgit_generate(m, ids, keep, seq_len=n, timesteps=4, generator=torch.Generator().manual_seed(1))
    assert codes[0, 2].item() == 777
    assert all(c == 5 for i, c in enumerate(codes[0].tolist()) if i != 2)


def test_maskgit_uncond_stream_is_prefix_then_conditional_tail():
    n, resolution = 8, 5
    ids, keep = image_canvas(n, text=(126093, 126093, 126088, 126080, 40, 41, 126081))
    un_ids, un_keep = image_canvas(n, text=(126093,) * 5 + (126088, 126081))
    un_keep[0, :5] = 0
    m = FakeModel(lambda ids, out: out.__setitem__((slice(None), IMAGE0 + 1), 3.0))
    maskgit_generate(m, ids, keep, uncond_input_ids=un_ids, uncond_attention_mask=un_keep, seq_len=n,
                     timesteps=3, guidance_scale=2.0, resolution=resolution, generator=torch.Generator().manual_seed(0))
    for batch, bias_keep in m.calls:
        assert batch.shape[0] == 2
        assert torch.equal(batch[1, : resolution + 1], un_ids[0, : resolution + 1])
        assert torch.equal(batch[1, resolution + 1 :], batch[0, resolution + 1 :])
        assert torch.equal(bias_keep, torch.cat([keep, un_keep]))


def test_maskgit_cfg_is_one_plus_g_c_minus_g_u():
    # cond: code 1 -> 2.0, code 2 -> 1.9; uncond: code 1 -> 2.0, code 2 -> 0. (1+g)c - g u with g=3:
    # code 1: 2.0, code 2: 7.6. Scaled by 20 so the draw is certain.
    def fn(ids, out):
        uncond = ids[0].item() == 126093 and ids[1].item() == 126093 and ids[2].item() != 126088
        out[:, IMAGE0 + 1] = 40.0
        out[:, IMAGE0 + 2] = 0.0 if uncond else 38.0

    n = 4
    ids, keep = image_canvas(n, text=(126093, 126088, 50))
    un_ids, un_keep = image_canvas(n, text=(126093, 126093, 51))
    codes = maskgit_generate(FakeModel(fn), ids, keep, uncond_input_ids=un_ids, uncond_attention_mask=un_keep,
                             seq_len=n, timesteps=2, guidance_scale=3.0, resolution=2, generator=torch.Generator().manual_seed(0))
    assert codes[0].tolist() == [2, 2, 2, 2]


# -- text-to-speech --------------------------------------------------------------------------------

def speech_canvas(n, prompt=(126093, 126099, 126080, 30, 126081, 126097)):
    ids = torch.tensor([[*prompt] + [MASK] * n])
    keep = torch.tensor([[0] + [1] * (len(prompt) - 1 + n)])
    return ids, keep


def test_t2s_restricts_the_head_and_cuts_at_first_end_of_audio():
    n, p = 8, 6

    def fn(ids, out):
        out[:, 17] = 1000.0  # a text id outside the 4098-way head
        for j in range(n):
            out[p + j, SPEECH0 + 10 + j] = 60.0
        out[p + 5, EOA] = 90.0

    ids, keep = speech_canvas(n)
    units = t2s_generate(FakeModel(fn), ids, keep, steps=8, block_length=4, generator=torch.Generator().manual_seed(0))
    assert units[0].tolist() == [10, 11, 12, 13, 14]


def test_t2s_eos_also_ends_the_units():
    n, p = 6, 6

    def fn(ids, out):
        for j in range(n):
            out[p + j, SPEECH0 + j] = 60.0
        out[p + 2, EOS] = 90.0

    ids, keep = speech_canvas(n)
    units = t2s_generate(FakeModel(fn), ids, keep, steps=6, block_length=6, generator=torch.Generator().manual_seed(0))
    assert units[0].tolist() == [0, 1]


def test_t2s_uncond_pass_is_computed_once_with_the_speech_region_masked():
    n, p = 6, 6

    def fn(ids, out):
        masked = bool((ids[p:] == MASK).all())
        out[p:, SPEECH0 + 10] = 50.0
        out[p:, SPEECH0 + 20] = 0.0 if masked else 48.0

    ids, keep = speech_canvas(n)
    m = FakeModel(fn)
    units = t2s_generate(m, ids, keep, steps=6, block_length=3, cfg_scale=1.0, generator=torch.Generator().manual_seed(0))
    # At the first step the conditional canvas equals the unconditional one, so the first commit
    # takes unit 10; afterwards u + 2 (c - u) gives unit 10: 50, unit 20: 96.
    first = (m.calls[2][0][0, p:] != MASK).nonzero()[0, 0].item()
    assert units[0].tolist() == [10 if j == first else 20 for j in range(n)]
    assert len(m.calls) == 1 + 6
    assert (m.calls[0][0][0, p:] == MASK).all()
    assert all(torch.equal(k, keep) for _, k in m.calls)


def test_t2s_max_new_tokens_leaves_the_rest_masked_and_cut():
    n, p = 8, 6

    def fn(ids, out):
        out[p:, SPEECH0 + 3] = 60.0

    ids, keep = speech_canvas(n)
    m = FakeModel(fn)
    units = t2s_generate(m, ids, keep, max_new_tokens=5, steps=5, block_length=5, generator=torch.Generator().manual_seed(0))
    assert units[0].tolist() == [3] * 5
    assert (m.calls[-1][0][0, p + 5 :] == MASK).all()


# -- noise -----------------------------------------------------------------------------------------

def test_counter_hash_is_splitmix64():
    # splitmix64 seeded with 0 yields 0xe220a8397b1dcdaf first: our finaliser on 0 + golden must too.
    from dynin_rt.noise import _mix64

    assert int(_mix64(np.uint64(0x9E3779B97F4A7C15))) == 0xE220A8397B1DCDAF


def test_counter_uniform_is_open_interval_deterministic_and_keyed():
    u = counter_uniform(7, 1, 3, np.arange(2)[:, None, None], np.arange(5)[None, :, None], np.arange(1000)[None, None, :])
    assert u.shape == (2, 5, 1000) and (u > 0).all() and (u < 1).all()
    assert np.array_equal(u, counter_uniform(7, 1, 3, np.arange(2)[:, None, None], np.arange(5)[None, :, None], np.arange(1000)[None, None, :]))
    assert abs(u.mean() - 0.5) < 0.01
    base = counter_uniform(7, 1, 3, 0, 0, 0)
    for other in [(8, 1, 3, 0, 0, 0), (7, 2, 3, 0, 0, 0), (7, 1, 4, 0, 0, 0), (7, 1, 3, 1, 0, 0), (7, 1, 3, 0, 1, 0), (7, 1, 3, 0, 0, 1)]:
        assert counter_uniform(*other) != base


def test_counter_categorical_samples_the_softmax():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5])
    n = 20000
    noise = CounterNoise(3)
    draws = noise.categorical(logits.expand(1, n, 5), None, step=0, positions=torch.arange(n))
    freq = torch.bincount(draws[0], minlength=5).double() / n
    p = logits.double().softmax(-1)
    assert torch.nn.functional.cosine_similarity(freq, p, dim=0) > 0.999
    assert (freq - p).abs().max() < 0.015


def test_torch_noise_reproduces_the_official_draws():
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    probs = torch.rand(3, 4, 7, generator=torch.Generator().manual_seed(0)).softmax(-1)
    got = TorchNoise(g1).categorical(None, probs, 0, None)
    want = torch.multinomial(probs.reshape(-1, 7), 1, generator=g2)[:, 0].view(3, 4)
    assert torch.equal(got, want)
