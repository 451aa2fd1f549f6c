"""Text to speech (t2s): the speech-unit sampler, then the EMOVA vocoder."""
from __future__ import annotations

import numpy as np

from .. import prompts
from ..runtime import speech_params
from .common import Denoiser, Phases, Result, make_stats


def canvas_of(backbone: Denoiser, prompt: str, opts: dict) -> prompts.Canvas:
    canvas = prompts.text_to_speech(backbone.tokenizer, prompt, num_units=opts["max_new_tokens"])
    if canvas.input_ids.shape[1] > backbone.max_len:
        raise ValueError(
            f"{opts['max_new_tokens']} speech units after the 1025-token text block exceed the context of "
            f"{backbone.max_len}: lower max_new_tokens"
        )
    return canvas


def units_in(canvas_row: np.ndarray, region_start: int, layout) -> np.ndarray:
    """The finished units of a canvas row: the speech region up to the first non-unit token."""
    lo, hi = layout.speech_offset, layout.speech_offset + layout.speech_codebook
    region = canvas_row[region_start:]
    stop = np.flatnonzero((region < lo) | (region >= hi))
    return region[: stop[0] if stop.size else region.size] - lo


def run(backbone: Denoiser, prompt: str, opts: dict, phases: Phases, on_block=None) -> Result:
    canvas = canvas_of(backbone, prompt, opts)
    with phases("generate"):
        params = speech_params(max_new_tokens=opts["max_new_tokens"], steps=opts["steps"], block_length=opts["block_length"],
                               temperature=opts["temperature"], cfg_scale=opts["cfg_scale"], mode=opts["mode"],
                               threshold=opts["threshold"], seed=opts["seed"])
        units = backbone.speech(canvas, params, on_block, opts.get("cancel"))
    speech = opts["speech_tokenizer"]
    with phases("decode"):
        if units.size == 0:
            audio = np.zeros(0, np.float32)
        else:
            audio = speech.decode(units, style=opts["voice"], seed=opts["seed"])
    return Result(task="t2s", audio=audio, sample_rate=speech.sample_rate, tokens=units,
                  stats=make_stats(phases, backbone.stats(), opts["max_new_tokens"]))
