"""The check that the CPU and the CUDA runtime tests share: one task through dynin_rt.generate on a
runtime Model equals the same call on the PyTorch reference, with tokenizer objects of its own, so
that equal images and audio follow from the pipelines, not from one object serving both sides."""
import numpy as np

import dynin_rt
from dynin_rt.tasks import registry


def separate_tokenizers(model) -> dict:
    """The reference pipeline's own MAGVIT-v2 and EMOVA objects, loaded from the model's folders."""
    from dynin_rt.tokenizers.emova import EmovaSpeech
    from dynin_rt.tokenizers.magvit import MagvitV2

    image = MagvitV2.from_pretrained(model.image_tokenizer_dir, backend="torch")
    speech = EmovaSpeech.from_pretrained(model.speech_tokenizer_dir, backend="torch")
    assert image is not model.image_tokenizer and speech is not model.speech_tokenizer
    return dict(image_tokenizer=image, speech_tokenizer=speech)


def assert_task_equals_reference(model, ref, ref_tokenizers: dict, task: str, options: dict, seed: int = 3):
    """Runs `task` on both sides and compares tokens and outputs; returns the runtime's Result."""
    got = dynin_rt.generate(model, seed=seed, progress=False, **options)
    want = dynin_rt.generate(ref, seed=seed, progress=False, **ref_tokenizers, **options)
    assert got.task == want.task == task
    assert np.array_equal(got.tokens, want.tokens)
    output = registry.get(task).output
    if output == "image":
        assert np.array_equal(np.asarray(got.image), np.asarray(want.image))
    elif output == "speech":
        assert np.array_equal(got.audio, want.audio)
    else:
        assert got.text == want.text
    return got
