"""dynin_rt.generate: one call per task, media in and media out.

The task comes from the inputs and ``output=``: text with an image -> image understanding, with a
video -> video understanding, with audio -> speech recognition, alone -> chat; ``output="image"``
draws (or, with an image, edits); ``output="speech"`` speaks. Options default to the official
values of each task (model-spec §8).
"""
from __future__ import annotations

import queue
import sys
import threading
from typing import Iterator

import numpy as np

from . import media
from .errors import Cancelled
from .tasks import image_out, speech_out, text_out
from .tasks.common import DEFAULTS, TASK_NAMES, Denoiser, Phases, Result
from .tokens import SOA_ID

OUTPUTS = ("text", "image", "speech")
MODES = ("exact", "fast")
VOICE_GENDERS = ("female", "male")
VOICE_EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")


def select_task(prompt, image, video, audio, output) -> str:
    """The task implied by the inputs; impossible combinations are one-line errors naming the fix."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
    given = [name for name, v in (("image", image), ("video", video), ("audio", audio)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass one of image=, video=, audio=, not {' and '.join(given)}")
    if output == "text":
        if given == ["image"]:
            return "i2t"
        if given == ["video"]:
            return "v2t"
        if given == ["audio"]:
            return "s2t"
        if not prompt:
            raise ValueError("a text prompt is needed (or pass image=, video= or audio=)")
        return "t2t"
    if given and given != ["image"]:
        raise ValueError(f"output={output!r} takes {'an image to edit' if output == 'image' else 'text only'}, not {given[0]}=")
    if not prompt:
        raise ValueError(f"output={output!r} needs a text prompt")
    if output == "image":
        return "i2i" if given else "t2i"
    if given:
        raise ValueError("output='speech' speaks a text prompt; drop image=")
    return "t2s"


def voice_style(voice: str | None) -> str:
    """'female-neutral' (gender-emotion[-speed[-pitch]]) or a full EMOVA style name -> the style name."""
    if voice is None:
        voice = "female-neutral"
    if voice.startswith("gender-"):
        return voice
    parts = voice.split("-")
    if not 2 <= len(parts) <= 4 or parts[0] not in VOICE_GENDERS or parts[1] not in VOICE_EMOTIONS:
        raise ValueError(
            f"unknown voice {voice!r}: use gender-emotion, gender in {VOICE_GENDERS}, emotion in {VOICE_EMOTIONS} "
            "(e.g. 'female-neutral', 'male-happy-fast-high') or a full style name"
        )
    speed = parts[2] if len(parts) > 2 else "normal"
    pitch = parts[3] if len(parts) > 3 else "normal"
    if speed not in ("fast", "normal", "slow") or pitch not in ("high", "low", "normal"):
        raise ValueError(f"unknown voice {voice!r}: speed is fast/normal/slow and pitch high/low/normal")
    return f"gender-{parts[0]}_emotion-{parts[1]}_speed-{speed}_pitch-{pitch}"


def _options(task: str, given: dict) -> dict:
    opts = dict(DEFAULTS[task])
    for key, value in given.items():
        if value is None:
            continue
        if key not in opts and key not in ("seed", "mode", "threshold", "think", "voice"):
            raise ValueError(f"{key}= does not apply to {TASK_NAMES[task]}")
        opts[key] = value
    for key in ("steps", "block_length", "max_new_tokens", "resolution", "frames"):
        if key in opts and (isinstance(opts[key], bool) or not isinstance(opts[key], (int, np.integer)) or opts[key] <= 0):
            raise ValueError(f"{key} must be a positive integer, got {opts[key]!r}")
    for key in ("temperature", "cfg_scale"):
        if key in opts and (not isinstance(opts[key], (int, float)) or not 0 <= opts[key] < float("inf")):
            raise ValueError(f"{key} must be a finite number >= 0, got {opts[key]!r}")
    if "resolution" in opts and opts["resolution"] % image_out.DOWNSAMPLE:
        raise ValueError(f"resolution must be a multiple of {image_out.DOWNSAMPLE}, got {opts['resolution']}")
    opts.setdefault("seed", 0)
    opts.setdefault("mode", "exact")
    opts.setdefault("threshold", None)
    if opts["mode"] not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {opts['mode']!r}")
    if task in ("t2i", "i2i") and opts["mode"] != "exact":
        raise ValueError("image generation has no fast mode (MaskGIT recomputes every position); use mode='exact'")
    if opts["threshold"] is not None and opts["mode"] != "fast":
        raise ValueError("threshold= applies to mode='fast'")
    return opts


def _tokenizer(model, kind: str, given):
    """The image / speech tokenizer for a task: given (object or directory) or the model's own."""
    from .tokenizers import EmovaSpeech, MagvitV2

    cls = MagvitV2 if kind == "image" else EmovaSpeech
    if isinstance(given, cls):
        return given
    if given is not None:
        return cls.from_pretrained(given, backend="torch")
    getter = getattr(model, f"{kind}_tokenizer", None)
    if getter is None:
        raise ValueError(f"this task needs the {kind} tokenizer: pass {kind}_tokenizer= (an object or its directory)")
    return getter


def _run(task, backbone, prompt, opts, media_in, on_block) -> Result:
    phases = Phases()
    if task in ("t2i", "i2i"):
        return image_out.run(task, backbone, prompt, opts, media_in, phases)
    if task == "t2s":
        return speech_out.run(backbone, prompt, opts, phases, on_block)
    canvas = text_out.build_canvas(task, backbone, prompt, opts, media_in, phases)
    return text_out.run(task, backbone, canvas, opts, phases, on_block)


def generate(
    model,
    prompt: str | None = None,
    *,
    image=None,
    video=None,
    audio=None,
    sample_rate: int | None = None,
    output: str = "text",
    think: bool | None = None,
    steps: int | None = None,
    block_length: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    cfg_scale: float | None = None,
    resolution: int | None = None,
    frames: int | None = None,
    seed: int = 0,
    mode: str = "exact",
    threshold: float | None = None,
    voice: str | None = None,
    stream: bool = False,
    progress: bool | None = None,
    image_tokenizer=None,
    speech_tokenizer=None,
    cancel=None,
) -> Result | Iterator[Result]:
    """Run one Dynin-Omni task end to end.

    Parameters
    ----------
    model : dynin_rt.Model or dynin_rt.reference.DyninOmni
        The C++ runtime (``dynin_rt.load``) or, when asked for, the PyTorch reference.
    prompt : str
        The user text: the question, instruction, image description, edit or words to speak.
    image, video, audio : optional
        Image: path, PIL image or uint8 [H, W, 3]. Video: path or uint8 frames [T, H, W, 3].
        Audio: path, or samples [S] (or [S, C]) with ``sample_rate``.
    output : "text" | "image" | "speech"
    think : bool, optional
        Chat only: append the /think or /no_think switch.
    steps, block_length, max_new_tokens, temperature, cfg_scale, resolution, frames
        Sampler options; None keeps the official default of the task (dynin_rt.tasks.common.DEFAULTS).
    seed : int
        All randomness derives from it (reference and runtime agree for the same seed).
    mode : "exact" | "fast"
        Fast = KV reuse + threshold decoding (approximate; text and speech tasks).
    voice : str
        Speech style, e.g. "female-neutral" or "male-happy-fast-high".
    stream : bool
        Yield partial Results per finished block (text so far, speech chunks), then the final Result,
        which equals the non-streamed one.
    progress : bool, optional
        A progress bar for work over about a second (default: when stderr is a terminal).
    image_tokenizer, speech_tokenizer : optional
        Tokenizer objects or directories; default the ones found with the model.
    cancel : dynin_rt.CancelToken, optional
        Another thread's ``cancel.cancel()`` stops the generation at its next step (it raises
        ``dynin_rt.errors.Cancelled``). Ctrl-C stops it at the next step too, streaming or not.
    """
    task = select_task(prompt, image, video, audio, output)
    opts = _options(task, dict(steps=steps, block_length=block_length, max_new_tokens=max_new_tokens,
                               temperature=temperature, cfg_scale=cfg_scale, resolution=resolution, frames=frames,
                               seed=seed, mode=mode, threshold=threshold, think=think, voice=voice))
    if task == "t2s":
        opts["voice"] = voice_style(voice)
    elif voice is not None:
        raise ValueError("voice= applies to output='speech'")
    if think is not None and task != "t2t":
        raise ValueError("think= applies to text chat")
    if sample_rate is not None and audio is None:
        raise ValueError("sample_rate= goes with audio=")
    if task in ("i2t", "v2t", "t2i", "i2i"):
        opts["image_tokenizer"] = _tokenizer(model, "image", image_tokenizer)
    if task in ("s2t", "t2s"):
        opts["speech_tokenizer"] = _tokenizer(model, "speech", speech_tokenizer)
    media_in = None
    if image is not None:
        media_in = media.load_image(image)
    elif video is not None:
        media_in = media.load_video(video)
    elif audio is not None:
        media_in = media.load_audio(audio, sample_rate)
    backbone = Denoiser(model)
    opts["cancel"] = cancel
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if stream:
        return _stream(task, backbone, prompt, opts, media_in, show)
    bar = _bar(task, opts, show)
    try:
        return _run(task, backbone, prompt, opts, media_in, (lambda b, c: bar.update(1)) if bar else None)
    finally:
        if bar:
            bar.close()


def _bar(task: str, opts: dict, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    blocks = max(1, -(-opts.get("max_new_tokens", 1) // opts.get("block_length", opts.get("max_new_tokens", 1))))
    return tqdm(total=blocks, desc=TASK_NAMES[task], unit="block", delay=1.0, leave=False)


def _stream(task, backbone, prompt, opts, media_in, show) -> Iterator[Result]:
    """Generation runs in a worker thread; its per-block callback feeds this generator. When the
    consumer stops early (closes the generator, breaks out, Ctrl-C, an exception) the worker is
    cancelled at its next step and joined before the generator returns; an error in the worker is
    raised in the consumer."""
    from . import _native

    events: queue.Queue = queue.Queue()
    bar = _bar(task, opts, show)
    own = _native._C.CancelToken()
    user = opts["cancel"]
    opts = dict(opts, cancel=own)

    def on_block(block, canvas):
        if own.cancelled:  # the reference has no per-step check: stop it at the block boundary
            raise Cancelled("generation cancelled")
        events.put(("block", block, canvas))

    def worker():
        try:
            events.put(("done", _run(task, backbone, prompt, opts, media_in, on_block)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            events.put(("error", exc))

    thread = threading.Thread(target=worker, name="dynin_rt-generate", daemon=True)
    thread.start()

    def blocks():
        while True:
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                if user is not None and user.cancelled:
                    own.cancel()
                continue
            if event[0] == "block":
                if bar:
                    bar.update(1)
                yield event[1], event[2]
            elif event[0] == "error":
                raise event[1]
            else:
                blocks.final = event[1]
                return

    try:
        if task == "t2s":
            yield from _stream_speech(backbone, opts, blocks)
        elif task in ("t2t", "i2t", "v2t", "s2t"):
            yield from _stream_text(task, backbone, opts, blocks)
        else:
            for _ in blocks():
                pass
        yield blocks.final
    finally:
        own.cancel()  # a no-op once the worker has finished
        thread.join()
        if bar:
            bar.close()


def _stream_text(task, backbone, opts, blocks) -> Iterator[Result]:
    said = ""
    for block, canvas in blocks():
        row = canvas[0]
        start = row.size - opts["max_new_tokens"]  # the generated region follows the prompt
        text = text_out.decode_text(backbone, row[start : start + (block + 1) * opts["block_length"]], task)
        # decoding more tokens can rewrite the tail of earlier text (a split character): then resend it all
        delta = text[len(said):] if text.startswith(said) else text
        said = text
        yield Result(task=task, text=text, delta=delta, partial=True)


def _stream_speech(backbone, opts, blocks) -> Iterator[Result]:
    speech = opts["speech_tokenizer"]

    def unit_blocks():
        sent, start = 0, None
        for _, canvas in blocks():
            row = canvas[0]
            if start is None:
                start = int(np.flatnonzero(row == SOA_ID)[-1]) + 1  # the speech region follows <|soa|>
            units = speech_out.units_in(row, start, backbone.layout)
            if units.size > sent:
                yield units[sent:]
                sent = units.size

    for chunk in speech.decode_stream(unit_blocks(), style=opts["voice"], seed=opts["seed"]):
        yield Result(task="t2s", audio=chunk, delta=chunk, sample_rate=speech.sample_rate, partial=True)
