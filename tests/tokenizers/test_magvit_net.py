"""MAGVIT-v2 network semantics pinned by hand: LFQ bit order and token order, resampling, blocks, layout."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynin_rt.tokenizers.magvit.net import (
    AttnBlock,
    Downsample,
    GroupNorm32,
    LFQuantizer,
    MagvitConfig,
    MagvitModel,
    Upsample,
)


def _bits_by_hand(code):
    """+-1 per channel, channel c holding bit (12 - c) of code (MSB first), written as a plain loop."""
    return [1.0 if (code >> (12 - c)) & 1 else -1.0 for c in range(13)]


# ---------------------------------------------------------------------------------------------
# lookup-free quantizer
# ---------------------------------------------------------------------------------------------


def test_lfq_table_is_msb_first():
    q = LFQuantizer()
    assert q.embedding.shape == (8192, 13) and q.embedding.dtype == torch.float32
    assert q.power_vals.tolist() == [4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]
    assert q.embedding[0].tolist() == [-1.0] * 13
    assert q.embedding[1].tolist() == [-1.0] * 12 + [1.0]
    assert q.embedding[4096].tolist() == [1.0] + [-1.0] * 12
    assert q.embedding[5].tolist() == [-1.0] * 10 + [1.0, -1.0, 1.0]
    assert q.embedding[8191].tolist() == [1.0] * 13
    for code in (3, 1234, 4097, 8000):
        assert q.embedding[code].tolist() == _bits_by_hand(code)


def test_lfq_sign_rule_and_zero():
    q = LFQuantizer()
    z = torch.full((1, 13, 1, 3), -0.5)
    z[0, 0, 0, 0] = 2.0  # only the MSB set -> 4096
    z[0, 12, 0, 1] = 1e-7  # tiny positive LSB -> 1
    z[0, 11, 0, 1] = 0.0  # exactly zero counts as bit 0
    z[0, :, 0, 2] = 0.0  # all zero -> 0
    assert q.latent_to_codes(z).tolist() == [[4096, 1, 0]]


def test_lfq_tokens_are_row_major():
    q = LFQuantizer()
    h, w = 2, 3
    targets = [[101, 2002, 3003], [4004, 5005, 8191]]
    z = torch.empty(1, 13, h, w)
    for y in range(h):
        for x in range(w):
            z[0, :, y, x] = torch.tensor(_bits_by_hand(targets[y][x])) * 0.3
    # t = y * w + x
    assert q.latent_to_codes(z).tolist() == [[101, 2002, 3003, 4004, 5005, 8191]]
    latent = q.codes_to_latent(torch.tensor([[[101, 2002, 3003], [4004, 5005, 8191]]]))
    assert latent.shape == (1, 13, 2, 3)
    assert latent[0, :, 1, 0].tolist() == _bits_by_hand(4004)
    assert latent[0, :, 0, 2].tolist() == _bits_by_hand(3003)


def test_lfq_round_trip_all_codes():
    q = LFQuantizer()
    codes = torch.arange(8192).view(2, 64, 64)
    back = q.latent_to_codes(q.codes_to_latent(codes))
    assert torch.equal(back, torch.arange(8192).view(2, 4096))


# ---------------------------------------------------------------------------------------------
# resampling and blocks
# ---------------------------------------------------------------------------------------------


def _tap_conv(module_conv, ky, kx):
    """Make a 1-channel 3x3 conv copy the input pixel at kernel tap (ky, kx)."""
    with torch.no_grad():
        module_conv.weight.zero_()
        module_conv.weight[0, 0, ky, kx] = 1.0
        module_conv.bias.zero_()


def test_downsample_pads_right_and_bottom_only():
    d = Downsample(1)
    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4)  # x[i, j] = 4i + j + 1
    _tap_conv(d.conv, 0, 0)
    assert d(x)[0, 0].tolist() == [[1, 3], [9, 11]]  # x[2i, 2j]: no padding on the top/left
    _tap_conv(d.conv, 2, 2)
    # x[2i + 2, 2j + 2]; index 4 is the zero padding on the right/bottom
    assert d(x)[0, 0].tolist() == [[11, 0], [0, 0]]


def test_upsample_is_nearest_then_conv():
    u = Upsample(1)
    _tap_conv(u.conv, 1, 1)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert u(x)[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_attention_matches_the_formula():
    torch.manual_seed(0)
    c, h, w = 32, 2, 3
    blk = AttnBlock(c).eval()
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        out = blk(x)
        n = F.group_norm(x, 32, blk.norm.weight, blk.norm.bias, 1e-6)
        q, k, v = (F.conv2d(n, m.weight, m.bias).flatten(2).double().numpy() for m in (blk.q, blk.k, blk.v))
    ref = np.empty((2, c, h * w))
    for b in range(2):
        logits = q[b].T @ k[b] / np.sqrt(c)  # [query i, key j], scale C^-0.5
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)  # softmax over keys
        ref[b] = v[b] @ p.T  # out[:, i] = sum_j v[:, j] p[i, j]
    with torch.no_grad():
        expect = x + F.conv2d(torch.from_numpy(ref).float().view(2, c, h, w), blk.proj_out.weight, blk.proj_out.bias)
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)


def test_group_norm_settings_and_fp32_compute():
    model = MagvitModel(MagvitConfig(ch=32))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(isinstance(m, GroupNorm32) for m in norms)
    assert {(m.num_groups, m.eps) for m in norms} == {(32, 1e-6)}
    gn = GroupNorm32(32, 64, eps=1e-6)
    # Values that would overflow an fp16 variance (|x| ~ 300 -> x^2 ~ 9e4 > 65504).
    x = torch.randn(1, 64, 4, 4) * 300
    ref = F.group_norm(x, 32, eps=1e-6)
    y = gn.half()(x.half())
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------------------------
# architecture layout (official numbers: docs/tokenizers.md, "MAGVIT-v2")
# ---------------------------------------------------------------------------------------------


def test_official_layout_counts_and_keys():
    with torch.device("meta"):
        model = MagvitModel()
    sd = model.state_dict()
    assert len(sd) == 382
    count = lambda prefix: sum(v.numel() for k, v in sd.items() if k.startswith(prefix))  # noqa: E731
    assert count("encoder.") == 55_439_171
    assert count("decoder.") == 39_947_833
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["encoder.conv_in.weight"] == (128, 3, 3, 3)
    assert shapes["encoder.down.1.block.0.nin_shortcut.weight"] == (256, 128, 1, 1)
    assert shapes["encoder.down.3.block.0.nin_shortcut.weight"] == (512, 256, 1, 1)
    assert shapes["encoder.down.3.downsample.conv.weight"] == (512, 512, 3, 3)
    assert shapes["encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert shapes["encoder.conv_out.weight"] == (13, 512, 3, 3)
    assert shapes["encoder.quant_conv.weight"] == (13, 13, 1, 1)
    assert shapes["decoder.post_quant_conv.weight"] == (13, 13, 1, 1)
    assert shapes["decoder.conv_in.weight"] == (512, 13, 3, 3)
    assert shapes["decoder.up.4.upsample.conv.weight"] == (512, 512, 3, 3)
    assert shapes["decoder.up.3.block.0.nin_shortcut.weight"] == (256, 512, 1, 1)
    assert shapes["decoder.up.1.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert shapes["decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert shapes["quantize.embedding"] == (8192, 13) and shapes["quantize.power_vals"] == (13,)
    # Blocks per level: encoder (4, 3, 4, 3, 4), decoder (4, 4, 3, 4, 3); no resampling at the ends.
    for side, blocks in (("encoder.down", (4, 3, 4, 3, 4)), ("decoder.up", (4, 4, 3, 4, 3))):
        for level, n in enumerate(blocks):
            assert f"{side}.{level}.block.{n - 1}.conv1.weight" in sd
            assert f"{side}.{level}.block.{n}.conv1.weight" not in sd
    assert "encoder.down.4.downsample.conv.weight" not in sd
    assert "decoder.up.0.upsample.conv.weight" not in sd
    assert not any(".attn." in k for k in sd)  # no attention outside the mid blocks


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3)])
def test_shapes_scale_by_16(h, w):
    model = MagvitModel(MagvitConfig(ch=32)).eval()
    with torch.inference_mode():
        pixels = model.decode_codes(torch.zeros(1, h, w, dtype=torch.int64))
        assert pixels.shape == (1, 3, 16 * h, 16 * w)
        assert model.encode_codes(pixels).shape == (1, h * w)
