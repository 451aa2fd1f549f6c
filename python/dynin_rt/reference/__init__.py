"""The PyTorch reference: the official numerics, the ground truth of every fast path."""
from .model import DyninOmni
from .samplers import get_num_transfer_tokens, llada_generate, maskgit_generate, maskgit_schedule, t2s_generate

__all__ = [
    "DyninOmni",
    "get_num_transfer_tokens",
    "llada_generate",
    "maskgit_generate",
    "maskgit_schedule",
    "t2s_generate",
]
