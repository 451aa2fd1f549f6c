import pytest

from dynin_rt.testing import write_backbone


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny Dynin-Omni checkpoint in the official layout (sharded fp32 safetensors + tokenizer)."""
    return write_backbone(tmp_path_factory.mktemp("tiny_ckpt"))
