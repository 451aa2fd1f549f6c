"""EMOVA speech tokenizer checkpoint -> its three ONNX graphs (docs/tokenizers.md, "Exported graphs").
Same as ``dynin-rt export emova``; ``export/tensorrt_export.py emova`` also builds the engines.

    python export/emova_export.py CHECKPOINT_DIR OUT_DIR [--wave-precision fp32|fp16|bf16] [--overwrite]

``EmovaSpeech.from_pretrained(dir, backend="onnx", export_dir=OUT_DIR)`` reuses the files.
"""
import sys

from dynin_rt.export.commands import main

if __name__ == "__main__":
    sys.exit(main("emova", sys.argv[1:], prog="emova_export.py", description=__doc__))
