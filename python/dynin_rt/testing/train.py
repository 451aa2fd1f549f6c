"""A small Dynin-Omni genuinely trained on synthetic tasks: the yardstick of the approximate modes.

``python -m dynin_rt.testing.train`` trains (or finds in the cache) a small backbone with the
reference model's blocks and the masked-diffusion SFT objective of LLaDA (model-spec §10): per
example a mask ratio t ~ U(eps, 1), each answer position masked with probability t, cross-entropy
on the masked positions weighted 1/t, normalised by the answer length. The prompt is never masked.
The result is an HF checkpoint in the official layout (138752 rows, the release's special ids, the
test tokenizer), loaded by ``dynin_rt.load`` like the release; it then reports the exact-mode
accuracy of every task through the runtime.

Full-vocabulary confidences are meaningful because the whole head is accounted for: only the rows
the tasks answer with are trained, every other LM-head row is zero, so their logits are exactly 0
and the softmax denominator over all 138752 columns is sum_used exp(l) + N_rest. The loss uses that
denominator, so training never runs a 138752-wide product. Embedding rows no input uses are zero.

Deterministic for a seed (model init, data and masks; fixed thread count). The checkpoint is
cached in ``$DYNIN_RT_CACHE/trained/<key>``, key = hash of the config and FORMAT_VERSION, written
to a temporary directory and renamed into place.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..checkpoint import parse_config
from ..reference.model import Block, keep_mask_bias, rms_norm, rope_tables
from ..tokens import BOS_ID, EOA_ID, EOS_ID, IMAGE_CODEBOOK_SIZE, RELEASE_TEXT_VOCAB, TextTokenizer, TokenLayout
from .backbone import FIRST_SPECIAL_ID, RELEASE_VOCAB, tiny_config, write_tokenizer
from .tasks import ALL_UNITS, DIGITS, DRAW, DRAW_CODES, MAP_LETTERS, TASKS, TASKS_BY_NAME, Task

FORMAT_VERSION = 1
EVAL_SEED_OFFSET = 1_000_003  # evaluation examples use seed + this, training examples seed
SNAPSHOT_EVERY = 500  # a long run caches the models of its shorter prefixes on the way


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (the cache key hashes all of it)."""

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden_size: int = 384
    tasks: tuple = tuple(t.name for t in TASKS)
    steps: int = 3000  # ~55 CPU-minutes here (1 thread); the 500-step prefixes are cached on the way
    batch_per_task: int = 16
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    eps: float = 1e-3  # the mask ratio t is drawn from U(eps, 1)
    seed: int = 0
    threads: int = 1  # torch threads while training (one: steady on a shared machine, and part of the key)

    def key(self) -> str:
        text = json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


# The image yardstick: the draw task alone (MaskGIT's canvas and softmax differ from the text tasks').
IMAGE_CONFIG = TrainConfig(tasks=(DRAW.name,), steps=1500)


def vocabulary(tok: TextTokenizer, layout: TokenLayout, image: bool = False) -> tuple[list[int], list[int]]:
    """(input ids, output ids) the tasks use, sorted. Inputs: every byte, every special id, the
    units of the speech tasks. Outputs: what answers are made of (digits, the map's letters, the
    units, <|eoa|>, EOS). image: also the draw task's codes, in and out."""
    units = layout.speech_ids(ALL_UNITS)
    codes = set(layout.image_ids(range(DRAW_CODES))) if image else set()
    inputs = sorted(set(range(256)) | set(range(FIRST_SPECIAL_ID, len(tok))) | set(units) | codes)
    outputs = sorted(set(tok.encode(DIGITS + MAP_LETTERS)) | set(units) | {EOA_ID, EOS_ID} | codes)
    return inputs, outputs


class TrainModel(nn.Module):
    """The reference blocks between a compact embedding (input rows) and a compact head (output
    rows); export() scatters them into the full 138752-row tensors."""

    def __init__(self, cfg: TrainConfig, inputs: list[int], outputs: list[int], image_rows: list[int] = ()):
        super().__init__()
        self.mcfg = parse_config(self.hf_config(cfg))
        d = cfg.d_model
        self.inputs, self.outputs = inputs, outputs
        self.emb = nn.Embedding(len(inputs), d)
        self.blocks = nn.ModuleList(Block(self.mcfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.Parameter(torch.ones(d))
        self.head = nn.Linear(d, len(outputs), bias=False)
        to_in = torch.full((RELEASE_VOCAB,), -1, dtype=torch.long)
        to_in[torch.tensor(inputs)] = torch.arange(len(inputs))
        to_out = torch.full((RELEASE_VOCAB,), -1, dtype=torch.long)
        to_out[torch.tensor(outputs)] = torch.arange(len(outputs))
        self.register_buffer("to_in", to_in, persistent=False)
        self.register_buffer("to_out", to_out, persistent=False)
        self.log_rest = math.log(RELEASE_VOCAB - len(outputs))
        # the MaskGIT sampler's softmax runs over the image codebook only: its untrained rows are the rest
        self.image_rows = torch.tensor([self.to_out[i] for i in image_rows], dtype=torch.long)
        self.image_log_rest = math.log(IMAGE_CODEBOOK_SIZE - len(image_rows)) if len(image_rows) else 0.0
        self._init(cfg)

    @staticmethod
    def hf_config(cfg: TrainConfig) -> dict:
        return tiny_config(d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                           mlp_hidden_size=cfg.mlp_hidden_size, max_sequence_length=512)

    def _init(self, cfg: TrainConfig) -> None:
        # GPT-2 style: N(0, 0.02), residual outputs scaled by 1/sqrt(2 n_layers)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layers) if name.endswith(("attn_out.weight", "ff_out.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def hidden(self, ids: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """ids [B, T] (full vocabulary) -> final-normed hidden states [B, T, D]."""
        x = self.emb(self.to_in[ids])
        sin, cos = rope_tables(ids.shape[1], self.mcfg.head_dim, self.mcfg.rope_theta, ids.device)
        bias = None if keep is None else keep_mask_bias(keep, torch.float32)
        for block in self.blocks:
            x = block(x, self.mcfg, sin, cos, bias)
        return rms_norm(x, self.ln_f, self.mcfg.rms_norm_eps)

    def full_log_softmax(self, h: torch.Tensor, image: bool = False) -> torch.Tensor:
        """h [n, D] -> log-probabilities [n, U] of the output rows under the full-vocabulary softmax
        (the N_rest zero-logit rows enter the denominator as one log(N_rest) column). image: over
        the image codebook, as MaskGIT reads it -> [n, len(image_rows)] in image_rows order."""
        logits = self.head(h)
        log_rest = self.log_rest
        if image:
            logits, log_rest = logits[:, self.image_rows], self.image_log_rest
        rest = torch.full_like(logits[:, :1], log_rest)
        return logits - torch.logsumexp(torch.cat([logits, rest], dim=1), dim=1, keepdim=True)

    def export(self) -> dict[str, torch.Tensor]:
        """The full state dict in the official key names (fp32)."""
        d = self.mcfg.d_model
        wte = torch.zeros(RELEASE_VOCAB, d)
        wte[torch.tensor(self.inputs)] = self.emb.weight.detach()
        head = torch.zeros(RELEASE_VOCAB, d)
        head[torch.tensor(self.outputs)] = self.head.weight.detach()
        state = {"model.transformer.wte.weight": wte, "model.transformer.ff_out.weight": head,
                 "model.transformer.ln_f.weight": self.ln_f.detach().clone()}
        for i, block in enumerate(self.blocks):
            for name, t in block.state_dict().items():
                state[f"model.transformer.blocks.{i}.{name}"] = t.detach().clone()
        return {k: v.contiguous() for k, v in state.items()}


class Batches:
    """Training batches of one task: canvases [B, T], answer targets [B, G], keep-masks."""

    def __init__(self, task: Task, tok: TextTokenizer, layout: TokenLayout, seed: int):
        self.task, self.tok, self.layout, self.seed = task, tok, layout, seed

    def get(self, step: int, batch: int) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]:
        exs = [self.task.example(self.tok, self.layout, self.seed, step * batch + i) for i in range(batch)]
        ids = torch.from_numpy(np.stack([e.ids for e in exs]))
        answer = torch.from_numpy(np.stack([e.answer for e in exs]))
        keep = None if exs[0].keep is None else torch.from_numpy(np.stack([e.keep for e in exs]))
        return ids, exs[0].region_start, answer, keep


def sft_loss(model: TrainModel, ids, start: int, answer, keep, eps: float, gen: torch.Generator,
             image: bool = False) -> torch.Tensor:
    """The LLaDA SFT loss of one batch: ids [B, T] with the answer region [start, start + G) holding
    [MASK]; answer [B, G] the targets. image: image codes, scored as the MaskGIT sampler reads them."""
    b, g = answer.shape
    # t ~ U(eps, 1), stratified over the batch (one draw per slice of width 1/b): the same objective
    # with a lower-variance estimate
    t = eps + (1.0 - eps) * (torch.arange(b).unsqueeze(1) + torch.rand(b, 1, generator=gen)) / b
    masked = torch.rand(b, g, generator=gen) < t
    x = ids.clone()
    x[:, start:start + g] = torch.where(masked, ids[:, start:start + g], answer)
    h = model.hidden(x, keep)[:, start:start + g][masked]
    logp = model.full_log_softmax(h, image)
    target = model.to_out[answer[masked]]
    if image:  # the position within image_rows
        target = torch.searchsorted(model.image_rows, target)
    nll = -logp.gather(1, target[:, None])[:, 0]
    return (nll / t.expand(b, g)[masked]).sum() / (b * g)


def train(cfg: TrainConfig, tok: TextTokenizer, layout: TokenLayout, log=print, snapshot=None) -> TrainModel:
    """Train from scratch; deterministic for cfg.seed (at cfg.threads torch threads).
    snapshot(steps_done, model), when given, is called every SNAPSHOT_EVERY steps: the model then is
    exactly the model of TrainConfig(steps=steps_done) (data, masks and schedule never look ahead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, tok, layout, log, snapshot)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, tok: TextTokenizer, layout: TokenLayout, log, snapshot) -> TrainModel:
    torch.manual_seed(cfg.seed)
    image = any(TASKS_BY_NAME[n].kind == "image" for n in cfg.tasks)
    inputs, outputs = vocabulary(tok, layout, image)
    model = TrainModel(cfg, inputs, outputs, image_rows=layout.image_ids(range(DRAW_CODES)) if image else ())
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    # linear warmup, then inverse square root: the schedule never looks at cfg.steps, so the model after
    # k steps of a longer run is the model of steps=k
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / cfg.warmup, math.sqrt(cfg.warmup / (s + 1))))
    data = [Batches(TASKS_BY_NAME[n], tok, layout, cfg.seed) for n in cfg.tasks]
    smooth = [float("nan")] * len(data)  # running mean of each task's loss, for the log
    gen = torch.Generator().manual_seed(cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        for i, d in enumerate(data):  # every task in every step
            loss = sft_loss(model, *d.get(step, cfg.batch_per_task), cfg.eps, gen, image=d.task.kind == "image")
            loss.backward()
            smooth[i] = loss.item() if math.isnan(smooth[i]) else 0.9 * smooth[i] + 0.1 * loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step % 100 == 0 or step == cfg.steps - 1):
            parts = " ".join(f"{n}={v:.3f}" for n, v in zip(cfg.tasks, smooth))
            log(f"step {step:5d}  wall {time.perf_counter() - t0:6.0f} s  cpu {time.process_time() - c0:6.0f} s  {parts}")
        if snapshot and (step + 1) % SNAPSHOT_EVERY == 0 and step + 1 < cfg.steps:
            snapshot(step + 1, model)
    return model


def write_checkpoint(model: TrainModel, directory: str, cfg: TrainConfig) -> str:
    """The official HF layout: config.json, generation_config.json, model.safetensors, tokenizer."""
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(TrainModel.hf_config(cfg), f, indent=1)
    with open(os.path.join(directory, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": EOS_ID}, f)
    save_file(model.export(), os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(directory)
    with open(os.path.join(directory, "dynin_rt_train.json"), "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT_VERSION, "config": dataclasses.asdict(cfg)}, f, indent=1)
    return directory


def test_tokenizer() -> tuple[TextTokenizer, TokenLayout]:
    """The test tokenizer of testing/backbone.py and the release's token layout."""
    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        tok = TextTokenizer(d)
    return tok, TokenLayout(vocab_size=RELEASE_VOCAB, text_vocab=len(tok))


def cache_dir() -> str:
    root = os.environ.get("DYNIN_RT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dynin_rt"))
    return os.path.join(root, "trained")


def trained_checkpoint(cfg: TrainConfig | None = None, log=print) -> str:
    """The checkpoint directory for cfg: from the cache, or trained now and cached (atomically)."""
    cfg = cfg or TrainConfig()
    final = os.path.join(cache_dir(), cfg.key())
    if os.path.isfile(os.path.join(final, "dynin_rt_train.json")):
        return final
    os.makedirs(cache_dir(), exist_ok=True)
    tok, layout = test_tokenizer()

    def snapshot(steps: int, model: TrainModel) -> None:
        path = _cache_write(model, dataclasses.replace(cfg, steps=steps))
        if log:
            log(f"snapshot after {steps} steps: {path}")

    _cache_write(train(cfg, tok, layout, log=log, snapshot=snapshot), cfg)
    return final


def _cache_write(model: TrainModel, cfg: TrainConfig) -> str:
    """Write cfg's checkpoint into the cache atomically (temp dir + rename) -> its directory."""
    final = os.path.join(cache_dir(), cfg.key())
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir())
    try:
        write_checkpoint(model, tmp, cfg)
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isfile(os.path.join(final, "dynin_rt_train.json")):  # not a concurrent writer's win
            raise
    return final


def eval_examples(task: Task, tok: TextTokenizer, layout: TokenLayout, n: int, seed: int = 0) -> list:
    """n evaluation examples of a task (their own seed stream, apart from training's)."""
    return [task.example(tok, layout, seed + EVAL_SEED_OFFSET, i) for i in range(n)]


def generate(model, task: Task, exs: list, **options) -> list:
    """Run examples of one task (same canvas length) in one call on a runtime Model, with the task's
    exact schedule overridden by options (mode, threshold, factor, cache, steps, ...).
    -> per example the answer-region ids (text tasks), the units (speech tasks) or the codes (image
    tasks), as lists."""
    if task.kind == "image":  # MaskGIT: the region is the image; steps are its timesteps
        ids, keep = np.stack([e.ids for e in exs]), np.stack([e.keep for e in exs])
        kw = dict(options)
        timesteps = kw.pop("steps", task.steps)
        return model.generate_image(ids, keep, seq_len=task.gen_length, timesteps=timesteps, **kw).tolist()
    kw = dict(gen_length=task.gen_length, steps=task.steps, block_length=task.block_length)
    kw.update(options)
    if task.kind == "speech":
        kw["max_new_tokens"] = kw.pop("gen_length")
        ids, keep = np.stack([e.ids for e in exs]), np.stack([e.keep for e in exs])
        return [u.tolist() for u in model.generate_speech(ids, keep, **kw)]
    prompts = np.stack([e.ids[: e.region_start] for e in exs])
    return model.generate_text(prompts, **kw)[:, exs[0].region_start:].tolist()


def evaluate(model, tasks, tok, layout, n: int, seed: int = 0, **options) -> dict:
    """Accuracy per task over n evaluation examples (one batched call per task)."""
    out = {}
    for task in tasks:
        exs = eval_examples(task, tok, layout, n, seed)
        outputs = generate(model, task, exs, **options)
        out[task.name] = float(np.mean([task.correct(e, np.array(o)) for e, o in zip(exs, outputs)]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynin_rt.testing.train", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, help=f"optimizer steps (default {TrainConfig.steps}; --image: {IMAGE_CONFIG.steps})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=TrainConfig.threads, help="torch threads while training (part of the cache key)")
    ap.add_argument("--eval", type=int, default=100, metavar="N", help="examples per task for the accuracy (0: none)")
    ap.add_argument("--json", help="write the accuracies here")
    ap.add_argument("--image", action="store_true", help="the image yardstick (the draw task, MaskGIT) instead")
    args = ap.parse_args(argv)
    base = IMAGE_CONFIG if args.image else TrainConfig()
    cfg = dataclasses.replace(base, steps=args.steps or base.steps, seed=args.seed, threads=args.threads)
    t0 = time.perf_counter()
    path = trained_checkpoint(cfg)
    print(f"checkpoint: {path} ({time.perf_counter() - t0:.1f} s)")
    if not args.eval:
        return 0
    import dynin_rt

    tok, layout = test_tokenizer()
    model = dynin_rt.load(path, backend="cpu")
    tasks = [TASKS_BY_NAME[n] for n in cfg.tasks]
    t0 = time.perf_counter()
    result = evaluate(model, tasks, tok, layout, args.eval, seed=args.seed)
    print(f"exact mode (the official schedule), {args.eval} examples per task ({time.perf_counter() - t0:.0f} s):")
    for name, accuracy in result.items():
        print(f"  {name:6s} {100 * accuracy:5.1f}%")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"checkpoint": path, "config": dataclasses.asdict(cfg), "exact": result}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
