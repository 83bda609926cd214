"""Tasks the data cannot offer fall back cleanly: caption-only data trains on its captions.

The baseline each test compares with is the embedded data, where every task is offered: the
same collator mixes tasks there and counts no fallback.
"""

from __future__ import annotations

import logging

import pytest
import torch

from mmzoo.data.conversation import VLMCollator
from mmzoo.data.shapes import make_sample
from mmzoo.data.templates import load_template
from mmzoo.data.tokenizer import shapes_tokenizer, with_sequence_marks
from mmzoo.lit.language import TextCollator
from mmzoo.objectives.lm import IGNORE_INDEX

INSTRUCTIONS = {
    "caption": ["Describe the image briefly."],
    "describe": ["Describe this image in detail."],
    "short_answer": ["Answer with one word."],
}
LLAVA_TASKS = ["caption", "vqa", "conversation"]


@pytest.fixture(scope="module")
def tokenizer():
    return with_sequence_marks(shapes_tokenizer(), add_eos=False)


def shapes_samples(n: int) -> list[dict]:
    out = []
    for i in range(n):
        _, caption, record = make_sample(i, "train", 0, 32)
        out.append({"image": torch.zeros(3, 32, 32), "caption": caption, "meta": record, "key": record["key"]})
    return out


def caption_only(samples: list[dict]) -> list[dict]:
    """What ``python -m mmzoo.data.shards folder`` writes: a caption and a json without tasks."""
    return [{**s, "meta": {"key": s["key"], "caption": s["caption"]}} for s in samples]


def supervised(batch: dict) -> list[list[int]]:
    """The supervised token ids of each sequence."""
    return [ids[labels != IGNORE_INDEX].tolist() for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True)]


def reply(tokenizer, text: str) -> list[int]:  # noqa: ANN001
    """The ids of an assistant reply in llava_v1: the text and its end marker."""
    return tokenizer(f"{text}</s>", add_special_tokens=False)["input_ids"]


def llava_collator(tokenizer, tasks=LLAVA_TASKS) -> VLMCollator:  # noqa: ANN001
    return VLMCollator(tokenizer, load_template("llava_v1"), 2, 200, tasks, INSTRUCTIONS)


def test_caption_only_data_trains_on_captions_and_counts_once(tokenizer, caplog) -> None:  # noqa: ANN001
    samples = shapes_samples(24)
    mixed = llava_collator(tokenizer)(samples)
    assert mixed["num_task_fallbacks"] == 0  # the baseline: the embedded data offers every task
    captions = [reply(tokenizer, s["caption"]) for s in samples]
    assert sum(a == b for a, b in zip(supervised(mixed), captions, strict=True)) < 24  # ... and mixes them

    collate = llava_collator(tokenizer)
    with caplog.at_level(logging.WARNING, logger="mmzoo.data.conversation"):
        first, second = collate(caption_only(samples[:12])), collate(caption_only(samples[12:]))
    assert supervised(first) + supervised(second) == captions  # every sample: its caption (and end marker)
    assert first["num_task_fallbacks"] == second["num_task_fallbacks"] == 12
    warnings = [r for r in caplog.records if "task_fallbacks" in r.getMessage()]
    assert len(warnings) == 1 and "vqa" in warnings[0].getMessage() and "conversation" in warnings[0].getMessage()


def test_a_sample_trains_on_the_configured_tasks_it_offers(tokenizer) -> None:  # noqa: ANN001
    """Q&A but no conversation, tasks [vqa, conversation]: always a question, never the caption."""
    samples = [{**s, "meta": {k: v for k, v in s["meta"].items() if k != "conversation"}} for s in shapes_samples(16)]
    batch = llava_collator(tokenizer, ["vqa", "conversation"])(samples)
    answers = [reply(tokenizer, qa["answer"]) for s in samples for qa in s["meta"]["qa"]]
    assert all(ids in answers for ids in supervised(batch))
    assert batch["num_task_fallbacks"] == 16


def test_a_task_the_data_never_offers_becomes_the_caption(tokenizer) -> None:  # noqa: ANN001
    """MiniGPT-4 stage 2's [describe] on captions: the caption, not a crash."""
    samples = caption_only(shapes_samples(4))
    batch = llava_collator(tokenizer, ["describe"])(samples)
    assert supervised(batch) == [reply(tokenizer, s["caption"]) for s in samples]


def test_language_model_pretraining_runs_on_captions(tokenizer) -> None:  # noqa: ANN001
    """The zoo LM's collator (every task, three templates) on caption-only data: caption text only."""
    samples = caption_only(shapes_samples(8))
    collate = TextCollator(tokenizer, ["plain", "llava_v1", "vicuna_v0"], ["caption", "describe", "conversation", "vqa"],
                           INSTRUCTIONS, 160, image_text="caption")  # fmt: skip
    batch = collate(samples)
    for ids, sample in zip(batch["input_ids"], samples, strict=True):
        text = " ".join(tokenizer.convert_ids_to_tokens(ids[ids != tokenizer.pad_token_id].tolist()))
        caption = " ".join(tokenizer.tokenize(sample["caption"]))
        assert text.count(caption) == 2  # in the image's place (image_text) and as the answer
