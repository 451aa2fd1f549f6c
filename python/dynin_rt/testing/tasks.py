"""Synthetic tasks with exact answers, in the official token layout, for the trained test model.

Each task builds the canvas the runtime sees (the real chat template with the test tokenizer of
:mod:`dynin_rt.testing.backbone`, or the speech templates of :mod:`dynin_rt.prompts`) and the answer
region the model must fill. The mix spans what parallel decoding finds easy and hard:

* ``map`` - each answer position depends on one input digit only (independent positions; the
  prompt reads "letters:<digits>");
* ``count``, ``max`` - running count / running maximum (local dependencies along the answer);
* ``sort``, ``add`` - sorting and addition with carries (global structure);
* ``pairs`` - several valid answers: each input pair of distinct digits is written back in either
  order, chosen freely. Each answer position alone is a coin flip between the pair's two digits;
  committing both positions of a pair in one step from those marginals writes one digit twice,
  which is the failure parallel decoding must avoid;
* ``t2s`` - text-to-speech format: digits -> speech units (ids L + 8192 + u) in a T2S canvas, one
  unit per spoken digit;
* ``s2t`` - speech-recognition format: those units in the prompt -> the digits;
* ``draw`` - text-to-image format for the MaskGIT sampler: four digits -> a 4 x 4 grid of image
  codes, row r a "stroke" of digit r in one of two variants chosen freely (codes 8d + 4v + j,
  j = 0..3). A row is right when its four codes are one variant, in order: committing a row's
  codes in parallel from their marginals mixes the variants.

Answers are filled to the region length with EOS, as in LLaDA SFT (the T2S answer ends with
<|eoa|> first). Examples are a pure function of (task, seed, index), so data is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import prompts
from ..tokens import EOA_ID, EOS_ID, MASK_ID, TextTokenizer, TokenLayout

DIGITS = "0123456789"
DRAW_ROWS = 4  # the draw task's grid: DRAW_ROWS rows of 4 codes
DRAW_TEXT_BLOCK = 16  # max_text_len of its t2i template (the release uses 128)
MAP_LETTERS = "jhcaegbfid"  # digit d -> MAP_LETTERS[d]
T2S_TEXT_BLOCK = 56  # max_text_len of the T2S template here (the release uses 1024): 4 [iPAD] pads
T2S_INSTRUCTION = "Speak the given text."  # one of the official T2S instructions (the shortest)


def speech_unit(digit: int) -> int:
    """The unit of a spoken digit (ten units spread over the 4096-unit codebook)."""
    return (37 + 389 * digit) % 4096


def spoken(digits: list[int]) -> list[int]:
    return [speech_unit(d) for d in digits]


ALL_UNITS = sorted(speech_unit(d) for d in range(10))


@dataclass(frozen=True)
class Example:
    """One prompt and answer. ids [T] (the answer region holds [MASK]); answer [G] the training
    target of the region; keep [T] keep-mask or None; info: what the checker needs."""

    ids: np.ndarray
    region_start: int
    answer: np.ndarray
    keep: np.ndarray | None
    info: tuple


@dataclass(frozen=True)
class Task:
    """A task: its name, sampler family ("text": LLaDA block sampler, "speech": T2S sampler), the
    region length G and the exact-mode schedule (steps, block_length)."""

    name: str
    kind: str
    gen_length: int
    block_length: int
    steps: int
    size: int  # digits (or letters) of input

    def example(self, tok: TextTokenizer, layout: TokenLayout, seed: int, index: int) -> Example:
        rng = np.random.default_rng([seed, index, _TASK_IDS[self.name]])
        return _BUILDERS[self.name](self, tok, layout, rng)

    def correct(self, ex: Example, output: np.ndarray) -> bool:
        """Is ``output`` right? Text tasks: the generated ids of the answer region [G]; speech: the
        units the T2S sampler returns [n] (cut at the first end token); image: the codes [N]."""
        output = np.asarray(output)
        if self.kind == "speech":
            return bool(np.array_equal(output, ex.info[0]))
        if self.kind == "image":
            return _draw_correct(ex, output)
        if self.name == "pairs":
            return _pairs_correct(ex, output)
        return bool(np.array_equal(output, ex.answer))


def _text_example(task: Task, tok: TextTokenizer, user: str, answer_ids: list[int], info: tuple) -> Example:
    prompt = prompts.text_chat(tok, user).input_ids[0].numpy()
    return _with_region(task, prompt, answer_ids, None, info)


def _with_region(task: Task, prompt: np.ndarray, answer_ids: list[int], keep, info: tuple, after=()) -> Example:
    """The canvas prompt + [MASK] * gen_length + after (the image's <|eoi|>)."""
    if len(answer_ids) > task.gen_length:
        raise ValueError(f"{task.name}: answer of {len(answer_ids)} tokens > gen_length {task.gen_length}")
    answer = np.array(answer_ids + [EOS_ID] * (task.gen_length - len(answer_ids)), dtype=np.int64)
    ids = np.concatenate([prompt.astype(np.int64), np.full(task.gen_length, MASK_ID, dtype=np.int64),
                          np.array(after, dtype=np.int64)])
    if keep is not None:
        keep = np.concatenate([keep.astype(np.int64), np.ones(task.gen_length + len(after), dtype=np.int64)])
    return Example(ids, len(prompt), answer, keep, info)


def _digits(rng, n: int) -> list[int]:
    return [int(d) for d in rng.integers(0, 10, n)]


def _s(values) -> str:
    return "".join(str(v) for v in values)


def _map(task, tok, layout, rng):
    x = _digits(rng, task.size)
    return _text_example(task, tok, "letters:" + _s(x), tok.encode("".join(MAP_LETTERS[d] for d in x)), ())


def _count(task, tok, layout, rng):
    x = "".join("ab"[int(i)] for i in rng.integers(0, 2, task.size))
    counts = np.cumsum([c == "a" for c in x])
    return _text_example(task, tok, "count:" + x, tok.encode(_s(counts)), ())


def _max(task, tok, layout, rng):
    x = _digits(rng, task.size)
    return _text_example(task, tok, "max:" + _s(x), tok.encode(_s(np.maximum.accumulate(x))), ())


def _sort(task, tok, layout, rng):
    x = _digits(rng, task.size)
    return _text_example(task, tok, "sort:" + _s(x), tok.encode(_s(sorted(x))), ())


def _add(task, tok, layout, rng):
    a, b = (int(v) for v in rng.integers(0, 10**task.size, 2))
    w = task.size
    user = f"add:{a:0{w}d}+{b:0{w}d}"
    return _text_example(task, tok, user, tok.encode(f"{a + b:0{w + 1}d}"), ())


def _pairs(task, tok, layout, rng):
    pairs = [tuple(int(d) for d in rng.choice(10, 2, replace=False)) for _ in range(task.size)]
    answer = "".join(_s(p if rng.integers(0, 2) else p[::-1]) for p in pairs)
    user = "pairs:" + "".join(_s(p) for p in pairs)
    return _text_example(task, tok, user, tok.encode(answer), (tuple(pairs), tuple(tok.encode(DIGITS))))


def _pairs_correct(ex: Example, region: np.ndarray) -> bool:
    pairs, digit_ids = ex.info
    value = {t: i for i, t in enumerate(digit_ids)}
    n = 2 * len(pairs)
    if not np.all(region[n:] == EOS_ID):
        return False
    got = [value.get(int(t)) for t in region[:n]]
    return all(sorted(got[2 * i : 2 * i + 2], key=lambda v: -1 if v is None else v) == sorted(p)
               for i, p in enumerate(pairs))


def _t2s(task, tok, layout, rng):
    x = _digits(rng, task.size)
    canvas = prompts.text_to_speech(tok, _s(x), num_units=0, instruction=T2S_INSTRUCTION, max_text_len=T2S_TEXT_BLOCK)
    units = spoken(x)
    answer = layout.speech_ids(units) + [EOA_ID]
    return _with_region(task, canvas.input_ids[0].numpy(), answer, canvas.attention_mask[0].numpy(), (tuple(units),))


def _s2t(task, tok, layout, rng):
    x = _digits(rng, task.size)
    prompt = prompts.speech_to_text(tok, layout, spoken(x)).input_ids[0].numpy()
    return _with_region(task, prompt, tok.encode(_s(x)), None, ())


def draw_code(digit: int, variant: int, j: int) -> int:
    return 8 * digit + 4 * variant + j


DRAW_CODES = draw_code(len(DIGITS) - 1, 1, 3) + 1  # the image codes the draw task uses: [0, 80)


def _draw(task, tok, layout, rng):
    x = _digits(rng, DRAW_ROWS)
    variants = [int(v) for v in rng.integers(0, 2, DRAW_ROWS)]
    codes = [draw_code(d, v, j) for d, v in zip(x, variants) for j in range(4)]
    canvas = prompts.text_to_image(tok, "draw:" + _s(x), num_image_tokens=task.gen_length, max_text_len=DRAW_TEXT_BLOCK)
    ids, keep = canvas.input_ids[0].numpy(), canvas.attention_mask[0].numpy()
    n = task.gen_length
    return _with_region(task, ids[: -n - 1], layout.image_ids(codes), keep[: -n - 1], (tuple(x),), after=ids[-1:])


def _draw_correct(ex: Example, codes: np.ndarray) -> bool:
    rows = np.asarray(codes).reshape(DRAW_ROWS, 4).tolist()
    return all(row in ([draw_code(d, 0, j) for j in range(4)], [draw_code(d, 1, j) for j in range(4)])
               for row, d in zip(rows, ex.info[0]))


_BUILDERS = {"map": _map, "count": _count, "max": _max, "sort": _sort, "add": _add, "pairs": _pairs, "t2s": _t2s,
             "s2t": _s2t, "draw": _draw}
_TASK_IDS = {name: i for i, name in enumerate(_BUILDERS)}

# gen_length 16 in blocks of 8 (two blocks: the cache policies see a block boundary), one token
# per step in exact mode (steps = gen_length), as the official text and T2S defaults.
TASKS = (
    Task("map", "text", 16, 8, 16, 8),
    Task("count", "text", 16, 8, 16, 8),
    Task("max", "text", 16, 8, 16, 8),
    Task("sort", "text", 16, 8, 16, 6),
    Task("add", "text", 16, 8, 16, 3),
    Task("pairs", "text", 16, 8, 16, 4),
    Task("t2s", "speech", 16, 8, 16, 8),
    Task("s2t", "text", 16, 8, 16, 8),
)
# The image task trains apart (its own model, IMAGE_CONFIG in train.py): the MaskGIT sampler, 16
# codes in 8 cosine-schedule steps, the t2i default temperature 1.0.
DRAW = Task("draw", "image", 4 * DRAW_ROWS, 4 * DRAW_ROWS, 8, DRAW_ROWS)
TASKS_BY_NAME = {t.name: t for t in (*TASKS, DRAW)}
