"""Text-only language-model pretraining on a dataset's text (``model=lm``).

The papers freeze *pretrained* LLMs; a frozen random one cannot learn to caption through
a projector. On the embedded data the zoo therefore pretrains its tiny LLM on the
dataset's captions, descriptions, Q&A and conversations, rendered with the same
templates the vision-language models use, and saves it as a run whose ``llm`` part other
runs load with ``llm.from_run``.

What stands where the image will go matters (``image_text``). A real LLM has learned from
web text to read its context: answers depend on what came before. An LM pretrained on
these conversations with nothing in the image's place never has to read its prompt (the
caption is unpredictable from the instruction), so it learns the template and a prior,
and a projector feeding it visual tokens cannot steer it: LLaVA and MiniGPT-4 trained on
such an LM stay blind (their captions score as well on a grey image). With
``image_text="scene"`` the image's place holds the scene as text (``red circle left;
blue square right``), so the LM learns to caption and answer *from its context*, as a
pretrained LLM does, and the projector's task becomes the one the papers give it: make
the picture readable in that place.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmzoo.data.conversation import TASKS, VLMCollator, encode_segments, pad, task_weights
from mmzoo.data.templates import IMAGE_PLACEHOLDER, load_template
from mmzoo.eval.base import Evaluation
from mmzoo.lit.base import ZooModule
from mmzoo.objectives.lm import IGNORE_INDEX, lm_loss
from mmzoo.types import ATTENTION_MASK, INPUT_IDS, LABELS

POSITION_IDS = "position_ids"


class TextOnlyModel(nn.Module):
    """Holds the LLM under the part name ``llm`` so its weights are reusable by name."""

    def __init__(self, llm: nn.Module) -> None:
        super().__init__()
        self.llm = llm


IMAGE_TEXTS = (None, "scene", "caption")


def _image_stand_in(sample: Mapping[str, Any], image_text: str | None) -> str:
    """The text in the image's place: nothing, the scene's objects (``meta.scene``, the
    embedded data), or the caption (any captioned data)."""
    if image_text is None:
        return ""
    if image_text == "scene":
        scene = sample.get("meta", {}).get("scene")
        if scene:
            return f" {scene} "
    return f" {sample['caption']} "


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of sequences grouped into rows of at most ``capacity`` tokens (first fit,
    longest first): a batch of short texts fills a few full rows instead of many padded ones."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def packed_batch(sequences: Sequence[Sequence[int]], capacity: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Sequences packed into rows, each attending only to itself.

    The mask is block-diagonal and causal (``(R, 1, L, L)``, True = may attend) and positions
    restart at every sequence, so the packed batch computes exactly what the padded one
    would: the same logits and the same loss over the same supervised tokens, on a fraction
    of the tokens (the embedded data's texts fill ~40% of a padded batch).
    """
    rows = pack([len(s) for s in sequences], capacity)
    width = max(sum(len(sequences[i]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    doc = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: padding
    for r, row in enumerate(rows):
        start = 0
        for d, i in enumerate(row):
            seq = torch.tensor(sequences[i], dtype=torch.long)
            end = start + len(seq)
            ids[r, start:end] = seq
            labels[r, start + 1 : end] = seq[1:]  # a sequence's first token is never a target
            positions[r, start:end] = torch.arange(len(seq))
            doc[r, start:end] = d
            start = end
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = (doc[:, :, None] == doc[:, None, :]) & causal  # (R, L, L); padding attends to padding only
    return {INPUT_IDS: ids, ATTENTION_MASK: mask[:, None], LABELS: labels, POSITION_IDS: positions}


class TextCollator:
    """Samples -> LM batches: each sample rendered as one task in one template, all text
    supervised; ``pack=True`` packs them into rows (``packed_batch``)."""

    def __init__(
        self,
        tokenizer: Any,
        templates: Sequence[str],
        tasks: Mapping[str, float] | Sequence[str],
        instructions: Mapping[str, Sequence[str]],
        max_length: int,
        image_text: str | None = None,
        pack: bool = False,
    ) -> None:
        if image_text not in IMAGE_TEXTS:
            raise ValueError(f"image_text={image_text!r}: valid are {list(IMAGE_TEXTS)}")
        self.image_text = image_text
        self.pack = pack
        self.tokenizer = tokenizer
        self.templates = [load_template(t) for t in templates]
        self.max_length = max_length
        self._renderers = [
            VLMCollator(tokenizer, t, 1, max_length, tasks, instructions, mode="train") for t in self.templates
        ]

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = []
        for s in samples:
            rng = random.Random(zlib.crc32(str(s.get("key", s["caption"])).encode()))
            renderer = rng.choice(self._renderers)
            turns = renderer.conversation(s, renderer.sample_task(rng), rng)
            stand_in = _image_stand_in(s, self.image_text)
            segments = [(text.replace(IMAGE_PLACEHOLDER, stand_in), True) for text, _ in renderer.template.segments(turns)]
            sequences.append(encode_segments(self.tokenizer, segments, None, 0, self.max_length).input_ids)
        if self.pack:
            return packed_batch(sequences, self.max_length, self.tokenizer.pad_token_id)
        ids = pad(sequences, self.tokenizer.pad_token_id)
        mask = pad([[1] * len(s) for s in sequences], 0)
        return {INPUT_IDS: ids, ATTENTION_MASK: mask, LABELS: ids.masked_fill(mask == 0, IGNORE_INDEX)}


class LanguageModelModule(ZooModule):
    """Next-token training of ``llm`` on rendered dataset text; reports test loss and perplexity."""

    def __init__(
        self,
        llm: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        templates: Sequence[str] = ("plain", "llava_v1", "vicuna_v0"),
        tasks: Mapping[str, float] | Sequence[str] | None = None,
        instructions: Mapping[str, Sequence[str]] | None = None,
        max_length: int = 256,
        evaluation: Evaluation | None = None,
        image_text: str | None = None,
        pack: bool = False,
    ) -> None:
        if pack and getattr(llm, "is_encoder_decoder", False):
            raise ValueError("pack=true needs a decoder-only LLM (packed rows are one causal sequence): set pack=false")
        super().__init__(TextOnlyModel(llm), optimizer, scheduler, evaluation=evaluation)
        self.templates = list(templates)
        self.tasks = task_weights(tasks or TASKS)
        self.instructions = dict(instructions or {})
        self.max_length = max_length
        self.image_text = image_text
        self.pack = pack

    def image_transform(self) -> None:
        """None: text only, so the loader decodes no images."""
        return None

    def collator(self, train: bool = True) -> TextCollator:
        return TextCollator(
            self.model.llm.tokenizer, self.templates, self.tasks, self.instructions, self.max_length, self.image_text,
            self.pack,
        )

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        embeds = self.model.llm.embed(batch[INPUT_IDS])
        logits = self.model.llm(
            inputs_embeds=embeds, attention_mask=batch[ATTENTION_MASK], position_ids=batch.get(POSITION_IDS)
        ).logits
        return lm_loss(logits, batch[LABELS]), {}

    def token_loss(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        """(summed loss, supervised tokens) of a batch, for token-weighted perplexity."""
        tokens = int((batch[LABELS][:, 1:] != IGNORE_INDEX).sum())
        return float(self.loss(batch)[0]) * tokens, tokens
