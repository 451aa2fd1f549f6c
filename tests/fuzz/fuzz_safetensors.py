"""atheris harness for the C++ safetensors loader: every input must either load or raise
CheckpointError; anything else (a crash, another exception) is a finding.

    python tests/fuzz/fuzz_safetensors.py CORPUS_DIR -runs=N
"""
import sys

import atheris

with atheris.instrument_imports():
    from dynin_rt import _C
    from dynin_rt.errors import CheckpointError



def test_one_input(data: bytes) -> None:
    # The same header validation the mmap loader runs, on the bytes directly.
    try:
        _C.inspect_safetensors_bytes(data)
    except CheckpointError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
