"""Tiny random checkpoints in the official layouts (no downloads), for tests, benchmarks and the demo."""
from .backbone import random_state_dict, tiny_config, write_backbone, write_tokenizer
from .emova import write_emova
from .magvit import random_magvit_state_dict, write_magvit

__all__ = [
    "random_magvit_state_dict",
    "random_state_dict",
    "tiny_config",
    "write_backbone",
    "write_emova",
    "write_magvit",
    "write_tokenizer",
]
