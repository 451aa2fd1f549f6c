"""Batches of independent requests: ragged rows (each with its own prompt length, new tokens, seed and
noise row) give every request exactly the tokens it gets alone, rows finish on their own, and a
cancelled row stops while the others go on."""
import numpy as np
import pytest

import dynin_rt
from dynin_rt import prompts

TEXTS = ["hello there, how are you?", "a much longer prompt with quite a few more words in it than the others", "hi"]
KW = dict(steps=8, block_length=8, temperature=1.0)


def ragged(rows):
    width = max(len(r) for r in rows)
    batch = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        batch[i, : len(r)] = r
    return batch, [len(r) for r in rows]


@pytest.fixture(scope="module")
def prompts_ids(tiny_runtime):
    return [np.array(tiny_runtime.tokenizer.encode(t)) for t in TEXTS]


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_ragged_batch_equals_each_request_alone(tiny_runtime, prompts_ids, mode):
    # each row takes 8 steps per block of 8: alone that is steps = gen_length
    gens = [16, 8, 24]
    kw = dict(block_length=8, temperature=1.0, mode=mode)
    alone = [tiny_runtime.generate_text(p[None], gen_length=g, steps=g, seed=10 + i, **kw)[0]
             for i, (p, g) in enumerate(zip(prompts_ids, gens))]
    batch, lengths = ragged(prompts_ids)
    out = tiny_runtime.generate_text(batch, lengths=lengths, gen_length=8, steps=8, gen_lengths=gens, row_seeds=[10, 11, 12],
                                     noise_rows=[0, 0, 0], **kw)
    assert out.shape == (3, max(len(p) + g for p, g in zip(prompts_ids, gens)))
    for i, want in enumerate(alone):
        assert np.array_equal(out[i, : want.size], want), f"row {i} differs from its request alone"


def test_rows_finish_on_their_own(tiny_runtime, prompts_ids):
    batch, lengths = ragged(prompts_ids)
    tiny_runtime.generate_text(batch, lengths=lengths, gen_length=8, gen_lengths=[8, 8, 24], steps=3, block_length=8)
    # blocks: 3 steps with all rows, then 2 x 3 steps with row 2 alone; committed per step shows it
    stats = tiny_runtime.last_stats
    assert stats.steps == 9
    assert all(c >= 3 for c in stats.committed_per_step[:3]) and all(c <= 3 for c in stats.committed_per_step[3:])


def test_a_cancelled_row_stops_and_the_others_go_on(tiny_runtime, prompts_ids):
    batch, lengths = ragged(prompts_ids)
    alone = tiny_runtime.generate_text(prompts_ids[0][None], gen_length=16, seed=10, **KW)[0]
    tokens = [dynin_rt.CancelToken() for _ in prompts_ids]
    tokens[1].cancel()
    out = tiny_runtime.generate_text(batch, lengths=lengths, gen_length=16, row_seeds=[10, 11, 12], noise_rows=[0, 0, 0],
                                     row_cancel=tokens, **KW)
    assert np.array_equal(out[0, : alone.size], alone)
    assert (out[1, lengths[1]:] == 126336).all()  # nothing committed
    assert tiny_runtime.last_stats.cancelled_rows == [0, 1, 0]


def test_cancelling_a_row_stops_it_within_one_step(tiny_runtime, prompts_ids):
    token = dynin_rt.CancelToken()
    blocks = []

    def on_block(block, canvas):
        blocks.append(block)
        token.cancel()

    tiny_runtime.generate_text(prompts_ids[0][None], gen_length=32, steps=8, block_length=8, on_block=on_block,
                               row_cancel=[token])
    assert blocks == [0] and tiny_runtime.last_stats.steps == 2  # the first block's steps, then none


def test_cancelling_the_call_raises_cancelled(tiny_runtime, prompts_ids):
    token = dynin_rt.CancelToken()
    token.cancel()
    with pytest.raises(dynin_rt.Cancelled):
        tiny_runtime.generate_text(prompts_ids[0][None], gen_length=8, cancel=token, **KW)


def test_image_rows_with_their_own_seeds_equal_each_alone(tiny_runtime, tiny_reference):
    n = 16
    tok = tiny_reference.tokenizer
    cond = [prompts.text_to_image(tok, t, num_image_tokens=n) for t in ("a red fox", "a blue whale")]
    kw = dict(seq_len=n, timesteps=4, temperature=1.0)
    alone = [tiny_runtime.generate_image(c.input_ids, c.attention_mask, seed=5 + i, **kw)[0] for i, c in enumerate(cond)]
    ids = np.concatenate([c.input_ids.numpy() for c in cond])
    mask = np.concatenate([c.attention_mask.numpy() for c in cond])
    out = tiny_runtime.generate_image(ids, mask, row_seeds=[5, 6], noise_rows=[0, 0], **kw)
    assert all(np.array_equal(out[i], alone[i]) for i in range(2))


def test_speech_rows_with_their_own_seeds_equal_each_alone(tiny_runtime, tiny_reference):
    tok = tiny_reference.tokenizer
    cond = [prompts.text_to_speech(tok, t, num_units=12) for t in ("Hello there", "Good morning")]
    kw = dict(max_new_tokens=12, steps=12, block_length=6, temperature=1.0, cfg_scale=2.0)
    alone = [tiny_runtime.generate_speech(c.input_ids, c.attention_mask, seed=7 + i, **kw)[0] for i, c in enumerate(cond)]
    ids = np.concatenate([c.input_ids.numpy() for c in cond])
    mask = np.concatenate([c.attention_mask.numpy() for c in cond])
    out = tiny_runtime.generate_speech(ids, mask, row_seeds=[7, 8], noise_rows=[0, 0], **kw)
    assert all(np.array_equal(out[i], alone[i]) for i in range(2))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(gen_lengths=[8, 8]), "one gen length per row"),
        (dict(gen_lengths=[8, 8, 12]), "multiple of block_length"),
        (dict(row_seeds=[1]), "one seed per row"),
        (dict(noise_rows=[0, 0]), "one noise row per row"),
    ],
)
def test_per_row_options_are_checked(tiny_runtime, prompts_ids, options, message):
    batch, lengths = ragged(prompts_ids)
    with pytest.raises(ValueError, match=message):
        tiny_runtime.generate_text(batch, lengths=lengths, gen_length=8, **KW, **options)


def test_row_lengths_are_checked(tiny_runtime, prompts_ids):
    batch, _ = ragged(prompts_ids)
    for lengths in ([1, 2], [0, 3, 3], [3, 3, batch.shape[1] + 1]):
        with pytest.raises(ValueError):
            tiny_runtime.generate_text(batch, lengths=lengths, gen_length=8, **KW)
