"""Tiny random checkpoints in the official layouts (no downloads), for tests, benchmarks and the demo."""
from .backbone import random_state_dict, tiny_config, write_backbone, write_tokenizer

__all__ = ["random_state_dict", "tiny_config", "write_backbone", "write_tokenizer"]
