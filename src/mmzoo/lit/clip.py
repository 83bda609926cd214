"""CLIP as a LightningModule: contrastive training, retrieval and zero-shot evaluation.

The module is thin: the composition is ``DualEncoder``, the loss is ``itc_loss``, the
metrics come from ``mmzoo.eval``. What lives here is the collator (tokenisation happens
in the data path, in loader workers) and the test-time bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmzoo.eval.retrieval import retrieval_metrics
from mmzoo.eval.zeroshot import class_prompts, matches, zero_shot_accuracy
from mmzoo.lit.base import ZooModule
from mmzoo.models.dual_encoder import DualEncoder
from mmzoo.objectives.distributed import gather_objects
from mmzoo.types import ATTENTION_MASK, CAPTIONS, INPUT_IDS, META, PIXEL_VALUES


class ClipCollator:
    """Samples ``{"image", "caption", "meta"}`` -> a CLIP batch; picklable for loader workers."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        captions = [s["caption"] for s in samples]
        tokens = self.tokenizer(
            captions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {
            PIXEL_VALUES: torch.stack([s["image"] for s in samples]),  # (B, 3, H, W)
            INPUT_IDS: tokens["input_ids"],  # (B, L)
            ATTENTION_MASK: tokens["attention_mask"],  # (B, L)
            CAPTIONS: captions,
            META: [s.get("meta", {}) for s in samples],
        }


class ClipModule(ZooModule):
    """Image and text towers trained with ITC; evaluated by retrieval and zero-shot accuracy.

    ``zero_shot`` maps a task name to ``{"label": key in the record's labels, "classes": [...],
    "templates": [...], "expand": {...}, "where": {...}}`` (see ``mmzoo.eval.zeroshot``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        text: nn.Module,
        bridge: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        embed_dim: int = 64,
        init_temperature: float = 0.07,
        freeze: Sequence[str] = (),
        zero_shot: Mapping[str, Mapping[str, Any]] | None = None,
        group_key: str | None = "scene",
    ) -> None:
        model = DualEncoder(encoder, text, bridge, embed_dim=embed_dim, init_temperature=init_temperature)
        super().__init__(model, optimizer, scheduler, freeze)
        self.zero_shot = dict(zero_shot or {})
        self.group_key = group_key
        self._test_outputs: list[dict[str, Any]] = []
        self.results: dict[str, float] = {}

    # ---- data path ------------------------------------------------------------------
    def image_transform(self) -> Callable:
        from mmzoo.data.webdata import image_transform

        enc = self.model.encoder
        return image_transform(enc.image_size, enc.mean, enc.std)

    def collator(self, train: bool = True) -> ClipCollator:
        return ClipCollator(self.model.text.tokenizer, self.model.text.max_length)

    # ---- training -------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        from mmzoo.objectives import itc_loss

        out = self.model(batch[PIXEL_VALUES], batch[INPUT_IDS], batch[ATTENTION_MASK])
        loss = itc_loss(out.image_embeds, out.text_embeds, out.logit_scale)
        self.record_loss(loss, batch_size=len(batch[CAPTIONS]))
        self.log("train/logit_scale", out.logit_scale, batch_size=len(batch[CAPTIONS]))
        return loss

    # ---- evaluation -----------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.model(batch[PIXEL_VALUES], batch[INPUT_IDS], batch[ATTENTION_MASK])
        self._test_outputs.append(
            {"image": out.image_embeds, "text": out.text_embeds, "meta": batch[META]}
        )

    def on_test_epoch_end(self) -> None:
        rows = gather_objects(
            [(i.cpu(), t.cpu(), m) for o in self._test_outputs for i, t, m in zip(o["image"], o["text"], o["meta"], strict=True)]
        )
        images = torch.stack([r[0] for r in rows]).to(self.device)  # (N, E), every rank's samples
        texts = torch.stack([r[1] for r in rows]).to(self.device)  # (N, E)
        records = [r[2] for r in rows]
        groups = [str(r.get(self.group_key, i)) for i, r in enumerate(records)] if self.group_key else None
        results = {f"retrieval/{k}": v for k, v in retrieval_metrics(images, texts, groups).items()}
        for name, task in self.zero_shot.items():
            results |= self._zero_shot(name, task, images, records)
        self.results = results
        self.log_dict({k: float(v) for k, v in results.items()}, rank_zero_only=True)  # already global

    @torch.no_grad()
    def _zero_shot(
        self, name: str, task: Mapping[str, Any], images: torch.Tensor, records: list[dict]
    ) -> dict[str, float]:
        keep = [i for i, r in enumerate(records) if matches(r, task.get("where"))]
        if not keep:
            return {}
        prompts = class_prompts(task["classes"], task["templates"], task.get("expand"))
        class_embeds = torch.stack([self._embed_prompts(p) for p in prompts])  # (C, E)
        labels = torch.tensor([records[i]["labels"][task["label"]] for i in keep], device=images.device)
        accuracy = zero_shot_accuracy(images[keep], class_embeds, labels)
        return {f"zeroshot/{name}_acc": accuracy, f"zeroshot/{name}_chance": 1.0 / len(prompts)}

    def _embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        batch = self.model.text.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
        embeds = self.model.encode_text(batch["input_ids"], batch["attention_mask"]).mean(0)  # (E,)
        return torch.nn.functional.normalize(embeds, dim=-1)
