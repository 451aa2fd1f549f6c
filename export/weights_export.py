"""HF checkpoint -> the runtime's weights (manifest v1 + weights.safetensors, docs/weight-format.md).
Same as ``dynin-rt export weights``; ``dynin_rt.load`` of an HF directory does it once, into its cache.

    python export/weights_export.py HF_DIR OUT_DIR [--dtype bf16|fp16|fp32]
"""
import sys

from dynin_rt.export.commands import main

if __name__ == "__main__":
    sys.exit(main("weights", sys.argv[1:], prog="weights_export.py", description=__doc__))
