"""MagvitV2 public API on the torch backend: input validation, batching, encode paths, video."""
import numpy as np
import pytest
import torch
from PIL import Image

from dynin_rt.tokenizers.backends import BackendUnavailableError, probe_tensorrt
from dynin_rt.tokenizers.magvit import MagvitV2
from dynin_rt.tokenizers.magvit.image import preprocess_images
from dynin_rt.testing.magvit import write_magvit


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = write_magvit(tmp_path_factory.mktemp("magvit32"), ch=32, seed=2)
    return MagvitV2.from_pretrained(path, backend="torch", device="cpu")


def _codes(b, s, seed=0):
    return np.random.default_rng(seed).integers(0, 8192, (b, s * s))


def test_decode_shape_dtype_and_input_untouched(tok):
    codes = _codes(2, 3)
    before = codes.copy()
    images = tok.decode(codes)
    assert images.shape == (2, 48, 48, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(codes, before)
    assert images.min() < 64 and images.max() > 192  # not a constant image


def test_decode_accepts_tensor_and_list_alike(tok):
    codes = _codes(1, 2, seed=1)
    a = tok.decode(codes)
    np.testing.assert_array_equal(tok.decode(torch.from_numpy(codes).int()), a)
    np.testing.assert_array_equal(tok.decode(codes.tolist()), a)


def test_decode_batch_items_are_independent(tok):
    codes = _codes(3, 2, seed=3)
    batch = tok.decode(codes)
    for i in range(3):
        single = tok.decode(codes[i : i + 1])
        assert np.abs(batch[i].astype(int) - single[0].astype(int)).max() <= 1


def test_decode_is_postprocessed_float(tok):
    codes = _codes(1, 2, seed=4)
    x = tok.decode_float(codes)
    expect = (torch.clamp((x + 1) / 2, 0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(tok.decode(codes), expect)


@pytest.mark.parametrize(
    "codes,exc,msg",
    [
        (np.array([[0, 1, 2, 8192]]), ValueError, r"\[0, 8192\).*\[0, 8192\]"),
        (np.array([[0, -1, 2, 3]]), ValueError, r"\[0, 8192\)"),
        (np.zeros((1, 5), np.int64), ValueError, "N=5 is not a positive perfect square"),
        (np.zeros((1, 0), np.int64), ValueError, "perfect square"),
        (np.zeros((0, 4), np.int64), ValueError, "empty batch"),
        (np.zeros((4,), np.int64), ValueError, r"\[B, N\]"),
        (np.zeros((1, 2, 2), np.int64), ValueError, r"\[B, N\]"),
        (np.zeros((1, 4), np.float32), TypeError, "integers"),
        (np.zeros((1, 4), bool), TypeError, "integers"),
    ],
)
def test_decode_rejects_bad_codes(tok, codes, exc, msg):
    with pytest.raises(exc, match=msg):
        tok.decode(codes)


def test_encode_paths_agree(tok):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    before = images.copy()
    codes = tok.encode(images, resolution=32)
    np.testing.assert_array_equal(images, before)
    assert codes.shape == (2, 4) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 8192
    x = preprocess_images(images, 32)
    np.testing.assert_array_equal(tok.encode(x, preprocess=False), codes)
    np.testing.assert_array_equal(tok.encode([Image.fromarray(im) for im in images], resolution=32), codes)
    np.testing.assert_array_equal(tok.encode(Image.fromarray(images[1]), resolution=32), codes[1:])


def test_encode_default_resolution_is_336(tok):
    codes = tok.encode(np.zeros((1, 336, 400, 3), np.uint8))
    assert codes.shape == (1, 21 * 21)


def test_encode_unpreprocessed_any_multiple_of_16(tok):
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    before = x.clone()
    assert tok.encode(x, preprocess=False).shape == (1, 6)
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    "x,exc,msg",
    [
        (np.zeros((1, 3, 32, 32), np.uint8), TypeError, "float"),
        (torch.zeros(1, 4, 32, 32), ValueError, r"\[B, 3, H, W\]"),
        (torch.zeros(1, 32, 32, 3), ValueError, r"\[B, 3, H, W\]"),
        (torch.zeros(0, 3, 32, 32), ValueError, "empty batch"),
        (torch.zeros(1, 3, 24, 32), ValueError, "multiples of 16"),
        ([[0.0]], TypeError, "float array or tensor"),
    ],
)
def test_encode_rejects_bad_pixels(tok, x, exc, msg):
    with pytest.raises(exc, match=msg):
        tok.encode(x, preprocess=False)


def test_encode_video_samples_linspace_frames(tok):
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    codes = tok.encode_video(frames, resolution=32)
    assert codes.shape == (5, 4)
    np.testing.assert_array_equal(codes, tok.encode(frames[[0, 2, 4, 6, 9]], resolution=32))
    pil = [Image.fromarray(f) for f in frames[:3]]
    expect = tok.encode(frames[[0, 0, 1, 1, 2]], resolution=32)
    np.testing.assert_array_equal(tok.encode_video(pil, resolution=32), expect)
    with pytest.raises(ValueError, match="no frames"):
        tok.encode_video([], resolution=32)


def test_forced_tensorrt_without_it_is_an_error(tmp_path):
    if probe_tensorrt().available:
        pytest.skip("TensorRT is available here")
    with pytest.raises(BackendUnavailableError, match="'tensorrt' was requested but is unavailable"):
        MagvitV2.from_pretrained(tmp_path, backend="tensorrt")


def test_unknown_backend_and_precision(tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        MagvitV2.from_pretrained(tmp_path, backend="gpu")
    with pytest.raises(ValueError, match="precision"):
        MagvitV2.from_pretrained(tmp_path, backend="torch", precision="int8")
