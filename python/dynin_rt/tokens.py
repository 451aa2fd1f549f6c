"""Token layout and the text tokenizer (docs/token-layout.md).

Every id the templates and samplers use is defined here, once. The multimodal offsets come from the
tokenizer's length L, never from the config: image code c is id L + c, speech unit u is id
L + 8192 + u (L = 126372 for the released Dynin-Omni tokenizer; 126464, the config's
``llm_vocab_size``, would shift every code by 92).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import CheckpointError, TokenizerMissingError

# LLaDA tokenizer ids shared by LLaDA-8B, MMaDA-8B and Dynin-Omni (docs/token-layout.md, "Text tokenizer ids").
BOS_ID = 126080  # <|startoftext|>, also <|sot|>
EOS_ID = 126081  # <|endoftext|>, also <|eot|> and the config's pad_token_id
MASK_ID = 126336  # <|mdm_mask|>
START_HEADER_ID = 126346
END_HEADER_ID = 126347
EOT_ID = 126348  # <|eot_id|>: end of a chat turn

# Dynin/MMaDA task tokens living in LLaDA's reserved range (docs/token-layout.md, "Task tokens";
# the official use_reserved_token=True).
TASK_TOKEN_IDS = {
    "<|soi|>": 126084,
    "<|eoi|>": 126085,
    "<|sov|>": 126086,
    "<|eov|>": 126087,
    "<|t2i|>": 126088,
    "<|mmu|>": 126089,
    "<|t2v|>": 126090,
    "<|v2v|>": 126091,
    "<|lvg|>": 126092,
    "[iPAD]": 126093,
    "<|r2i|>": 126094,
    "<|i2i|>": 126095,
    "<|s2t|>": 126096,
    "<|soa|>": 126097,
    "<|eoa|>": 126098,
    "<|t2s|>": 126099,
    "<|v2t|>": 126100,
    "<|s2s|>": 126101,
    "<|v2s|>": 126102,
    "<|ti2ti|>": 126103,
    "<|t2ti|>": 126104,
    "<think>": 126105,
    "</think>": 126106,
}
SOI_ID = TASK_TOKEN_IDS["<|soi|>"]
EOI_ID = TASK_TOKEN_IDS["<|eoi|>"]
T2I_ID = TASK_TOKEN_IDS["<|t2i|>"]
MMU_ID = TASK_TOKEN_IDS["<|mmu|>"]
IPAD_ID = TASK_TOKEN_IDS["[iPAD]"]
I2I_ID = TASK_TOKEN_IDS["<|i2i|>"]
S2T_ID = TASK_TOKEN_IDS["<|s2t|>"]
SOA_ID = TASK_TOKEN_IDS["<|soa|>"]
EOA_ID = TASK_TOKEN_IDS["<|eoa|>"]
T2S_ID = TASK_TOKEN_IDS["<|t2s|>"]
V2T_ID = TASK_TOKEN_IDS["<|v2t|>"]

IMAGE_CODEBOOK_SIZE = 8192  # MAGVIT-v2, 13-bit lookup-free quantizer
SPEECH_CODEBOOK_SIZE = 4096  # EMOVA FSQ [8, 8, 8, 8]
RELEASE_TEXT_VOCAB = 126372  # len(tokenizer) of snu-aidas/Dynin-Omni


@dataclass(frozen=True)
class TokenLayout:
    """Where each modality lives in the shared embedding / LM-head rows.

    ``text_vocab`` is L = len(tokenizer), or None when the checkpoint came without a tokenizer and the
    caller gave no ``text_vocab_size``: then only text-free token-level calls work.
    """

    vocab_size: int
    text_vocab: int | None
    image_codebook: int = IMAGE_CODEBOOK_SIZE
    speech_codebook: int = SPEECH_CODEBOOK_SIZE

    @property
    def has_image(self) -> bool:
        return self.text_vocab is not None and self.text_vocab + self.image_codebook <= self.vocab_size

    @property
    def has_speech(self) -> bool:
        return (
            self.text_vocab is not None
            and self.text_vocab + self.image_codebook + self.speech_codebook <= self.vocab_size
        )

    def _require_text_vocab(self, what: str) -> int:
        if self.text_vocab is None:
            raise TokenizerMissingError(
                f"{what} needs the tokenizer length L (ids are offset by it); this checkpoint has no "
                "tokenizer.json: add the tokenizer files or pass text_vocab_size="
            )
        return self.text_vocab

    @property
    def image_offset(self) -> int:
        offset = self._require_text_vocab("image tokens")
        if not self.has_image:
            raise ValueError(
                f"this checkpoint has no image rows: L + 8192 = {offset + self.image_codebook} > "
                f"vocab_size {self.vocab_size}"
            )
        return offset

    @property
    def speech_offset(self) -> int:
        offset = self._require_text_vocab("speech tokens") + self.image_codebook
        if not self.has_speech:
            raise ValueError(
                f"this checkpoint has no speech rows: L + 8192 + 4096 = {offset + self.speech_codebook} "
                f"> vocab_size {self.vocab_size}"
            )
        return offset

    def validate(self, model_type: str) -> None:
        """Refuse layouts that cannot be right for the checkpoint's model family."""
        for name, token_id in (("[MASK]", MASK_ID), ("<|eot_id|>", EOT_ID)):
            if token_id >= self.vocab_size:
                raise CheckpointError(f"{name} id {token_id} is outside vocab_size {self.vocab_size}")
        if self.text_vocab is None:
            return
        if self.text_vocab <= EOT_ID:
            raise CheckpointError(
                f"tokenizer length {self.text_vocab} does not cover the LLaDA special ids (up to {EOT_ID})"
            )
        if self.text_vocab > self.vocab_size:
            raise CheckpointError(
                f"tokenizer length {self.text_vocab} exceeds the model's vocab_size {self.vocab_size}"
            )
        needed = {"dynin_omni": self.image_codebook + self.speech_codebook, "mmada": self.image_codebook}
        extra = needed.get(model_type, 0)
        if self.text_vocab + extra > self.vocab_size:
            raise CheckpointError(
                f"inconsistent token layout for {model_type}: L ({self.text_vocab}) + {extra} multimodal "
                f"rows = {self.text_vocab + extra} > vocab_size {self.vocab_size}"
            )

    def image_ids(self, codes: Iterable[int]) -> list[int]:
        offset = self.image_offset
        out = []
        for c in codes:
            c = int(c)
            if not 0 <= c < self.image_codebook:
                raise ValueError(f"image code {c} outside [0, {self.image_codebook})")
            out.append(offset + c)
        return out

    def speech_ids(self, units: Iterable[int]) -> list[int]:
        offset = self.speech_offset
        out = []
        for u in units:
            u = int(u)
            if not 0 <= u < self.speech_codebook:
                raise ValueError(f"speech unit {u} outside [0, {self.speech_codebook})")
            out.append(offset + u)
        return out


class TextTokenizer:
    """The HF ``tokenizer.json`` of a checkpoint, read with the ``tokenizers`` library.

    Text is always text: ``encode(text)`` encodes every control string typed in it (``<|mdm_mask|>``,
    ``<|eot_id|>``, ``<|soi|>``, any added token) as the ordinary text pieces of those characters, so
    a user cannot forge template structure or the sampler's masks. Control ids enter only as ids,
    through :meth:`encode_template`. For text without control strings both equal
    ``PreTrainedTokenizerFast.__call__(text).input_ids`` (post-processor included); ``decode(ids)``
    behaves as ``decode(ids, skip_special_tokens=True)``.
    """

    def __init__(self, directory: str):
        from tokenizers import Tokenizer

        path = os.path.join(directory, "tokenizer.json")
        if not os.path.isfile(path):
            raise TokenizerMissingError(f"no tokenizer.json in {directory}")
        with open(path, encoding="utf-8") as f:
            self._json = f.read()
        self._tok = Tokenizer.from_str(self._json)
        self._text_tok = _text_only(self._json)
        self._control_ids = frozenset(self._tok.get_added_tokens_decoder())
        self.bos_token, self.eos_token = self._read_special_token_names(directory)
        self.bos_token_id = self._id_of(self.bos_token, BOS_ID)
        self.eos_token_id = self._id_of(self.eos_token, EOS_ID)
        self._truncating = {}
        self._truncating_lock = threading.Lock()

    @staticmethod
    def _read_special_token_names(directory: str) -> tuple[str, str]:
        names = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}
        for file_name in ("special_tokens_map.json", "tokenizer_config.json"):
            path = os.path.join(directory, file_name)
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            for key in names:
                value = data.get(key)
                if isinstance(value, dict):
                    value = value.get("content")
                if isinstance(value, str):
                    names[key] = value
        return names["bos_token"], names["eos_token"]

    def _id_of(self, token: str, expected: int) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise CheckpointError(f"tokenizer.json does not define {token!r}")
        if token_id != expected:
            raise CheckpointError(f"tokenizer maps {token!r} to {token_id}, the model expects {expected}")
        return token_id

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """Text -> ids, every control string in it encoded as ordinary text.

        add_special_tokens: run the tokenizer's post-processor; max_length: truncate as HF does (the
        content trimmed so that content + post-processor specials fit).
        """
        return self.encode_template([text], add_special_tokens, max_length)

    def encode_template(self, pieces: Sequence[str | int], add_special_tokens: bool = True,
                        max_length: int | None = None) -> list[int]:
        """A template -> ids: ``str`` pieces are text (control strings in them stay text), ``int``
        pieces are control ids placed as they are; one post-processing over the whole.

        The tokenizer splits its input at control tokens before anything else, so for texts without
        control strings this equals the tokenizer's encoding of the joined string, provided the text
        between two control ids is one piece (``"\n" + user_text``, not two).
        """
        from tokenizers import Encoding

        parts = []
        for piece in pieces:
            if isinstance(piece, str):
                parts.append(self._text_tok.encode(piece, add_special_tokens=False))
            elif isinstance(piece, (int, np.integer)) and not isinstance(piece, bool):
                parts.append(self._control(int(piece)))
            else:
                raise ValueError(f"text must be a str, not {type(piece).__name__}")
        tok = self._tok if max_length is None else self._truncating_tokenizer(max_length)
        return list(tok.post_process(Encoding.merge(parts), add_special_tokens=add_special_tokens).ids)

    def _control(self, token_id: int):
        """The one-token encoding of a control id (an added token of the tokenizer)."""
        if token_id not in self._control_ids:
            raise ValueError(f"id {token_id} is not a control token of this tokenizer")
        return self._tok.encode(self._tok.id_to_token(token_id), add_special_tokens=False)

    def _truncating_tokenizer(self, max_length: int):
        # HF truncation trims the content so that content + post-processor specials fit max_length.
        # One private copy per length keeps the shared tokenizer free of truncation state.
        from tokenizers import Tokenizer

        with self._truncating_lock:
            tok = self._truncating.get(max_length)
            if tok is None:
                tok = Tokenizer.from_str(self._json)
                tok.enable_truncation(max_length)
                self._truncating[max_length] = tok
            return tok

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)


def _text_only(tokenizer_json: str):
    """A copy of the tokenizer that matches no added token, so their strings encode as text.

    ``encode_special_tokens`` skips only the added tokens marked special; every one is marked so here
    (the copy only encodes, so the flag changes nothing else).
    """
    from tokenizers import Tokenizer

    data = json.loads(tokenizer_json)
    for token in data.get("added_tokens", []):
        token["special"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    tok.encode_special_tokens = True
    return tok
