"""Image and video frame handling around the MAGVIT-v2 tokenizer (docs/tokenizers.md,
"Pre- and post-processing").

Preprocessing reproduces the official ``image_transform`` (torchvision on PIL images): resize the
shorter side to R with PIL bicubic (the longer side becomes ``int(R * long / short)``), center-crop
R x R with torchvision's offsets ``round((size - R) / 2)`` (Python's round-half-even), then
``u8 / 255``, ``(x - 0.5) / 0.5`` in float32. Postprocessing is ``clamp((x + 1) / 2, 0, 1) * 255``
*truncated* to uint8, as the official t2i scripts do. Inputs are never modified in place.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .net import DOWNSAMPLE

RESOLUTION_UNDERSTANDING = 336  # MMU / i2i inputs: 21 x 21 tokens
RESOLUTION_GENERATION = 512  # t2i outputs: 32 x 32 tokens
VIDEO_FRAMES = 5


def _as_pil_list(images) -> list[Image.Image]:
    """PIL image, list/tuple of PIL images, or uint8 [B, H, W, 3] -> list of RGB PIL images."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, torch.Tensor):
        raise TypeError(
            "preprocessing takes PIL images or a uint8 numpy array [B, H, W, 3]; for an already normalized "
            "float tensor [B, 3, H, W] pass preprocess=False"
        )
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(
                f"image arrays must be uint8 [B, H, W, 3], got dtype {images.dtype}; for normalized floats "
                "[B, 3, H, W] in [-1, 1] pass preprocess=False"
            )
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"image arrays must be uint8 [B, H, W, 3] (RGB, channels last), got shape {images.shape}")
        if images.shape[0] == 0:
            raise ValueError("empty batch: got 0 images")
        if images.shape[1] == 0 or images.shape[2] == 0:
            raise ValueError(f"images have zero size: shape {images.shape}")
        return [Image.fromarray(im, mode="RGB") for im in images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("empty batch: got 0 images")
        out = []
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                raise TypeError(f"image {i} is a {type(im).__name__}; a list must hold PIL images")
            # The official loaders call .convert("RGB") on every image (returns a new image).
            out.append(im if im.mode == "RGB" else im.convert("RGB"))
        return out
    raise TypeError(f"cannot preprocess a {type(images).__name__}: expected PIL image(s) or uint8 [B, H, W, 3]")


def _center_crop_offset(size: int, crop: int) -> int:
    # torchvision: int(round((size - crop) / 2.0)); Python rounds halves to even.
    return int(round((size - crop) / 2.0))


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Shorter side -> ``resolution`` (bicubic), then the central ``resolution`` square.

    Parameters
    ----------
    image : PIL.Image.Image
        RGB image of any size.
    resolution : int
        R, the output side.

    Returns
    -------
    PIL.Image.Image
        R x R RGB image.
    """
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resolution * long / short)
    new_w, new_h = (resolution, new_long) if w <= h else (new_long, resolution)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    top = _center_crop_offset(new_h, resolution)
    left = _center_crop_offset(new_w, resolution)
    return image.crop((left, top, left + resolution, top + resolution))


def preprocess_images(images, resolution: int = RESOLUTION_UNDERSTANDING) -> np.ndarray:
    """The official MAGVIT input transform.

    Parameters
    ----------
    images : PIL.Image.Image, list of PIL.Image.Image, or np.ndarray
        One image, a list, or uint8 RGB [B, H, W, 3]. Non-RGB PIL modes are converted to RGB.
    resolution : int
        R, a multiple of 16: 336 (understanding, 21 x 21 tokens) or 512 (generation, 32 x 32).

    Returns
    -------
    np.ndarray
        float32 [B, 3, R, R] in [-1, 1].
    """
    if not isinstance(resolution, (int, np.integer)) or resolution <= 0 or resolution % DOWNSAMPLE:
        raise ValueError(f"resolution must be a positive multiple of {DOWNSAMPLE}, got {resolution!r}")
    batch = []
    for im in _as_pil_list(images):
        u8 = np.asarray(resize_center_crop(im, int(resolution)), dtype=np.uint8)  # [R, R, 3]
        x = u8.astype(np.float32) / np.float32(255.0)
        batch.append(((x - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch))


def postprocess_pixels(pixels: torch.Tensor) -> np.ndarray:
    """Decoder output -> uint8 images, the official way (clamp, scale by 255, truncate).

    Parameters
    ----------
    pixels : torch.Tensor
        float [B, 3, H, W], nominally in [-1, 1]; on any device.

    Returns
    -------
    np.ndarray
        uint8 [B, H, W, 3].
    """
    x = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0) * 255.0
    # Truncation toward zero (not rounding) matches the official ``astype(np.uint8)``.
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def sample_frame_indices(num_available: int, num_frames: int = VIDEO_FRAMES) -> np.ndarray:
    """Indices of the frames the official video loader keeps.

    Parameters
    ----------
    num_available : int
        Frames in the video (> 0). With fewer than ``num_frames``, indices repeat, as upstream.
    num_frames : int
        Frames to keep (default 5).

    Returns
    -------
    np.ndarray
        int [num_frames], ``np.linspace(0, num_available - 1, num_frames).astype(int)``.
    """
    if num_available <= 0:
        raise ValueError("the video has no frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return np.linspace(0, num_available - 1, num_frames).astype(int)
