"""The dynin-rt command line: generate for every output kind, export, bench and demo."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from dynin_rt.cli import main
from dynin_rt.tasks import registry
from dynin_rt.tokenizers.backends import probe_tensorrt


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    os.environ["DYNIN_RT_CACHE"] = str(tmp_path_factory.mktemp("cli_cache"))


def test_generate_text_image_speech(tiny_omni, tmp_path, capsys):
    out = tmp_path / "a.txt"
    assert main(["generate", tiny_omni, "Hello", "--max-new-tokens", "8", "--steps", "4", "--block-length", "8",
                 "--out", str(out), "--backend", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == out.read_text().strip()
    img = tmp_path / "a.png"
    assert main(["generate", tiny_omni, "A fox", "--output", "image", "--resolution", "64", "--steps", "4",
                 "--out", str(img)]) == 0
    assert Image.open(img).size == (64, 64)
    wav = tmp_path / "a.wav"
    assert main(["generate", tiny_omni, "Hi", "--output", "speech", "--max-new-tokens", "16", "--steps", "16",
                 "--block-length", "8", "--voice", "male-neutral", "--out", str(wav)]) == 0
    assert soundfile.read(wav)[1] == 22050


def test_generate_streams_text(tiny_omni, tmp_path, capsys):
    out = tmp_path / "s.txt"
    assert main(["generate", tiny_omni, "Hello", "--max-new-tokens", "16", "--steps", "4", "--block-length", "8",
                 "--stream", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == out.read_text().strip()


def test_bad_input_is_an_error_message_not_a_traceback(tiny_omni, tmp_path, capsys):
    assert main(["generate", tiny_omni, "x", "--image", str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynin-rt: error:") and "does not exist" in err and "Traceback" not in err
    assert main(["generate", tiny_omni, "x", "--output", "speech", "--voice", "robot"]) == 2
    assert "unknown voice" in capsys.readouterr().err


def test_export_then_generate_from_the_export(tiny_ckpt, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", tiny_ckpt, str(out), "--dtype", "fp32"]) == 0  # the form without "weights"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == "fp32"
    assert main(["export", "weights", tiny_ckpt, str(tmp_path / "bf16")]) == 0
    assert json.loads((tmp_path / "bf16" / "manifest.json").read_text())["dtype"] == "bf16"
    # the script in export/ is the same command
    script = os.path.join(os.path.dirname(__file__), os.pardir, "export", "weights_export.py")
    subprocess.run([sys.executable, script, tiny_ckpt, str(tmp_path / "script"), "--dtype", "fp32"], check=True,
                   capture_output=True, timeout=300)
    assert (tmp_path / "script" / "weights.safetensors").read_bytes() == (out / "weights.safetensors").read_bytes()
    assert main(["generate", str(out), "Hi", "--max-new-tokens", "8", "--steps", "8", "--block-length", "8",
                 "--out", str(tmp_path / "x.txt")]) == 0


@pytest.mark.skipif(probe_tensorrt().available, reason="TensorRT is available here: this checks its absence")
def test_export_tensorrt_without_tensorrt_is_one_line(tmp_path, capsys):
    assert main(["export", "tensorrt", "magvit", str(tmp_path / "ckpt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynin-rt: error: cannot build TensorRT engines here") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before exporting anything


def test_bench_writes_json_and_csv(tiny_omni, tmp_path):
    js, cs = tmp_path / "b.json", tmp_path / "b.csv"
    assert main(["bench", "--model", tiny_omni, "--task", "t2t,t2s", "--repeats", "1", "--warmup", "0", "--json", str(js),
                 "--csv", str(cs)]) == 0
    rows = json.loads(js.read_text())["tasks"]
    assert [r["task"] for r in rows] == ["t2t", "t2s"]
    assert all(r["identical_to_reference"] for r in rows) and all(r["runtime_median_s"] > 0 for r in rows)
    assert cs.read_text().splitlines()[0].startswith("task,mode,runtime_median_s")


def test_demo_writes_every_tasks_output(tiny_omni, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--checkpoint", tiny_omni, "--no-reference"]) == 0
    for name in [spec.output_file for spec in registry.tasks()]:
        assert (out / name).stat().st_size > 0, name
    data, rate = soundfile.read(out / "t2s.wav")
    assert rate == 22050 and np.isfinite(data).all()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("dynin-rt: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_out_is_checked_before_the_model_is_loaded(tmp_path, capsys):
    # The model path does not exist: an error about --out proves it was checked first.
    missing = str(tmp_path / "nope")
    assert main(["generate", missing, "Hi", "--out", str(tmp_path / "no_dir" / "a.txt")]) == 2
    assert "the folder" in _one_error_line(capsys)
    assert main(["generate", missing, "Hi", "--output", "image", "--out", str(tmp_path / "a.wav")]) == 2
    assert "an image result is saved as" in _one_error_line(capsys)
    assert main(["generate", missing, "Hi", "--output", "speech", "--out", str(tmp_path / "a.png")]) == 2
    assert "not '.png'" in _one_error_line(capsys)
    assert main(["generate", missing, "Hi", "--out", str(tmp_path)]) == 2  # a folder, not a file
    assert "it is a folder" in _one_error_line(capsys)
    assert main(["generate", missing, "Hi", "--out", str(tmp_path / "a.txt")]) == 2  # now the model
    assert missing in _one_error_line(capsys)


def test_missing_media_tokenizer_names_the_checkpoint_and_the_option(tiny_ckpt, tmp_path, capsys):
    assert main(["generate", tiny_ckpt, "A fox", "--output", "image", "--out", str(tmp_path / "a.png")]) == 2
    err = _one_error_line(capsys)
    assert tiny_ckpt in err and "--image-tokenizer" in err and "image_tokenizer=" not in err


def test_any_failure_is_one_line_and_a_status(capsys, monkeypatch):
    import argparse

    from dynin_rt.cli import run

    def boom(exc):
        def func(args):
            raise exc
        return argparse.Namespace(func=func)

    assert run(boom(RuntimeError("deep\ninside"))) == 1
    assert "RuntimeError: deep inside (unexpected" in _one_error_line(capsys)
    assert run(boom(KeyboardInterrupt())) == 130
    assert _one_error_line(capsys) == "dynin-rt: interrupted\n"
    assert run(boom(OSError("disk full"))) == 2
    assert _one_error_line(capsys) == "dynin-rt: error: disk full\n"
    monkeypatch.setenv("DYNIN_RT_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        run(boom(RuntimeError("shown")))


def test_bench_unknown_task_is_one_line(capsys):
    # Refused before any checkpoint is built or loaded (the model path does not exist).
    assert main(["bench", "--model", "/nonexistent", "--task", "t2x"]) == 2
    assert "unknown task 't2x'" in _one_error_line(capsys)


@pytest.mark.parametrize("kind", ["hf", "runtime"])
def test_a_shard_of_random_bytes_is_one_line(tiny_ckpt, tmp_path, capsys, kind):
    import shutil

    if kind == "hf":
        folder = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
        shard = sorted(folder.glob("model-*.safetensors"))[0]
    else:
        folder = tmp_path / "exported"
        assert main(["export", tiny_ckpt, str(folder), "--dtype", "fp32"]) == 0
        capsys.readouterr()  # the export's progress bar
        shard = folder / "weights.safetensors"
    shard.write_bytes(np.random.default_rng(0).bytes(5000))
    assert main(["generate", str(folder), "hi", "--out", str(tmp_path / "a.txt")]) == 2
    err = _one_error_line(capsys)
    assert err.startswith("dynin-rt: error:") and str(shard) in err


def test_an_export_stands_alone(tiny_omni, tmp_path, capsys):
    import shutil

    source = shutil.copytree(tiny_omni, tmp_path / "source")
    out = tmp_path / "exported"
    assert main(["export", str(source), str(out), "--dtype", "fp32"]) == 0
    assert "with magvitv2 and emova_speech_tokenizer_hf" in capsys.readouterr().out
    shutil.rmtree(source)
    img, wav = tmp_path / "a.png", tmp_path / "a.wav"
    assert main(["generate", str(out), "A fox", "--output", "image", "--resolution", "64", "--steps", "2",
                 "--out", str(img)]) == 0
    assert main(["generate", str(out), "Hi", "--output", "speech", "--max-new-tokens", "8", "--steps", "8",
                 "--block-length", "8", "--out", str(wav)]) == 0
    assert Image.open(img).size == (64, 64) and soundfile.read(wav)[1] == 22050
    bare = tmp_path / "bare"
    assert main(["export", tiny_omni, str(bare), "--dtype", "fp32", "--no-media-tokenizers"]) == 0
    assert not (bare / "magvitv2").exists() and not (bare / "emova_speech_tokenizer_hf").exists()


def test_cache_list_size_clear(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import dynin_rt

    monkeypatch.setenv("DYNIN_RT_CACHE", str(tmp_path / "cache"))
    assert main(["cache", "size"]) == 0
    assert capsys.readouterr().out.startswith("0 B in 0 entries")
    dynin_rt.load(tiny_ckpt, backend="cpu", dtype="fp32")
    dynin_rt.load(tiny_ckpt, backend="cpu", dtype="bf16")
    assert main(["cache", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("2 entries") and len(lines) == 3
    assert {line.split()[5] for line in lines[1:]} == {"fp32", "bf16"} and all(tiny_ckpt in line for line in lines[1:])
    key = lines[1].split()[0]
    assert main(["cache", "clear", key]) == 0
    assert capsys.readouterr().out.startswith("freed ")
    assert main(["cache", "list"]) == 0
    assert key not in capsys.readouterr().out
    assert main(["cache", "clear", key]) == 2  # gone: one line naming the key
    assert f"no cache entry '{key}'" in _one_error_line(capsys)
    assert main(["cache", "clear"]) == 0 and main(["cache", "size"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 B in 0 entries")
