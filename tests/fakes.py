"""A stand-in backbone whose logits are a function chosen by the test, to check sampler decisions by
hand. It records every canvas it is called with."""
import torch

from dynin_rt.tokens import TokenLayout

VOCAB = 138752
L = 126372
IMAGE0 = L
SPEECH0 = L + 8192


class FakeModel:
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, logits_fn, vocab=VOCAB):
        self.logits_fn = logits_fn
        self.layout = TokenLayout(vocab_size=vocab, text_vocab=L)
        self.calls = []

    def check_ids(self, ids):
        assert ids.dim() == 2

    def __call__(self, ids, keep=None):
        self.calls.append((ids.clone(), None if keep is None else keep.clone()))
        out = torch.zeros(ids.shape[0], ids.shape[1], VOCAB)
        for row in range(ids.shape[0]):
            self.logits_fn(ids[row], out[row])
        return out
