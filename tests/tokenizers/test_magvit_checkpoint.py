"""Strict loading of MAGVIT checkpoints in the showlab/magvitv2 layout, and the random-checkpoint writer."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from dynin_rt.errors import CheckpointError
from dynin_rt.testing.magvit import write_magvit
from dynin_rt.tokenizers.magvit.checkpoint import load_magvit_model, read_magvit_config
from dynin_rt.tokenizers.magvit.net import MagvitConfig

WEIGHTS = "pytorch_model.safetensors"


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    return write_magvit(tmp_path_factory.mktemp("magvit32"), ch=32, seed=1)


def _rewrite(src, dst, edit):
    """Copy checkpoint ``src`` to ``dst`` with its state dict passed through ``edit``."""
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        cfg = f.read()
    with open(os.path.join(dst, "config.json"), "w") as f:
        f.write(cfg)
    state = load_file(os.path.join(src, WEIGHTS))
    edit(state)
    save_file(state, os.path.join(dst, WEIGHTS))
    return dst


def test_small_checkpoint_round_trips(small_ckpt):
    with open(os.path.join(small_ckpt, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["_class_name"] == "MAGVITv2" and cfg["dynin_rt_magvit"] == {"ch": 32}
    assert read_magvit_config(small_ckpt) == MagvitConfig(ch=32)
    state = load_file(os.path.join(small_ckpt, WEIGHTS))
    assert len(state) == 382 and all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    assert state["quantize.power_vals"].dtype == torch.int64
    model = load_magvit_model(small_ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_official_width_checkpoint_has_no_arch_field(tmp_path):
    path = write_magvit(tmp_path, ch=128)
    with open(os.path.join(path, "config.json")) as f:
        assert "dynin_rt_magvit" not in json.load(f)
    assert read_magvit_config(path) == MagvitConfig()
    header = load_file(os.path.join(path, WEIGHTS))
    assert tuple(header["decoder.up.3.block.0.nin_shortcut.weight"].shape) == (256, 512, 1, 1)
    assert sum(v.numel() for k, v in header.items() if not k.startswith("quantize.")) == 55_439_171 + 39_947_833


def test_missing_key_is_named(small_ckpt, tmp_path):
    bad = _rewrite(small_ckpt, tmp_path / "bad", lambda s: s.pop("decoder.conv_out.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \['decoder.conv_out.bias'\]"):
        load_magvit_model(bad)


def test_unexpected_key_is_named(small_ckpt, tmp_path):
    def edit(s):
        s["encoder.down.0.attn.0.q.weight"] = torch.zeros(32, 32, 1, 1)

    bad = _rewrite(small_ckpt, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['encoder.down.0.attn.0.q.weight'\]"):
        load_magvit_model(bad)


def test_wrong_shape_is_named(small_ckpt, tmp_path):
    def edit(s):
        s["encoder.conv_in.weight"] = torch.zeros(32, 3, 1, 1)

    bad = _rewrite(small_ckpt, tmp_path / "bad", edit)
    msg = r"encoder.conv_in.weight has shape \(32, 3, 1, 1\), expected \(32, 3, 3, 3\)"
    with pytest.raises(CheckpointError, match=msg):
        load_magvit_model(bad)


def test_width_mismatch_with_config_is_an_error(small_ckpt, tmp_path):
    bad = _rewrite(small_ckpt, tmp_path / "bad", lambda s: None)
    with open(bad / "config.json", "w") as f:
        json.dump({"_class_name": "MAGVITv2"}, f)  # claims the official width, holds ch=32 weights
    with pytest.raises(CheckpointError, match="shape"):
        load_magvit_model(bad)


def test_lfq_buffers_optional_but_checked(small_ckpt, tmp_path):
    def drop(s):
        s.pop("quantize.embedding")
        s.pop("quantize.power_vals")

    model = load_magvit_model(_rewrite(small_ckpt, tmp_path / "nobuf", drop))
    assert model.quantize.power_vals.tolist()[0] == 4096

    def reverse_bits(s):
        s["quantize.power_vals"] = s["quantize.power_vals"].flip(0).contiguous()

    with pytest.raises(CheckpointError, match="quantize.power_vals differs"):
        load_magvit_model(_rewrite(small_ckpt, tmp_path / "badbuf", reverse_bits))


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_magvit_model(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="pytorch_model.safetensors"):
        load_magvit_model(tmp_path)


def test_bad_arch_field(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dynin_rt_magvit": {"ch": 32, "heads": 2}}))
    with pytest.raises(CheckpointError, match="heads"):
        read_magvit_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"dynin_rt_magvit": {"ch": 48}}))
    with pytest.raises(CheckpointError, match="multiple of 32"):
        read_magvit_config(tmp_path)
