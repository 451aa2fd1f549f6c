"""Tiny random backbone checkpoints in the official HF layout, for tests, benchmarks and the demo.

The vocabulary follows the release exactly (138752 rows; a tokenizer of length 126372 with the LLaDA
special ids), so every offset, template and sampler runs as on the real model; only the widths are
small. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os

import torch

from ..tokens import BOS_ID, END_HEADER_ID, EOS_ID, EOT_ID, MASK_ID, RELEASE_TEXT_VOCAB, START_HEADER_ID

RELEASE_VOCAB = 138752

# Named special tokens of the LLaDA tokenizer; the rest of its special range is reserved filler.
_NAMED_SPECIALS = {
    BOS_ID: "<|startoftext|>",
    EOS_ID: "<|endoftext|>",
    MASK_ID: "<|mdm_mask|>",
    START_HEADER_ID: "<|start_header_id|>",
    END_HEADER_ID: "<|end_header_id|>",
    EOT_ID: "<|eot_id|>",
}
FIRST_SPECIAL_ID = 126080
# Byte-level alphabet occupies ids BYTE_BASE .. BYTE_BASE + 255, so ordinary text encodes to
# predictable ids (tests rely on it: byte b -> BYTE_BASE + position of b's symbol in the alphabet).
BYTE_BASE = 0


def tiny_config(
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    mlp_hidden_size: int = 128,
    vocab_size: int = RELEASE_VOCAB,
    model_type: str = "dynin_omni",
    max_sequence_length: int = 4096,
) -> dict:
    """A Dynin-Omni config.json (LLaDA fields + Dynin fields) at the given widths."""
    return {
        "architectures": ["DyninOmniModelLM"],
        "model_type": model_type,
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": n_heads,
        "n_layers": n_layers,
        "mlp_ratio": 4,
        "mlp_hidden_size": mlp_hidden_size,
        "activation_type": "silu",
        "block_type": "llama",
        "block_group_size": 1,
        "alibi": False,
        "alibi_bias_max": 8.0,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": 500000.0,
        "flash_attention": False,
        "attention_dropout": 0.0,
        "residual_dropout": 0.0,
        "embedding_dropout": 0.0,
        "multi_query_attention": None,
        "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "bias_for_layer_norm": False,
        "rms_norm_eps": 1e-5,
        "max_sequence_length": max_sequence_length,
        "include_bias": False,
        "include_qkv_bias": False,
        "scale_logits": False,
        "vocab_size": vocab_size,
        "embedding_size": vocab_size,
        "weight_tying": False,
        "eos_token_id": EOS_ID,
        "pad_token_id": EOS_ID,
        "mask_token_id": MASK_ID,
        "init_device": "meta",
        "init_fn": "mitchell",
        "init_std": 0.02,
        "init_cutoff_factor": None,
        "precision": "amp_bf16",
        "use_cache": False,
        "llm_vocab_size": 126464,
        "new_vocab_size": vocab_size,
        "codebook_size": 8192,
        "num_vq_tokens": 1024,
        "num_new_special_tokens": 0,
        "torch_dtype": "bfloat16",
    }


def random_state_dict(cfg: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights in the official key names.

    Scales are chosen so that logits are peaked and depend on position (a 4x head, 2x q/k): masked
    positions then get distinct argmaxes and confidences far apart compared with fp32 rounding, so
    parity tests on a tiny model compare real decisions, not tie-breaks.
    """
    from ..checkpoint import expected_shapes, parse_config

    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected_shapes(parse_config(cfg)).items():
        if name.endswith(("norm.weight", "ln_f.weight")):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("wte.weight"):
            t = torch.randn(shape, generator=g)
        else:
            if name == "model.transformer.ff_out.weight":
                scale = 4.0
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                scale = 2.0
            else:
                scale = 1.0
            t = scale * torch.randn(shape, generator=g) / shape[1] ** 0.5
        state[name] = t.to(dtype).contiguous()
    return state


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70 syllables


def _pseudo_word(i: int) -> str:
    word = ""
    while True:
        i, r = divmod(i, len(_SYLLABLES))
        word += _SYLLABLES[r]
        if i == 0:
            return "\u0120" + word  # the byte-level symbol of a leading space


def write_tokenizer(directory: str, length: int = RELEASE_TEXT_VOCAB) -> None:
    """A byte-level BPE tokenizer.json of ``length`` entries whose special ids follow the release."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    alphabet.sort()
    vocab = {sym: BYTE_BASE + i for i, sym in enumerate(alphabet)}
    # The rest of the text range: distinct pseudo-words (" bako", " timure", ...), so text sampled
    # from random weights reads as words rather than placeholders. Encoding never produces them (no
    # merges), so ordinary text still maps to one id per byte.
    for i in range(len(vocab), FIRST_SPECIAL_ID):
        vocab[_pseudo_word(i)] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    data = json.loads(tok.to_str())
    data["added_tokens"] = [
        {
            "id": i,
            "content": _NAMED_SPECIALS.get(i, f"<|reserved_token_{i}|>"),
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in range(FIRST_SPECIAL_ID, length)
    ]
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f)
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "add_bos_token": False,
                "add_eos_token": False,
            },
            f,
            indent=1,
        )
    with open(os.path.join(directory, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, f)


def write_backbone(
    directory: str | os.PathLike,
    cfg: dict | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    num_shards: int = 2,
    tokenizer: bool = True,
) -> str:
    """Write config.json, sharded safetensors + index (or one file when num_shards == 1) and the
    tokenizer files. Returns the directory."""
    from safetensors.torch import save_file

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    cfg = cfg or tiny_config()
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(directory, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": EOS_ID}, f)
    state = random_state_dict(cfg, seed=seed, dtype=dtype)
    names = list(state)
    if num_shards == 1:
        save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        per_shard = -(-len(names) // num_shards)
        for s in range(num_shards):
            shard = f"model-{s + 1:05d}-of-{num_shards:05d}.safetensors"
            part = {n: state[n] for n in names[s * per_shard : (s + 1) * per_shard]}
            save_file(part, os.path.join(directory, shard), metadata={"format": "pt"})
            weight_map.update({n: shard for n in part})
        total = sum(t.numel() * t.element_size() for t in state.values())
        with open(os.path.join(directory, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    if tokenizer:
        write_tokenizer(directory)
    return directory
