"""Architecture of the EMOVA speech tokenizer and the style table, read from a checkpoint's config.json.

The released ``emova_speech_tokenizer_hf`` config.json only names the unit types and the style table
(``u2s_style2idx``); the network sizes are fixed by the unit types. This file holds those sizes as
defaults (the official ones) and lets a test checkpoint shrink them through one extra config field,
``"dynin_rt_arch": {"u2s": {...}, "s2u": {...}}``, which the official loader would ignore.

Style names have the form ``gender-{g}_emotion-{e}_speed-{s}_pitch-{p}``; the released table lists all
126 combinations in sorted order, so row = ((g * 7 + e) * 3 + s) * 3 + p with each factor's values
sorted alphabetically (female/neutral/normal/normal is row 41).
"""
from __future__ import annotations

import difflib
import itertools
import json
import os
from dataclasses import dataclass, field, fields, replace

from ...errors import CheckpointError

GENDERS = ("female", "male")
EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
SPEEDS = ("fast", "normal", "slow")
PITCHES = ("high", "low", "normal")
DEFAULT_STYLE = "gender-female_emotion-neutral_speed-normal_pitch-normal"

S2U_UNIT_TYPE = "40ms_multilingual_8888"
U2S_UNIT_TYPE = "40ms_multilingual_8888_xujing_cosyvoice_FT"
ARCH_FIELD = "dynin_rt_arch"


def style_name(gender: str, emotion: str, speed: str, pitch: str) -> str:
    """The condition string of one style."""
    return f"gender-{gender}_emotion-{emotion}_speed-{speed}_pitch-{pitch}"


def style_index(gender: str, emotion: str, speed: str, pitch: str) -> int:
    """Row of a style in the released table: ((g * 7 + e) * 3 + s) * 3 + p."""
    g, e = GENDERS.index(gender), EMOTIONS.index(emotion)
    s, p = SPEEDS.index(speed), PITCHES.index(pitch)
    return ((g * len(EMOTIONS) + e) * len(SPEEDS) + s) * len(PITCHES) + p


def default_style_table() -> dict[str, int]:
    """All 126 style names mapped to their rows, in the released order."""
    return {style_name(*combo): style_index(*combo)
            for combo in itertools.product(GENDERS, EMOTIONS, SPEEDS, PITCHES)}


def unknown_style_error(name, known) -> ValueError:
    """A ValueError for an unknown style that lists the closest known names."""
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.5)
    hint = f"; closest: {close}" if close else ""
    return ValueError(
        f"unknown style {name!r}{hint}. Styles are named "
        f"'gender-{{{'|'.join(GENDERS)}}}_emotion-{{{'|'.join(EMOTIONS)}}}_speed-{{{'|'.join(SPEEDS)}}}"
        f"_pitch-{{{'|'.join(PITCHES)}}}' (see EmovaSpeech.styles)"
    )


@dataclass(frozen=True)
class U2SArch:
    """Units-to-speech (VITS "UVITS") sizes; defaults are the released model's."""

    n_vocab: int = 4274            # symbols_with_4096: 178 text symbols + 4096 units
    unit_offset: int = 178         # unit u is symbol 178 + u
    n_units: int = 4096
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    window_size: int = 4
    gin_channels: int = 256
    sdp_kernel_size: int = 3
    sdp_n_flows: int = 4
    sdp_dds_layers: int = 3
    spline_bins: int = 10
    spline_tail_bound: float = 5.0
    flow_n_flows: int = 4
    flow_kernel_size: int = 5
    flow_n_layers: int = 4
    upsample_rates: tuple = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilations: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sample_rate: int = 22050
    # Training-only parts that the checkpoint still carries (their shapes, for the test writer).
    spec_channels: int = 513
    n_speakers: int = 1344
    enc_q_layers: int = 16

    @property
    def hop_length(self) -> int:
        """Output samples per frame (the product of the upsample rates)."""
        n = 1
        for r in self.upsample_rates:
            n *= r
        return n


@dataclass(frozen=True)
class S2UArch:
    """Speech-to-units (SPIRAL + FSQ) sizes; defaults are the released model's."""

    sample_rate: int = 16000
    n_mels: int = 128
    n_fft: int = 512
    win_length: int = 320
    hop_length: int = 160
    # (out_channels, kernel, stride) of the conv layers before transformer 1 and before transformer 2
    convs1: tuple = ((384, 5, 2), (512, 5, 2), (512, 1, 1))
    convs2: tuple = ((1536, 5, 1), (768, 1, 1))
    layers1: int = 2
    heads1: int = 8
    ffn1: int = 2048
    layers2: int = 10
    heads2: int = 12
    ffn2: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    levels: tuple = (8, 8, 8, 8)
    # CTC head (training only; its shapes are needed to write a test checkpoint)
    ctc_layers: int = 4
    ctc_filters: int = 512
    ctc_classes: int = 241

    @property
    def dim1(self) -> int:
        """Width of transformer 1 (the last conv before it)."""
        return self.convs1[-1][0]

    @property
    def dim2(self) -> int:
        """Width of transformer 2 and of the encoder output."""
        return self.convs2[-1][0]

    @property
    def codebook_size(self) -> int:
        n = 1
        for level in self.levels:
            n *= level
        return n


def _tuplify(value):
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def _arch_from(cls, overrides: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise CheckpointError(f"{where}: unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}")
    return replace(cls(), **{k: _tuplify(v) for k, v in overrides.items()})


@dataclass(frozen=True)
class EmovaConfig:
    """What dynin_rt needs from an EMOVA speech tokenizer config.json.

    Attributes
    ----------
    u2s, s2u : U2SArch, S2UArch
    style2idx : dict of str to int
        Style name -> row of ``style_embedding.weight``.
    num_styles, style_dim : int
        Shape of ``style_embedding.weight``.
    """

    u2s: U2SArch = field(default_factory=U2SArch)
    s2u: S2UArch = field(default_factory=S2UArch)
    style2idx: dict = field(default_factory=default_style_table)
    num_styles: int = 126
    style_dim: int = 256

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config.json") -> "EmovaConfig":
        """Parse a config.json dict (the official fields plus the optional ``dynin_rt_arch``)."""
        model_type = raw.get("model_type", "emova_speech_tokenizer")
        if model_type != "emova_speech_tokenizer":
            raise CheckpointError(f"{where}: model_type is {model_type!r}, expected 'emova_speech_tokenizer'")
        for key, expected in (("s2u_unit_type", S2U_UNIT_TYPE), ("u2s_unit_type", U2S_UNIT_TYPE)):
            if raw.get(key, expected) != expected:
                raise CheckpointError(f"{where}: {key} is {raw[key]!r}; only {expected!r} is supported")
        arch = raw.get(ARCH_FIELD, {})
        u2s = _arch_from(U2SArch, arch.get("u2s", {}), where)
        s2u = _arch_from(S2UArch, arch.get("s2u", {}), where)
        style2idx = raw.get("u2s_style2idx") or default_style_table()
        num_styles = raw.get("u2s_num_styles") or len(style2idx)
        style_dim = raw.get("u2s_dim_styles") or u2s.gin_channels
        bad = {k: v for k, v in style2idx.items() if not (isinstance(v, int) and 0 <= v < num_styles)}
        if bad:
            raise CheckpointError(f"{where}: u2s_style2idx rows outside [0, {num_styles}): "
                                  f"{dict(list(bad.items())[:3])}")
        if style_dim != u2s.gin_channels:
            raise CheckpointError(f"{where}: u2s_dim_styles {style_dim} != gin_channels {u2s.gin_channels}")
        return cls(u2s=u2s, s2u=s2u, style2idx=dict(style2idx), num_styles=int(num_styles), style_dim=int(style_dim))

    @classmethod
    def from_dir(cls, path) -> "EmovaConfig":
        """Read ``<path>/config.json``."""
        cfg_path = os.path.join(os.fspath(path), "config.json")
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"no config.json in {path}; expected an emova_speech_tokenizer_hf directory")
        with open(cfg_path, encoding="utf-8") as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
        return cls.from_dict(raw, where=cfg_path)

    def style_row(self, name: str) -> int:
        """Row of the style table for ``name``; unknown names raise ValueError listing close matches."""
        if not isinstance(name, str) or name not in self.style2idx:
            raise unknown_style_error(name, self.style2idx)
        return self.style2idx[name]
