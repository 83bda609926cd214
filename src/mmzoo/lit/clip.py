"""CLIP as a LightningModule: contrastive training, evaluated by retrieval and zero-shot.

The module is thin: the composition is ``DualEncoder``, the loss is ``itc_loss``, the
metrics are the configured evaluators (``conf/evaluation/contrastive.yaml``); the data
path and the evaluators' questions are answered by ``ContrastiveModule``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmzoo.eval.base import Evaluation
from mmzoo.lit.contrastive import ContrastiveModule
from mmzoo.models.dual_encoder import DualEncoder
from mmzoo.objectives import itc_loss
from mmzoo.types import ATTENTION_MASK, INPUT_IDS, PIXEL_VALUES


class ClipModule(ContrastiveModule):
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

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.model(batch[PIXEL_VALUES], batch[INPUT_IDS], batch[ATTENTION_MASK])
        return itc_loss(out.image_embeds, out.text_embeds, out.logit_scale), {"logit_scale": out.logit_scale}
