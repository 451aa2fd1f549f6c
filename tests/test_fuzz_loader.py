"""Fuzz the weight-file loader: libFuzzer's mutations through atheris, and structure-aware mutations
of valid headers. Every input must load or raise CheckpointError; a crash or any other exception
fails the test. The C++ readers themselves are fuzzed natively with coverage by
tests/fuzz/test_fuzz_weights.py; this file drives them through the Python entry point, so its run is
kept short (DYNIN_RT_FUZZ_RUNS, 5000 by default)."""
import json
import os
import random
import struct
import subprocess
import sys

import torch
from safetensors.torch import save

from dynin_rt import _C
from dynin_rt.errors import CheckpointError

RUNS = int(os.environ.get("DYNIN_RT_FUZZ_RUNS", "5000"))


def valid_files():
    yield save({"a": torch.zeros(3, 2), "b": torch.ones(4, dtype=torch.bfloat16)})
    yield save({"x": torch.zeros(0), "y": torch.arange(6, dtype=torch.float16).view(2, 3)})
    header = b'{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}'
    yield struct.pack("<Q", len(header)) + header + b"\0" * 8


def test_loader_survives_libfuzzer_mutations(tmp_path):
    import atheris  # noqa: F401  (in the test extras: missing is a broken install, not a skip)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, data in enumerate(valid_files()):
        (corpus / f"seed{i}.safetensors").write_bytes(data)
    harness = os.path.join(os.path.dirname(__file__), "fuzz", "fuzz_safetensors.py")
    proc = subprocess.run(
        [sys.executable, harness, str(corpus), f"-runs={RUNS}", "-max_len=4096", "-seed=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr


def mutate_header(rng: random.Random, data: bytes) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    header, payload = json.loads(data[8:8 + n]), data[8 + n:]
    name = rng.choice([k for k in header if k != "__metadata__"])
    entry = header[name]
    choice = rng.randrange(9)
    if choice == 0:
        entry["data_offsets"] = [rng.randrange(-5, 2**40), rng.randrange(-5, 2**40)]
    elif choice == 1:
        entry["shape"] = [rng.randrange(-3, 2**33) for _ in range(rng.randrange(0, 10))]
    elif choice == 2:
        entry["dtype"] = rng.choice(["F32", "BF16", "F16", "I64", "F64", "", 3, None])
    elif choice == 3:
        entry[rng.choice(["dtype", "shape", "data_offsets"])] = rng.choice([None, {}, [], "x", 1.5, [1.5, 2]])
    elif choice == 4:
        header[name + "_copy"] = dict(entry)
    elif choice == 5:
        del entry[rng.choice(["dtype", "shape", "data_offsets"])]
    elif choice == 6:
        payload = payload[: rng.randrange(0, len(payload) + 1)]
    text = json.dumps(header).encode()
    if choice == 7:  # corrupt the JSON text itself
        pos = rng.randrange(len(text))
        text = text[:pos] + bytes([rng.randrange(256)]) + text[pos + 1:]
    length = len(text)
    if choice == 8:
        length = rng.choice([0, length - 1, length + 1, 2**64 - 1, len(text) + len(payload) + 9])
    return struct.pack("<Q", length) + text + payload


def test_loader_survives_structured_header_mutations():
    rng = random.Random(0)
    seeds = list(valid_files())
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(20000):
        data = mutate_header(rng, rng.choice(seeds))
        try:
            _C.inspect_safetensors_bytes(data)
            outcomes["loaded"] += 1
        except CheckpointError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000 and outcomes["loaded"] > 10, outcomes
