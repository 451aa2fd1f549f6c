"""EMOVA speech tokenizer checkpoints: the released layout, strict loading, and load errors that name the key."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dynin_rt.errors import CheckpointError
from dynin_rt.testing.emova import official_layout, write_emova
from dynin_rt.tokenizers.emova import EmovaSpeech
from dynin_rt.tokenizers.emova.config import DEFAULT_STYLE, EmovaConfig

# Names and shapes of the released model.safetensors (not derived from our code).
RELEASED = {
    "decoder.enc_p.emb.weight": (4274, 192),
    "decoder.emb_g.weight": (1344, 256),
    "style_embedding.weight": (126, 256),
    "decoder.enc_p.encoder.attn_layers.0.emb_rel_k": (1, 9, 96),
    "decoder.enc_p.encoder.norm_layers_1.0.GAMMA": (192,),
    "decoder.enc_p.encoder.norm_layers_2.5.BETA": (192,),
    "decoder.dec.ups.0.weight_g": (512, 1, 1),
    "decoder.dec.ups.0.weight_v": (512, 256, 16),
    "decoder.dec.resblocks.11.convs2.2.weight_v": (32, 32, 11),
    "decoder.dec.conv_post.weight": (1, 32, 7),
    "decoder.flow.flows.6.enc.cond_layer.weight_g": (1536, 1, 1),
    "decoder.dp.flows.7.proj.weight": (29, 192, 1),
    "encoder.encoder.feature_encoder.block_modules.0.conv.conv.weight": (384, 128, 5),
    "encoder.encoder.feature_encoder.block_modules.3.pos_conv.0.weight_g": (1, 1, 128),
    "encoder.encoder.feature_encoder.block_modules.6.pos_conv.0.weight_v": (768, 48, 128),
    "encoder.encoder.feature_encoder.block_modules.6.layers.9.fc1.weight": (3072, 768),
    "encoder.pre_quant.weight": (4, 768),
    "encoder.quantizer._levels_np": (4,),
}


def test_full_width_layout_has_the_released_names():
    layout = official_layout(EmovaConfig())
    for name, shape in RELEASED.items():
        assert layout.get(name) == shape, name
    assert "decoder.dec.conv_post.bias" not in layout                    # final conv has no bias
    assert not any(k.endswith((".gamma", ".beta")) for k in layout)
    assert not any(k.startswith("decoder.") and k.endswith("norm_layers_1.0.weight") for k in layout)
    n_encoder = sum(int(np.prod(s)) for k, s in layout.items() if k.startswith("encoder.encoder.feature_encoder."))
    assert 90e6 < n_encoder < 91e6                                      # spec: encoder ~90.6 M parameters


@pytest.fixture(scope="module")
def full_ckpt(tmp_path_factory):
    return write_emova(tmp_path_factory.mktemp("emova_full"), small=False)


def test_full_width_checkpoint_loads_strictly(full_ckpt):
    with open(os.path.join(full_ckpt, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["u2s_style2idx"][DEFAULT_STYLE] == 41 and len(cfg["u2s_style2idx"]) == 126
    sp = EmovaSpeech.from_pretrained(full_ckpt)
    assert sp.sample_rate == 22050 and len(sp.styles) == 126 and sp.styles[41] == DEFAULT_STYLE
    # Weight norm folded at load: w = v * g / ||v|| per output row (dim 0) / per tap (dim 2).
    raw = load_file(os.path.join(full_ckpt, "model.safetensors"))
    g, v = raw["decoder.dec.ups.1.weight_g"], raw["decoder.dec.ups.1.weight_v"]
    expect = v.numpy() * g.numpy() / np.sqrt((v.numpy() ** 2).sum(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(sp.vocoder.decoder.dec.ups[1].weight.detach().numpy(), expect, rtol=1e-5, atol=1e-7)
    key = "encoder.encoder.feature_encoder.block_modules.3.pos_conv.0."
    g, v = raw[key + "weight_g"].numpy(), raw[key + "weight_v"].numpy()
    expect = v * g / np.sqrt((v ** 2).sum(axis=(0, 1), keepdims=True))
    got = sp.spiral.encoder.feature_encoder.block_modules[3].pos_conv[0].weight.detach().numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-7)
    # GAMMA / BETA land in the layer norm.
    np.testing.assert_array_equal(sp.vocoder.decoder.enc_p.encoder.norm_layers_1[2].weight.detach().numpy(),
                                  raw["decoder.enc_p.encoder.norm_layers_1.2.GAMMA"].numpy())


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    return write_emova(tmp_path_factory.mktemp("emova_small"), small=True)


def _edited(tmp_path, src, edit):
    dst = tmp_path / "edited"
    dst.mkdir()
    with open(os.path.join(src, "config.json")) as f:
        (dst / "config.json").write_text(f.read())
    tensors = load_file(os.path.join(src, "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return str(dst)


@pytest.mark.parametrize("key", ["decoder.enc_p.encoder.norm_layers_1.0.GAMMA", "decoder.dec.ups.2.weight_g",
                                 "encoder.pre_quant.bias", "style_embedding.weight"])
def test_missing_tensor_is_named(tmp_path, small_ckpt, key):
    path = _edited(tmp_path, small_ckpt, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        EmovaSpeech.from_pretrained(path)


def test_unexpected_tensor_is_named(tmp_path, small_ckpt):
    path = _edited(tmp_path, small_ckpt, lambda t: t.update({"decoder.dec.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"decoder\.dec\.extra\.weight"):
        EmovaSpeech.from_pretrained(path)
    path2 = tmp_path / "b"
    path2.mkdir()
    path = _edited(path2, small_ckpt, lambda t: t.update({"something.else": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"something\.else"):
        EmovaSpeech.from_pretrained(path)


def test_wrong_shape_is_named(tmp_path, small_ckpt):
    key = "decoder.enc_p.emb.weight"
    path = _edited(tmp_path, small_ckpt, lambda t: t.update({key: t[key][:-1]}))
    with pytest.raises(CheckpointError, match=r"decoder\.enc_p\.emb\.weight.*shape"):
        EmovaSpeech.from_pretrained(path)


def test_fsq_levels_are_checked(tmp_path, small_ckpt):
    levels = torch.tensor([8.0, 8, 8, 5])
    path = _edited(tmp_path, small_ckpt, lambda t: t.update({"encoder.quantizer._levels_np": levels}))
    with pytest.raises(CheckpointError, match="_levels_np"):
        EmovaSpeech.from_pretrained(path)


def test_alternative_spellings_load_to_the_same_model(tmp_path, small_ckpt):
    # The original G_*.pth files spell layer norms gamma/beta; a re-save by recent PyTorch spells
    # weight norm parametrizations.weight.original0/1; training-only tensors may be absent.
    def respell(t):
        for k in [k for k in t if k.endswith(".GAMMA")]:
            t[k[:-5] + "gamma"] = t.pop(k)
        k = "decoder.dec.ups.0."
        t[k + "parametrizations.weight.original0"] = t.pop(k + "weight_g")
        t[k + "parametrizations.weight.original1"] = t.pop(k + "weight_v")
        for k in [k for k in t if k.startswith(("decoder.enc_q.", "encoder.decoder."))]:
            t.pop(k)

    path = _edited(tmp_path, small_ckpt, respell)
    a, b = EmovaSpeech.from_pretrained(small_ckpt), EmovaSpeech.from_pretrained(path)
    units = np.arange(0, 4096, 400)
    np.testing.assert_array_equal(a.decode(units, seed=3), b.decode(units, seed=3))


def test_config_errors(tmp_path, small_ckpt):
    with pytest.raises(CheckpointError, match="config.json"):
        EmovaSpeech.from_pretrained(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(os.path.join(small_ckpt, "config.json")) as f:
        cfg = json.load(f)
    cfg["s2u_unit_type"] = "20ms_other"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="s2u_unit_type"):
        EmovaSpeech.from_pretrained(bad)
