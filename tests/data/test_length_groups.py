"""Length-grouped batches pad less than random ones, and lose or repeat no sample."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from mmzoo.data.conversation import VLMCollator
from mmzoo.data.datamodule import ShardDataModule
from mmzoo.data.length_groups import CollatedLength, length_grouped_batches, padding_efficiency
from mmzoo.data.templates import load_template
from mmzoo.data.tokenizer import shapes_tokenizer
from mmzoo.data.webdata import image_transform

INSTRUCTIONS = {"caption": ["Describe the image briefly."], "describe": ["Describe this image in detail."],
                "short_answer": ["Answer with one word."]}  # fmt: skip


def as_batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return {"attention_mask": mask}


def test_grouped_batches_pad_less_than_random_ones_and_keep_every_sample() -> None:
    rng = random.Random(0)
    samples = [{"id": i, "n": rng.randint(5, 120)} for i in range(500)]
    batches = list(length_grouped_batches(samples, batch_size=8, window=10, length=lambda s: s["n"],
                                          rng=random.Random(1), partial=True))  # fmt: skip
    assert sorted(s["id"] for b in batches for s in b) == list(range(500))
    assert [len(b) for b in batches].count(8) == 62  # 500 = 62 x 8 + 4: one short batch
    grouped = padding_efficiency(as_batch([s["n"] for s in b]) for b in batches)
    naive = padding_efficiency(as_batch([s["n"] for s in samples[i : i + 8]]) for i in range(0, 500, 8))
    assert grouped >= 0.9 > 0.7 > naive
    first_window = [s["id"] for b in batches[:10] for s in b]
    assert sorted(first_window) == list(range(80))  # windows of the stream, not a global sort


def test_without_partial_only_a_remainder_smaller_than_a_batch_is_dropped() -> None:
    samples = [{"n": i % 17} for i in range(45)]
    batches = list(length_grouped_batches(samples, batch_size=8, window=4, length=lambda s: s["n"],
                                          rng=random.Random(0), partial=False))  # fmt: skip
    assert [len(b) for b in batches] == [8] * 5  # 45 samples: 5 full batches, 5 dropped


def test_a_collator_without_attention_mask_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="sample_length"):
        CollatedLength(lambda samples: {"pixel_values": torch.zeros(1)})({"caption": "x"})


@pytest.fixture(scope="module")
def conversation_collator() -> VLMCollator:
    return VLMCollator(shapes_tokenizer(add_eos=False), load_template("llava_v1"), num_image_tokens=4,
                       max_length=256, tasks=["conversation", "vqa", "describe"], instructions=INSTRUCTIONS)  # fmt: skip


def test_the_data_module_switch_groups_conversations_by_length(shapes_shards: Path, conversation_collator) -> None:
    def epoch(group: bool) -> list[dict]:
        dm = ShardDataModule(train=str(shapes_shards), batch_size=4, shuffle_buffer=40, group_by_length=group,
                             group_window=5)  # fmt: skip
        transform = image_transform(16)
        dm.attach(transform, transform, conversation_collator)
        return list(dm.train_dataloader())

    naive, grouped = epoch(False), epoch(True)
    assert sorted(k["key"] for b in grouped for k in b["meta"]) == sorted(k["key"] for b in naive for k in b["meta"])
    assert len(grouped) == len(naive) == 10
    assert padding_efficiency(grouped) > padding_efficiency(naive) + 0.1
