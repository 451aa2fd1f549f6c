"""A tokenizer checkpoint -> its ONNX graphs in engine precision and their TensorRT engines, on a GPU
machine with TensorRT >= 10 (docs/tokenizers.md, "TensorRT engines"). Same as
``dynin-rt export tensorrt``.

    python export/tensorrt_export.py magvit|emova CHECKPOINT_DIR OUT_DIR [--precision fp16|bf16|fp32]
        [--grids 21,30,32] [--max-batch 4] [--device 0] [--rebuild]

Engines go to OUT_DIR/engines, keyed by GPU, TensorRT version, graph and profiles; the tokenizers'
``from_pretrained(..., backend="tensorrt")`` builds the same ones under their cache when missing.
"""
import sys

from dynin_rt.export.commands import main

if __name__ == "__main__":
    sys.exit(main("tensorrt", sys.argv[1:], prog="tensorrt_export.py", description=__doc__))
