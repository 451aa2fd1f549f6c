"""The official prompt templates of the seven task families (docs/templates.md).

Every function returns token ids (and, for the fixed-block templates, the keep-mask) exactly as the
official validation scripts build them, so the reference and the runtime see identical canvases.
Text enters through the checkpoint's tokenizer, which encodes control strings typed in it as text;
control ids are placed by the templates alone, and every one comes from :mod:`dynin_rt.tokens`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .tokens import (
    BOS_ID,
    END_HEADER_ID,
    EOI_ID,
    EOA_ID,
    EOS_ID,
    EOT_ID,
    I2I_ID,
    IPAD_ID,
    MASK_ID,
    MMU_ID,
    S2T_ID,
    SOA_ID,
    SOI_ID,
    START_HEADER_ID,
    T2I_ID,
    T2S_ID,
    V2T_ID,
    TextTokenizer,
    TokenLayout,
)

# Instruction pools of the official scripts (training/data.py). The official scripts draw one at
# random per request; dynin_rt uses the first unless the caller picks another.
S2T_INSTRUCTIONS = (
    "Transcribe the given audio.",
    "Write down what you hear in the audio.",
    "Provide a transcript for the given speech.",
    "What does the speaker in the audio say?",
    "Convert the speech in the audio to text.",
    "Listen to the audio and write out the text.",
)
T2S_INSTRUCTIONS = (
    "Generate speech for the given text.",
    "Read the given sentence aloud.",
    "Say the given words.",
    "Convert the given text into spoken audio.",
    "Speak the given text.",
    "Synthesize the text into speech.",
)
DEFAULT_QUESTION = "Please describe this input in detail."

T2I_TEXT_LEN = 128  # dataset.preprocessing.max_seq_length: the text block holds 129 tokens
T2S_TEXT_LEN = 1024  # max_seq_length_text: the T2S text block holds 1025 tokens
T2I_NUM_TOKENS = 1024  # 512 px, 32 x 32 codes
I2I_NUM_TOKENS = 441  # 336 px, 21 x 21 codes
T2S_NUM_UNITS = 383  # t2s_token_length, about 15.3 s at 25 units/s


@dataclass
class Canvas:
    """A batch-of-one canvas. input_ids [1, T]; attention_mask [1, T] keep-mask or None (no bias)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None

    @staticmethod
    def of(ids: Sequence[int], mask: Sequence[int] | None = None) -> "Canvas":
        ids_t = torch.tensor([list(ids)], dtype=torch.long)
        mask_t = None if mask is None else torch.tensor([list(mask)], dtype=torch.long)
        return Canvas(ids_t, mask_t)


def chat(user_text: str) -> list[str | int]:
    """Dynin's single-newline chat wrapper of one user turn (no BOS), as the pieces of
    ``TextTokenizer.encode_template``:
    ``<|start_header_id|>user<|end_header_id|>\n{user_text}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n``.
    """
    return [START_HEADER_ID, "user", END_HEADER_ID, "\n" + user_text, EOT_ID,
            START_HEADER_ID, "assistant", END_HEADER_ID, "\n"]


def think_suffix(prompt: str, think: bool | None) -> str:
    if think is None:
        return prompt
    return f"{prompt}\n{'/think' if think else '/no_think'}"


def text_chat(tok: TextTokenizer, prompt: str, think: bool | None = None) -> Canvas:
    """BOS + chat(prompt), through the chat template of validation/generate.py (content trimmed)."""
    content = think_suffix(prompt, think).strip()
    return Canvas.of(tok.encode_template([tok.bos_token_id, *chat(content)]))


def _mmu(task_id: int, media_ids: Sequence[int], tok: TextTokenizer, question: str) -> Canvas:
    # <task> <|soi|> media <|eoi|> <|sot|> tokenizer(chat(question))   (mmu_generate.py)
    return Canvas.of([task_id, SOI_ID, *media_ids, EOI_ID, BOS_ID, *tok.encode_template(chat(question))])


def image_to_text(tok: TextTokenizer, layout: TokenLayout, image_codes: Sequence[int], question: str = DEFAULT_QUESTION) -> Canvas:
    return _mmu(MMU_ID, layout.image_ids(image_codes), tok, question)


def video_to_text(
    tok: TextTokenizer, layout: TokenLayout, frame_codes: Sequence[Sequence[int]], question: str = DEFAULT_QUESTION
) -> Canvas:
    """Frames' codes concatenated with no separators inside one <|soi|> ... <|eoi|>."""
    media = [i for frame in frame_codes for i in layout.image_ids(frame)]
    return _mmu(V2T_ID, media, tok, question)


def speech_to_text(
    tok: TextTokenizer, layout: TokenLayout, units: Sequence[int], instruction: str = S2T_INSTRUCTIONS[0]
) -> Canvas:
    """<|s2t|> <|soa|> speech <|eoa|> tokenizer(chat(instruction))   (speech.py)."""
    return Canvas.of([S2T_ID, SOA_ID, *layout.speech_ids(units), EOA_ID, *tok.encode_template(chat(instruction))])


def _text_block(ids: list[int], length: int) -> tuple[list[int], list[int]]:
    """Left-pad with [iPAD] to length (mask 0 on pads) or truncate keeping a final EOS."""
    if len(ids) <= length:
        pad = length - len(ids)
        return [IPAD_ID] * pad + ids, [0] * pad + [1] * len(ids)
    ids = ids[: length - 1] + [EOS_ID]
    return ids, [1] * length


def _with_bos(ids: list[int]) -> list[int]:
    if not ids:
        return [BOS_ID]
    return ids if ids[0] == BOS_ID else [BOS_ID] + ids


def text_to_image(
    tok: TextTokenizer, text: str, num_image_tokens: int = T2I_NUM_TOKENS, max_text_len: int = T2I_TEXT_LEN
) -> Canvas:
    """[iPAD]* <|t2i|> BOS text EOS (block of max_text_len+1) <|soi|> [MASK]*N <|eoi|>  (t2i_gen_prompt).

    The unconditional twin is ``text_to_image(tok, "")``.
    """
    block = max_text_len + 1
    text_ids = _with_bos(tok.encode(text, max_length=block))
    ids, mask = _text_block([T2I_ID, *text_ids, EOS_ID], block)
    return Canvas.of(ids + [SOI_ID] + [MASK_ID] * num_image_tokens + [EOI_ID], mask + [1] * (num_image_tokens + 2))


def image_edit(
    tok: TextTokenizer,
    layout: TokenLayout,
    source_codes: Sequence[int],
    text: str,
    num_image_tokens: int = I2I_NUM_TOKENS,
    max_text_len: int = T2I_TEXT_LEN,
) -> Canvas:
    """<|i2i|> <|soi|> src <|eoi|> [iPAD]* BOS text EOS <|soi|> [MASK]*N <|eoi|>  (training i2i_prompt).

    The unconditional twin is ``image_edit(tok, layout, source_codes, "")``.
    """
    source = layout.image_ids(source_codes)
    text_ids = [BOS_ID, *tok.encode(text, add_special_tokens=False), EOS_ID]
    ids, mask = _text_block(text_ids, max_text_len + 1)
    prefix = [I2I_ID, SOI_ID, *source, EOI_ID]
    suffix = [SOI_ID] + [MASK_ID] * num_image_tokens + [EOI_ID]
    return Canvas.of(prefix + ids + suffix, [1] * len(prefix) + mask + [1] * len(suffix))


def text_to_speech(
    tok: TextTokenizer,
    text: str,
    num_units: int = T2S_NUM_UNITS,
    instruction: str = T2S_INSTRUCTIONS[0],
    max_text_len: int = T2S_TEXT_LEN,
) -> Canvas:
    """[iPAD]* <|t2s|> BOS chat(instruction\\ntext) EOS (block of max_text_len+1) <|soa|> [MASK]*N.

    No closing <|eoa|>: the model writes it (t2s_gen_prompt).
    """
    text_ids = _with_bos(tok.encode_template(chat(f"{instruction}\n{text}")))
    ids, mask = _text_block([T2S_ID, *text_ids, EOS_ID], max_text_len + 1)
    return Canvas.of(ids + [SOA_ID] + [MASK_ID] * num_units, mask + [1] * (num_units + 1))


def left_pad(canvases: Sequence[Canvas], with_mask: bool = True) -> Canvas:
    """Batch single-row canvases by left-padding with [iPAD].

    with_mask=False reproduces the official ASR batching (pads but no mask, so pads are attended).
    """
    width = max(c.input_ids.shape[1] for c in canvases)
    ids = torch.full((len(canvases), width), IPAD_ID, dtype=torch.long)
    mask = torch.zeros((len(canvases), width), dtype=torch.long)
    for row, c in enumerate(canvases):
        n = c.input_ids.shape[1]
        ids[row, width - n :] = c.input_ids[0]
        mask[row, width - n :] = 1 if c.attention_mask is None else c.attention_mask[0]
    return Canvas(ids, mask if with_mask else None)
