"""CLIP as a LightningModule: contrastive training, evaluated by retrieval and zero-shot.

The module is thin: the composition is ``DualEncoder``, the loss is ``itc_loss``, the
metrics are the configured evaluators (``conf/evaluation/contrastive.yaml``). What lives
here is the collator (tokenisation happens in the data path, in loader workers) and the
features the evaluators ask for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmzoo.eval.base import Evaluation
from mmzoo.lit.base import ZooModule
from mmzoo.models.dual_encoder import DualEncoder
from mmzoo.objectives import itc_loss
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
    """Image and text towers trained with ITC."""

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
        pretrained_parts: Mapping[str, Any] | None = None,
        evaluation: Evaluation | None = None,
    ) -> None:
        model = DualEncoder(encoder, text, bridge, embed_dim=embed_dim, init_temperature=init_temperature)
        super().__init__(model, optimizer, scheduler, freeze, pretrained_parts, evaluation)

    # ---- data path ------------------------------------------------------------------
    def image_transform(self) -> Callable:
        from mmzoo.data.webdata import image_transform

        enc = self.model.encoder
        return image_transform(enc.image_size, enc.mean, enc.std)

    def collator(self, train: bool = True) -> ClipCollator:
        return ClipCollator(self.model.text.tokenizer, self.model.text.max_length)

    # ---- training -------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.model(batch[PIXEL_VALUES], batch[INPUT_IDS], batch[ATTENTION_MASK])
        return itc_loss(out.image_embeds, out.text_embeds, out.logit_scale), {"logit_scale": out.logit_scale}

    # ---- what the evaluators ask for ------------------------------------------------
    def retrieval_features(self, batch: Mapping[str, Any], texts: bool = True) -> dict[str, torch.Tensor]:
        """Normalised image (and text) embeddings of a batch: ``{"image": (B, E), "text": (B, E)}``."""
        out = {"image": self.model.encode_image(batch[PIXEL_VALUES])}
        if texts:
            out["text"] = self.model.encode_text(batch[INPUT_IDS], batch[ATTENTION_MASK])
        return out

    def similarity(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``(N_i, E), (N_t, E) -> (N_t, N_i)`` cosine similarities."""
        return texts.float() @ images.float().T

    @torch.no_grad()
    def embed_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings ``(P, E)`` of raw strings (zero-shot class prompts)."""
        tokens = self.model.text.tokenizer(list(prompts), padding=True, return_tensors="pt").to(self.device)
        return self.model.encode_text(tokens["input_ids"], tokens["attention_mask"])
