"""The task registry: one :class:`TaskSpec` per task, registered by the task modules.

Everything the package knows about a task lives in its spec: how ``generate()`` recognises it
(``output`` and ``media``), its official defaults and extra options, the tokenizers it needs, whether
it has a fast mode, how it streams, what the benchmarks and the demo run and where the demo saves it,
and the function that runs it. ``api.py``, ``bench.py``, ``demo.py`` and ``cli.py`` read these specs
and name no task themselves.

Adding a task: write its run function (and, to stream, its stream function) in a task module, call
:func:`register` there with its spec, and list a new module in ``TASK_MODULES`` below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterator, Mapping

# The modules whose import registers the built-in tasks, in the order tasks are listed.
TASK_MODULES = ("text_out", "image_out", "speech_out")
MEDIA = ("image", "video", "audio")
SAMPLERS = ("llada", "maskgit", "t2s")
TOKENIZERS = ("image", "speech")
MODES = ("exact", "fast")


@dataclass(frozen=True)
class TaskSpec:
    """One task, as every part of the package sees it.

    name, title: short id ("t2t") and human name ("text chat").
    sampler: "llada" (block sampler), "maskgit" (image sampler) or "t2s" (speech sampler).
    output: the ``output=`` value of ``generate()`` that selects it ("text", "image", "speech", ...).
    media: the input it reads besides the prompt: None, "image", "video" or "audio".
    prompt_required: False when the prompt has an official default (a question, an instruction).
    tokenizers: the media tokenizers it needs ("image": MAGVIT-v2, "speech": EMOVA).
    defaults: the official option values (docs/samplers.md, "Official defaults per task"); their keys are
        the sampler options it accepts.
    options: options it accepts beyond ``defaults`` and the ones every task takes (seed, mode,
        threshold), e.g. ``think`` for chat, ``voice`` for speech.
    modes: "exact" and, where the sampler has KV reuse and threshold decoding, "fast".
    run: ``run(job) -> Result`` (``job`` is a :class:`Job`).
    stream: ``stream(job, blocks) -> Iterator[Result]`` turning finished blocks into partial results
        (text so far, speech chunks), optionally ending with the final result when it is made of what
        was streamed (speech); None when the task has none (images).
    bench: the quick settings of ``dynin-rt bench`` and the demo (small enough for a CPU reference).
    bench_prompt: the prompt the benchmarks and the demo use (None: the task's default).
    output_file: the file the demo writes its result to.
    parts: the pieces of ``run`` that a batch of requests shares (dynin_rt.batch): the task module's
        object with ``canvas`` and ``decode`` (text) or ``canvases`` and ``uncond_prefix`` (images).
    """

    name: str
    title: str
    sampler: str
    output: str
    media: str | None
    prompt_required: bool
    tokenizers: tuple[str, ...]
    defaults: Mapping[str, object]
    run: Callable[["Job"], object]
    output_file: str
    options: tuple[str, ...] = ()
    modes: tuple[str, ...] = MODES
    stream: Callable[["Job", Callable[[], Iterator]], Iterator] | None = None
    bench: Mapping[str, object] = field(default_factory=dict)
    bench_prompt: str | None = None
    parts: object = None

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"task {self.name!r}: sampler must be one of {SAMPLERS}, not {self.sampler!r}")
        if self.media is not None and self.media not in MEDIA:
            raise ValueError(f"task {self.name!r}: media must be None or one of {MEDIA}, not {self.media!r}")
        if not set(self.tokenizers) <= set(TOKENIZERS) or not set(self.modes) <= set(MODES) or "exact" not in self.modes:
            raise ValueError(f"task {self.name!r}: tokenizers within {TOKENIZERS}, modes within {MODES} with 'exact'")
        # read-only views, so no caller can change the official values of every later call
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "bench", MappingProxyType(dict(self.bench)))

    def bench_settings(self, official: bool = False) -> dict:
        """The ``generate()`` keywords of a benchmark run: the prompt and output, plus the quick
        settings unless ``official`` (then the task's official defaults apply)."""
        settings = {"output": self.output}
        if self.bench_prompt is not None:
            settings["prompt"] = self.bench_prompt
        return settings if official else dict(settings, **self.bench)


@dataclass
class Job:
    """One ``generate()`` call as a task's run and stream functions see it.

    denoiser: the sampler loops on the runtime or the reference (tasks.common.Denoiser). opts: the
    checked options (defaults filled in, tokenizers under ``image_tokenizer`` / ``speech_tokenizer``,
    ``cancel``). media: the loaded input (image [H, W, 3], frames [T, H, W, 3], (samples, rate)) or
    None. phases: the per-phase timer. on_block(block, canvas): called after each finished block.
    streamed: the task's stream function renders the output as it goes (``generate(stream=True)``),
    so run leaves out what it would render again (the vocoder of t2s).
    """

    spec: TaskSpec
    denoiser: object
    prompt: str | None
    opts: dict
    media: object = None
    phases: object = None
    on_block: Callable | None = None
    streamed: bool = False


_TASKS: dict[str, TaskSpec] = {}


def load_builtin() -> None:
    """Import the built-in task modules (the package's ``__init__`` does, before any other task
    module can be imported, so the order of tasks is always that of ``TASK_MODULES``)."""
    for module in TASK_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task. Its name must be new, and no other task may share its (output, media) pair,
    since that pair is how ``generate()`` picks the task."""
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    for other in _TASKS.values():
        if (other.output, other.media) == (spec.output, spec.media):
            raise ValueError(f"task {spec.name!r} has the output and media of {other.name!r}")
    _TASKS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a task (tests register toy tasks and remove them again)."""
    _TASKS.pop(name, None)


def tasks() -> tuple[TaskSpec, ...]:
    """Every registered task, built-in ones first, in registration order."""
    return tuple(_TASKS.values())


def names() -> tuple[str, ...]:
    return tuple(spec.name for spec in tasks())


def outputs() -> tuple[str, ...]:
    """The ``output=`` values some task answers, in task order."""
    return tuple(dict.fromkeys(spec.output for spec in tasks()))


def get(name: str) -> TaskSpec:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}: the tasks are {', '.join(names())}")
    return _TASKS[name]


def parse_list(text: str) -> tuple[TaskSpec, ...]:
    """"all" or a comma list of task names (the CLI's and the benchmarks' ``--task``)."""
    if text == "all":
        return tasks()
    return tuple(get(name.strip()) for name in text.split(",") if name.strip())
