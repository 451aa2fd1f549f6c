"""The task registry. An eighth task is one TaskSpec and its run function: a toy task (a one-line
summary, selected by ``output="summary"``) is registered here, run through dynin_rt.generate
(runtime == reference, streamed), the benchmark, the demo and the CLI, then removed. Also: the
registry's own checks, and the benchmark's fairness (same warm-up, same weights, same device)."""
import time

import numpy as np
import pytest
import torch

import dynin_rt
from dynin_rt import bench, demo, prompts
from dynin_rt.cli import main
from dynin_rt.tasks import registry
from dynin_rt.tasks.common import Result
from dynin_rt.tasks.registry import TaskSpec
from dynin_rt.tasks.text_out import TextTask


def _summary_canvas(job):
    return prompts.text_chat(job.denoiser.tokenizer, "Summarise in one line: " + job.prompt)


def _toy_spec(**changes) -> TaskSpec:
    task = TextTask(_summary_canvas)
    fields = dict(name="sum", title="summary", sampler="llada", output="summary", media=None, prompt_required=True,
                  tokenizers=(), defaults=dict(max_new_tokens=16, steps=8, block_length=8, temperature=0.0, cfg_scale=0.0),
                  run=task.run, stream=task.stream, output_file="sum.txt",
                  bench_prompt="Diffusion LMs denoise every position at once.",
                  bench=dict(max_new_tokens=8, steps=4, block_length=8))
    fields.update(changes)
    return TaskSpec(**fields)


@pytest.fixture
def toy():
    spec = registry.register(_toy_spec())
    yield spec
    registry.unregister("sum")
    assert "sum" not in registry.names() and "summary" not in registry.outputs()


@pytest.fixture(scope="module")
def omni(tiny_omni, runtime_cache):
    model = dynin_rt.load(tiny_omni, backend="cpu")
    return model, bench.load_reference(model)


def test_toy_task_through_generate(toy, omni):
    model, ref = omni
    assert registry.names()[-1] == "sum" and "summary" in registry.outputs()
    got = dynin_rt.generate(model, "Masked diffusion in short", output="summary", seed=1, progress=False)
    want = dynin_rt.generate(ref, "Masked diffusion in short", output="summary", seed=1, progress=False)
    assert got.task == "sum" and got.tokens.size == 16  # the toy's own default max_new_tokens
    assert np.array_equal(got.tokens, want.tokens) and got.text == want.text
    parts = list(dynin_rt.generate(model, "Masked diffusion in short", output="summary", seed=1, stream=True,
                                   progress=False))
    assert len(parts) == 1 + 16 // 8 and parts[-1].text == got.text and parts[-2].text == got.text
    with pytest.raises(ValueError, match="frames= does not apply to summary"):
        dynin_rt.generate(model, "x", output="summary", frames=2, progress=False)
    with pytest.raises(ValueError, match="summary needs a text prompt"):
        dynin_rt.generate(model, output="summary", progress=False)


def test_toy_task_through_bench_demo_and_cli(toy, omni, tiny_omni, tmp_path):
    model, ref = omni
    row = bench.bench_task(model, "sum", reference=ref, repeats=1)
    assert row["name"] == "summary" and row["identical_to_reference"] is True
    assert row["settings"] == {"output": "summary", "prompt": toy.bench_prompt, **toy.bench}
    rows = demo.run(str(tmp_path / "demo"), tiny_omni, tasks=["sum"], log=lambda *a: None)
    assert [r["task"] for r in rows] == ["sum"] and rows[0]["identical_to_reference"] is True
    assert (tmp_path / "demo" / "sum.txt").read_text() == rows[0]["result"].text
    out = tmp_path / "cli.txt"
    assert main(["generate", tiny_omni, "Masked diffusion", "--output", "summary", "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_registry_refuses_clashes_and_bad_specs(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_toy_spec())
    with pytest.raises(ValueError, match="the output and media of 'sum'"):
        registry.register(_toy_spec(name="sum2"))
    with pytest.raises(ValueError, match="sampler must be one of"):
        _toy_spec(sampler="beam")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        registry.parse_list("t2t,nope")
    with pytest.raises(TypeError):
        toy.defaults["steps"] = 1  # official values are read-only
    assert [s.name for s in registry.parse_list("t2s, t2t")] == ["t2s", "t2t"]


def test_builtin_tasks_in_module_order():
    assert registry.names() == ("t2t", "i2t", "v2t", "s2t", "t2i", "i2i", "t2s")
    assert registry.outputs() == ("text", "image", "speech")


class _Side:
    def __init__(self, name):
        self.name, self.device = name, torch.device("cpu")


def test_bench_warms_both_sides_alike(monkeypatch):
    calls = []

    def fake_generate(model, **kwargs):
        calls.append(model.name)
        time.sleep(0.002)  # medians are rounded to 0.1 ms
        return Result(task="t2t", text="", tokens=np.arange(3), stats={"seconds": {"generate": 0.1}, "forwards": 2})

    monkeypatch.setattr(bench, "generate", fake_generate)
    row = bench.bench_task(_Side("runtime"), "t2t", reference=_Side("reference"), repeats=3, reference_repeats=2,
                           warmup=2)
    assert calls == ["runtime"] * 5 + ["reference"] * 4
    assert row["identical_to_reference"] is True and row["warmup"] == 2 and row["reference_device"] == "cpu"


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_reference_gets_the_runtimes_weights_and_device(tiny_ckpt, runtime_cache, dtype):
    model = dynin_rt.load(tiny_ckpt, backend="cpu", dtype=dtype)
    ref = bench.load_reference(model)
    assert ref.device.type == "cpu"
    assert {p.dtype for p in ref.parameters()} == {dict(fp32=torch.float32, bf16=torch.bfloat16)[dtype]}
