"""Loss masks checked token by token for every template; clear errors on bad conversations."""

import random

import pytest
import torch

from mmzoo.data.conversation import VLMCollator, encode_segments
from mmzoo.data.templates import load_template, prompt_words
from mmzoo.data.tokenizer import IMAGE_TOKEN, build_word_tokenizer
from mmzoo.objectives.lm import IGNORE_INDEX

WORDS = "a red circle on the left what colour is it the circle blue square how many shapes are there one two".split()
INSTRUCTIONS = {"caption": ["Describe the image briefly."], "describe": ["Describe this image in detail."]}
CONVERSATION = [
    {"from": "human", "value": "<image>\nwhat colour is the circle?"},
    {"from": "gpt", "value": "the circle is red."},
    {"from": "human", "value": "how many shapes are there?"},
    {"from": "gpt", "value": "there is one."},
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer([*WORDS, *prompt_words()], add_eos=False)


def collator(tokenizer, template, n_image=3, max_length=200, **kw):
    return VLMCollator(tokenizer, load_template(template), n_image, max_length, {"conversation": 1.0}, INSTRUCTIONS, **kw)


def supervised_and_rest(tokenizer, enc):
    ids, labels = torch.tensor(enc.input_ids), torch.tensor(enc.labels)
    sup = labels != IGNORE_INDEX
    assert torch.equal(labels[sup], ids[sup])  # supervised labels are the tokens themselves
    return ids[sup].tolist(), ids[~sup].tolist()


@pytest.mark.parametrize(
    "template,answers",
    [
        ("llava_v1", ["the circle is red.</s>", "there is one.</s>"]),
        ("vicuna_v0", ["the circle is red.###", "there is one.###"]),
        ("plain", ["the circle is red.</s>", "there is one.</s>"]),
    ],
)
def test_only_assistant_replies_are_supervised(tokenizer, template, answers):
    c = collator(tokenizer, template)
    enc = c.encode(CONVERSATION)
    supervised, _ = supervised_and_rest(tokenizer, enc)
    expected = []
    for answer in answers:
        expected += tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert supervised == expected
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert enc.input_ids.count(image_id) == 3  # expanded to the bridge's token count
    assert all(lab == IGNORE_INDEX for i, lab in zip(enc.input_ids, enc.labels, strict=True) if i == image_id)
    assert enc.input_ids[0] == tokenizer.bos_token_id and enc.labels[0] == IGNORE_INDEX


def test_llava_v1_text_layout(tokenizer):
    t = load_template("llava_v1")
    segments = t.segments(CONVERSATION)
    text = "".join(s for s, _ in segments)
    assert text.startswith(t.system + "USER: <image>\nwhat colour")
    assert "ASSISTANT: the circle is red.</s>USER: how many" in text
    assert [sup for _, sup in segments] == [False, True, False, True]


def test_vicuna_v0_wraps_image_like_minigpt4():
    t = load_template("vicuna_v0")
    prompt = t.prompt([{"from": "human", "value": "<image>\nDescribe this image in detail."}])
    assert prompt.endswith("###Human: <Img><image></Img>\nDescribe this image in detail. ###Assistant: ")


def test_batch_padding_is_masked(tokenizer):
    c = VLMCollator(tokenizer, load_template("llava_v1"), 2, 200, {"caption": 1.0, "vqa": 1.0}, INSTRUCTIONS)
    samples = [
        {"key": str(i), "image": torch.zeros(3, 8, 8), "caption": cap, "meta": {"qa": [{"question": "what colour is it?", "answer": "red"}]}}
        for i, cap in enumerate(["a red circle on the left.", "a blue square."])
    ]
    batch = c(samples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    pad_positions = batch["attention_mask"] == 0
    assert (batch["labels"][pad_positions] == IGNORE_INDEX).all()
    assert (batch["labels"] != IGNORE_INDEX).sum(1).min() > 0  # every row has supervision


def test_bad_conversations_fail_clearly(tokenizer):
    c = collator(tokenizer, "llava_v1")
    with pytest.raises(ValueError, match="no assistant turn|end with an assistant"):
        c.encode([{"from": "human", "value": "<image>\nhi"}])
    with pytest.raises(ValueError, match="placeholder"):
        c.encode([{"from": "human", "value": "no image here"}, {"from": "gpt", "value": "ok"}])
    with pytest.raises(ValueError, match="alternate"):
        c.encode([{"from": "gpt", "value": "<image>"}, {"from": "human", "value": "x"}])
    with pytest.raises(ValueError, match="unknown tasks"):
        VLMCollator(tokenizer, load_template("plain"), 1, 10, {"poetry": 1.0}, INSTRUCTIONS)


def test_truncation_is_counted_and_never_cuts_the_image(tokenizer):
    c = collator(tokenizer, "plain", n_image=3, max_length=8)
    enc = c.encode(CONVERSATION)
    assert enc.truncated and len(enc.input_ids) == 8
    with pytest.raises(ValueError, match="visual tokens"):
        encode_segments(tokenizer, [("<image>", False)], tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), 20, 8)


def test_seq2seq_targets_are_the_last_answer(tokenizer):
    c = collator(tokenizer, "llava_v1", is_encoder_decoder=True)
    sample = {"key": "k", "image": torch.zeros(3, 4, 4), "caption": "x", "meta": {"conversation": CONVERSATION}}
    batch = c([sample])
    target = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
    assert tokenizer.decode(target, skip_special_tokens=True) == "there is one."
    assert "there is one" not in tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)


def test_generation_prompts_are_left_padded(tokenizer):
    c = collator(tokenizer, "llava_v1")
    batch = c.prompts([[{"from": "human", "value": "<image>\nhi"}], CONVERSATION[:3]])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()


def test_vqa_turns_asks_every_question_of_the_image_in_one_conversation(tokenizer):
    qa = [
        {"question": "what colour is the circle?", "answer": "red", "type": "colour"},
        {"question": "how many shapes are there?", "answer": "one", "type": "count"},
    ]
    sample = {"key": "k", "caption": "a red circle on the left.", "meta": {"qa": qa}}
    instructions = {**INSTRUCTIONS, "short_answer": ["one word."]}
    c = VLMCollator(tokenizer, load_template("llava_v1"), 3, 200, ["vqa_turns"], instructions)
    turns = c.conversation(sample, c.sample_task(random.Random(0), sample), None)
    assert turns == [
        {"from": "human", "value": "<image>\nwhat colour is the circle? one word."},
        {"from": "gpt", "value": "red"},
        {"from": "human", "value": "how many shapes are there? one word."},
        {"from": "gpt", "value": "one"},
    ]
    supervised, _ = supervised_and_rest(tokenizer, c.encode(turns))
    assert tokenizer.decode(supervised) == "red </s> one </s>"  # every answer trains, no question does
    held_out = VLMCollator(tokenizer, load_template("llava_v1"), 3, 200, ["vqa_turns"], instructions, held_out=["count"])
    assert [t["value"] for t in held_out.conversation(sample, "vqa_turns", None)] == [turns[0]["value"], "red"]
