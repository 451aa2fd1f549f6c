"""Reading an HF LLaDA / MMaDA / Dynin-Omni checkpoint directory (docs/model.md).

Shared by the PyTorch reference and the weight exporter, so that both accept and refuse exactly the
same directories. Nothing here imports torch at module level.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import CheckpointError

# LLaDA ModelConfig defaults, used for keys a config.json leaves out (configuration_llada.py).
_LLADA_DEFAULTS = {
    "n_kv_heads": None,
    "mlp_ratio": 4,
    "mlp_hidden_size": None,
    "activation_type": "swiglu",
    "block_type": "sequential",
    "block_group_size": 1,
    "alibi": False,
    "rope": False,
    "rope_full_precision": True,
    "multi_query_attention": None,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "layer_norm_type": "default",
    "layer_norm_with_affine": True,
    "rms_norm_eps": 1e-5,
    "max_sequence_length": 1024,
    "rope_theta": 10000.0,
    "include_qkv_bias": False,
    "include_bias": False,
    "bias_for_layer_norm": None,
    "scale_logits": False,
    "embedding_size": 50304,
    "weight_tying": True,
    "mask_token_id": 50256,
}

# What this runtime implements; anything else is refused by name instead of computed wrongly.
_REQUIRED_VALUES = {
    "block_type": "llama",
    "activation_type": "silu",
    "layer_norm_type": "rms",
    "rope": True,
    "rope_full_precision": True,
    "alibi": False,
    "weight_tying": False,
    "include_bias": False,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "scale_logits": False,
    "layer_norm_with_affine": True,
    "block_group_size": 1,
}

SUPPORTED_MODEL_TYPES = ("dynin_omni", "mmada", "llada")
FLOAT_DTYPES = ("BF16", "F16", "F32")


@dataclass(frozen=True)
class ModelConfig:
    """The backbone hyper-parameters dynin_rt uses, validated."""

    model_type: str
    d_model: int
    n_heads: int
    n_layers: int
    mlp_hidden_size: int
    vocab_size: int  # rows of wte and ff_out (the config's embedding_size when set)
    rms_norm_eps: float
    rope_theta: float
    max_sequence_length: int
    mask_token_id: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def parse_config(raw: dict) -> ModelConfig:
    """Validate a config.json dict and reduce it to a ModelConfig."""
    if not isinstance(raw, dict):
        raise CheckpointError("config.json must hold a JSON object")
    model_type = raw.get("model_type", "llada")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(
            f"unsupported model_type {model_type!r}: dynin_rt runs {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    cfg = dict(_LLADA_DEFAULTS)
    cfg.update(raw)
    for key, value in _REQUIRED_VALUES.items():
        if cfg.get(key) != value:
            raise CheckpointError(f"unsupported config value {key}={cfg.get(key)!r} (dynin_rt needs {value!r})")
    if cfg.get("include_qkv_bias") or cfg.get("bias_for_layer_norm") or cfg.get("multi_query_attention"):
        raise CheckpointError("unsupported config: biases and multi-query attention are not implemented")

    def positive_int(key: str) -> int:
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CheckpointError(f"config.json: {key} must be a positive integer, got {value!r}")
        return value

    d_model, n_heads, n_layers = positive_int("d_model"), positive_int("n_heads"), positive_int("n_layers")
    if d_model % n_heads:
        raise CheckpointError(f"config.json: d_model {d_model} is not divisible by n_heads {n_heads}")
    if (d_model // n_heads) % 2:
        raise CheckpointError(f"config.json: head dim {d_model // n_heads} must be even for RoPE")
    n_kv_heads = cfg.get("n_kv_heads")
    if n_kv_heads is not None and n_kv_heads != n_heads:
        raise CheckpointError(f"unsupported config: n_kv_heads {n_kv_heads} != n_heads {n_heads} (GQA)")
    mlp_hidden = cfg.get("mlp_hidden_size")
    if mlp_hidden is None:
        mlp_hidden = positive_int("mlp_ratio") * d_model
    elif isinstance(mlp_hidden, bool) or not isinstance(mlp_hidden, int) or mlp_hidden <= 0:
        raise CheckpointError(f"config.json: mlp_hidden_size must be a positive integer, got {mlp_hidden!r}")
    vocab_size = positive_int("vocab_size")
    embedding_size = cfg.get("embedding_size")
    if embedding_size is not None:
        embedding_size = positive_int("embedding_size")
        if embedding_size < vocab_size:
            raise CheckpointError(f"config.json: embedding_size {embedding_size} < vocab_size {vocab_size}")
    eps, theta = cfg.get("rms_norm_eps"), cfg.get("rope_theta")
    for key, value in (("rms_norm_eps", eps), ("rope_theta", theta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise CheckpointError(f"config.json: {key} must be a positive number, got {value!r}")
    rows = embedding_size or vocab_size
    mask_token_id = cfg.get("mask_token_id")
    if not isinstance(mask_token_id, int) or not 0 <= mask_token_id < rows:
        raise CheckpointError(f"config.json: mask_token_id {mask_token_id!r} outside the vocabulary of {rows}")
    return ModelConfig(
        model_type=model_type,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=n_layers,
        mlp_hidden_size=mlp_hidden,
        vocab_size=rows,
        rms_norm_eps=float(eps),
        rope_theta=float(theta),
        max_sequence_length=positive_int("max_sequence_length"),
        mask_token_id=mask_token_id,
    )


def read_config(directory: str) -> ModelConfig:
    if not os.path.isdir(directory):
        raise CheckpointError(f"checkpoint directory {directory!r} does not exist")
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"no config.json in {directory}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    return parse_config(raw)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """HF state-dict key -> shape, in the official key names (docs/model.md, "Tensors")."""
    d, h, v = cfg.d_model, cfg.mlp_hidden_size, cfg.vocab_size
    shapes = {"model.transformer.wte.weight": (v, d)}
    for i in range(cfg.n_layers):
        p = f"model.transformer.blocks.{i}."
        shapes.update(
            {
                p + "attn_norm.weight": (d,),
                p + "q_proj.weight": (d, d),
                p + "k_proj.weight": (d, d),
                p + "v_proj.weight": (d, d),
                p + "attn_out.weight": (d, d),
                p + "ff_norm.weight": (d,),
                p + "ff_proj.weight": (h, d),
                p + "up_proj.weight": (h, d),
                p + "ff_out.weight": (d, h),
            }
        )
    shapes["model.transformer.ln_f.weight"] = (d,)
    shapes["model.transformer.ff_out.weight"] = (v, d)
    return shapes


def weight_files(directory: str) -> dict[str, str]:
    """Tensor name -> absolute path of the safetensors file holding it.

    A single ``model.safetensors`` or shards listed by ``model.safetensors.index.json``.
    """
    index_path = os.path.join(directory, "model.safetensors.index.json")
    single_path = os.path.join(directory, "model.safetensors")
    if os.path.isfile(index_path):
        try:
            with open(index_path, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"malformed {index_path}: {exc}") from exc
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"malformed {index_path}: weight_map is not an object")
        files = {}
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or os.path.basename(shard) != shard:
                raise CheckpointError(f"{index_path}: bad shard name {shard!r} for {name}")
            path = os.path.join(directory, shard)
            if not os.path.isfile(path):
                raise CheckpointError(f"missing shard {shard} (holds {name}) in {directory}")
            files[name] = path
        return files
    if os.path.isfile(single_path):
        with _open_safetensors(single_path) as f:
            return {name: single_path for name in f.keys()}
    raise CheckpointError(f"no model.safetensors or model.safetensors.index.json in {directory}")


class _open_safetensors:
    """safe_open with its failures turned into CheckpointError naming the file."""

    def __init__(self, path: str, framework: str = "pt"):
        self.path, self.framework = path, framework

    def __enter__(self):
        from safetensors import safe_open

        try:
            self._ctx = safe_open(self.path, framework=self.framework)
            return self._ctx.__enter__()
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"cannot read {self.path}: {exc}") from exc

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


class CheckpointReader:
    """Random access to the backbone tensors of a checkpoint, with every name, shape and dtype
    checked before the first tensor is read. Extra tensors outside the backbone (none in the
    release) are refused by name. Use as a context manager."""

    def __init__(self, directory: str, cfg: ModelConfig):
        self.shapes = expected_shapes(cfg)
        files = weight_files(directory)
        missing = [k for k in self.shapes if k not in files]
        if missing:
            raise CheckpointError(f"checkpoint is missing {len(missing)} tensor(s), first: {missing[0]}")
        unexpected = sorted(set(files) - set(self.shapes))
        if unexpected:
            raise CheckpointError(f"unexpected tensor {unexpected[0]} in checkpoint ({len(unexpected)} extra)")
        self._files = files
        self._open: dict[str, object] = {}
        self._contexts = []
        try:
            for path in sorted(set(files.values())):
                ctx = _open_safetensors(path)
                handle = ctx.__enter__()
                self._contexts.append(ctx)
                self._open[path] = handle
                present = set(handle.keys())
                for name in (n for n in self.shapes if files[n] == path):
                    if name not in present:
                        raise CheckpointError(f"{os.path.basename(path)} does not hold {name} (index says it does)")
                    sl = handle.get_slice(name)
                    shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
                    if shape != self.shapes[name]:
                        raise CheckpointError(f"{name}: shape {list(shape)} does not match config {list(self.shapes[name])}")
                    if dtype not in FLOAT_DTYPES:
                        raise CheckpointError(f"{name}: dtype {dtype} is not one of bf16/fp16/fp32")
        except BaseException:
            self.close()
            raise

    def get(self, name: str):
        path = self._files[name]
        try:
            return self._open[path].get_tensor(name)
        except Exception as exc:
            raise CheckpointError(f"cannot read {name} from {path}: {exc}") from exc

    def close(self) -> None:
        for ctx in self._contexts:
            ctx.__exit__(None, None, None)
        self._contexts.clear()
        self._open.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def iter_tensors(directory: str, cfg: ModelConfig):
    """Yield (name, tensor) for every backbone weight, after CheckpointReader's checks."""
    with CheckpointReader(directory, cfg) as reader:
        for name in reader.shapes:
            yield name, reader.get(name)
