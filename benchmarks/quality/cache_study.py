"""The fast-mode KV cache on the trained model: is the accuracy loss the approximation or a defect,
and which refresh policy keeps the answers?

    python benchmarks/quality/cache_study.py [--n 50] [--out benchmarks/quality]

1. twin check: the Python twin (cache_twin.py) in exact mode gives the reference sampler's tokens;
   with the prefix / dual cache it is compared token for token with the runtime's fast mode.
2. diagnosis: at every cached step the twin also runs the exact full forward and records the
   relative error of the cached keys per layer, and whether the argmax and the committed set match.
3. policies: per-block refresh (Fast-dLLM), refresh every N steps, adaptive refresh on attention
   drift (from the drifted layer up, or only the drifted layers), all at threshold 0.9, measured by
   accuracy per task, forwards and full-forward equivalents (token-layers / (T * n_layers)).
Writes cache_study.json and cache_study.md to --out. Text tasks only (the twin is the LLaDA loop).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_twin import CachedTwin, Policy, generate  # noqa: E402

import dynin_rt  # noqa: E402
from dynin_rt.noise import CounterNoise  # noqa: E402
from dynin_rt.reference import DyninOmni  # noqa: E402
from dynin_rt.testing.tasks import TASKS_BY_NAME  # noqa: E402
from dynin_rt.testing.train import TrainConfig, eval_examples, test_tokenizer, trained_checkpoint  # noqa: E402

TEXT_TASKS = [n for n in TrainConfig().tasks if TASKS_BY_NAME[n].kind == "text"]

POLICIES = [
    Policy(cache="none"),
    Policy(cache="prefix"),
    Policy(cache="dual"),
    Policy(cache="prefix", every=2),
    Policy(cache="dual", every=2),
    Policy(cache="dual", every=4),
    Policy(cache="dual", bound=0.002),
    Policy(cache="dual", bound=0.005),
    Policy(cache="dual", bound=0.02),
    Policy(cache="dual", bound=0.005, scope="layers"),
    Policy(cache="prefix", bound=0.005),
]


def _run(twin, task, ex, policy, diagnose=False):
    prompt = torch.from_numpy(ex.ids[: ex.region_start])
    canvas, trace = generate(twin, prompt, None, task.gen_length, task.block_length, task.steps, policy, diagnose)
    return canvas[ex.region_start:].numpy(), trace


def twin_check(twin, ref, rt, examples, n_exact: int) -> dict:
    """Twin exact == reference sampler; twin fast == runtime fast, per setting."""
    out = {"exact_equal_reference": [0, 0]}
    for name, exs in examples.items():
        task = TASKS_BY_NAME[name]
        for ex in exs[:n_exact]:
            want = ref.generate_text(torch.from_numpy(ex.ids[None, : ex.region_start]), gen_length=task.gen_length,
                                     steps=task.steps, block_length=task.block_length, noise=CounterNoise(0))
            got, _ = _run(twin, task, ex, Policy(cache="none", select="topk"))
            out["exact_equal_reference"][0] += int(np.array_equal(got, want[0, ex.region_start:].numpy()))
            out["exact_equal_reference"][1] += 1
    for cache, every in (("none", 0), ("prefix", 0), ("dual", 0), ("prefix", 2), ("dual", 2)):
        for threshold in (1.0, 0.9, 0.7):
            key = f"{cache}-{threshold:g}" + (f"-r{every}" if every else "")
            same = total = 0
            for name, exs in examples.items():
                task = TASKS_BY_NAME[name]
                for ex in exs:
                    got, _ = _run(twin, task, ex, Policy(cache=cache, threshold=threshold, every=every))
                    want = rt.generate_text(ex.ids[None, : ex.region_start], gen_length=task.gen_length,
                                            steps=task.steps, block_length=task.block_length, mode="fast",
                                            threshold=threshold, cache=cache,
                                            refresh_every=None if cache == "none" else every)[0, ex.region_start:]
                    same += int(np.array_equal(got, want))
                    total += 1
            out[f"twin_equal_runtime {key}"] = [same, total]
            print(f"twin vs runtime {key}: {same}/{total} identical", flush=True)
    return out


def diagnosis(twin, examples) -> dict:
    """Cached-step errors against the exact full forward, per cache and threshold, and the drift
    statistic per layer (measured, never acted on: the bound is infinite)."""
    out = {}
    n_layers = len(twin.blocks)
    for cache in ("prefix", "dual"):
        for threshold in (1.0, 0.9):
            errs, top1, commit, drift, acc = [], [], [], [], {}
            for name, exs in examples.items():
                task = TASKS_BY_NAME[name]
                ok = 0
                for ex in exs:
                    policy = Policy(cache=cache, threshold=threshold, bound=float("inf"))
                    got, tr = _run(twin, task, ex, policy, diagnose=True)
                    ok += task.correct(ex, got)
                    errs += tr.kv_error
                    top1 += tr.top1_agree
                    commit += tr.commit_agree
                    drift += tr.drift
                acc[name] = ok / len(exs)
            per_layer = [[v for li, v in drift if li == layer] for layer in range(n_layers)]
            key = f"{cache}-{threshold:g}"
            out[key] = {"accuracy": acc, "k_rel_error_per_layer": np.mean(errs, axis=0).round(4).tolist(),
                        "argmax_agree": float(np.mean(top1)), "committed_set_agree": float(np.mean(commit)),
                        "cached_steps": len(errs),
                        "drift_p50_p90_p99_per_layer": [np.percentile(v, [50, 90, 99]).round(5).tolist() for v in per_layer]}
            print(f"diagnosis {key}: {json.dumps(out[key])}", flush=True)
    return out


def policies(twin, examples, threshold: float) -> dict:
    out = {}
    for base in POLICIES:
        policy = Policy(**{**base.__dict__, "threshold": threshold})
        res = {}
        t0 = time.perf_counter()
        for name, exs in examples.items():
            task = TASKS_BY_NAME[name]
            ok, fwd, equiv, refresh = 0, 0, 0.0, 0
            for ex in exs:
                got, tr = _run(twin, task, ex, policy)
                ok += task.correct(ex, got)
                fwd += tr.forwards
                equiv += tr.token_layers / (len(ex.ids) * len(twin.blocks))
                refresh += tr.refreshes
            n = len(exs)
            res[name] = {"accuracy": ok / n, "forwards": fwd / n, "forward_equiv": equiv / n, "refreshes": refresh / n}
        out[policy.name()] = res
        accs = " ".join(f"{k}={100 * v['accuracy']:.0f}" for k, v in res.items())
        print(f"{policy.name():28s} {time.perf_counter() - t0:5.1f}s {accs}", flush=True)
    return out


def markdown(study: dict) -> str:
    lines = ["## twin check", ""]
    for k, (a, b) in study["twin_check"].items():
        lines.append(f"- {k}: {a}/{b}")
    lines += ["", "## cached steps vs the exact full forward", "",
              "| setting | " + " | ".join(TEXT_TASKS) + " | K error per layer | argmax agree | committed set agree |",
              "|" + "---|" * (len(TEXT_TASKS) + 4)]
    for k, r in study["diagnosis"].items():
        accs = " | ".join(f"{100 * r['accuracy'][t]:.0f}" for t in TEXT_TASKS)
        lines.append(f"| {k} | {accs} | {', '.join(f'{e:.3f}' for e in r['k_rel_error_per_layer'])} | "
                     f"{100 * r['argmax_agree']:.1f}% | {100 * r['committed_set_agree']:.1f}% |")
    for thr, pol in study["policies"].items():
        lines += ["", f"## refresh policies, threshold {thr}", "",
                  "| policy | " + " | ".join(TEXT_TASKS) + " | mean acc | forwards | full-forward equiv | refreshes |",
                  "|" + "---|" * (len(TEXT_TASKS) + 5)]
        for k, res in pol.items():
            accs = [res[t]["accuracy"] for t in TEXT_TASKS]
            mean = lambda key: np.mean([res[t][key] for t in TEXT_TASKS])  # noqa: E731
            lines.append(f"| {k} | " + " | ".join(f"{100 * a:.0f}" for a in accs) + f" | {100 * np.mean(accs):.1f} | "
                         f"{mean('forwards'):.2f} | {mean('forward_equiv'):.2f} | {mean('refreshes'):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50, help="examples per task")
    ap.add_argument("--n-runtime", type=int, default=20, help="examples per task compared with the runtime")
    ap.add_argument("--thresholds", default="0.9")
    ap.add_argument("--checkpoint", help="a trained checkpoint directory (default: the cached TrainConfig() model)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    path = args.checkpoint or trained_checkpoint()
    ref = DyninOmni.from_pretrained(path)
    rt = dynin_rt.load(path, backend="cpu")
    twin = CachedTwin(ref)
    tok, layout = test_tokenizer()
    examples = {t: eval_examples(TASKS_BY_NAME[t], tok, layout, args.n) for t in TEXT_TASKS}
    few = {t: exs[: args.n_runtime] for t, exs in examples.items()}
    study = {"checkpoint": path, "n_per_task": args.n, "twin_check": twin_check(twin, ref, rt, few, 5),
             "diagnosis": diagnosis(twin, examples),
             "policies": {thr: policies(twin, examples, float(thr)) for thr in args.thresholds.split(",")}}
    with open(os.path.join(args.out, "cache_study.json"), "w", encoding="utf-8") as f:
        json.dump(study, f, indent=1)
    md = markdown(study)
    with open(os.path.join(args.out, "cache_study.md"), "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
