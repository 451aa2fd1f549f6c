"""Exact token sequences of every template (docs/templates.md) for the tiny release-layout tokenizer.

Special ids are written as literals from docs/token-layout.md so that a wrong constant in dynin_rt.tokens fails
here; the text parts come from the fixture tokenizer itself.
"""
import pytest

from dynin_rt import prompts
from dynin_rt.tokens import TextTokenizer, TokenLayout

BOS, EOS, MASK, IPAD = 126080, 126081, 126336, 126093
SOI, EOI, T2I, MMU, I2I, S2T, SOA, EOA, T2S, V2T = 126084, 126085, 126088, 126089, 126095, 126096, 126097, 126098, 126099, 126100
START_HEADER, END_HEADER, EOT = 126346, 126347, 126348


@pytest.fixture(scope="module")
def tok(tiny_ckpt):
    return TextTokenizer(tiny_ckpt)


@pytest.fixture(scope="module")
def layout():
    return TokenLayout(vocab_size=138752, text_vocab=126372)


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def chat_ids(tok, user):
    return [START_HEADER, *enc(tok, "user"), END_HEADER, *enc(tok, "\n" + user), EOT, START_HEADER,
            *enc(tok, "assistant"), END_HEADER, *enc(tok, "\n")]


def test_tokenizer_follows_release_layout(tok):
    assert len(tok) == 126372
    assert (tok.bos_token_id, tok.eos_token_id) == (BOS, EOS)
    assert tok.token_to_id("<|mdm_mask|>") == MASK and tok.token_to_id("<|eot_id|>") == EOT
    assert tok.decode([BOS, *enc(tok, "hi there"), EOS]) == "hi there"


@pytest.mark.parametrize(
    "think, content",
    [(None, "What is 2+2?"), (True, "What is 2+2?  \n/think"), (False, "What is 2+2?  \n/no_think")],
)
def test_text_chat(tok, think, content):
    # the chat template trims the whole user content, after the think switch is appended
    c = prompts.text_chat(tok, "  What is 2+2?  ", think=think)
    assert c.attention_mask is None
    assert c.input_ids[0].tolist() == [BOS, *chat_ids(tok, content)]


def test_image_to_text(tok, layout):
    codes = [0, 5, 8191, 17]
    c = prompts.image_to_text(tok, layout, codes, "What is this?")
    expected = [MMU, SOI, 126372, 126377, 134563, 126389, EOI, BOS, *chat_ids(tok, "What is this?")]
    assert c.input_ids[0].tolist() == expected


def test_video_to_text_concatenates_frames_without_separators(tok, layout):
    c = prompts.video_to_text(tok, layout, [[1, 2], [3, 4], [5, 6]], "Describe")
    expected = [V2T, SOI, *[126372 + i for i in range(1, 7)], EOI, BOS, *chat_ids(tok, "Describe")]
    assert c.input_ids[0].tolist() == expected


def test_speech_to_text(tok, layout):
    c = prompts.speech_to_text(tok, layout, [0, 4095, 7])
    expected = [S2T, SOA, 134564, 138659, 134571, EOA, *chat_ids(tok, "Transcribe the given audio.")]
    assert c.input_ids[0].tolist() == expected


def test_text_to_image_pads_the_129_token_text_block(tok):
    c = prompts.text_to_image(tok, "a fox")
    text = enc(tok, "a fox")
    body = [T2I, BOS, *text, EOS]
    pad = 129 - len(body)
    assert c.input_ids[0].tolist() == [IPAD] * pad + body + [SOI] + [MASK] * 1024 + [EOI]
    assert c.input_ids.shape[1] == 1155
    assert c.attention_mask[0].tolist() == [0] * pad + [1] * (len(body) + 1026)


def test_text_to_image_uncond_twin(tok):
    c = prompts.text_to_image(tok, "")
    assert c.input_ids[0, :130].tolist() == [IPAD] * 126 + [T2I, BOS, EOS, SOI]


def test_text_to_image_truncates_keeping_a_final_eos(tok):
    c = prompts.text_to_image(tok, "x" * 300, num_image_tokens=4)
    assert c.input_ids.shape[1] == 129 + 6
    block = c.input_ids[0, :129].tolist()
    assert block[:2] == [T2I, BOS] and block[-1] == EOS and IPAD not in block
    assert c.attention_mask[0].tolist() == [1] * 135


def test_image_edit_train_template(tok, layout):
    src = [3, 2, 1, 0]
    c = prompts.image_edit(tok, layout, src, "make it night", num_image_tokens=4)
    text = [BOS, *enc(tok, "make it night"), EOS]
    pad = 129 - len(text)
    expected = [I2I, SOI, 126375, 126374, 126373, 126372, EOI] + [IPAD] * pad + text + [SOI] + [MASK] * 4 + [EOI]
    assert c.input_ids[0].tolist() == expected
    assert c.attention_mask[0].tolist() == [1] * 7 + [0] * pad + [1] * (len(text) + 6)
    full = prompts.image_edit(tok, layout, [0] * 441, "x")
    assert full.input_ids.shape[1] == 1016  # docs/templates.md


def test_text_to_speech(tok):
    c = prompts.text_to_speech(tok, "Hello there", num_units=5)
    body = [T2S, BOS, *chat_ids(tok, "Generate speech for the given text.\nHello there"), EOS]
    pad = 1025 - len(body)
    assert c.input_ids[0].tolist() == [IPAD] * pad + body + [SOA] + [MASK] * 5
    assert c.attention_mask[0].tolist() == [0] * pad + [1] * (len(body) + 6)


def test_left_pad_batches_with_ipad(tok, layout):
    a = prompts.speech_to_text(tok, layout, [1, 2, 3])
    b = prompts.speech_to_text(tok, layout, [1])
    batch = prompts.left_pad([a, b], with_mask=False)
    assert batch.attention_mask is None
    assert batch.input_ids[1].tolist() == [IPAD, IPAD] + b.input_ids[0].tolist()
    masked = prompts.left_pad([a, b])
    assert masked.attention_mask[1].tolist() == [0, 0] + [1] * b.input_ids.shape[1]


def test_ids_outside_codebooks_are_refused(tok, layout):
    with pytest.raises(ValueError, match="image code 8192"):
        prompts.image_to_text(tok, layout, [8192])
    with pytest.raises(ValueError, match="speech unit -1"):
        prompts.speech_to_text(tok, layout, [-1])
