"""Media limits and sampled video decoding (dynin_rt.media): inputs past a limit are refused from
their size or headers with one line, before decoding; a video file gives only the sampled frames,
the same ones a whole decode followed by the task's sampling gives. Costs about 20 s (most of it
the v2t run on the tiny checkpoint)."""
import struct
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile

from dynin_rt import media
from dynin_rt.cli import main
from dynin_rt.media import MediaLimits, load_audio, load_image, load_video
from dynin_rt.tokenizers.magvit.image import sample_frame_indices


def _video(path, n, w=64, h=48, rate=10):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), i * 25, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height and whose pixels are missing: a bomb if decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return str(path)


def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_a_video_file_gives_the_sampled_frames(tmp_path):
    path = _video(tmp_path / "v.mp4", 9)
    whole = load_video(path)
    assert whole.shape == (9, 48, 64, 3)
    for n in (1, 3, 5, 12):  # 12 > 9: indices repeat, as the task's own sampling does
        assert np.array_equal(load_video(path, num_frames=n), whole[sample_frame_indices(9, n)])


def test_v2t_from_a_file_equals_v2t_from_its_frames(tiny_omni, runtime_cache, tmp_path):
    import dynin_rt

    model = dynin_rt.load(tiny_omni, backend="cpu")
    path = _video(tmp_path / "v.mp4", 9)
    kw = dict(max_new_tokens=8, steps=4, block_length=8, resolution=32, frames=3, progress=False)
    assert np.array_equal(model.generate("what?", video=path, **kw).tokens,
                          model.generate("what?", video=load_video(path), **kw).tokens)


def test_oversize_images_are_refused_before_decoding(tmp_path):
    with pytest.raises(ValueError) as e:
        load_image(_png_header_only(tmp_path / "bomb.png", 9000, 9000))  # 243 MB of pixels if decoded
    _one_line(e, "9000x9000", "over the limit of 64 Mpx")
    with pytest.raises(ValueError) as e:
        load_image(np.zeros((20, 20, 3), np.uint8), MediaLimits(image_pixels=399))
    _one_line(e, "20x20", "over the limit")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(101 * 2**20)  # sparse: no disk used
    with pytest.raises(ValueError) as e:
        load_image(big)
    _one_line(e, "101 MiB", "over the limit of 100 MiB")


def test_oversize_videos_are_refused_before_decoding(tmp_path):
    with pytest.raises(ValueError) as e:
        load_video(_video(tmp_path / "long.mp4", 4, rate=Fraction(1, 200)))  # 4 frames, 800 s
    _one_line(e, "lasts 800 s", "over the limit of 600 s")
    with pytest.raises(ValueError) as e:
        load_video(_video(tmp_path / "wide.mp4", 1, w=4800, h=4000))
    _one_line(e, "4800x4000", "over the limit of 9.44 Mpx")
    with pytest.raises(ValueError) as e:
        load_video(_video(tmp_path / "v.mp4", 9), limits=MediaLimits(video_frames=8))
    _one_line(e, "9 frames", "over the limit of 8")
    small = MediaLimits(video_decoded_bytes=4 * 64 * 48 * 3)  # room for 4 frames
    assert load_video(tmp_path / "v.mp4", num_frames=4, limits=small).shape == (4, 48, 64, 3)
    with pytest.raises(ValueError) as e:
        load_video(tmp_path / "v.mp4", limits=small)  # all 9
    _one_line(e, "its 9 frames would take", "pass fewer frames")
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as f:
        f.truncate(3 * 2**30)  # sparse
    with pytest.raises(ValueError) as e:
        load_video(huge)
    _one_line(e, "3072 MiB", "over the limit of 2048 MiB")
    with pytest.raises(ValueError) as e:
        load_video(np.zeros((1, 2, 3, 3), np.uint8), limits=MediaLimits(video_pixels=5))
    _one_line(e, "3x2", "over the limit")


def test_overlong_audio_is_refused_before_reading(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, np.zeros(601 * 4000, np.int16), 4000, subtype="PCM_16")
    with pytest.raises(ValueError) as e:
        load_audio(path)
    _one_line(e, "lasts 601 s", "over the limit of 600 s")
    with pytest.raises(ValueError) as e:
        load_audio(np.zeros(601 * 8000, np.float32), sample_rate=8000)
    _one_line(e, "lasts 601 s")
    assert load_audio(np.zeros(600 * 100, np.float32), sample_rate=100)[1] == 100  # at the limit: accepted


def test_the_cli_reports_oversize_media_in_one_line(tiny_omni, tmp_path, capsys):
    bomb = _png_header_only(tmp_path / "bomb.png", 9000, 9000)
    assert main(["generate", tiny_omni, "x", "--image", bomb, "--out", str(tmp_path / "a.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynin-rt: error: the image is 9000x9000") and err.count("\n") == 1


def test_limits_are_documented():
    import os

    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md")).read()
    section = readme[readme.index("Media limits"):]
    for field in media.LIMITS.__dataclass_fields__:
        assert f"`{field}`" in section[:3000], field
