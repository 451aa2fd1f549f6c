"""The tasks that write text with the LLaDA block sampler: chat (t2t), image and video
understanding (i2t, v2t) and speech recognition (s2t). media -> canvas -> sampler -> text.

The four differ only in their canvas (docs/templates.md) and in the official post-processing of
speech recognition (the transcript is stripped); :class:`TextTask` is the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .. import prompts
from ..runtime import text_params
from .common import Result, make_stats
from .registry import Job, TaskSpec, register


@dataclass(frozen=True)
class TextTask:
    """canvas(job) -> prompts.Canvas; strip: strip the decoded text (the official ASR post-processing)."""

    canvas: Callable[[Job], prompts.Canvas]
    strip: bool = False

    def decode(self, job: Job, ids: np.ndarray) -> str:
        text = job.denoiser.tokenizer.decode(ids.tolist(), skip_special_tokens=True)
        return text.strip() if self.strip else text

    def run(self, job: Job) -> Result:
        denoiser, opts, phases = job.denoiser, job.opts, job.phases
        prompt = self.canvas(job).input_ids.numpy()  # [1, P]
        gen = opts["max_new_tokens"]
        if prompt.shape[1] + gen > denoiser.max_len:
            raise ValueError(
                f"prompt of {prompt.shape[1]} tokens + max_new_tokens {gen} exceeds the context of {denoiser.max_len}: "
                "shorten the prompt or lower max_new_tokens"
            )
        with phases("generate"):
            params = text_params(gen_length=gen, steps=opts["steps"], block_length=opts["block_length"],
                                 temperature=opts["temperature"], cfg_scale=opts["cfg_scale"], mode=opts["mode"],
                                 threshold=opts["threshold"], seed=opts["seed"])
            out = denoiser.text(prompt, params, job.on_block, opts.get("cancel"))  # [1, P + gen]
        tokens = out[0, prompt.shape[1]:]
        with phases("decode"):
            text = self.decode(job, tokens)
        return Result(task=job.spec.name, text=text, tokens=tokens, stats=make_stats(phases, denoiser.stats(), gen))

    def stream(self, job: Job, blocks: Callable[[], Iterator]) -> Iterator[Result]:
        """The text so far after each finished block; ``delta`` is what is new."""
        said = ""
        opts = job.opts
        for block, canvas in blocks():
            row = canvas[0]
            start = row.size - opts["max_new_tokens"]  # the generated region follows the prompt
            text = self.decode(job, row[start : start + (block + 1) * opts["block_length"]])
            # decoding more tokens can rewrite the tail of earlier text (a split character): then resend it all
            delta = text[len(said):] if text.startswith(said) else text
            said = text
            yield Result(task=job.spec.name, text=text, delta=delta, partial=True)


def _chat(job: Job) -> prompts.Canvas:
    return prompts.text_chat(job.denoiser.tokenizer, job.prompt, think=job.opts.get("think"))


def _image_question(job: Job) -> prompts.Canvas:
    with job.phases("encode"):
        codes = job.opts["image_tokenizer"].encode(job.media, resolution=job.opts["resolution"])[0]
    return prompts.image_to_text(job.denoiser.tokenizer, job.denoiser.layout, codes, job.prompt or prompts.DEFAULT_QUESTION)


def _video_question(job: Job) -> prompts.Canvas:
    with job.phases("encode"):
        frames = job.opts["image_tokenizer"].encode_video(job.media, num_frames=job.opts["frames"],
                                                         resolution=job.opts["resolution"])
    return prompts.video_to_text(job.denoiser.tokenizer, job.denoiser.layout, frames, job.prompt or prompts.DEFAULT_QUESTION)


def _transcription(job: Job) -> prompts.Canvas:
    with job.phases("encode"):
        samples, rate = job.media
        units = job.opts["speech_tokenizer"].encode(samples, sample_rate=rate)
    instruction = job.prompt or prompts.S2T_INSTRUCTIONS[0]
    return prompts.speech_to_text(job.denoiser.tokenizer, job.denoiser.layout, units, instruction)


# Official defaults: docs/samplers.md, "Official defaults per task".
_chat_task, _image_task = TextTask(_chat), TextTask(_image_question)
_video_task, _speech_task = TextTask(_video_question), TextTask(_transcription, strip=True)
register(TaskSpec(
    name="t2t", title="text chat", sampler="llada", output="text", media=None, prompt_required=True, tokenizers=(),
    defaults=dict(max_new_tokens=512, steps=128, block_length=128, temperature=1.0, cfg_scale=0.0),
    options=("think",), run=_chat_task.run, stream=_chat_task.stream, parts=_chat_task, output_file="t2t.txt",
    bench_prompt="Explain diffusion language models in one paragraph.",
    bench=dict(max_new_tokens=64, steps=32, block_length=32),
))
register(TaskSpec(
    name="i2t", title="image understanding", sampler="llada", output="text", media="image", prompt_required=False,
    tokenizers=("image",),
    defaults=dict(max_new_tokens=1024, steps=512, block_length=1024, temperature=0.0, cfg_scale=0.0, resolution=336),
    run=_image_task.run, stream=_image_task.stream, parts=_image_task, output_file="i2t.txt",
    bench_prompt="What is in this picture?", bench=dict(resolution=224, max_new_tokens=64, steps=16, block_length=64),
))
register(TaskSpec(
    name="v2t", title="video understanding", sampler="llada", output="text", media="video", prompt_required=False,
    tokenizers=("image",),
    defaults=dict(max_new_tokens=128, steps=128, block_length=128, temperature=0.0, cfg_scale=0.0, resolution=336,
                  frames=5),
    run=_video_task.run, stream=_video_task.stream, parts=_video_task, output_file="v2t.txt",
    bench_prompt="Describe the video.", bench=dict(resolution=128, max_new_tokens=32, steps=16, block_length=32),
))
register(TaskSpec(
    name="s2t", title="speech recognition", sampler="llada", output="text", media="audio", prompt_required=False,
    tokenizers=("speech",),
    defaults=dict(max_new_tokens=128, steps=256, block_length=2, temperature=0.0, cfg_scale=0.0),
    run=_speech_task.run, stream=_speech_task.stream, parts=_speech_task, output_file="s2t.txt",
    bench=dict(max_new_tokens=32, steps=32, block_length=2),
))
