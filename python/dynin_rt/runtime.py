"""The C++ runtime behind a Python face: ``dynin_rt.load`` and :class:`Model`.

A Model owns one ``_C.Engine`` (weights mapped once, read-only) and may serve calls from several
Python threads at once: each call gets its own scratch memory and releases the GIL in C++.
Generation semantics equal :mod:`dynin_rt.reference` with ``CounterNoise(seed)``: identical tokens
in exact mode; ``mode="fast"`` (KV reuse + threshold decoding) is approximate and labelled so.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from . import _native
from .checkpoint import ModelConfig, parse_config
from .errors import CheckpointError
from .export.weights import MANIFEST, read_manifest
from .export_cache import cache_root, cached_export
from .tokens import TextTokenizer, TokenLayout

_C = _native._C
MODES = ("exact", "fast")
CACHES = ("none", "prefix", "dual")
# Fast mode's threshold and KV reuse (cache, refresh_every), chosen by the trained yardstick
# (benchmarks/bench_quality.py, docs/fast-mode.md), not by the papers: on text and speech every cache
# policy lost accuracy on the task whose tokens constrain each other, threshold decoding alone at
# 0.95 nothing (0.9 lost one point there, for the same forwards to within 2%).
FAST_THRESHOLD = 0.95
FAST_CACHE = ("none", 0)
FAST_IMAGE_CACHE = ("dual", 4)
BACKENDS = ("auto", "cpu", "cuda")


@dataclass
class GenerationStats:
    """What one generate call did: forward passes, denoising steps, tokens committed per step, time,
    which rows were cancelled, and what the backend did (kernel launches, graph replays, host
    synchronisations, allocations; everything on the backend during the call)."""

    forwards: int = 0
    positions: int = 0  # canvas positions the forwards computed (a KV cache's steps compute fewer)
    steps: int = 0
    committed_per_step: list = field(default_factory=list)
    seconds_forward: float = 0.0
    seconds_sample: float = 0.0
    cancelled_rows: list = field(default_factory=list)
    device: dict = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> float:
        return sum(self.committed_per_step) / max(self.steps, 1)

    def to_dict(self) -> dict:
        return {
            "forwards": self.forwards,
            "positions": self.positions,
            "steps": self.steps,
            "committed_per_step": list(self.committed_per_step),
            "tokens_per_step": self.tokens_per_step,
            "seconds_forward": self.seconds_forward,
            "seconds_sample": self.seconds_sample,
            "cancelled_rows": list(self.cancelled_rows),
            "device": dict(self.device),
        }


def _checkpoint_dtype(hf_dir: str) -> str:
    from .checkpoint import _open_safetensors, weight_files

    files = weight_files(hf_dir)
    first = next(iter(files.items()))
    with _open_safetensors(first[1]) as f:
        dt = f.get_slice(first[0]).get_dtype()
    return {"BF16": "bf16", "F16": "fp16"}.get(dt, "fp32")


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    info = _native.build_info()
    if backend == "cuda" and not info["cuda"]:
        raise ValueError("this build of dynin_rt has no CUDA backend: reinstall with -Ccmake.define.DYNIN_RT_CUDA=ON")
    if backend == "auto":
        # an emulated CUDA backend (a test build) runs on the CPU, far slower than the CPU backend
        gpu = info["cuda"] and not info["cuda_emulated"] and _C.cuda_device_count() > 0
        backend = "cuda" if gpu else "cpu"
    if backend == "cuda":
        _native.preload_cublaslt()
    return backend


IMAGE_TOKENIZER_DIRS = ("magvitv2", "image_tokenizer", "magvit")
SPEECH_TOKENIZER_DIRS = ("emova_speech_tokenizer_hf", "speech_tokenizer", "emova")


def _find_tokenizer(names: tuple[str, ...], roots: list[str]) -> str | None:
    """A tokenizer directory named like the released repos, inside or beside the model directory."""
    for root in roots:
        for base in (root, os.path.dirname(root)):
            for name in names:
                path = os.path.join(base, name)
                if os.path.isfile(os.path.join(path, "config.json")):
                    return path
    return None


class Model:
    """A loaded Dynin-Omni (or MMaDA / LLaDA) backbone on the C++ runtime, with its image and speech
    tokenizers (loaded on first use). ``model.generate(...)`` is :func:`dynin_rt.generate`."""

    def __init__(self, directory: str, backend: str = "cpu", device: int = 0, image_tokenizer: str | None = None,
                 speech_tokenizer: str | None = None, tokenizer_backend: str | None = None):
        manifest = read_manifest(directory)
        self.directory = directory
        self.dtype: str = manifest["dtype"]
        try:
            self.config: ModelConfig = ModelConfig(**manifest["config"])
            layout = manifest["token_layout"]
            self.layout = TokenLayout(vocab_size=int(layout["vocab_size"]), text_vocab=layout["text_vocab"])
        except (TypeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{os.path.join(directory, MANIFEST)}: malformed config or token layout ({exc})") from exc
        self._tokenizer = TextTokenizer(directory) if os.path.isfile(os.path.join(directory, "tokenizer.json")) else None
        self.backend = _resolve_backend(backend)
        self._engine = _C.Engine(
            os.path.join(directory, manifest["weights"]),
            self.config.to_dict(),
            layout,
            self.dtype,
            self.backend,
            device,
        )
        self._local = threading.local()
        roots = [directory] + ([manifest["source"]["path"]] if isinstance(manifest.get("source"), dict) else [])
        # What the user loaded, for messages: the HF folder behind a cached export, else this folder.
        cached = os.path.dirname(os.path.abspath(directory)) == os.path.abspath(cache_root())
        self.checkpoint_dir = roots[-1] if cached else directory
        self.image_tokenizer_dir = image_tokenizer or _find_tokenizer(IMAGE_TOKENIZER_DIRS, roots)
        self.speech_tokenizer_dir = speech_tokenizer or _find_tokenizer(SPEECH_TOKENIZER_DIRS, roots)
        # On a GPU the tokenizers pick TensorRT / onnxruntime; on a CPU their PyTorch twins.
        self.tokenizer_backend = tokenizer_backend or ("auto" if self.backend == "cuda" else "torch")
        self._tokenizers: dict = {}
        self._tokenizers_lock = threading.Lock()
        # Where the loops' step plans come from: "auto" (every step on the CPU, once per block on a
        # device), or forced to "step" / "block" (tests check that both give the same tokens); whether
        # device-resident steps are recorded once and replayed (CUDA graphs; tokens are the same off).
        self.plans = "auto"
        self.graphs = True

    # -- info ----------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            from .errors import TokenizerMissingError

            raise TokenizerMissingError(f"{self.checkpoint_dir} has no tokenizer.json: text-level calls need it")
        return self._tokenizer

    def _load_tokenizer(self, kind: str):
        with self._tokenizers_lock:
            if kind not in self._tokenizers:
                from .tokenizers import EmovaSpeech, MagvitV2

                path = self.image_tokenizer_dir if kind == "image" else self.speech_tokenizer_dir
                if path is None:
                    raise ValueError(
                        f"no {kind} tokenizer found in or beside {self.checkpoint_dir}: "
                        f"pass {kind}_tokenizer=DIR to dynin_rt.load (the released {'snu-aidas/magvitv2' if kind == 'image' else 'emova_speech_tokenizer_hf'})"
                    )
                cls = MagvitV2 if kind == "image" else EmovaSpeech
                self._tokenizers[kind] = cls.from_pretrained(path, backend=self.tokenizer_backend)
            return self._tokenizers[kind]

    @property
    def image_tokenizer(self):
        """The MAGVIT-v2 tokenizer (images and video frames)."""
        return self._load_tokenizer("image")

    @property
    def speech_tokenizer(self):
        """The EMOVA speech tokenizer (units <-> 22.05 kHz speech)."""
        return self._load_tokenizer("speech")

    def generate(self, prompt=None, **kwargs):
        """:func:`dynin_rt.generate` on this model."""
        from .api import generate

        return generate(self, prompt, **kwargs)

    @property
    def last_stats(self) -> GenerationStats | None:
        """Stats of this thread's last generate call."""
        return getattr(self._local, "stats", None)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Model({c.model_type}, d_model={c.d_model}, layers={c.n_layers}, vocab={c.vocab_size}, "
            f"dtype={self.dtype}, backend={self.backend})"
        )

    # -- calls ---------------------------------------------------------------------------------
    def _set_stats(self, raw: dict) -> GenerationStats:
        stats = GenerationStats(**raw)
        self._local.stats = stats
        return stats

    def logits(self, input_ids, attention_mask=None) -> np.ndarray:
        """input_ids [B, T] -> logits [B, T, V] float32 (NaN rows at pads dropped by the mask)."""
        return self._engine.logits(_as_array(input_ids), _optional_array(attention_mask))

    def generate_text(self, prompt_ids, params=None, *, attention_mask=None, lengths=None, on_block=None, cancel=None,
                      row_cancel=None, **options) -> np.ndarray:
        """LLaDA block sampler: prompt_ids [B, P] -> ids [B, T] (int64), T = max over rows of P_b + gen_b.

        params: a ``_C.LladaParams``, or keyword options for :func:`text_params` (gen_length, steps,
        block_length, temperature, cfg_scale, remasking, mode, threshold, factor, cache, seed).
        Mode "exact" gives the tokens of ``reference.llada_generate(..., noise=CounterNoise(seed))``.
        lengths [B]: a ragged batch (row b's prompt is its first lengths[b] ids; its canvas ends after
        its own new tokens and the rest of the row is absent). on_block(block, canvas [B, T]) is called
        after each finished block. cancel: a ``CancelToken`` that stops the call (raises
        ``dynin_rt.errors.Cancelled``); row_cancel: one per row, stopping that row only.
        """
        params = _params(params, text_params, options)
        ids, raw = self._engine.generate_text(_as_array(prompt_ids), _optional_array(attention_mask), params,
                                              lengths=_optional_list(lengths), on_block=on_block, cancel=cancel,
                                              row_cancel=row_cancel, plans=self.plans, graphs=self.graphs)
        self._set_stats(raw)
        return ids.astype(np.int64)

    def generate_image(self, input_ids, attention_mask, uncond_input_ids=None, uncond_attention_mask=None, params=None, *,
                       cancel=None, row_cancel=None, **options) -> np.ndarray:
        """MaskGIT sampler over ``input_ids[:, -(seq_len+1):-1]`` -> codes [B, seq_len] (int64).

        params: a ``_C.MaskgitParams``, or keyword options for :func:`image_params` (seq_len,
        timesteps, guidance_scale, temperature, resolution, seed).
        """
        params = _params(params, image_params, options)
        codes, raw = self._engine.generate_image(_as_array(input_ids), _as_array(attention_mask),
                                                 _optional_array(uncond_input_ids), _optional_array(uncond_attention_mask),
                                                 params, cancel=cancel, row_cancel=row_cancel, plans=self.plans, graphs=self.graphs)
        self._set_stats(raw)
        return codes.astype(np.int64)

    def generate_speech(self, input_ids, attention_mask=None, params=None, *, on_block=None, cancel=None, row_cancel=None,
                        **options) -> list[np.ndarray]:
        """Text-to-speech sampler -> per row the speech units [n] (int64), cut at the first end.

        params: a ``_C.T2sParams``, or keyword options for :func:`speech_params` (max_new_tokens,
        steps, block_length, temperature, cfg_scale, mode, threshold, factor, cache, seed).
        """
        params = _params(params, speech_params, options)
        units, raw = self._engine.generate_speech(_as_array(input_ids), _optional_array(attention_mask), params,
                                                  on_block=on_block, cancel=cancel, row_cancel=row_cancel, plans=self.plans, graphs=self.graphs)
        self._set_stats(raw)
        return [u.astype(np.int64) for u in units]


def text_params(gen_length: int = 128, steps: int = 128, block_length: int = 128, temperature: float = 0.0,
                cfg_scale: float = 0.0, remasking: str = "low_confidence", mode: str = "exact", threshold: float | None = None,
                factor: float | None = None, cache: str | None = None, refresh_every: int | None = None, seed: int = 0,
                **rows) -> "_C.LladaParams":
    """Options of the LLaDA sampler. mode "fast" (approximate): threshold decoding (threshold
    :data:`FAST_THRESHOLD` unless ``factor`` selects the factor rule) with the KV reuse of :data:`FAST_CACHE`; ``cache``
    ("none", "prefix", "dual") and ``refresh_every`` (with a cache, a full forward every N-th step
    of a block; 0: at block starts only) override it (docs/fast-mode.md). rows: gen_lengths,
    row_seeds, noise_rows (per batch row)."""
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking must be low_confidence or random, not {remasking!r}")
    return _C.LladaParams(gen_length=gen_length, steps=steps, block_length=block_length, temperature=float(temperature),
                          cfg_scale=float(cfg_scale), random_remasking=remasking == "random", seed=_seed(seed),
                          **_fast_options(mode, threshold, factor, cache, refresh_every), **rows)


def image_params(seq_len: int = 1024, timesteps: int = 18, guidance_scale: float = 0.0, temperature: float = 1.0,
                 resolution: int = 512, mode: str = "exact", cache: str | None = None, refresh_every: int | None = None,
                 seed: int = 0, **rows) -> "_C.MaskgitParams":
    """Options of the MaskGIT sampler; the cosine schedule is computed as the reference computes it.
    mode "fast" (approximate): the prompt's K/V reused between refreshes, :data:`FAST_IMAGE_CACHE`;
    ``cache`` and ``refresh_every`` override it (docs/fast-mode.md). rows: row_seeds, noise_rows."""
    from .reference.samplers import maskgit_floors

    if not isinstance(timesteps, int) or timesteps <= 0:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
    if not isinstance(seq_len, int) or seq_len <= 0:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    return _C.MaskgitParams(n_tokens=seq_len, schedule=maskgit_floors(seq_len, timesteps), temperature=float(temperature),
                            guidance_scale=float(guidance_scale), resolution=int(resolution), seed=_seed(seed),
                            **_cache_options(mode, cache, refresh_every, FAST_IMAGE_CACHE), **rows)


def speech_params(max_new_tokens: int | None = None, steps: int = 256, block_length: int = 128, temperature: float = 0.0,
                  cfg_scale: float = 0.0, mode: str = "exact", threshold: float | None = None, factor: float | None = None,
                  cache: str | None = None, refresh_every: int | None = None, seed: int = 0, **rows) -> "_C.T2sParams":
    """Options of the text-to-speech sampler (fast mode as :func:`text_params`). rows: row_seeds, noise_rows."""
    return _C.T2sParams(max_new_tokens=-1 if max_new_tokens is None else int(max_new_tokens), steps=steps,
                        block_length=block_length, temperature=float(temperature), cfg_scale=float(cfg_scale),
                        seed=_seed(seed), **_fast_options(mode, threshold, factor, cache, refresh_every), **rows)


def _params(params, make, options: dict):
    if params is None:
        return make(**options)
    if options:
        raise ValueError(f"pass params= or keyword options, not both ({', '.join(options)})")
    return params


def _fast_options(mode, threshold, factor, cache, refresh_every) -> dict:
    """The selection rule and KV reuse of the LLaDA and text-to-speech samplers."""
    options = _cache_options(mode, cache, refresh_every, FAST_CACHE)
    if mode == "exact":
        if threshold is not None or factor is not None:
            raise ValueError("threshold and factor apply to mode='fast'")
        return dict(select="topk", **options)
    if threshold is not None and factor is not None:
        raise ValueError("pass threshold or factor, not both")
    if factor is not None:
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor!r}")
        return dict(select="factor", factor=float(factor), **options)
    threshold = FAST_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return dict(select="threshold", threshold=threshold, **options)


def _cache_options(mode, cache, refresh_every, fast_default: tuple[str, int]) -> dict:
    """cache and refresh_every: given, or fast mode's default, or none in exact mode."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if cache is not None and cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, not {cache!r}")
    if refresh_every is not None and (isinstance(refresh_every, bool) or not isinstance(refresh_every, (int, np.integer))
                                      or refresh_every < 0):
        raise ValueError(f"refresh_every must be an integer >= 0, got {refresh_every!r}")
    default_cache, default_every = fast_default if mode == "fast" else ("none", 0)
    cache = cache or default_cache
    if cache == "none" and refresh_every:
        raise ValueError("refresh_every applies to a KV cache (cache='prefix' or 'dual')")
    every = default_every if refresh_every is None else int(refresh_every)
    return dict(cache=cache, refresh_every=every if cache != "none" else 0)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed) & ((1 << 64) - 1)


def _optional_array(x):
    return None if x is None else _as_array(x)


def _optional_list(x):
    return None if x is None else [int(v) for v in x]


def _as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError("expected an integer array")
    return arr


def load(path: str | os.PathLike, backend: str = "auto", dtype: str | None = None, device: int = 0,
         text_vocab_size: int | None = None, progress: bool | None = None, image_tokenizer: str | None = None,
         speech_tokenizer: str | None = None, tokenizer_backend: str | None = None) -> Model:
    """Load an exported dynin_rt directory, or an HF checkpoint directory (exported into the cache
    directory ``$DYNIN_RT_CACHE`` or ~/.cache/dynin_rt on first use, with a progress bar).

    backend: "auto" (CUDA when built and a GPU is present, else CPU), "cpu" or "cuda".
    dtype: "fp32" | "bf16" | "fp16"; None keeps the exported / checkpoint dtype.
    image_tokenizer, speech_tokenizer: tokenizer directories; by default directories named like the
    released repos (magvitv2, emova_speech_tokenizer_hf, or image_tokenizer / speech_tokenizer)
    inside or beside the checkpoint. tokenizer_backend: "torch" | "onnx" | "tensorrt" | "auto".
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path!r} is not a directory")
    kwargs = dict(backend=backend, device=device, image_tokenizer=image_tokenizer, speech_tokenizer=speech_tokenizer,
                  tokenizer_backend=tokenizer_backend)
    if os.path.isfile(os.path.join(path, MANIFEST)):
        manifest = read_manifest(path)
        if dtype is not None and dtype != manifest["dtype"]:
            raise ValueError(
                f"{path} was exported as {manifest['dtype']}; re-export with `dynin-rt export --dtype {dtype}` "
                "or load the HF checkpoint directory"
            )
        return Model(path, **kwargs)
    parse_config(_read_json(os.path.join(path, "config.json")))  # fail fast on a bad config
    dtype = dtype or _checkpoint_dtype(path)
    return Model(cached_export(path, dtype, text_vocab_size=text_vocab_size, progress=progress), **kwargs)


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
