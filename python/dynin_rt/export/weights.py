"""HF checkpoint -> dynin_rt runtime weights (one mmap-able safetensors file + a versioned manifest).

The runtime layout fuses what each layer multiplies together, so the runtime never concatenates at
load time: ``wqkv = [q_proj; k_proj; v_proj]`` and ``w_gate_up = [ff_proj; up_proj]`` (rows).
Tensors are streamed one layer at a time, so exporting the 8B model needs no more memory than a
layer. The tokenizer files are copied so the exported directory is self-contained; with
``media_tokenizers`` (``dynin-rt export`` does it) so are the MAGVIT-v2 and EMOVA folders found in or
beside the checkpoint, so the export runs every task once its source is gone.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys

from ..checkpoint import CheckpointReader, ModelConfig, read_config
from ..errors import CheckpointError
from ..tokens import EOA_ID, EOS_ID, MASK_ID, TextTokenizer, TokenLayout

FORMAT = "dynin_rt.weights"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
DTYPES = ("fp32", "bf16", "fp16")
_SAFETENSORS_DTYPE = {"fp32": "F32", "bf16": "BF16", "fp16": "F16"}


def runtime_tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Runtime tensor name -> shape, in file order (csrc/include/dynin_rt/weights.h)."""
    d, h, v = cfg.d_model, cfg.mlp_hidden_size, cfg.vocab_size
    shapes = {"embed": (v, d)}
    for i in range(cfg.n_layers):
        shapes.update(
            {
                f"layers.{i}.attn_norm": (d,),
                f"layers.{i}.wqkv": (3 * d, d),
                f"layers.{i}.wo": (d, d),
                f"layers.{i}.ffn_norm": (d,),
                f"layers.{i}.w_gate_up": (2 * h, d),
                f"layers.{i}.w_down": (d, h),
            }
        )
    shapes["final_norm"] = (d,)
    shapes["lm_head"] = (v, d)
    return shapes


def _sources(name: str) -> list[str]:
    """HF tensors that make up a runtime tensor, concatenated along rows."""
    t = "model.transformer."
    if name == "embed":
        return [t + "wte.weight"]
    if name == "final_norm":
        return [t + "ln_f.weight"]
    if name == "lm_head":
        return [t + "ff_out.weight"]
    _, i, part = name.split(".")
    b = f"{t}blocks.{i}."
    return {
        "attn_norm": [b + "attn_norm.weight"],
        "wqkv": [b + "q_proj.weight", b + "k_proj.weight", b + "v_proj.weight"],
        "wo": [b + "attn_out.weight"],
        "ffn_norm": [b + "ff_norm.weight"],
        "w_gate_up": [b + "ff_proj.weight", b + "up_proj.weight"],
        "w_down": [b + "ff_out.weight"],
    }[part]


def token_layout_dict(layout: TokenLayout) -> dict:
    return {
        "vocab_size": layout.vocab_size,
        "text_vocab": layout.text_vocab,
        "mask_id": MASK_ID,
        "eos_id": EOS_ID,
        "eoa_id": EOA_ID,
        "image_offset": layout.text_vocab if layout.has_image else -1,
        "speech_offset": layout.text_vocab + layout.image_codebook if layout.has_speech else -1,
    }


def write_runtime_weights(out_dir: str, cfg: ModelConfig, layout: TokenLayout, dtype: str, tensor_of,
                          source: dict | None = None, progress: bool = False) -> str:
    """Stream the runtime tensors ``tensor_of(name) -> torch.Tensor`` (fused layout, any float dtype)
    into ``out_dir/weights.safetensors`` and write the manifest. Header first (every offset follows
    from the config), then one tensor at a time, so memory stays at one tensor."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    os.makedirs(out_dir, exist_ok=True)
    shapes = runtime_tensor_shapes(cfg)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    elem = torch_dtype.itemsize
    header, offset = {}, 0
    for name, shape in shapes.items():
        nbytes = elem
        for n in shape:
            nbytes *= n
        header[name] = {"dtype": _SAFETENSORS_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": FORMAT, "version": str(FORMAT_VERSION)}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keeps every tensor 8-byte aligned

    tmp = os.path.join(out_dir, WEIGHTS + ".partial")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(shapes), desc="exporting weights", unit="tensor")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in shapes.items():
            tensor = tensor_of(name).to(torch_dtype)
            if tuple(tensor.shape) != shape:
                raise CheckpointError(f"{name}: shape {list(tensor.shape)} != {list(shape)}")
            f.write(tensor.contiguous().cpu().view(torch.uint8).numpy().tobytes())
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    os.replace(tmp, os.path.join(out_dir, WEIGHTS))
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": dtype,
        "weights": WEIGHTS,
        "config": cfg.to_dict(),
        "token_layout": token_layout_dict(layout),
        "fused": {"wqkv": ["q_proj", "k_proj", "v_proj"], "w_gate_up": ["ff_proj", "up_proj"]},
        "source": source or {},
    }
    with open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return out_dir


def export_weights(
    hf_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: str = "bf16",
    text_vocab_size: int | None = None,
    progress: bool | None = None,
    media_tokenizers: dict | None = None,
) -> str:
    """Write the runtime format of the HF checkpoint ``hf_dir`` into ``out_dir``; returns out_dir.

    Parameters
    ----------
    dtype : "bf16" | "fp16" | "fp32"
        Storage dtype of every tensor.
    text_vocab_size : int, optional
        L for a checkpoint without tokenizer files (otherwise len(tokenizer)).
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    media_tokenizers : dict, optional
        ``{"image": DIR or None, "speech": DIR or None}``: copy these tokenizer folders into the
        export under their released names (None: the one found in or beside ``hf_dir``, if any).
        Without it (the export cache) the runtime finds them beside the source checkpoint.
    """
    import torch

    hf_dir, out_dir = os.fspath(hf_dir), os.fspath(out_dir)
    cfg = read_config(hf_dir)
    if os.path.isfile(os.path.join(hf_dir, "tokenizer.json")):
        text_vocab_size = len(TextTokenizer(hf_dir))
    layout = TokenLayout(vocab_size=cfg.vocab_size, text_vocab=text_vocab_size)
    layout.validate(cfg.model_type)
    if os.path.abspath(hf_dir) == os.path.abspath(out_dir):
        raise ValueError("out_dir must differ from the HF checkpoint directory")
    show = sys.stderr.isatty() if progress is None else progress
    os.makedirs(out_dir, exist_ok=True)
    for file_name in TOKENIZER_FILES:  # before the manifest, which marks a finished export
        src = os.path.join(hf_dir, file_name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(out_dir, file_name))
    if media_tokenizers is not None:
        copy_media_tokenizers(hf_dir, out_dir, media_tokenizers)
    with CheckpointReader(hf_dir, cfg) as reader:

        def fused(name):
            parts = [reader.get(src) for src in _sources(name)]
            return torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]

        return write_runtime_weights(out_dir, cfg, layout, dtype, fused,
                                     source={"path": os.path.abspath(hf_dir), "model_type": cfg.model_type}, progress=show)


def copy_media_tokenizers(hf_dir: str, out_dir: str, given: dict) -> dict:
    """Copy the image and speech tokenizer folders into ``out_dir`` as ``magvitv2/`` and
    ``emova_speech_tokenizer_hf/`` (the names the runtime looks for); returns kind -> copied path."""
    from ..runtime import IMAGE_TOKENIZER_DIRS, SPEECH_TOKENIZER_DIRS, _find_tokenizer

    copied = {}
    for kind, names in (("image", IMAGE_TOKENIZER_DIRS), ("speech", SPEECH_TOKENIZER_DIRS)):
        src = given.get(kind) or _find_tokenizer(names, [hf_dir])
        if src is None:
            continue
        src = os.fspath(src)
        if not os.path.isfile(os.path.join(src, "config.json")):
            raise ValueError(f"{src} is not a {kind} tokenizer folder (it has no config.json)")
        dst = os.path.join(out_dir, names[0])
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        copied[kind] = dst
    return copied


def read_manifest(directory: str) -> dict:
    """The manifest of an exported directory, with its format and version checked."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dynin_rt weights manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {manifest.get('version')!r}; this dynin_rt reads version {FORMAT_VERSION} "
            "(re-export the checkpoint with `dynin-rt export`)"
        )
    for key in ("dtype", "weights", "config", "token_layout"):
        if key not in manifest:
            raise CheckpointError(f"{path} lacks {key!r}")
    if manifest["dtype"] not in DTYPES:
        raise CheckpointError(f"{path}: unknown dtype {manifest['dtype']!r}")
    weights = manifest["weights"]
    if not isinstance(weights, str) or os.path.basename(weights) != weights:
        raise CheckpointError(f"{path}: bad weights file name {weights!r}")
    return manifest
