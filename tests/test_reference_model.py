"""The reference backbone against an independent float64 transcription of docs/model.md, its invariants,
and its loading rules."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dynin_rt.errors import CheckpointError, TokenizerMissingError
from dynin_rt.reference import DyninOmni
from dynin_rt.testing import random_state_dict, tiny_config, write_backbone

import naive

MICRO = dict(d_model=16, n_heads=2, n_layers=2, mlp_hidden_size=24, vocab_size=126464, model_type="llada")


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    d = tmp_path_factory.mktemp("micro")
    cfg = tiny_config(**MICRO)
    write_backbone(d, cfg, seed=3, num_shards=1, tokenizer=False)
    return str(d), cfg


def test_logits_match_independent_float64_forward(micro):
    d, cfg = micro
    m = DyninOmni.from_pretrained(d)
    state = load_file(os.path.join(d, "model.safetensors"))
    ids = [5, 17, 126336, 126336, 99, 126081, 126336]
    got = m(torch.tensor([ids]))[0].double().numpy()
    want = naive.forward(state, cfg, np.array(ids))
    assert got.shape == (len(ids), 126464)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_keep_mask_excludes_pads_from_rows_and_columns(micro):
    d, cfg = micro
    m = DyninOmni.from_pretrained(d)
    state = load_file(os.path.join(d, "model.safetensors"))
    ids = [126093, 126093, 126093, 40, 41, 126336, 126336]
    keep = [0, 0, 0, 1, 1, 1, 1]
    got = m(torch.tensor([ids]), torch.tensor([keep]))[0].double().numpy()
    want = naive.forward(state, cfg, np.array(ids), np.array(keep))
    real = np.array(keep, bool)
    np.testing.assert_allclose(got[real], want[real], rtol=0, atol=2e-5 * np.abs(want[real]).max())


def test_left_padding_with_mask_equals_unpadded_and_counts_pad_positions(micro):
    # RoPE scores depend on position differences only, so with pads masked the real tokens' logits
    # equal the unpadded sequence's even though their absolute positions are shifted by the pads.
    d, _ = micro
    m = DyninOmni.from_pretrained(d)
    seq = [7, 8, 9, 126336, 126336]
    padded = torch.tensor([[126093] * 4 + seq, [1, 2, 3, 4] + seq])
    keep = torch.tensor([[0] * 4 + [1] * 5, [1] * 9])
    batch = m(padded, keep)
    alone = m(torch.tensor([seq]))
    torch.testing.assert_close(batch[0, 4:], alone[0], rtol=0, atol=1e-4)
    # without the mask the pads are attended and the logits change
    unmasked = m(padded[:1])
    assert (unmasked[0, 4:] - alone[0]).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_loads_and_tracks_fp32(micro, dtype):
    d, _ = micro
    ref = DyninOmni.from_pretrained(d)
    half = DyninOmni.from_pretrained(d, dtype=dtype)
    ids = torch.tensor([[5, 17, 126336, 126336, 99]])
    out = half(ids)
    assert out.dtype == dtype and half.dtype == dtype
    full = ref(ids)
    rel = (out.float() - full).abs().max() / full.abs().max()
    assert rel < 0.05


def test_release_layout_from_tokenizer(tiny_ckpt):
    m = DyninOmni.from_pretrained(tiny_ckpt)
    assert len(m.tokenizer) == 126372
    # docs/token-layout.md: image ids 126372..134563, speech ids 134564..138659
    assert m.layout.image_ids([0, 8191]) == [126372, 134563]
    assert m.layout.speech_ids([0, 4095]) == [134564, 138659]
    with pytest.raises(ValueError, match="8192"):
        m.layout.image_ids([8192])


def test_single_file_and_sharded_checkpoints_give_same_model(tmp_path):
    cfg = tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16)
    a = write_backbone(tmp_path / "a", cfg, seed=1, num_shards=1, tokenizer=False)
    b = write_backbone(tmp_path / "b", cfg, seed=1, num_shards=3, tokenizer=False)
    assert os.path.isfile(os.path.join(b, "model.safetensors.index.json"))
    ids = torch.tensor([[1, 2, 126336]])
    torch.testing.assert_close(DyninOmni.from_pretrained(a)(ids), DyninOmni.from_pretrained(b)(ids), rtol=0, atol=0)


def test_no_tokenizer_loads_for_token_level_use(tmp_path):
    d = write_backbone(tmp_path, tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16), tokenizer=False)
    m = DyninOmni.from_pretrained(d)
    ids = m.generate_text(torch.tensor([[1, 2, 3]]), gen_length=4, steps=2, block_length=4)
    assert ids.shape == (1, 7)
    with pytest.raises(TokenizerMissingError, match="tokenizer"):
        m.tokenizer
    with pytest.raises(TokenizerMissingError, match="text_vocab_size"):
        m.layout.image_offset
    m2 = DyninOmni.from_pretrained(d, text_vocab_size=126372)
    assert m2.layout.speech_offset == 126372 + 8192


def test_mmada_and_llada_families_load(tmp_path):
    mmada = write_backbone(tmp_path / "mmada", tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16, vocab_size=134656, model_type="mmada"))
    m = DyninOmni.from_pretrained(mmada)
    assert m.layout.has_image and not m.layout.has_speech
    with pytest.raises(ValueError, match="no speech rows"):
        m.layout.speech_offset
    llada = write_backbone(tmp_path / "llada", tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16, vocab_size=126464, model_type="llada"))
    m = DyninOmni.from_pretrained(llada)
    assert not m.layout.has_image


# -- hostile checkpoints ---------------------------------------------------------------------------

def _copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def _edit_config(d, **changes):
    path = os.path.join(d, "config.json")
    cfg = json.load(open(path))
    cfg.update(changes)
    json.dump(cfg, open(path, "w"))


def test_missing_shard_is_named(tiny_ckpt, tmp_path):
    d = _copy(tiny_ckpt, tmp_path / "c")
    os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
    with pytest.raises(CheckpointError, match="missing shard model-00002-of-00002"):
        DyninOmni.from_pretrained(d)


def test_config_disagreeing_with_tensors_names_the_tensor(tiny_ckpt, tmp_path):
    d = _copy(tiny_ckpt, tmp_path / "c")
    _edit_config(d, mlp_hidden_size=96)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.ff_proj\.weight: shape \[128, 64\] does not match config \[96, 64\]"):
        DyninOmni.from_pretrained(d)


def test_wrong_dtype_is_named(tmp_path):
    cfg = tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16)
    d = write_backbone(tmp_path, cfg, num_shards=1, tokenizer=False)
    path = os.path.join(d, "model.safetensors")
    state = load_file(path)
    state["model.transformer.ln_f.weight"] = state["model.transformer.ln_f.weight"].to(torch.int32)
    save_file(state, path)
    with pytest.raises(CheckpointError, match="ln_f.weight: dtype I32"):
        DyninOmni.from_pretrained(d)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    cfg = tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16)
    d = write_backbone(tmp_path, cfg, num_shards=1, tokenizer=False)
    path = os.path.join(d, "model.safetensors")
    state = load_file(path)
    del state["model.transformer.blocks.0.up_proj.weight"]
    save_file(state, path)
    with pytest.raises(CheckpointError, match="blocks.0.up_proj.weight"):
        DyninOmni.from_pretrained(d)
    state = random_state_dict(cfg)
    state["model.video_token_merger.fc1.weight"] = torch.zeros(2, 2)
    save_file(state, path)
    with pytest.raises(CheckpointError, match="unexpected tensor model.video_token_merger.fc1.weight"):
        DyninOmni.from_pretrained(d)


def test_truncated_weight_file_is_an_error(tmp_path):
    cfg = tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16)
    d = write_backbone(tmp_path, cfg, num_shards=1, tokenizer=False)
    path = os.path.join(d, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        DyninOmni.from_pretrained(d)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"alibi": True}, "alibi"),
        ({"weight_tying": True}, "weight_tying"),
        ({"block_type": "sequential"}, "block_type"),
        ({"layer_norm_type": "default"}, "layer_norm_type"),
        ({"n_kv_heads": 2}, "GQA"),
        ({"model_type": "gpt2"}, "model_type"),
        ({"d_model": 63}, "divisible"),
        ({"mask_token_id": 200000}, "mask_token_id"),
    ],
)
def test_unsupported_config_values_are_refused(tiny_ckpt, tmp_path, change, message):
    d = _copy(tiny_ckpt, tmp_path / "c")
    _edit_config(d, **change)
    with pytest.raises(CheckpointError, match=message):
        DyninOmni.from_pretrained(d)


def test_inconsistent_token_layout_is_refused(tmp_path):
    # A Dynin config whose vocabulary cannot hold L + 8192 image + 4096 speech rows.
    cfg = tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16, vocab_size=134656)
    d = write_backbone(tmp_path, cfg)
    with pytest.raises(CheckpointError, match="inconsistent token layout"):
        DyninOmni.from_pretrained(d)


@pytest.mark.parametrize(
    "ids, message",
    [
        (torch.tensor([[1, 2, 138752]]), "138752 outside"),
        (torch.tensor([[-1, 2]]), "-1 outside"),
        (torch.tensor([[1.0, 2.0]]), "int64"),
        (torch.tensor([1, 2]), "2-D"),
        (torch.zeros((1, 0), dtype=torch.long), "empty"),
    ],
)
def test_bad_ids_raise(tiny_ckpt, ids, message):
    m = DyninOmni.from_pretrained(tiny_ckpt)
    with pytest.raises(ValueError, match=message):
        m(ids)


def test_context_overflow_raises(tmp_path):
    d = write_backbone(tmp_path, tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=16, max_sequence_length=8), tokenizer=False)
    m = DyninOmni.from_pretrained(d)
    with pytest.raises(ValueError, match="max_sequence_length 8"):
        m(torch.ones((1, 9), dtype=torch.long))
