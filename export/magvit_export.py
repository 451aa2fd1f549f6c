"""MAGVIT-v2 checkpoint -> its decoder and encoder ONNX graphs (docs/tokenizers.md, "Exported graphs").
Same as ``dynin-rt export magvit``; ``export/tensorrt_export.py magvit`` also builds the engines.

    python export/magvit_export.py CHECKPOINT_DIR OUT_DIR [--precision fp32|fp16|bf16] [--overwrite]

fp32 is what onnxruntime runs; fp16 / bf16 are the mixed-precision graphs for TensorRT.
``MagvitV2.from_pretrained(..., backend="onnx")`` writes the same files under its cache when missing.
"""
import sys

from dynin_rt.export.commands import main

if __name__ == "__main__":
    sys.exit(main("magvit", sys.argv[1:], prog="magvit_export.py", description=__doc__))
