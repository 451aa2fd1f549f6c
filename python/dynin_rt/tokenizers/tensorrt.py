"""Generic TensorRT engine builder from an ONNX file, with an on-disk engine cache
(docs/tokenizers.md, "TensorRT engines").

Shared by the image (MAGVIT) and speech tokenizers. Requires TensorRT >= 10, imported lazily.

Precision model
---------------
Networks are built **strongly typed**: the ONNX file decides every tensor's type. That is the only
mode TensorRT 11 has (its FP16/BF16 builder flags are removed), and in 10.x it is the flag
``STRONGLY_TYPED``. So reduced precision comes from a mixed-precision ONNX file (e.g.
``dynin_rt.tokenizers.magvit.onnx_export`` with ``precision="fp16"``: convs in fp16, normalisation and softmax
in fp32 by explicit Casts), and the same file builds the same engine on 10.x and 11.x. ``precision``
here is only a label of that file, part of the cache key, plus the TF32 switch for fp32 files.

For a plain fp32 ONNX file, ``weak_typing=True`` (TensorRT 10.x only) instead sets the FP16/BF16
builder flag and pins normalization, softmax and reduce layers (and, by default, matrix multiplies)
to fp32 with ``OBEY_PRECISION_CONSTRAINTS``.

Cache
-----
``<cache_dir>/<onnx stem>.<key>.engine`` where ``key`` hashes the GPU name and compute capability,
the TensorRT version, the ONNX file's sha256, the precision label and the profiles. A JSON file with
the same stem records those inputs. One timing cache per GPU and TensorRT version,
``<cache_dir>/timing.<gpu>.trt<version>.cache``, is loaded before and saved after each build, so
rebuilding for new profiles is fast.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

from .backends import BackendUnavailableError, file_sha256, probe_tensorrt

ENGINE_PRECISIONS = ("fp32", "fp16", "bf16")
# Layer types kept in fp32 by a weakly typed reduced-precision build (names of trt.LayerType).
WEAK_FP32_LAYERS = ("NORMALIZATION", "SOFTMAX", "REDUCE", "MATRIX_MULTIPLY")


def _gpu_identity(device: int) -> tuple[str, str]:
    import torch

    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    return name, f"sm{major}{minor}"


def _check_profiles(profiles) -> list[dict[str, tuple]]:
    if not profiles:
        raise ValueError("need at least one optimization profile")
    out = []
    for i, prof in enumerate(profiles):
        checked = {}
        for name, shapes in prof.items():
            if len(shapes) != 3:
                raise ValueError(f"profile {i}, input {name!r}: need (min, opt, max) shapes, got {shapes!r}")
            lo, opt, hi = (tuple(int(d) for d in s) for s in shapes)
            if not (len(lo) == len(opt) == len(hi)) or any(a > b or b > c for a, b, c in zip(lo, opt, hi)):
                raise ValueError(f"profile {i}, input {name!r}: need min <= opt <= max per axis, got {shapes!r}")
            checked[name] = (lo, opt, hi)
        out.append(checked)
    return out


def engine_cache_key(
    onnx_path: str, profiles, precision: str, gpu: tuple[str, str], trt_version: str, weak_typing: bool = False
) -> dict:
    """Everything an engine depends on; its sha256 names the cached file.

    Parameters
    ----------
    onnx_path : str
    profiles : list of dict
        ``{input_name: (min, opt, max)}`` per profile.
    precision : str
    gpu : tuple of str
        (device name, compute capability such as ``"sm90"``).
    trt_version : str
    weak_typing : bool

    Returns
    -------
    dict
        The key fields plus ``"key"``, a 16-hex-digit digest of them.
    """
    fields = {
        "onnx": os.path.basename(onnx_path),
        "onnx_sha256": file_sha256(onnx_path),
        "precision": precision,
        "weak_typing": weak_typing,
        "profiles": [{k: [list(s) for s in v] for k, v in sorted(p.items())} for p in profiles],
        "gpu": gpu[0],
        "compute_capability": gpu[1],
        "tensorrt": trt_version,
    }
    fields["key"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return fields


def build_engine(
    onnx_path,
    profiles,
    precision: str = "fp16",
    cache_dir=None,
    workspace_gib: float = 8.0,
    device: int = 0,
    rebuild: bool = False,
    weak_typing: bool = False,
    fp32_layers: tuple[str, ...] = WEAK_FP32_LAYERS,
) -> str:
    """Build (or reuse from the cache) a TensorRT engine for ``onnx_path``.

    Parameters
    ----------
    onnx_path : str or os.PathLike
        The ONNX file. For fp16/bf16 it must already be the mixed-precision export (module docstring).
    profiles : list of dict
        One optimization profile per dict: ``{input_name: (min_shape, opt_shape, max_shape)}``.
        Every dynamic input must appear in every profile.
    precision : str
        ``"fp32"`` (TF32 disabled), ``"fp16"`` or ``"bf16"``: the label of the ONNX file's precision.
    cache_dir : str or os.PathLike, optional
        Where engines and the timing cache live; default next to the ONNX file, in ``engines/``.
    workspace_gib : float
        Builder workspace limit.
    device : int
        CUDA device to build for.
    rebuild : bool
        Ignore a cached engine.
    weak_typing : bool
        Build an fp32 ONNX file in ``precision`` with TensorRT 10.x weak typing (see the module
        docstring); an error on TensorRT 11, which removed it.
    fp32_layers : tuple of str
        ``trt.LayerType`` names pinned to fp32 in a weakly typed fp16/bf16 build.

    Returns
    -------
    str
        Path of the serialized engine.

    Raises
    ------
    BackendUnavailableError
        TensorRT or a GPU is missing.
    RuntimeError
        The ONNX parser or the builder failed; the message carries the parser's errors.
    """
    trt = _tensorrt_module(precision, weak_typing)
    onnx_path = os.fspath(onnx_path)
    profiles = _check_profiles(profiles)
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else os.path.join(
        os.path.dirname(os.path.abspath(onnx_path)), "engines")
    os.makedirs(cache_dir, exist_ok=True)
    gpu = _gpu_identity(device)
    meta = engine_cache_key(onnx_path, profiles, precision, gpu, trt.__version__, weak_typing)
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    engine_path = os.path.join(cache_dir, f"{stem}.{meta['key']}.engine")
    if os.path.isfile(engine_path) and not rebuild:
        return engine_path

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # the parser and the timing cache stay referenced until the build: the network and the builder
    # config point into them
    network, parser = _parse_onnx(trt, builder, logger, onnx_path, weak_typing)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    _set_precision(trt, config, network, precision, weak_typing, fp32_layers)
    _add_profiles(builder, config, network, profiles, onnx_path)
    timing_path, timing_cache = _load_timing_cache(trt, config, cache_dir, gpu[0])

    import torch

    with torch.cuda.device(device):
        serialized = builder.build_serialized_network(network, config)
    del parser, timing_cache
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see its log above)")
    _write_atomic(engine_path, bytes(serialized))
    _write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
    _write_atomic(engine_path[: -len(".engine")] + ".json", json.dumps(meta, indent=2).encode())
    return engine_path


def _tensorrt_module(precision: str, weak_typing: bool):
    """``import tensorrt``, after checking that it and a GPU are here and can do what is asked."""
    status = probe_tensorrt()
    if not status.available:
        raise BackendUnavailableError(f"cannot build a TensorRT engine: {status.reason}")
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision must be one of {ENGINE_PRECISIONS}, got {precision!r}")
    import tensorrt as trt

    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} is too old: the engine builder needs >= 10")
    if weak_typing and not hasattr(trt.BuilderFlag, "FP16"):
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} has no weak typing; export a mixed-precision ONNX file instead"
        )
    return trt


def _parse_onnx(trt, builder, logger, onnx_path: str, weak_typing: bool):
    """(network, parser) of an ONNX file, strongly typed unless ``weak_typing``."""
    flags = 0
    if not weak_typing and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT {trt.__version__} could not parse {onnx_path}: {errors}")
    return network, parser


def _set_precision(trt, config, network, precision: str, weak_typing: bool, fp32_layers: tuple[str, ...]) -> None:
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # The fp32 engine is the parity reference; TF32 would round matmul/conv inputs to 10 bits.
        config.clear_flag(trt.BuilderFlag.TF32)
    if not weak_typing or precision == "fp32":
        return
    config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    keep = {getattr(trt.LayerType, name) for name in fp32_layers}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in keep:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)


def _add_profiles(builder, config, network, profiles: list[dict[str, tuple]], onnx_path: str) -> None:
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    for prof in profiles:
        unknown = set(prof) - inputs
        if unknown:
            raise ValueError(f"profile names inputs {sorted(unknown)} that {onnx_path} lacks (it has {sorted(inputs)})")
        opt_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.items():
            opt_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(opt_profile)


def _load_timing_cache(trt, config, cache_dir: str, gpu_name: str):
    """Attach this GPU's and TensorRT version's timing cache (empty when new); returns (its path, it)."""
    gpu_tag = re.sub(r"[^A-Za-z0-9]+", "_", gpu_name).strip("_")
    timing_path = os.path.join(cache_dir, f"timing.{gpu_tag}.trt{trt.__version__}.cache")
    timing_bytes = b""
    if os.path.isfile(timing_path):
        with open(timing_path, "rb") as f:
            timing_bytes = f.read()
    cache = config.create_timing_cache(timing_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return timing_path, cache


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
