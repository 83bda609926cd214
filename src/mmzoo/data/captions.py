"""Image-caption batches for the contrastive and matching families (CLIP, BLIP, BLIP-2 stage 1).

Tokenisation happens here, in loader workers, never in ``forward``. Besides the tokens a
batch may carry ``groups``: integer ids of interchangeable pairs (on the embedded data,
identical scenes have identical captions), so contrastive and matching losses do not treat
a sample's twin as a negative; and, for evaluation, ``caption_prompt``: the start of a
caption (BOS and an optional prompt such as BLIP's "a picture of") for generation.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mmzoo.types import ATTENTION_MASK, CAPTIONS, INPUT_IDS, META, PIXEL_VALUES

GROUPS = "groups"


def group_ids(records: Sequence[Mapping[str, Any]], key: str | None) -> torch.Tensor | None:
    """``(B,)`` stable ids of ``record[key]`` (crc32, the same on every rank), or None when a record lacks it."""
    if not key or any(key not in r for r in records):
        return None
    return torch.tensor([zlib.crc32(str(r[key]).encode()) for r in records], dtype=torch.long)


class CaptionCollator:
    """Samples ``{"image", "caption", "meta"}`` -> a batch; picklable for loader workers.

    ``group_key`` names the record field whose equal values make pairs interchangeable;
    ``prompt`` (with ``generate=True``) adds ``caption_prompt`` for captioning evaluation.
    """

    def __init__(
        self, tokenizer: Any, max_length: int, group_key: str | None = None, prompt: str | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.group_key = group_key
        self.prompt = prompt

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        captions = [s["caption"] for s in samples]
        tokens = self.tokenizer(
            captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        records = [s.get("meta", {}) for s in samples]
        batch = {
            PIXEL_VALUES: torch.stack([s["image"] for s in samples]),  # (B, 3, H, W)
            INPUT_IDS: tokens["input_ids"],  # (B, L)
            ATTENTION_MASK: tokens["attention_mask"],  # (B, L)
            CAPTIONS: captions,
            META: records,
        }
        groups = group_ids(records, self.group_key)
        if groups is not None:
            batch[GROUPS] = groups
        if self.prompt is not None:
            batch["caption_prompt"] = self.prompt_batch(len(samples))
        return batch

    def prompt_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The caption's start for generation: BOS (+ the prompt's tokens), no end token."""
        ids = self.tokenizer(self.prompt, add_special_tokens=False)["input_ids"] if self.prompt else []
        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.cls_token_id
        row = torch.tensor([bos, *ids], dtype=torch.long)
        return {INPUT_IDS: row.expand(n, -1).clone(), ATTENTION_MASK: torch.ones(n, len(row), dtype=torch.long)}
