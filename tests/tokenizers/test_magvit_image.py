"""MAGVIT pre/postprocessing and video frame sampling, pinned by hand-computed cases."""
import numpy as np
import pytest
import torch
from PIL import Image

from dynin_rt.tokenizers.magvit.image import (
    postprocess_pixels,
    preprocess_images,
    resize_center_crop,
    sample_frame_indices,
)


def test_postprocess_clamps_scales_and_truncates():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.999, 1.0, 2.0])
    # (x + 1) / 2 * 255 = [<0, 0, 63.75, 127.5, 254.87, 255, >255] -> truncated, not rounded
    pixels = x.view(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = postprocess_pixels(pixels)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 7, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 63, 127, 254, 255, 255]


def test_postprocess_is_channels_last():
    pixels = torch.zeros(1, 3, 2, 2)
    pixels[0, 0] = 1.0  # red channel full
    out = postprocess_pixels(pixels)
    assert out[0, 0, 0].tolist() == [255, 127, 127]


def _column_image(h, w):
    """uint8 RGB image whose red channel is 10 * column and green 10 * row (tells crops apart)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = (np.arange(w) * 10)[None, :]
    a[..., 1] = (np.arange(h) * 10)[:, None]
    return a


@pytest.mark.parametrize("w,left", [(8, 2), (5, 0), (7, 2), (9, 2)])
def test_center_crop_offsets_round_half_to_even(w, left):
    # Shorter side already R = 4: no resize. Offset = round((w - 4) / 2): 2, round(0.5) = 0,
    # round(1.5) = 2, round(2.5) = 2.
    out = np.asarray(resize_center_crop(Image.fromarray(_column_image(4, w)), 4))
    assert out.shape == (4, 4, 3)
    assert out[0, :, 0].tolist() == [10 * (left + i) for i in range(4)]
    assert out[:, 0, 1].tolist() == [0, 10, 20, 30]


def test_resize_shorter_side_then_crop():
    img = Image.fromarray(_column_image(7, 10))  # w=10, h=7 -> (int(4 * 10 / 7) = 5) x 4
    expect = np.asarray(img.resize((5, 4), Image.BICUBIC))[:, 0:4]  # crop left round(0.5) = 0
    np.testing.assert_array_equal(np.asarray(resize_center_crop(img, 4)), expect)
    tall = Image.fromarray(_column_image(16, 8))  # w=8, h=16 -> 4 x 8, crop top round(2) = 2
    expect = np.asarray(tall.resize((4, 8), Image.BICUBIC))[2:6]
    np.testing.assert_array_equal(np.asarray(resize_center_crop(tall, 4)), expect)


def test_preprocess_normalizes_to_minus_one_one():
    a = np.zeros((1, 16, 16, 3), np.uint8)
    a[0, 0, 0] = [0, 255, 51]
    x = preprocess_images(a, 16)
    assert x.dtype == np.float32 and x.shape == (1, 3, 16, 16)
    # (u8 / 255 - 0.5) / 0.5: 0 -> -1, 255 -> 1, 51 -> -0.6
    np.testing.assert_allclose(x[0, :, 0, 0], [-1.0, 1.0, -0.6], rtol=0, atol=1e-6)


def test_preprocess_accepts_pil_list_and_converts_modes():
    gray = Image.fromarray(np.full((20, 30), 200, np.uint8), mode="L")
    rgba = Image.fromarray(np.full((20, 30, 4), 100, np.uint8), mode="RGBA")
    x = preprocess_images([gray, rgba], 16)
    assert x.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(x[0], 200 / 255 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(x[1], 100 / 255 * 2 - 1, atol=1e-6)
    assert gray.mode == "L" and rgba.mode == "RGBA"  # the caller's images are untouched


def test_preprocess_does_not_modify_the_array():
    a = np.random.default_rng(0).integers(0, 256, (2, 40, 24, 3), dtype=np.uint8)
    before = a.copy()
    preprocess_images(a, 16)
    np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize(
    "bad,exc,msg",
    [
        (np.zeros((1, 16, 16, 3), np.float32), TypeError, "uint8"),
        (np.zeros((1, 16, 16, 4), np.uint8), ValueError, r"\[B, H, W, 3\]"),
        (np.zeros((1, 3, 16, 16), np.uint8), ValueError, r"\[B, H, W, 3\]"),
        (np.zeros((16, 16, 3), np.uint8), ValueError, r"\[B, H, W, 3\]"),
        (np.zeros((0, 16, 16, 3), np.uint8), ValueError, "empty batch"),
        ([], ValueError, "empty batch"),
        (torch.zeros(1, 3, 16, 16), TypeError, "preprocess=False"),
        ("image.png", TypeError, "cannot preprocess"),
    ],
)
def test_preprocess_rejects_bad_inputs(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        preprocess_images(bad, 16)


def test_preprocess_rejects_resolution_not_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        preprocess_images(np.zeros((1, 20, 20, 3), np.uint8), 20)


def test_frame_indices_follow_linspace():
    assert sample_frame_indices(10).tolist() == [0, 2, 4, 6, 9]  # 0, 2.25, 4.5, 6.75, 9
    assert sample_frame_indices(3, 5).tolist() == [0, 0, 1, 1, 2]  # fewer frames repeat
    assert sample_frame_indices(1, 2).tolist() == [0, 0]
    with pytest.raises(ValueError, match="no frames"):
        sample_frame_indices(0)
