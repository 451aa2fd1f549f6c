"""The HF -> runtime exporter: fused layouts, manifest, dtype conversion, and load()'s export cache."""
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import dynin_rt
from dynin_rt.export import export_weights, read_manifest
from dynin_rt.testing import tiny_config, write_backbone


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return write_backbone(tmp_path_factory.mktemp("hf"), tiny_config(d_model=16, n_heads=2, n_layers=2, mlp_hidden_size=24), seed=7)


def hf_state(directory):
    state = {}
    for name in os.listdir(directory):
        if name.endswith(".safetensors"):
            state.update(load_file(os.path.join(directory, name)))
    return state


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_fused_layout_and_manifest(hf, tmp_path, dtype):
    out = export_weights(hf, tmp_path / dtype, dtype=dtype, progress=False)
    src = hf_state(hf)
    got = load_file(os.path.join(out, "weights.safetensors"))
    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    b = "model.transformer.blocks.1."
    assert torch.equal(got["layers.1.wqkv"], torch.cat([src[b + "q_proj.weight"], src[b + "k_proj.weight"], src[b + "v_proj.weight"]]).to(tdt))
    assert torch.equal(got["layers.1.w_gate_up"], torch.cat([src[b + "ff_proj.weight"], src[b + "up_proj.weight"]]).to(tdt))
    assert torch.equal(got["layers.1.w_down"], src[b + "ff_out.weight"].to(tdt))
    assert torch.equal(got["lm_head"], src["model.transformer.ff_out.weight"].to(tdt))
    assert torch.equal(got["embed"], src["model.transformer.wte.weight"].to(tdt))
    assert len(got) == 3 + 6 * 2
    manifest = read_manifest(out)
    assert manifest["dtype"] == dtype and manifest["version"] == 1
    assert manifest["token_layout"]["image_offset"] == 126372 and manifest["token_layout"]["speech_offset"] == 126372 + 8192
    assert os.path.isfile(os.path.join(out, "tokenizer.json"))


def test_export_refuses_its_own_source(hf):
    with pytest.raises(ValueError, match="differ"):
        export_weights(hf, hf, progress=False)


def test_load_hf_directory_exports_once_into_the_cache(hf, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNIN_RT_CACHE", str(tmp_path / "cache"))
    a = dynin_rt.load(hf, backend="cpu")
    assert a.directory.startswith(str(tmp_path / "cache")) and a.dtype == "fp32"
    stamp = os.stat(os.path.join(a.directory, "weights.safetensors")).st_mtime_ns
    b = dynin_rt.load(hf, backend="cpu")
    assert b.directory == a.directory
    assert os.stat(os.path.join(b.directory, "weights.safetensors")).st_mtime_ns == stamp
    c = dynin_rt.load(hf, backend="cpu", dtype="bf16")
    assert c.directory != a.directory and c.dtype == "bf16"
    ids = np.array([[1, 2, 3, 126336]])
    assert np.abs(c.logits(ids) - a.logits(ids)).max() < 0.1 * np.abs(a.logits(ids)).max()


def test_exported_directory_refuses_another_dtype(hf, tmp_path):
    out = export_weights(hf, tmp_path / "x", dtype="fp32", progress=False)
    with pytest.raises(ValueError, match="re-export"):
        dynin_rt.load(out, dtype="bf16")


def test_fp16_export_runs_on_cpu(hf, tmp_path):
    ref = dynin_rt.load(export_weights(hf, tmp_path / "32", dtype="fp32", progress=False), backend="cpu")
    half = dynin_rt.load(export_weights(hf, tmp_path / "16", dtype="fp16", progress=False), backend="cpu")
    ids = np.array([[5, 6, 7, 126336, 126336]])
    want = ref.logits(ids)
    assert np.abs(half.logits(ids) - want).max() < 0.01 * np.abs(want).max()
