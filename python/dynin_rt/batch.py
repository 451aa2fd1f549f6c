"""Batches of independent requests: N compatible ``dynin_rt.generate`` calls as one runtime call.

A request is the keyword arguments of :func:`dynin_rt.generate` (``prompt``, ``image``, ``output``,
``max_new_tokens``, ``seed``, ...). :func:`batch_key` says which requests can share a call: the same
task and the same sampler options, except the prompt, the media, the seed and, for the text tasks,
the number of new tokens. :func:`generate_batch` runs them through the runtime's batched loops:

- text tasks (chat, image / video understanding, speech recognition): a ragged batch, each row with
  its own prompt length and new tokens; the rows share block_length and the steps per block;
- text to image and image editing: the canvases stacked (equal lengths at one resolution);
- text to speech: the canvases stacked (a fixed-length text block), one max_new_tokens.

Every row gets its own seed and noise row 0 (``noise_rows=[0] * N``), so a request's tokens are
the tokens it gets alone, whatever it is batched with; each row has its own cancel token and stops
on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._native import _C
from .api import _load_media, _options, _tokenizer, select_task
from .errors import Cancelled
from .prompts import Canvas
from .runtime import image_params, speech_params, text_params
from .tasks import registry, speech_out
from .tasks.common import Denoiser, Phases, Result, make_stats
from .tasks.image_out import DOWNSAMPLE
from .tasks.registry import Job, TaskSpec

OPTIONS = ("steps", "block_length", "max_new_tokens", "temperature", "cfg_scale", "resolution", "frames", "seed",
           "mode", "threshold", "think", "voice")
REQUEST_KEYS = OPTIONS + ("prompt", "image", "video", "audio", "sample_rate", "output")
# the options rows share, per sampler; the rest (prompt, media, seed, think, voice, text lengths) are per row
CancelToken = _C.CancelToken
_SHARED = {
    "llada": ("mode", "threshold", "temperature", "cfg_scale", "block_length", "resolution", "frames"),
    "maskgit": ("mode", "steps", "temperature", "cfg_scale", "resolution"),
    "t2s": ("mode", "threshold", "temperature", "cfg_scale", "block_length", "steps", "max_new_tokens"),
}


@dataclass
class _Row:
    """One request made ready: its task, checked options (official defaults filled in) and media."""

    spec: TaskSpec
    prompt: str | None
    opts: dict
    media: object = None

    @property
    def task(self) -> str:
        return self.spec.name

    def job(self, denoiser: Denoiser, phases: Phases) -> Job:
        return Job(self.spec, denoiser, self.prompt, self.opts, self.media, phases)


def _check(request: dict) -> _Row:
    """The checks of ``generate()`` on one request's keywords (bad values raise ValueError)."""
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ValueError(f"unknown request keys {unknown}: use the keywords of dynin_rt.generate ({', '.join(REQUEST_KEYS)})")
    get = request.get
    spec = registry.get(select_task(get("prompt"), get("image"), get("video"), get("audio"), get("output", "text")))
    opts = _options(spec, {k: get(k) for k in OPTIONS if k != "seed"} | {"seed": get("seed", 0)})
    if get("sample_rate") is not None and get("audio") is None:
        raise ValueError("sample_rate= goes with audio=")
    if spec.sampler == "llada":
        gen, block, steps = opts["max_new_tokens"], opts["block_length"], opts["steps"]
        if gen % block or steps % (gen // block):
            raise ValueError(f"max_new_tokens {gen} must be a multiple of block_length {block}, and steps {steps} a "
                             f"multiple of the number of blocks {max(1, gen // block)}")
    return _Row(spec, get("prompt"), opts)


def batch_key(request: dict) -> tuple:
    """A hashable key: requests with equal keys can run as one batch. Raises ValueError for a
    request that ``generate()`` would refuse (unknown keys, bad options, impossible inputs)."""
    row = _check(request)
    opts = row.opts
    shared = tuple((k, opts[k]) for k in _SHARED[row.spec.sampler] if k in opts)
    if row.spec.sampler == "llada":  # rows share the steps per block, not the steps
        shared += (("steps_per_block", opts["steps"] // (opts["max_new_tokens"] // opts["block_length"])),)
    return (row.task,) + shared


def generate_batch(model, requests: list[dict], cancels: list | None = None,
                   on_block: Callable[[int, int, np.ndarray], None] | None = None) -> list[Result | Exception]:
    """Run compatible requests (equal :func:`batch_key`) as one call of the runtime's batched loop.

    Parameters
    ----------
    model : dynin_rt.Model
    requests : list of dict, N entries
        Keyword arguments of :func:`dynin_rt.generate` (no ``stream``, ``progress`` or ``cancel``).
    cancels : list of dynin_rt.CancelToken or None, N entries
        Row i stops at its next step once ``cancels[i]`` is cancelled; the other rows go on.
    on_block : callable, optional
        Text tasks: ``on_block(i, block, tokens)`` after each finished block, with row i's new
        tokens so far [ (block + 1) * block_length ].

    Returns
    -------
    One entry per request: its Result (tokens equal to what ``generate()`` gives it alone), a
    ``dynin_rt.Cancelled`` for a cancelled row, or the ValueError of a row whose input failed
    (e.g. media that does not encode) while the other rows ran.
    """
    if not requests:
        return []
    if cancels is None:
        cancels = [None] * len(requests)
    if len(cancels) != len(requests):
        raise ValueError(f"{len(requests)} requests but {len(cancels)} cancel tokens")
    cancels = [CancelToken() if c is None else c for c in cancels]  # the loops take one token per row
    keys = {batch_key(r) for r in requests}
    if len(keys) > 1:
        raise ValueError("the requests differ in task or shared options (batch_key): batch them apart")
    denoiser = Denoiser(model)
    if denoiser.is_reference:
        raise ValueError("generate_batch runs on the C++ runtime (dynin_rt.load); the reference runs one request")
    rows = [_check(r) for r in requests]
    phases = Phases()
    ready = [_ready(denoiser, model, row, request, phases) for row, request in zip(rows, requests)]
    live = [i for i, r in enumerate(ready) if not isinstance(r, Exception)]
    out: list = list(ready)
    if not live:
        return out
    run = {"llada": _run_text, "maskgit": _run_image, "t2s": _run_speech}[rows[0].spec.sampler]
    live_cancels = [cancels[i] for i in live]
    row_block = None if on_block is None else (lambda j, block, tokens: on_block(live[j], block, tokens))
    for j, result in enumerate(run(denoiser, [rows[i] for i in live], [ready[i] for i in live], live_cancels, phases,
                                   row_block)):
        out[live[j]] = result
    return out


def _ready(denoiser: Denoiser, model, row: _Row, request: dict, phases: Phases):
    """The row's canvas (or ValueError): media loaded and encoded, the prompt in its template."""
    try:
        for kind in row.spec.tokenizers:
            row.opts[f"{kind}_tokenizer"] = _tokenizer(model, kind, None)
        get = request.get
        row.media = _load_media(row.spec, get("image"), get("video"), get("audio"), get("sample_rate"))
        if row.spec.sampler == "llada":
            return _text_canvas(denoiser, row, phases)
        if row.spec.sampler == "maskgit":
            return _image_canvases(denoiser, row, phases)
        return speech_out.canvas_of(denoiser, row.prompt, row.opts)
    except ValueError as exc:
        return exc
    except (OSError, RuntimeError) as exc:  # a missing file, a tokenizer that cannot take this input
        return ValueError(str(exc))


def _text_canvas(denoiser: Denoiser, row: _Row, phases: Phases) -> Canvas:
    canvas = row.spec.parts.canvas(row.job(denoiser, phases))
    length, gen = canvas.input_ids.shape[1], row.opts["max_new_tokens"]
    if length + gen > denoiser.max_len:
        raise ValueError(f"prompt of {length} tokens + max_new_tokens {gen} exceeds the context of {denoiser.max_len}: "
                         "shorten the prompt or lower max_new_tokens")
    return canvas


def _image_canvases(denoiser: Denoiser, row: _Row, phases: Phases) -> tuple[Canvas, Canvas]:
    """(canvas, unconditional twin) of an image task, as its task module builds them."""
    n = (row.opts["resolution"] // DOWNSAMPLE) ** 2
    pair = row.spec.parts.canvases(row.job(denoiser, phases), n)
    if pair[0].input_ids.shape[1] > denoiser.max_len:
        raise ValueError(f"an image of {n} tokens does not fit the context of {denoiser.max_len}: lower resolution")
    return pair


def _outcome(stats, cancels: list, i: int, make: Callable[[], Result]):
    if (stats is not None and stats.cancelled_rows and stats.cancelled_rows[i]) or cancels[i].cancelled:
        cancelled = Cancelled("generation cancelled")
        cancelled.stats = stats.to_dict() if stats is not None else {}  # what the batch did before the row stopped
        return cancelled
    try:
        return make()
    except ValueError as exc:
        return exc


def _stats(phases: Phases, denoiser: Denoiser, generated: int, batch: int, prompt_tokens: int) -> dict:
    return dict(make_stats(phases, denoiser.stats(), generated), batch_size=batch, prompt_tokens=int(prompt_tokens))


def _run_text(denoiser: Denoiser, rows: list[_Row], canvases: list[Canvas], cancels: list, phases: Phases, on_block):
    """Ragged LLaDA rows: prompt_ids [B, max P], lengths [B], new tokens per row."""
    opts = rows[0].opts
    lengths = [c.input_ids.shape[1] for c in canvases]
    gens = [r.opts["max_new_tokens"] for r in rows]
    block = opts["block_length"]
    ids = np.zeros((len(rows), max(lengths)), np.int64)  # [B, max P]; a row's tail past its length is absent
    for i, c in enumerate(canvases):
        ids[i, : lengths[i]] = c.input_ids.numpy()[0]
    steps_per_block = opts["steps"] // (gens[0] // block)
    params = text_params(gen_length=block, steps=steps_per_block, block_length=block, temperature=opts["temperature"],
                         cfg_scale=opts["cfg_scale"], mode=opts["mode"], threshold=opts["threshold"],
                         gen_lengths=gens, row_seeds=[int(r.opts["seed"]) for r in rows], noise_rows=[0] * len(rows))

    def block_done(blk, canvas):  # canvas [B, T]
        for i, p in enumerate(lengths):
            if (blk + 1) * block <= gens[i]:
                on_block(i, blk, canvas[i, p : p + (blk + 1) * block])

    model = denoiser.model
    with phases("generate"):
        out = model.generate_text(ids, params, lengths=lengths, row_cancel=cancels,
                                  on_block=block_done if on_block else None)  # [B, T]
    stats = model.last_stats

    def result(i):
        tokens = out[i, lengths[i] : lengths[i] + gens[i]]
        with phases("decode"):
            text = rows[i].spec.parts.decode(rows[i].job(denoiser, phases), tokens)
        return Result(task=rows[i].task, text=text, tokens=tokens,
                      stats=_stats(phases, denoiser, gens[i], len(rows), lengths[i]))

    return [_outcome(stats, cancels, i, lambda i=i: result(i)) for i in range(len(rows))]


def _stack(canvases: list[Canvas]) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length single-row canvases -> ids [B, T], keep-mask [B, T]."""
    ids = np.concatenate([c.input_ids.numpy() for c in canvases])
    mask = np.concatenate([np.ones_like(c.input_ids.numpy()) if c.attention_mask is None else c.attention_mask.numpy()
                           for c in canvases])
    return ids, mask


def _run_image(denoiser: Denoiser, rows: list[_Row], pairs: list, cancels: list, phases: Phases, on_block):
    """Stacked MaskGIT canvases (and their unconditional twins when guided) -> codes [B, N]."""
    opts = rows[0].opts
    n = (opts["resolution"] // DOWNSAMPLE) ** 2
    ids, mask = _stack([p[0] for p in pairs])
    un_ids, un_mask = _stack([p[1] for p in pairs]) if opts["cfg_scale"] > 0 else (None, None)
    params = image_params(seq_len=n, timesteps=opts["steps"], guidance_scale=opts["cfg_scale"],
                          temperature=opts["temperature"], resolution=rows[0].spec.parts.uncond_prefix, mode=opts["mode"],
                          seed=0, row_seeds=[int(r.opts["seed"]) for r in rows], noise_rows=[0] * len(rows))
    model = denoiser.model
    with phases("generate"):
        codes = model.generate_image(ids, mask, un_ids, un_mask, params, row_cancel=cancels)  # [B, n]
    stats = model.last_stats

    def result(i):
        from PIL import Image

        with phases("decode"):
            pixels = rows[i].opts["image_tokenizer"].decode(codes[i : i + 1])  # [1, H, W, 3]
        return Result(task=rows[i].task, image=Image.fromarray(pixels[0]), tokens=codes[i],
                      stats=_stats(phases, denoiser, n, len(rows), ids.shape[1]))

    return [_outcome(stats, cancels, i, lambda i=i: result(i)) for i in range(len(rows))]


def _run_speech(denoiser: Denoiser, rows: list[_Row], canvases: list[Canvas], cancels: list, phases: Phases, on_block):
    """Stacked text-to-speech canvases -> per row its units, then the vocoder in the row's voice."""
    opts = rows[0].opts
    ids, mask = _stack(canvases)
    params = speech_params(max_new_tokens=opts["max_new_tokens"], steps=opts["steps"], block_length=opts["block_length"],
                           temperature=opts["temperature"], cfg_scale=opts["cfg_scale"], mode=opts["mode"],
                           threshold=opts["threshold"], seed=0, row_seeds=[int(r.opts["seed"]) for r in rows],
                           noise_rows=[0] * len(rows))
    model = denoiser.model
    with phases("generate"):
        units = model.generate_speech(ids, mask, params, row_cancel=cancels)  # B x [n_b]
    stats = model.last_stats

    def result(i):
        speech = rows[i].opts["speech_tokenizer"]
        with phases("decode"):
            audio = (np.zeros(0, np.float32) if units[i].size == 0 else
                     speech.decode(units[i], style=rows[i].opts["voice"], seed=rows[i].opts["seed"]))
        return Result(task="t2s", audio=audio, sample_rate=speech.sample_rate, tokens=units[i],
                      stats=_stats(phases, denoiser, opts["max_new_tokens"], len(rows), ids.shape[1]))

    return [_outcome(stats, cancels, i, lambda i=i: result(i)) for i in range(len(rows))]
