"""The tasks that write text with the LLaDA block sampler: chat (t2t), image and video
understanding (i2t, v2t) and speech recognition (s2t). media -> canvas -> sampler -> text."""
from __future__ import annotations

import numpy as np

from .. import prompts
from ..runtime import text_params
from .common import Denoiser, Phases, Result, make_stats


def build_canvas(task: str, backbone: Denoiser, prompt: str | None, opts: dict, media, phases: Phases) -> prompts.Canvas:
    """The prompt canvas of a text-output task; media is an image, frames or (samples, rate)."""
    tok = backbone.tokenizer
    if task == "t2t":
        return prompts.text_chat(tok, prompt, think=opts.get("think"))
    question = prompt if prompt else prompts.DEFAULT_QUESTION
    if task == "i2t":
        with phases("encode"):
            codes = opts["image_tokenizer"].encode(media, resolution=opts["resolution"])[0]
        return prompts.image_to_text(tok, backbone.layout, codes, question)
    if task == "v2t":
        with phases("encode"):
            frames = opts["image_tokenizer"].encode_video(media, num_frames=opts["frames"], resolution=opts["resolution"])
        return prompts.video_to_text(tok, backbone.layout, frames, question)
    with phases("encode"):
        samples, rate = media
        units = opts["speech_tokenizer"].encode(samples, sample_rate=rate)
    instruction = prompt if prompt else prompts.S2T_INSTRUCTIONS[0]
    return prompts.speech_to_text(tok, backbone.layout, units, instruction)


def decode_text(backbone: Denoiser, ids: np.ndarray, task: str) -> str:
    text = backbone.tokenizer.decode(ids.tolist(), skip_special_tokens=True)
    return text.strip() if task == "s2t" else text


def run(task: str, backbone: Denoiser, canvas: prompts.Canvas, opts: dict, phases: Phases, on_block=None) -> Result:
    prompt = canvas.input_ids.numpy()
    gen = opts["max_new_tokens"]
    if prompt.shape[1] + gen > backbone.max_len:
        raise ValueError(
            f"prompt of {prompt.shape[1]} tokens + max_new_tokens {gen} exceeds the context of {backbone.max_len}: "
            "shorten the prompt or lower max_new_tokens"
        )
    with phases("generate"):
        params = text_params(gen_length=gen, steps=opts["steps"], block_length=opts["block_length"],
                             temperature=opts["temperature"], cfg_scale=opts["cfg_scale"], mode=opts["mode"],
                             threshold=opts["threshold"], seed=opts["seed"])
        out = backbone.text(prompt, params, on_block, opts.get("cancel"))
    tokens = out[0, prompt.shape[1]:]
    with phases("decode"):
        text = decode_text(backbone, tokens, task)
    return Result(task=task, text=text, tokens=tokens, stats=make_stats(phases, backbone.stats(), gen))
