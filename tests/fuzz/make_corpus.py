"""Writes the seed corpus of the native weight-file fuzzer (csrc/fuzz/fuzz_weights.cc) into
tests/fuzz/corpus/: valid runtime weight files of its tiny config (one byte for the dtype, then the
file), near misses, and JSON. Run it again when the runtime layout changes:

    python tests/fuzz/make_corpus.py
"""
import json
import os
import struct

import numpy as np
from safetensors.numpy import save

D, H, V, LAYERS = 8, 16, 32, 1  # tiny_config() in csrc/fuzz/fuzz_weights.cc
DTYPES = {"f32": (0, np.float32), "f16": (2, np.float16)}  # the config byte: 0 F32, 1 BF16, 2 F16


def shapes():
    out = {"embed": (V, D), "final_norm": (D,), "lm_head": (V, D)}
    for i in range(LAYERS):
        out.update({f"layers.{i}.attn_norm": (D,), f"layers.{i}.wqkv": (3 * D, D), f"layers.{i}.wo": (D, D),
                    f"layers.{i}.ffn_norm": (D,), f"layers.{i}.w_gate_up": (2 * H, D), f"layers.{i}.w_down": (D, H)})
    return out


def weight_file(dtype, drop=None, reshape=None) -> bytes:
    rng = np.random.default_rng(0)
    tensors = {n: rng.standard_normal(s).astype(dtype) for n, s in shapes().items() if n != drop}
    if reshape:
        tensors[reshape] = tensors[reshape].reshape(-1)
    return save(tensors, metadata={"format": "dynin_rt.weights"})


def seeds() -> dict[str, bytes]:
    out = {}
    for name, (byte, dtype) in DTYPES.items():
        out[f"weights_{name}"] = bytes([byte]) + weight_file(dtype)
    out["weights_bf16_byte_f32_file"] = b"\x01" + weight_file(np.float32)  # dtype mismatch
    out["weights_missing_lm_head"] = b"\x00" + weight_file(np.float32, drop="lm_head")
    out["weights_flat_wo"] = b"\x00" + weight_file(np.float32, reshape="layers.0.wo")
    header = json.dumps({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}})
    out["safetensors_small"] = struct.pack("<Q", len(header)) + header.encode() + b"\0" * 8
    out["json_nested"] = b'{"a":[1,2.5e3,-0,true,false,null,"\\u00e9\\n"],"b":{"c":{}}}'
    return out


def main() -> None:
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
