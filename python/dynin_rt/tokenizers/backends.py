"""Execution backends shared by the frozen tokenizers (MAGVIT-v2 image, EMOVA speech).

A tokenizer owns a PyTorch twin of its network and may also run an exported copy of it. This file
decides *which* copy runs and provides the two generic runners for exported copies; it knows
nothing about any particular model.

Backend names
-------------
``"torch"``
    The PyTorch twin. Always available; it is the reference every other backend is checked against.
``"onnx"``
    An ONNX file run by onnxruntime, on ``CUDAExecutionProvider`` when onnxruntime has it *and* a
    CUDA GPU is visible, otherwise on ``CPUExecutionProvider``.
``"tensorrt"``
    A serialized TensorRT engine. Available when ``import tensorrt`` works and torch sees a CUDA GPU.
``"auto"``
    The first available of ``tensorrt``, ``onnx`` (CUDA, then CPU), ``torch``.

Invariants
----------
* Forcing a backend that is unavailable raises :class:`BackendUnavailableError` whose message says
  why (missing package, no GPU, missing provider). There is never a silent fallback; only ``"auto"``
  falls through, and :func:`resolve_backend` reports what it chose and why the others were skipped.
* ``tensorrt`` and ``onnxruntime`` are imported lazily, inside the probes and runners, so importing
  this module costs nothing and works on machines without them.

API
---
``BACKENDS``                      the accepted names, ``("torch", "onnx", "tensorrt", "auto")``.
``BackendStatus``                 ``name``, ``available``, ``reason``, ``providers`` (onnx only).
``probe_torch() / probe_onnx() / probe_tensorrt()``  one ``BackendStatus`` each.
``probe_all()``                   ``{name: BackendStatus}`` for the three concrete backends.
``resolve_backend(name)``         the ``BackendStatus`` to use; raises for an unknown or
                                  unavailable forced name.
``onnx_providers()``              onnxruntime providers to use, in order (CUDA first when usable).
``OnnxRunner(path)``              ``runner({name: np.ndarray}) -> {name: np.ndarray}``.
``TensorRTRunner(engine_path)``   ``runner({name: torch CUDA tensor | np.ndarray}) -> {name: ...}``;
                                  numpy in gives numpy out, torch in gives torch CUDA out.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import DyninError

BACKENDS = ("torch", "onnx", "tensorrt", "auto")
# Order in which "auto" tries the concrete backends.
AUTO_ORDER = ("tensorrt", "onnx", "torch")

_ORT_CUDA = "CUDAExecutionProvider"
_ORT_CPU = "CPUExecutionProvider"


class BackendUnavailableError(DyninError, RuntimeError):
    """A forced backend cannot run here; the message says why and what would fix it."""


@dataclass(frozen=True)
class BackendStatus:
    """Whether one concrete backend can run on this machine.

    Attributes
    ----------
    name : str
        ``"torch"``, ``"onnx"`` or ``"tensorrt"``.
    available : bool
        True when the backend can run here.
    reason : str
        When available, what it will run on (e.g. ``"onnxruntime 1.18.0 on CPUExecutionProvider"``);
        otherwise why it cannot run.
    providers : tuple of str
        onnxruntime execution providers to use, in order (empty for other backends).
    """

    name: str
    available: bool
    reason: str
    providers: tuple[str, ...] = ()


def default_cache_dir() -> str:
    """``$DYNIN_RT_CACHE`` or ``~/.cache/dynin_rt``: where exported ONNX files and engines live."""
    return os.environ.get("DYNIN_RT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dynin_rt")


def file_sha256(path) -> str:
    """Hex sha256 of a file, read in 16 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def probe_torch() -> BackendStatus:
    """The PyTorch twin: always available (on CUDA when torch sees a GPU, else CPU)."""
    import torch

    where = "cuda" if torch.cuda.is_available() else "cpu"
    return BackendStatus("torch", True, f"torch {torch.__version__} on {where}")


def onnx_providers() -> list[str]:
    """onnxruntime providers to use, in order: CUDA when onnxruntime has it and a GPU is visible.

    Returns
    -------
    list of str
        Empty when onnxruntime is not importable.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = ort.get_available_providers()
    out = []
    # NOTE: onnxruntime lists CUDAExecutionProvider whenever the GPU wheel is installed, even with no
    # device; session creation would then fail or silently run on CPU, so also require a GPU.
    if _ORT_CUDA in have and _cuda_available():
        out.append(_ORT_CUDA)
    if _ORT_CPU in have:
        out.append(_ORT_CPU)
    return out


def probe_onnx() -> BackendStatus:
    """onnxruntime, on CUDA when usable, else CPU."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        return BackendStatus("onnx", False, f"onnxruntime is not importable ({e}); pip install onnxruntime")
    providers = tuple(onnx_providers())
    if not providers:
        return BackendStatus(
            "onnx", False,
            f"onnxruntime {ort.__version__} offers neither {_ORT_CUDA} nor {_ORT_CPU} "
            f"(it has {ort.get_available_providers()})",
        )
    return BackendStatus("onnx", True, f"onnxruntime {ort.__version__} on {providers[0]}", providers)


def probe_tensorrt() -> BackendStatus:
    """TensorRT: the Python package must import and torch must see a CUDA GPU."""
    try:
        import tensorrt as trt
    except ImportError as e:
        return BackendStatus(
            "tensorrt", False, f"the tensorrt Python package is not importable ({e}); pip install tensorrt"
        )
    if not _cuda_available():
        return BackendStatus("tensorrt", False, f"tensorrt {trt.__version__} is installed but torch sees no CUDA GPU")
    import torch

    return BackendStatus("tensorrt", True, f"tensorrt {trt.__version__} on {torch.cuda.get_device_name()}")


_PROBES = {"torch": probe_torch, "onnx": probe_onnx, "tensorrt": probe_tensorrt}


def probe_all() -> dict[str, BackendStatus]:
    """Probe every concrete backend.

    Returns
    -------
    dict of str to BackendStatus
        Keys ``"tensorrt"``, ``"onnx"``, ``"torch"`` in ``AUTO_ORDER``.
    """
    return {name: _PROBES[name]() for name in AUTO_ORDER}


def resolve_backend(name: str) -> BackendStatus:
    """Pick the concrete backend for ``name``.

    Parameters
    ----------
    name : str
        One of ``BACKENDS``.

    Returns
    -------
    BackendStatus
        An available backend. For ``"auto"`` the first available of ``AUTO_ORDER``; its ``reason``
        also lists why each earlier backend was skipped.

    Raises
    ------
    ValueError
        ``name`` is not one of ``BACKENDS``.
    BackendUnavailableError
        ``name`` is a concrete backend that cannot run here.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    if name != "auto":
        status = _PROBES[name]()
        if not status.available:
            raise BackendUnavailableError(f"backend {name!r} was requested but is unavailable: {status.reason}")
        return status
    skipped = []
    for candidate in AUTO_ORDER:
        status = _PROBES[candidate]()
        if status.available:
            if skipped:
                status = BackendStatus(
                    status.name, True, f"{status.reason} (auto skipped: {'; '.join(skipped)})", status.providers
                )
            return status
        skipped.append(f"{candidate}: {status.reason}")
    raise AssertionError("unreachable: the torch backend is always available")


# ---------------------------------------------------------------------------------------------
# onnxruntime runner
# ---------------------------------------------------------------------------------------------


class OnnxRunner:
    """Run an ONNX file with onnxruntime: a dict of numpy arrays in, a dict of numpy arrays out.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file (external-data files next to it are found by onnxruntime).
    providers : list of str, optional
        Execution providers in order; default :func:`onnx_providers`.
    intra_op_threads : int, optional
        CPU threads per op; default onnxruntime's (one per physical core).

    Attributes
    ----------
    input_names, output_names : list of str
    provider : str
        The provider the session actually got first (onnxruntime may drop an unusable one).
    """

    def __init__(self, path, providers: list[str] | None = None, intra_op_threads: int | None = None):
        import onnxruntime as ort

        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file not found: {path}")
        providers = list(providers) if providers is not None else onnx_providers()
        if not providers:
            raise BackendUnavailableError(f"onnxruntime {ort.__version__} has no usable execution provider")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            opts.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the session.

        Parameters
        ----------
        inputs : dict of str to np.ndarray
            Exactly the graph's inputs, by name, with the dtypes the graph declares.

        Returns
        -------
        dict of str to np.ndarray
            Every graph output, by name.
        """
        missing = set(self.input_names) - set(inputs)
        extra = set(inputs) - set(self.input_names)
        if missing or extra:
            raise ValueError(
                f"ONNX inputs mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}; "
                f"the graph takes {self.input_names}"
            )
        feeds = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


# ---------------------------------------------------------------------------------------------
# TensorRT runner
# ---------------------------------------------------------------------------------------------


def trt_dtype_to_torch(dtype):
    """Map a ``tensorrt.DataType`` to the matching ``torch.dtype``."""
    import tensorrt as trt
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int8: torch.int8,
        trt.bool: torch.bool,
    }
    # Newer members, absent from old TensorRT releases.
    for trt_name, torch_dtype in (("int64", torch.int64), ("bfloat16", torch.bfloat16), ("uint8", torch.uint8)):
        if hasattr(trt, trt_name):
            table[getattr(trt, trt_name)] = torch_dtype
    if dtype not in table:
        raise TypeError(f"TensorRT dtype {dtype} has no torch equivalent")
    return table[dtype]


class TensorRTRunner:
    """Run a serialized TensorRT engine (TensorRT >= 10 tensor-name API) with dynamic input shapes.

    Parameters
    ----------
    engine_path : str or os.PathLike
        A file written by ``dynin_rt.tokenizers.tensorrt.build_engine``.
    device : int
        CUDA device index.

    Attributes
    ----------
    input_names, output_names : list of str
    input_dtypes : dict of str to torch.dtype
        What each input must be; inputs of another dtype are cast before the run.
    profiles : list of dict
        Per optimization profile, ``{input_name: (min, opt, max)}``.

    Notes
    -----
    Each call picks the optimization profile whose opt shapes equal the inputs' shapes, else the
    first whose [min, max] range holds them; one execution context per profile is created on first
    use. Runs on torch's current CUDA stream, so results are ordered with surrounding torch work; a
    numpy call synchronizes before returning. Safe to call from several threads: an execution context
    holds its shapes, bindings and activation memory, so calls take turns (a lock), and a call on
    another CUDA stream waits on the GPU for the previous call's work before reusing the context.
    """

    def __init__(self, engine_path, device: int = 0):
        status = probe_tensorrt()
        if not status.available:
            raise BackendUnavailableError(f"cannot run a TensorRT engine: {status.reason}")
        import tensorrt as trt
        import torch

        if not os.path.isfile(engine_path):
            raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
        self.device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with open(engine_path, "rb") as f, torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT {trt.__version__} could not deserialize {engine_path}; it was probably built by "
                "another TensorRT version or for another GPU: delete it and rebuild"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.input_dtypes = {n: trt_dtype_to_torch(self.engine.get_tensor_dtype(n)) for n in self.input_names}
        self._output_dtypes = {n: trt_dtype_to_torch(self.engine.get_tensor_dtype(n)) for n in self.output_names}
        self.profiles = [
            {n: tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(n, p)) for n in self.input_names}
            for p in range(self.engine.num_optimization_profiles)
        ]
        self._contexts = {}
        self._lock = threading.Lock()
        self._last_done = None  # a CUDA event after the last enqueued run

    def _profile_for(self, shapes: dict[str, tuple]) -> int:
        def holds(prof):
            return all(
                len(shapes[n]) == len(lo) and all(a <= d <= b for a, d, b in zip(lo, shapes[n], hi))
                for n, (lo, _, hi) in prof.items()
            )

        for p, prof in enumerate(self.profiles):
            if all(shapes[n] == opt for n, (_, opt, _) in prof.items()):
                return p
        for p, prof in enumerate(self.profiles):
            if holds(prof):
                return p
        raise ValueError(f"input shapes {shapes} lie outside every optimization profile of the engine: {self.profiles}")

    def _context(self, profile: int, stream):
        ctx = self._contexts.get(profile)
        if ctx is None:
            import tensorrt as trt

            strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
            # Per-profile device memory instead of the maximum over all profiles, when supported.
            ctx = (
                self.engine.create_execution_context(strategy.ON_PROFILE_CHANGE)
                if strategy is not None
                else self.engine.create_execution_context()
            )
            if profile != 0 and not ctx.set_optimization_profile_async(profile, stream.cuda_stream):
                raise RuntimeError(f"TensorRT could not select optimization profile {profile}")
            self._contexts[profile] = ctx
        return ctx

    def __call__(self, inputs: dict) -> dict:
        """Run the engine once.

        Parameters
        ----------
        inputs : dict of str to torch.Tensor or np.ndarray
            Exactly the engine's inputs, by name; shapes must lie inside one optimization profile.
            All numpy or all torch.

        Returns
        -------
        dict of str to torch.Tensor or np.ndarray
            Every output, by name: numpy when the inputs were numpy, else torch CUDA tensors.
        """
        import torch

        # TensorRT enqueues on the current CUDA device; make it the engine's one.
        with self._lock, torch.cuda.device(self.device):
            return self._run(inputs)

    def _run(self, inputs: dict) -> dict:
        import torch

        missing = set(self.input_names) - set(inputs)
        extra = set(inputs) - set(self.input_names)
        if missing or extra:
            raise ValueError(
                f"TensorRT inputs mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}; "
                f"the engine takes {self.input_names}"
            )
        as_numpy = all(isinstance(v, np.ndarray) for v in inputs.values())
        bound = {
            n: torch.as_tensor(inputs[n], device=self.device).to(self.input_dtypes[n]).contiguous()
            for n in self.input_names
        }
        stream = torch.cuda.current_stream(self.device)
        ctx = self._context(self._profile_for({n: tuple(t.shape) for n, t in bound.items()}), stream)
        for name, t in bound.items():
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise ValueError(f"TensorRT rejected shape {tuple(t.shape)} for input {name!r}")
            ctx.set_tensor_address(name, t.data_ptr())
        outputs = {}
        for name in self.output_names:
            out = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=self._output_dtypes[name], device=self.device)
            outputs[name] = out
            ctx.set_tensor_address(name, out.data_ptr())
        if self._last_done is not None:
            stream.wait_event(self._last_done)  # a no-op on the same stream; else orders the reuse
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        self._last_done = torch.cuda.Event()
        self._last_done.record(stream)
        if as_numpy:
            stream.synchronize()
            return {k: v.cpu().numpy() for k, v in outputs.items()}
        return outputs
