"""What every task shares: the backbone adapter (C++ runtime or PyTorch reference behind one set of
methods), the Result type and the timing of phases. What differs per task is in registry.py."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..noise import CounterNoise

TEXT_SUFFIXES = ("", ".txt", ".md")
SPEECH_SUFFIXES = (".wav", ".flac", ".ogg")


def _image_suffixes() -> tuple[str, ...]:
    from PIL import Image

    return tuple(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)


def output_kind(file_name: str) -> str:
    """"text", "image" or "speech": what a result saved under this name holds (by its suffix)."""
    ext = os.path.splitext(file_name)[1].lower()
    if ext in TEXT_SUFFIXES:
        return "text"
    return "speech" if ext in SPEECH_SUFFIXES else "image"


def check_save_path(path: str | os.PathLike, kind: str) -> str:
    """The path, if :meth:`Result.save` can write a ``kind`` result there; else a one-line error
    (a suffix that does not fit, a folder that does not exist or cannot be written), so that callers
    can check before the generation rather than after it."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    allowed = {"text": TEXT_SUFFIXES, "speech": SPEECH_SUFFIXES}.get(kind) or _image_suffixes()
    if ext not in allowed:
        shown = {"text": ".txt or .md", "speech": ".wav, .flac or .ogg"}.get(kind, ".png, .jpg, .webp, ...")
        got = repr(ext) if ext else "a name without suffix"
        raise ValueError(f"{'an' if kind == 'image' else 'a'} {kind} result is saved as {shown}, not {got} ({path})")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot save to {path}: the folder {folder} is not writable")
    return path


@dataclass
class Result:
    """The output of one generate call (or, when streaming, one partial step of it).

    text: generated text (text tasks). image: PIL image (image tasks). audio: float32 samples at
    sample_rate (text to speech). tokens: the generated ids (text), codes (image) or units (speech).
    stats: forward passes, steps, tokens committed per step, seconds per phase, tokens/s.
    partial: True for the intermediate results of a stream; delta: the new text or audio of it.
    """

    task: str
    text: str | None = None
    image: object | None = None
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    tokens: np.ndarray | None = None
    stats: dict = field(default_factory=dict)
    partial: bool = False
    delta: object | None = None

    def save(self, path: str | os.PathLike) -> str:
        """Write the result: .txt for text, an image format (.png, .jpg, ...) for images, .wav / .flac
        / .ogg for speech, into an existing folder (see :func:`check_save_path`). Returns the path."""
        if self.text is not None:
            with open(check_save_path(path, "text"), "w", encoding="utf-8") as f:
                f.write(self.text)
        elif self.image is not None:
            self.image.save(check_save_path(path, "image"))
        elif self.audio is not None:
            import soundfile

            soundfile.write(check_save_path(path, "speech"), self.audio, self.sample_rate)
        else:
            raise ValueError("this result holds nothing to save")
        return os.fspath(path)


class Phases:
    """Seconds spent per phase of a task (encode media, generate, decode media)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def make_stats(phases: Phases, sampler: dict | None, generated: int) -> dict:
    stats = dict(sampler or {})
    stats["seconds"] = {k: round(v, 4) for k, v in phases.seconds.items()}
    gen = phases.seconds.get("generate", 0.0)
    stats["generated_tokens"] = int(generated)
    stats["tokens_per_s"] = round(generated / gen, 2) if gen > 0 else None
    return stats


class Denoiser:
    """The three denoising loops behind one interface, on the C++ runtime (a dynin_rt.Model) or on the
    PyTorch reference (a dynin_rt.reference.DyninOmni, fed CounterNoise(seed) so that both agree token
    for token in exact mode). Options travel as the runtime's option structs (``runtime.text_params``,
    ``image_params``, ``speech_params``)."""

    def __init__(self, model):
        from ..reference import DyninOmni

        self.model = model
        self.is_reference = isinstance(model, DyninOmni)
        self.tokenizer = model.tokenizer
        self.layout = model.layout
        self.max_len = model.config.max_sequence_length

    def stats(self) -> dict | None:
        if self.is_reference:
            return None
        s = self.model.last_stats
        return s.to_dict() if s else None

    def _exact_only(self, params) -> None:
        if params.select != "topk" or params.cache != "none":
            raise ValueError("the PyTorch reference runs mode='exact' only")

    def text(self, prompt: np.ndarray, params, on_block=None, cancel=None) -> np.ndarray:
        """prompt [1, P] -> ids [1, P + gen_length]"""
        if not self.is_reference:
            return self.model.generate_text(prompt, params, on_block=on_block, cancel=cancel)
        import torch

        self._exact_only(params)
        return self.model.generate_text(
            torch.as_tensor(prompt), gen_length=params.gen_length, steps=params.steps, block_length=params.block_length,
            temperature=params.temperature, cfg_scale=params.cfg_scale,
            remasking="random" if params.random_remasking else "low_confidence", noise=CounterNoise(params.seed),
            on_block=on_block).numpy()

    def image(self, canvas, uncond, params, cancel=None) -> np.ndarray:
        """canvas (and its unconditional twin, or None) -> codes [1, N]"""
        un_ids, un_mask = (None, None) if uncond is None else (uncond.input_ids, uncond.attention_mask)
        if not self.is_reference:
            return self.model.generate_image(canvas.input_ids, canvas.attention_mask, un_ids, un_mask, params, cancel=cancel)
        return self.model.generate_image(
            canvas.input_ids, canvas.attention_mask, uncond_input_ids=un_ids, uncond_attention_mask=un_mask,
            seq_len=params.n_tokens, timesteps=len(params.schedule), guidance_scale=params.guidance_scale,
            temperature=params.temperature, resolution=params.resolution, noise=CounterNoise(params.seed)).numpy()

    def speech(self, canvas, params, on_block=None, cancel=None) -> np.ndarray:
        """canvas -> the first row's speech units [n]"""
        if not self.is_reference:
            return self.model.generate_speech(canvas.input_ids, canvas.attention_mask, params, on_block=on_block,
                                              cancel=cancel)[0]
        self._exact_only(params)
        return self.model.generate_speech(
            canvas.input_ids, canvas.attention_mask, max_new_tokens=None if params.max_new_tokens < 0 else params.max_new_tokens,
            steps=params.steps, block_length=params.block_length, temperature=params.temperature,
            cfg_scale=params.cfg_scale, noise=CounterNoise(params.seed), on_block=on_block)[0].numpy()
