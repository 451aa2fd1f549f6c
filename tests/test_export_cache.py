"""The export cache: keyed by everything that changes the export, written atomically, safe against
concurrent exporters, and self-healing when an entry is damaged."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import dynin_rt
from dynin_rt import export_cache
from dynin_rt.testing import tiny_config, write_backbone


@pytest.fixture()
def hf(tmp_path):
    return write_backbone(tmp_path / "hf", tiny_config(d_model=16, n_heads=2, n_layers=1, mlp_hidden_size=24), seed=3)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("DYNIN_RT_CACHE", str(path))
    return path


def test_the_key_covers_config_tokenizer_dtype_vocab_and_format(hf, monkeypatch):
    base = export_cache.export_key(hf, "fp32")
    assert export_cache.export_key(hf, "fp32") == base
    assert export_cache.export_key(hf, "bf16") != base
    assert export_cache.export_key(hf, "fp32", text_vocab_size=126000) != base
    monkeypatch.setattr(export_cache, "FORMAT_VERSION", 2)
    assert export_cache.export_key(hf, "fp32") != base
    monkeypatch.undo()
    for name in ("config.json", "tokenizer.json"):
        # same size, same modification time, different content: only a content hash sees it
        path = os.path.join(hf, name)
        original, st = open(path, "rb").read(), os.stat(path)
        i = original.index(b'"') + 1
        with open(path, "wb") as f:
            f.write(original[:i] + bytes([original[i] ^ 1]) + original[i + 1:])
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert export_cache.export_key(hf, "fp32") != base, name
        with open(path, "wb") as f:
            f.write(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert export_cache.export_key(hf, "fp32") == base


def test_a_failed_export_leaves_nothing_behind(hf, cache, monkeypatch):
    def dies(hf_dir, out, **kwargs):
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "weights.safetensors"), "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(export_cache, "export_weights", dies)
    with pytest.raises(KeyboardInterrupt):
        dynin_rt.load(hf, backend="cpu")
    assert [n for n in os.listdir(cache) if not n.endswith(".lock")] == []


def test_a_damaged_entry_is_rebuilt(hf, cache):
    model = dynin_rt.load(hf, backend="cpu")
    weights = os.path.join(model.directory, "weights.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)  # as an in-place export killed halfway would leave it
    assert not export_cache.is_complete(model.directory)
    again = dynin_rt.load(hf, backend="cpu")
    assert again.directory == model.directory and export_cache.is_complete(again.directory)
    os.remove(os.path.join(model.directory, "manifest.json"))
    assert dynin_rt.load(hf, backend="cpu").logits([[1, 2, 3]]).shape == (1, 3, 138752)


CHILD = textwrap.dedent(
    """
    import sys
    from dynin_rt import export_cache
    real = export_cache.export_weights

    def counted(*args, **kwargs):
        print("EXPORTED", flush=True)
        return real(*args, **kwargs)

    export_cache.export_weights = counted
    import dynin_rt
    model = dynin_rt.load(sys.argv[1], backend="cpu")
    print("LOADED", model.logits([[1, 2, 3]]).shape, flush=True)
    """
)


def test_concurrent_processes_export_once_and_both_load(hf, cache, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, DYNIN_RT_CACHE=str(cache))
    procs = [subprocess.Popen([sys.executable, str(script), hf], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    assert sum(o[0].count("EXPORTED") for o in outs) == 1
    assert all("LOADED (1, 3, 138752)" in o[0] for o in outs)


def test_entries_and_clear(hf, cache):
    model = dynin_rt.load(hf, backend="cpu", dtype="bf16")
    leftover = os.path.join(cache, export_cache.export_key(hf, "fp32") + ".tmp-dead")
    os.makedirs(leftover)
    listed = export_cache.entries()
    assert [e["key"] for e in listed] == [os.path.basename(model.directory)]
    assert listed[0]["complete"] and listed[0]["dtype"] == "bf16" and listed[0]["bytes"] > 0
    freed = export_cache.clear()
    assert freed >= listed[0]["bytes"]
    assert not os.path.exists(model.directory) and not os.path.exists(leftover)
    shutil.rmtree(cache)
    assert export_cache.entries() == [] and export_cache.clear() == 0
