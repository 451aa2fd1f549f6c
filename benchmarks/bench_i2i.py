"""Latency of image editing (i2i): the C++ runtime vs the PyTorch reference; options in bench_tasks.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_tasks import main  # noqa: E402

main("i2i")
