"""The tasks that draw images with the MaskGIT sampler: text to image (t2i) and image editing (i2i),
each with its official unconditional twin for classifier-free guidance."""
from __future__ import annotations

from PIL import Image

from .. import prompts
from ..runtime import image_params
from .common import UNCOND_PREFIX_RESOLUTION, Denoiser, Phases, Result, make_stats

DOWNSAMPLE = 16  # MAGVIT-v2: one code per 16 x 16 pixels


def run(task: str, backbone: Denoiser, prompt: str, opts: dict, image, phases: Phases) -> Result:
    tok, layout = backbone.tokenizer, backbone.layout
    side = opts["resolution"] // DOWNSAMPLE
    n = side * side
    if task == "t2i":
        canvas = prompts.text_to_image(tok, prompt, num_image_tokens=n)
        uncond = prompts.text_to_image(tok, "", num_image_tokens=n)
    else:
        with phases("encode"):
            source = opts["image_tokenizer"].encode(image, resolution=opts["resolution"])[0]
        canvas = prompts.image_edit(tok, layout, source, prompt, num_image_tokens=n)
        uncond = prompts.image_edit(tok, layout, source, "", num_image_tokens=n)
    if canvas.input_ids.shape[1] > backbone.max_len:
        raise ValueError(f"an image of {n} tokens does not fit the context of {backbone.max_len}: lower resolution")
    with phases("generate"):
        params = image_params(seq_len=n, timesteps=opts["steps"], guidance_scale=opts["cfg_scale"],
                              temperature=opts["temperature"], resolution=UNCOND_PREFIX_RESOLUTION[task], seed=opts["seed"])
        codes = backbone.image(canvas, uncond if opts["cfg_scale"] > 0 else None, params, opts.get("cancel"))
    with phases("decode"):
        pixels = opts["image_tokenizer"].decode(codes)
    return Result(task=task, image=Image.fromarray(pixels[0]), tokens=codes[0],
                  stats=make_stats(phases, backbone.stats(), n))
