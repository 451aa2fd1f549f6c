import pytest

from dynin_rt.testing import write_backbone


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A tiny Dynin-Omni checkpoint in the official layout (sharded fp32 safetensors + tokenizer)."""
    return write_backbone(tmp_path_factory.mktemp("tiny_ckpt"))


@pytest.fixture(scope="session")
def runtime_cache(tmp_path_factory):
    """Keeps HF -> runtime exports of the tests out of the user's cache."""
    import os

    path = str(tmp_path_factory.mktemp("dynin_rt_cache"))
    os.environ["DYNIN_RT_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def tiny_runtime(tiny_ckpt, runtime_cache):
    import dynin_rt

    return dynin_rt.load(tiny_ckpt, backend="cpu")


@pytest.fixture(scope="session")
def tiny_reference(tiny_ckpt):
    from dynin_rt.reference import DyninOmni

    return DyninOmni.from_pretrained(tiny_ckpt)


@pytest.fixture(scope="session")
def tiny_omni(tmp_path_factory):
    """The tiny backbone with small MAGVIT-v2 and EMOVA tokenizers beside it, named as released."""
    from dynin_rt.testing import write_emova, write_magvit

    d = tmp_path_factory.mktemp("tiny_omni")
    write_backbone(d)
    write_magvit(d / "magvitv2", ch=32)
    write_emova(d / "emova_speech_tokenizer_hf", small=True)
    return str(d)


def pytest_collection_modifyitems(items):
    """Tests that wait for a background run against the emulated build (tests/variant_build.py) go
    last, so that the rest of the suite runs while it builds and runs."""
    import variant_build

    items.sort(key=lambda item: variant_build.owns_scheduled_run(getattr(item.module, "__name__", "")))


def pytest_collection_finish(session):
    """The emulated CUDA build and the runs against it take minutes: start them now, in the
    background, for the test modules that were collected."""
    if session.config.option.collectonly:
        return
    import variant_build

    variant_build.start_scheduled_runs({getattr(item.module, "__name__", "") for item in session.items})
