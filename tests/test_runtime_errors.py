"""Hostile inputs to the runtime raise Python exceptions with messages, never crash: truncated or
corrupt weight files, headers whose lengths or offsets lie, manifests and configs that disagree with
the tensors, bad ids, lengths and options."""
import json
import os
import shutil
import struct

import numpy as np
import pytest

import dynin_rt
from dynin_rt import _C
from dynin_rt.errors import CheckpointError
from dynin_rt.export import export_weights
from dynin_rt.testing import tiny_config, write_backbone

MASK = 126336


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    hf = write_backbone(tmp_path_factory.mktemp("hf"), tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=24))
    return export_weights(hf, str(tmp_path_factory.mktemp("rt")), dtype="fp32", progress=False)


def copy_export(src, tmp_path):
    dst = str(tmp_path / "m")
    shutil.copytree(src, dst)
    return dst


def header_of(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_with_header(path, header, payload, pad=True):
    blob = json.dumps(header).encode()
    if pad:
        blob += b" " * (-len(blob) % 8)
    open(path, "wb").write(struct.pack("<Q", len(blob)) + blob + payload)


def test_exported_model_loads(small_export):
    m = dynin_rt.load(small_export, backend="cpu")
    assert m.logits(np.array([[1, 2, MASK]])).shape == (1, 3, 138752)


def test_truncated_weights_file(small_export, tmp_path):
    d = copy_export(small_export, tmp_path)
    path = os.path.join(d, "weights.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="outside the data section"):
        dynin_rt.load(d, backend="cpu")
    open(path, "wb").write(data[:5])
    with pytest.raises(CheckpointError, match="too short"):
        dynin_rt.load(d, backend="cpu")


def test_header_length_that_lies(small_export, tmp_path):
    d = copy_export(small_export, tmp_path)
    path = os.path.join(d, "weights.safetensors")
    data = bytearray(open(path, "rb").read())
    data[:8] = struct.pack("<Q", len(data) * 4)
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="runs past the end of the file"):
        dynin_rt.load(d, backend="cpu")
    data[:8] = struct.pack("<Q", 2**63)
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="absurd"):
        dynin_rt.load(d, backend="cpu")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h: h["embed"].update(data_offsets=[0, 10**15]), "outside the data section"),
        (lambda h: h["final_norm"].update(data_offsets=[8, 4]), "outside the data section"),
        (lambda h: h["final_norm"].update(shape=[17]), "but its shape and dtype need"),
        (lambda h: h["final_norm"].update(dtype="I64"), "dtype I64"),
        (lambda h: h["final_norm"].update(data_offsets=h["embed"]["data_offsets"][:1] * 2), "but its shape and dtype need"),
        (lambda h: h["final_norm"].update(data_offsets=[h["embed"]["data_offsets"][0] + 4, h["embed"]["data_offsets"][0] + 68]), "overlap"),
        (lambda h: h["final_norm"].update(data_offsets=[2, 66]), "aligned"),
        (lambda h: h["final_norm"].pop("shape"), "no shape"),
        (lambda h: h.update(extra={"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}), "unexpected tensor extra"),
        (lambda h: h.pop("layers.0.wo"), "missing tensor layers.0.wo"),
        (lambda h: h["layers.0.wo"].update(shape=[4, 64]), "wrong shape"),
    ],
)
def test_header_entries_that_lie(small_export, tmp_path, mutate, message):
    d = copy_export(small_export, tmp_path)
    path = os.path.join(d, "weights.safetensors")
    header, payload = header_of(path)
    mutate(header)
    write_with_header(path, header, payload)
    with pytest.raises(CheckpointError, match=message):
        dynin_rt.load(d, backend="cpu")


@pytest.mark.parametrize("text", [b"{", b"[1,2]", b'{"a": 1} x', b'{"a":"\\ud800"}', b"[" * 200 + b"]" * 200, b'{"a":1,"a":2}'])
def test_malformed_header_json(tmp_path, text):
    path = str(tmp_path / "w.safetensors")
    open(path, "wb").write(struct.pack("<Q", len(text)) + text)
    with pytest.raises(CheckpointError):
        _C.inspect_safetensors(path)


def test_manifest_disagreeing_with_tensors(small_export, tmp_path):
    d = copy_export(small_export, tmp_path)
    path = os.path.join(d, "manifest.json")
    manifest = json.load(open(path))
    manifest["config"]["mlp_hidden_size"] = 32
    json.dump(manifest, open(path, "w"))
    with pytest.raises(CheckpointError, match="w_gate_up has the wrong shape"):
        dynin_rt.load(d, backend="cpu")
    manifest["config"]["mlp_hidden_size"] = 24
    manifest["dtype"] = "bf16"
    json.dump(manifest, open(path, "w"))
    with pytest.raises(CheckpointError, match="is F32, the manifest says BF16"):
        dynin_rt.load(d, backend="cpu")


def test_manifest_version_and_format(small_export, tmp_path):
    d = copy_export(small_export, tmp_path)
    path = os.path.join(d, "manifest.json")
    manifest = json.load(open(path))
    json.dump(dict(manifest, version=99), open(path, "w"))
    with pytest.raises(CheckpointError, match="format version 99"):
        dynin_rt.load(d, backend="cpu")
    json.dump(dict(manifest, weights="../x.safetensors"), open(path, "w"))
    with pytest.raises(CheckpointError, match="bad weights file name"):
        dynin_rt.load(d, backend="cpu")
    open(path, "w").write("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        dynin_rt.load(d, backend="cpu")


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.array([[1, 138752]]), "138752 outside"),
        (np.array([[-1, 5]]), "-1 outside"),
        (np.array([[1.5, 2.0]]), "integers"),
        (np.array([1, 2]), "2-D"),
        (np.zeros((1, 0), np.int64), "empty"),
        (np.array([[2**40]]), "int32 range"),
    ],
)
def test_bad_ids(small_export, ids, message):
    m = dynin_rt.load(small_export, backend="cpu")
    with pytest.raises(ValueError, match=message):
        m.logits(ids)
    with pytest.raises(ValueError, match=message):
        m.generate_text(ids, gen_length=4, steps=4, block_length=4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gen_length=6, block_length=4, steps=2), "not divisible by block_length"),
        (dict(gen_length=8, block_length=4, steps=3), "not divisible by the number of blocks"),
        (dict(gen_length=-4, block_length=4, steps=4), "positive"),
        (dict(gen_length=4096, block_length=4096, steps=1), "exceeds the context"),
        (dict(mode="turbo"), "mode"),
        (dict(mode="fast", threshold=1.5), "threshold"),
        (dict(threshold=0.5), "mode='fast'"),
        (dict(cache="all"), "cache"),
        (dict(remasking="top"), "remasking"),
        (dict(temperature=-1.0), ">= 0"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_bad_generation_options(small_export, kwargs, message):
    m = dynin_rt.load(small_export, backend="cpu")
    args = dict(gen_length=8, steps=8, block_length=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        m.generate_text(np.array([[1, 2, 3]]), **args)


def test_bad_masks_and_canvases(small_export):
    m = dynin_rt.load(small_export, backend="cpu")
    with pytest.raises(ValueError, match="attention_mask shape"):
        m.logits(np.array([[1, 2, 3]]), np.array([[1, 1]]))
    with pytest.raises(ValueError, match="0 and 1"):
        m.logits(np.array([[1, 2, 3]]), np.array([[1, 2, 1]]))
    canvas = np.array([[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        m.generate_speech(canvas, steps=4, block_length=4)
    with pytest.raises(ValueError, match="cannot hold"):
        m.generate_image(canvas, np.ones_like(canvas), seq_len=8, timesteps=2)
    canvas = np.array([[1, 2, 126084, 5, 6, 126085]])
    with pytest.raises(ValueError, match="neither \\[MASK\\] nor an image code"):
        m.generate_image(canvas, np.ones_like(canvas), seq_len=2, timesteps=2)


def test_inputs_are_not_modified(small_export):
    m = dynin_rt.load(small_export, backend="cpu")
    ids = np.array([[1, 2, 3]], dtype=np.int64)
    keep = np.array([[0, 1, 1]], dtype=np.int64)
    before = (ids.copy(), keep.copy())
    m.generate_text(ids, gen_length=4, steps=2, block_length=4, attention_mask=keep)
    assert np.array_equal(ids, before[0]) and np.array_equal(keep, before[1])


def test_missing_or_empty_directories(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        dynin_rt.load(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="config.json"):
        dynin_rt.load(str(tmp_path))
