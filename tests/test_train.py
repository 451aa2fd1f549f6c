"""The trained test model (dynin_rt.testing.train) and its tasks: a few SFT steps are deterministic and
lower the loss; the written checkpoint is the official layout, loads in the runtime and the
reference with equal logits, and its full-vocabulary probabilities are what training optimised.
A tiny config keeps this at a few seconds (the real model trains once and is cached)."""
import dataclasses

import numpy as np
import pytest
import torch

from dynin_rt.testing import tasks as T
from dynin_rt.testing import train as tr
from dynin_rt.tokens import EOA_ID, EOI_ID, EOS_ID, MASK_ID

TINY = tr.TrainConfig(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64, tasks=("map", "pairs", "t2s"), steps=6,
                      batch_per_task=4, warmup=2, lr=0.03)


@pytest.fixture(scope="module")
def tok_layout():
    return tr.test_tokenizer()


@pytest.fixture(scope="module")
def tiny_trained(tok_layout):
    return tr.train(TINY, *tok_layout, log=None)


def _fixed_loss(model, tok, layout) -> float:
    # the SFT loss of a fixed batch with fixed masks, summed over the config's tasks
    total = 0.0
    with torch.no_grad():
        for name in TINY.tasks:
            batch = tr.Batches(T.TASKS_BY_NAME[name], tok, layout, seed=7).get(0, 8)
            total += float(tr.sft_loss(model, *batch, TINY.eps, torch.Generator().manual_seed(0)))
    return total


def test_training_is_deterministic_and_lowers_the_loss(tok_layout, tiny_trained):
    tok, layout = tok_layout
    torch.manual_seed(TINY.seed)
    untrained = tr.TrainModel(TINY, *tr.vocabulary(tok, layout))
    again = tr.train(TINY, tok, layout, log=None)
    for (name, a), b in zip(tiny_trained.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    before, after = _fixed_loss(untrained, tok, layout), _fixed_loss(tiny_trained, tok, layout)
    assert after < 0.9 * before, (before, after)


def test_full_vocabulary_softmax_accounts_for_the_zero_rows(tok_layout, tiny_trained, tmp_path):
    from dynin_rt.reference import DyninOmni

    tok, layout = tok_layout
    ref = DyninOmni.from_pretrained(tr.write_checkpoint(tiny_trained, str(tmp_path / "ckpt"), TINY))
    ex = T.TASKS_BY_NAME["map"].example(tok, layout, 0, 0)
    ids = torch.from_numpy(ex.ids)[None]
    full = torch.log_softmax(ref(ids)[0].double(), -1)[:, torch.tensor(tiny_trained.outputs)]
    with torch.no_grad():
        compact = tiny_trained.full_log_softmax(tiny_trained.hidden(ids, None)[0]).double()
    torch.testing.assert_close(full, compact, atol=2e-5, rtol=0)
    rows = ref.model.transformer.ff_out.weight
    trained = torch.zeros(rows.shape[0], dtype=torch.bool)
    trained[torch.tensor(tiny_trained.outputs)] = True
    assert not rows[~trained].any() and rows[trained].abs().sum(1).min() > 0


def test_checkpoint_loads_in_runtime_and_reference_with_equal_logits(tok_layout, tiny_trained, tmp_path, runtime_cache):
    import dynin_rt
    from dynin_rt.reference import DyninOmni

    tok, layout = tok_layout
    path = tr.write_checkpoint(tiny_trained, str(tmp_path / "ckpt"), TINY)
    rt, ref = dynin_rt.load(path, backend="cpu"), DyninOmni.from_pretrained(path)
    assert rt.layout == ref.layout == layout
    for name in TINY.tasks:  # t2s carries [iPAD] pads and a keep-mask
        ex = T.TASKS_BY_NAME[name].example(tok, layout, 0, 1)
        ids = ex.ids[None]
        keep = None if ex.keep is None else ex.keep[None]
        got = rt.logits(ids, keep)
        want = ref(torch.from_numpy(ids), None if keep is None else torch.from_numpy(keep)).numpy()
        real = np.ones(ids.shape[1], bool) if keep is None else keep[0] == 1
        np.testing.assert_allclose(got[0, real], want[0, real], atol=1e-4, rtol=1e-4)


def test_trained_checkpoint_is_cached_by_config(tok_layout, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNIN_RT_CACHE", str(tmp_path))
    cfg = dataclasses.replace(TINY, steps=1)
    first = tr.trained_checkpoint(cfg, log=None)
    monkeypatch.setattr(tr, "train", lambda *a, **k: pytest.fail("a cached config was trained again"))
    assert tr.trained_checkpoint(cfg, log=None) == first
    assert cfg.key() != dataclasses.replace(cfg, seed=1).key()
    assert [p.name for p in tmp_path.joinpath("trained").iterdir()] == [cfg.key()]  # no temp dir left


def test_examples_are_deterministic_and_in_the_official_layout(tok_layout):
    tok, layout = tok_layout
    for task in T.TASKS:
        a, b = task.example(tok, layout, 3, 5), task.example(tok, layout, 3, 5)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.answer, b.answer)
        assert np.all(a.ids[a.region_start:] == MASK_ID) and a.answer.shape == (task.gen_length,)
        assert a.answer[-1] == EOS_ID
    t2s = T.TASKS_BY_NAME["t2s"].example(tok, layout, 0, 0)
    units = t2s.answer[:8]
    assert np.all((units >= layout.speech_offset) & (units < layout.speech_offset + 4096))
    assert t2s.answer[8] == EOA_ID and t2s.keep[0] == 0 and t2s.keep[-1] == 1  # [iPAD] pads, masked


def test_pairs_accepts_every_valid_answer_and_nothing_else(tok_layout):
    tok, layout = tok_layout
    task = T.TASKS_BY_NAME["pairs"]
    ex = task.example(tok, layout, 0, 0)
    d = tok.encode(T.DIGITS)
    eos = [EOS_ID] * (task.gen_length - 2 * task.size)
    pairs = ex.info[0]
    assert all(a != b for a, b in pairs)
    for orders in ([0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]):
        region = [d[x] for (a, b), o in zip(pairs, orders) for x in ((a, b) if o else (b, a))] + eos
        assert task.correct(ex, np.array(region))
    (a, b), rest = pairs[0], [d[x] for p in pairs[1:] for x in p]
    for wrong in ([d[a], d[a]], [d[b], d[b]], [d[a], EOS_ID]):  # one digit twice, a digit missing
        assert not task.correct(ex, np.array(wrong + rest + eos))
    assert not task.correct(ex, np.array([d[a], d[b]] + rest + eos[:-1] + [d[0]]))  # junk after the answer


TINY_DRAW = dataclasses.replace(TINY, tasks=("draw",))


def test_draw_task_scores_as_the_maskgit_sampler_reads_it(tok_layout, tmp_path):
    # the draw task's loss is a softmax over the 8192 image columns (the untrained ones at logit 0),
    # which is what the MaskGIT sampler computes from the exported checkpoint
    from dynin_rt.reference import DyninOmni

    tok, layout = tok_layout
    model = tr.train(TINY_DRAW, tok, layout, log=None)
    ref = DyninOmni.from_pretrained(tr.write_checkpoint(model, str(tmp_path / "ckpt"), TINY_DRAW))
    ex = T.DRAW.example(tok, layout, 0, 0)
    ids, keep = torch.from_numpy(ex.ids)[None], torch.from_numpy(ex.keep)[None]
    image_cols = torch.arange(layout.image_offset, layout.image_offset + layout.image_codebook)
    logits = ref(ids, keep)[0, ex.region_start:ex.region_start + T.DRAW.gen_length].double()
    full = torch.log_softmax(logits[:, image_cols], -1)[:, torch.tensor(layout.image_ids(range(T.DRAW_CODES))) - layout.image_offset]
    with torch.no_grad():
        h = model.hidden(ids, keep)[0, ex.region_start:ex.region_start + T.DRAW.gen_length]
        compact = model.full_log_softmax(h, image=True).double()
    torch.testing.assert_close(full, compact, atol=2e-5, rtol=0)


def test_draw_accepts_either_variant_per_row_and_nothing_mixed(tok_layout):
    tok, layout = tok_layout
    ex = T.DRAW.example(tok, layout, 0, 4)
    digits = ex.info[0]
    assert ex.ids[-1] == EOI_ID and ex.region_start + T.DRAW.gen_length == len(ex.ids) - 1  # <|eoi|> closes the region
    assert np.all(ex.ids[ex.region_start:ex.region_start + T.DRAW.gen_length] == MASK_ID)
    for variants in ([0, 0, 0, 0], [1, 0, 1, 1]):
        codes = [T.draw_code(d, v, j) for d, v in zip(digits, variants) for j in range(4)]
        assert T.DRAW.correct(ex, np.array(codes))
    good = [T.draw_code(d, 0, j) for d in digits for j in range(4)]
    mixed = good.copy()
    mixed[2] = T.draw_code(digits[0], 1, 2)  # one code of the other variant
    assert not T.DRAW.correct(ex, np.array(mixed))
    assert not T.DRAW.correct(ex, np.array(good[4:] + good[:4]))  # rows out of order
