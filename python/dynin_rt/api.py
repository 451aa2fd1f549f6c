"""dynin_rt.generate: one call per task, media in and media out.

The task comes from the inputs and ``output=``: text with an image -> image understanding, with a
video -> video understanding, with audio -> speech recognition, alone -> chat; ``output="image"``
draws (or, with an image, edits); ``output="speech"`` speaks. Each task's spec in
``tasks/registry.py`` says which inputs select it, its official defaults (docs/samplers.md), its
options, tokenizers and stream; this file only reads the specs.
"""
from __future__ import annotations

import queue
import sys
import threading
from dataclasses import replace
from typing import Iterator

import numpy as np

from . import media
from .errors import Cancelled
from .tasks import image_out, registry
from .tasks.common import Denoiser, Phases, Result
from .tasks.registry import Job, TaskSpec

# Options every task takes, beside its defaults and its own extra options.
COMMON_OPTIONS = ("seed", "mode", "threshold")
VOICE_GENDERS = ("female", "male")
VOICE_EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")


def select_task(prompt, image, video, audio, output) -> str:
    """The task implied by the inputs (each task's ``output`` and ``media`` in the registry);
    impossible combinations are one-line errors naming the fix."""
    if output not in registry.outputs():
        raise ValueError(f"output must be one of {registry.outputs()}, not {output!r}")
    _check_prompt(prompt)
    given = [name for name, v in (("image", image), ("video", video), ("audio", audio)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass one of image=, video=, audio=, not {' and '.join(given)}")
    medium = given[0] if given else None
    candidates = [spec for spec in registry.tasks() if spec.output == output]
    spec = next((s for s in candidates if s.media == medium), None)
    if spec is None:
        takes = " or ".join("text" if s.media is None else f"{s.media}=" for s in candidates)
        raise ValueError(f"output={output!r} takes {takes}, not {medium}=" if medium else
                         f"output={output!r} needs {takes}")
    if spec.prompt_required and not prompt:
        media_tasks = [f"{s.media}=" for s in candidates if s.media is not None and not s.prompt_required]
        hint = f" (or pass {', '.join(media_tasks)})" if media_tasks and medium is None else ""
        raise ValueError(f"{spec.title} needs a text prompt{hint}")
    return spec.name


def _check_prompt(prompt) -> None:
    if prompt is None:
        return
    if isinstance(prompt, (bytes, bytearray)):
        raise ValueError("the prompt must be a str, not bytes: decode it first (prompt.decode('utf-8'))")
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be a str, not {type(prompt).__name__}")
    if prompt and not prompt.strip():
        raise ValueError("the prompt is only whitespace: give some text, or leave it out where the task has a default")


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


def _options(spec: TaskSpec, given: dict) -> dict:
    """The task's official defaults overridden by the options given (None: not given), checked."""
    opts = dict(spec.defaults)
    for key, value in given.items():
        if value is None:
            continue
        if key not in opts and key not in COMMON_OPTIONS and key not in spec.options:
            takers = [s.title for s in registry.tasks() if key in s.options]
            raise ValueError(f"{key}= applies to {' and '.join(takers)}" if takers else
                             f"{key}= does not apply to {spec.title}")
        opts[key] = value
    for key in ("steps", "block_length", "max_new_tokens", "resolution", "frames"):
        if key in opts and (isinstance(opts[key], bool) or not isinstance(opts[key], (int, np.integer)) or opts[key] <= 0):
            raise ValueError(f"{key} must be a positive integer, got {opts[key]!r}")
    for key in ("temperature", "cfg_scale"):
        if key in opts and (not isinstance(opts[key], (int, float)) or not 0 <= opts[key] < float("inf")):
            raise ValueError(f"{key} must be a finite number >= 0, got {opts[key]!r}")
    if spec.sampler == "llada":
        _check_blocks(opts)
    if "resolution" in opts and opts["resolution"] % image_out.DOWNSAMPLE:
        raise ValueError(f"resolution must be a multiple of {image_out.DOWNSAMPLE}, got {opts['resolution']}")
    opts.setdefault("seed", 0)
    opts.setdefault("mode", "exact")
    opts.setdefault("threshold", None)
    if opts["mode"] not in registry.MODES:
        raise ValueError(f"mode must be one of {registry.MODES}, not {opts['mode']!r}")
    if opts["mode"] not in spec.modes:
        raise ValueError(f"{spec.title} has no {opts['mode']} mode (its {spec.sampler} sampler has no KV reuse "
                         "or threshold decoding); use mode='exact'")
    if opts["threshold"] is not None and opts["mode"] != "fast":
        raise ValueError("threshold= applies to mode='fast'")
    if opts["threshold"] is not None and spec.sampler == "maskgit":
        raise ValueError("threshold= applies to the text and speech samplers; the image sampler's fast mode reuses "
                         "the prompt's K/V only")
    if "voice" in spec.options:
        opts["voice"] = voice_style(opts.get("voice"))
    return opts


def _check_blocks(opts: dict) -> None:
    """The block sampler's shape rules, in the names generate() takes."""
    new, block, steps = opts["max_new_tokens"], opts["block_length"], opts["steps"]
    if new % block:
        raise ValueError(f"max_new_tokens ({new}) must be a multiple of block_length ({block})")
    if steps % (new // block):
        raise ValueError(f"steps ({steps}) must be a multiple of the number of blocks, max_new_tokens / block_length "
                         f"= {new // block}")


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


def _load_media(spec: TaskSpec, image, video, audio, sample_rate, frames=None):
    """The input the task reads (its spec's ``media``), loaded; None for a text-only task. A video
    file gives only the ``frames`` the task keeps."""
    if spec.media == "image":
        return media.load_image(image)
    if spec.media == "video":
        return media.load_video(video, num_frames=frames)
    if spec.media == "audio":
        return media.load_audio(audio, sample_rate)
    return None


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
        Sampler options; None keeps the official default of the task (its ``TaskSpec.defaults`` in
        dynin_rt.tasks.registry).
    seed : int
        All randomness derives from it (reference and runtime agree for the same seed).
    mode : "exact" | "fast"
        Fast = KV reuse + threshold decoding (approximate; text and speech tasks).
    voice : str
        Speech style, e.g. "female-neutral" or "male-happy-fast-high".
    stream : bool
        Yield partial Results per finished block (text so far, speech chunks), then the final Result,
        with the non-streamed call's tokens. Speech is rendered once, incrementally: the final audio
        is the joined chunks, near but not equal to a non-streamed call's one-shot render (README).
    progress : bool, optional
        A progress bar for work over about a second (default: when stderr is a terminal).
    image_tokenizer, speech_tokenizer : optional
        Tokenizer objects or directories; default the ones found with the model.
    cancel : dynin_rt.CancelToken, optional
        Another thread's ``cancel.cancel()`` stops the generation at its next step (it raises
        ``dynin_rt.errors.Cancelled``). Ctrl-C stops it at the next step too, streaming or not.
    """
    spec = registry.get(select_task(prompt, image, video, audio, output))
    opts = _options(spec, dict(steps=steps, block_length=block_length, max_new_tokens=max_new_tokens,
                               temperature=temperature, cfg_scale=cfg_scale, resolution=resolution, frames=frames,
                               seed=seed, mode=mode, threshold=threshold, think=think, voice=voice))
    if sample_rate is not None and audio is None:
        raise ValueError("sample_rate= goes with audio=")
    given_tokenizers = {"image": image_tokenizer, "speech": speech_tokenizer}
    for kind in spec.tokenizers:
        opts[f"{kind}_tokenizer"] = _tokenizer(model, kind, given_tokenizers[kind])
    opts["cancel"] = cancel
    loaded = _load_media(spec, image, video, audio, sample_rate, opts.get("frames"))
    job = Job(spec, Denoiser(model), prompt, opts, loaded, Phases())
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if stream:
        return _stream(job, show)
    bar = _bar(job, show)
    if bar:
        job.on_block = lambda block, canvas: bar.update(1)
    try:
        return spec.run(job)
    finally:
        if bar:
            bar.close()


def _bar(job: Job, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    opts = job.opts
    blocks = max(1, -(-opts.get("max_new_tokens", 1) // opts.get("block_length", opts.get("max_new_tokens", 1))))
    return tqdm(total=blocks, desc=job.spec.title, unit="block", delay=1.0, leave=False)


def _stream(job: Job, show: bool) -> Iterator[Result]:
    """Generation runs in a worker thread; its per-block callback feeds this generator, and the
    task's stream function turns the blocks into partial results. When the consumer stops early
    (closes the generator, breaks out, Ctrl-C, an exception) the worker is cancelled at its next
    step and joined before the generator returns; an error in the worker is raised in the consumer."""
    from . import _native

    events: queue.Queue = queue.Queue()
    bar = _bar(job, show)
    own = _native._C.CancelToken()
    user = job.opts["cancel"]

    def on_block(block, canvas):
        if own.cancelled:  # the reference has no per-step check: stop it at the block boundary
            raise Cancelled("generation cancelled")
        events.put(("block", block, canvas))

    job = replace(job, opts=dict(job.opts, cancel=own), on_block=on_block, streamed=job.spec.stream is not None)

    def worker():
        try:
            events.put(("done", job.spec.run(job)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            events.put(("error", exc))

    thread = threading.Thread(target=worker, name="dynin_rt-generate", daemon=True)
    thread.start()

    def blocks():
        while True:
            # the user's token is read before every event too: a fast worker can queue blocks
            # faster than the consumer takes them, so the queue may never be empty again
            if user is not None and user.cancelled:
                own.cancel()
                raise Cancelled("generation cancelled")
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
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
        final = None
        if job.spec.stream is not None:
            for result in job.spec.stream(job, blocks):
                if not result.partial:  # the stream made the final result out of what it streamed
                    final = result
                    break
                yield result
        else:
            for _ in blocks():
                pass
        yield final if final is not None else blocks.final
    finally:
        own.cancel()  # a no-op once the worker has finished
        thread.join()
        if bar:
            bar.close()
