"""Text to speech (t2s): the speech-unit sampler, then the EMOVA vocoder."""
from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

from .. import prompts
from ..runtime import speech_params
from ..tokens import SOA_ID
from .common import Denoiser, Result, make_stats
from .registry import Job, TaskSpec, register


def canvas_of(denoiser: Denoiser, prompt: str, opts: dict) -> prompts.Canvas:
    canvas = prompts.text_to_speech(denoiser.tokenizer, prompt, num_units=opts["max_new_tokens"])
    if canvas.input_ids.shape[1] > denoiser.max_len:
        raise ValueError(
            f"{opts['max_new_tokens']} speech units after the 1025-token text block exceed the context of "
            f"{denoiser.max_len}: lower max_new_tokens"
        )
    return canvas


def units_in(canvas_row: np.ndarray, region_start: int, layout) -> np.ndarray:
    """The finished units of a canvas row [T]: the speech region up to the first non-unit token."""
    lo, hi = layout.speech_offset, layout.speech_offset + layout.speech_codebook
    region = canvas_row[region_start:]
    stop = np.flatnonzero((region < lo) | (region >= hi))
    return region[: stop[0] if stop.size else region.size] - lo


def run(job: Job) -> Result:
    denoiser, opts, phases = job.denoiser, job.opts, job.phases
    canvas = canvas_of(denoiser, job.prompt, opts)
    with phases("generate"):
        params = speech_params(max_new_tokens=opts["max_new_tokens"], steps=opts["steps"], block_length=opts["block_length"],
                               temperature=opts["temperature"], cfg_scale=opts["cfg_scale"], mode=opts["mode"],
                               threshold=opts["threshold"], seed=opts["seed"])
        units = denoiser.speech(canvas, params, job.on_block, opts.get("cancel"))  # [n]
    speech = opts["speech_tokenizer"]
    audio = None  # streamed: stream() makes the audio out of its chunks
    if not job.streamed:
        with phases("decode"):
            if units.size == 0:
                audio = np.zeros(0, np.float32)
            else:
                audio = speech.decode(units, style=opts["voice"], seed=opts["seed"])
    return Result(task=job.spec.name, audio=audio, sample_rate=speech.sample_rate, tokens=units,
                  stats=make_stats(phases, denoiser.stats(), opts["max_new_tokens"]))


def stream(job: Job, blocks: Callable[[], Iterator]) -> Iterator[Result]:
    """Audio chunks as the finished units of each block reach the vocoder's streaming decoder, then
    the final result, whose audio is the concatenation of the chunks (the vocoder runs once: run()
    skips it when streamed). The chunks come from an incremental render, which can differ from the
    one-shot render of a non-streamed call (README, "Using it")."""
    speech = job.opts["speech_tokenizer"]
    waited = [0.0]  # seconds spent waiting for the sampler's blocks, not decoding

    def unit_blocks():
        sent, start = 0, None
        source = blocks()
        while True:
            t0 = time.perf_counter()
            block = next(source, None)
            waited[0] += time.perf_counter() - t0
            if block is None:
                return
            row = block[1][0]
            if start is None:
                start = int(np.flatnonzero(row == SOA_ID)[-1]) + 1  # the speech region follows <|soa|>
            units = units_in(row, start, job.denoiser.layout)
            if units.size > sent:
                yield units[sent:]
                sent = units.size

    pieces = unit_blocks()
    first = next(pieces, None)
    chunks, decode_s = [], 0.0
    if first is not None:  # no units at all: no audio, as in run()
        rendered = speech.decode_stream(itertools.chain([first], pieces), style=job.opts["voice"],
                                        seed=job.opts["seed"])
        while True:
            t0, w0 = time.perf_counter(), waited[0]
            chunk = next(rendered, None)
            decode_s += time.perf_counter() - t0 - (waited[0] - w0)
            if chunk is None:
                break
            chunks.append(chunk)
            yield Result(task=job.spec.name, audio=chunk, delta=chunk, sample_rate=speech.sample_rate, partial=True)
    final = blocks.final  # the worker's result (units, stats), set once blocks() is exhausted
    stats = dict(final.stats, seconds=dict(final.stats.get("seconds", {}), decode=round(decode_s, 4)))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    yield replace(final, audio=audio, stats=stats)


# Official defaults: docs/samplers.md, "Official defaults per task".
register(TaskSpec(
    name="t2s", title="text to speech", sampler="t2s", output="speech", media=None, prompt_required=True,
    tokenizers=("speech",),
    defaults=dict(max_new_tokens=383, steps=383, block_length=128, temperature=1.0, cfg_scale=2.5),
    options=("voice",), run=run, stream=stream, output_file="t2s.wav",
    bench_prompt="Hello there, this is Dynin-Omni speaking.", bench=dict(max_new_tokens=64, steps=32, block_length=32),
))
