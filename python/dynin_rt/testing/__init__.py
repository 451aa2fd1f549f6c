"""Tiny random checkpoints in the official layouts (no downloads), for tests, benchmarks and the demo,
and a small model trained on synthetic tasks (:mod:`dynin_rt.testing.train`), the yardstick of the
approximate decoding modes."""
from .backbone import random_state_dict, tiny_config, write_backbone, write_tokenizer
from .emova import write_emova
from .magvit import random_magvit_state_dict, write_magvit
from .tasks import TASKS

__all__ = [
    "TASKS",
    "TrainConfig",
    "random_magvit_state_dict",
    "random_state_dict",
    "tiny_config",
    "trained_checkpoint",
    "write_backbone",
    "write_emova",
    "write_magvit",
    "write_tokenizer",
]


def __getattr__(name: str):
    # Loaded on first use, so that `python -m dynin_rt.testing.train` runs the module only once.
    if name in ("TrainConfig", "trained_checkpoint"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
