"""The tasks that draw images with the MaskGIT sampler: text to image (t2i) and image editing (i2i),
each with its official unconditional twin for classifier-free guidance (docs/templates.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image

from .. import prompts
from ..runtime import image_params
from .common import Result, make_stats
from .registry import Job, TaskSpec, register

DOWNSAMPLE = 16  # MAGVIT-v2: one code per 16 x 16 pixels


@dataclass(frozen=True)
class ImageTask:
    """canvases(job, n) -> (canvas, unconditional canvas) for n image codes. uncond_prefix: the
    MaskGIT sampler's own ``resolution`` argument, which keeps the official default of each sampler
    whatever the image size (the unconditional-prefix quirk, docs/samplers.md)."""

    canvases: Callable[[Job, int], tuple[prompts.Canvas, prompts.Canvas]]
    uncond_prefix: int

    def run(self, job: Job) -> Result:
        denoiser, opts, phases = job.denoiser, job.opts, job.phases
        side = opts["resolution"] // DOWNSAMPLE
        n = side * side
        canvas, uncond = self.canvases(job, n)
        if canvas.input_ids.shape[1] > denoiser.max_len:
            raise ValueError(f"an image of {n} tokens does not fit the context of {denoiser.max_len}: lower resolution")
        with phases("generate"):
            params = image_params(seq_len=n, timesteps=opts["steps"], guidance_scale=opts["cfg_scale"],
                                  temperature=opts["temperature"], resolution=self.uncond_prefix, mode=opts["mode"],
                                  seed=opts["seed"])
            codes = denoiser.image(canvas, uncond if opts["cfg_scale"] > 0 else None, params, opts.get("cancel"))  # [1, n]
        with phases("decode"):
            pixels = opts["image_tokenizer"].decode(codes)  # [1, 16 side, 16 side, 3]
        return Result(task=job.spec.name, image=Image.fromarray(pixels[0]), tokens=codes[0],
                      stats=make_stats(phases, denoiser.stats(), n))


def _text_to_image(job: Job, n: int):
    tok = job.denoiser.tokenizer
    return prompts.text_to_image(tok, job.prompt, num_image_tokens=n), prompts.text_to_image(tok, "", num_image_tokens=n)


def _image_edit(job: Job, n: int):
    tok, layout = job.denoiser.tokenizer, job.denoiser.layout
    with job.phases("encode"):
        source = job.opts["image_tokenizer"].encode(job.media, resolution=job.opts["resolution"])[0]
    return (prompts.image_edit(tok, layout, source, job.prompt, num_image_tokens=n),
            prompts.image_edit(tok, layout, source, "", num_image_tokens=n))


_T2I = ImageTask(_text_to_image, uncond_prefix=512)
_I2I = ImageTask(_image_edit, uncond_prefix=336)

# Official defaults: docs/samplers.md, "Official defaults per task". Fast mode: the prompt's K/V
# reused between refreshes (runtime.FAST_IMAGE_CACHE, docs/fast-mode.md).
register(TaskSpec(
    name="t2i", title="text to image", sampler="maskgit", output="image", media=None, prompt_required=True,
    tokenizers=("image",), defaults=dict(steps=20, cfg_scale=3.5, temperature=1.0, resolution=512),
    run=_T2I.run, parts=_T2I, output_file="t2i.png",
    bench_prompt="A red fox in the snow", bench=dict(resolution=256, steps=16),
))
register(TaskSpec(
    name="i2i", title="image editing", sampler="maskgit", output="image", media="image", prompt_required=True,
    tokenizers=("image",), defaults=dict(steps=64, cfg_scale=3.5, temperature=1.0, resolution=336),
    run=_I2I.run, parts=_I2I, output_file="i2i.png",
    bench_prompt="Make it night", bench=dict(resolution=256, steps=16),
))
