"""BLIP and BLIP-2 stage 1 as LightningModules: three objectives on one batch each.

BLIP trains ITC, ITM (hard negatives mined from the ITC similarities) and captioning (LM)
at once; BLIP-2 stage 1 trains a Q-Former against a frozen encoder with ITC, ITM and ITG,
each under its own attention mask. Both are evaluated by retrieval (ranked by ITC, the
top k re-ranked by ITM, both reported), zero-shot classification and, for BLIP,
captioning (``conf/evaluation/blip.yaml``, ``blip2_stage1.yaml``). The compositions and
losses live in ``mmzoo.models.blip`` / ``blip2`` and ``mmzoo.objectives``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmzoo.data.captions import GROUPS
from mmzoo.eval.base import Evaluation
from mmzoo.lit.contrastive import ContrastiveModule
from mmzoo.models.blip import BlipModel
from mmzoo.models.blip2 import Blip2Stage1
from mmzoo.types import ATTENTION_MASK, INPUT_IDS, PIXEL_VALUES


def _losses(out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    extra = {name: getattr(out, name) for name in out._fields if name.startswith("loss_")}
    return out.loss, extra | {"logit_scale": out.logit_scale}


class BlipModule(ContrastiveModule):
    """BLIP (Li et al. 2022): a ViT and a text side with three modes over shared weights."""

    def __init__(
        self,
        encoder: nn.Module,
        text: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        embed_dim: int = 64,
        init_temperature: float = 0.07,
        label_smoothing: float = 0.1,
        caption_prompt: str = "",
        group_key: str | None = "scene",
        generation: Mapping[str, Any] | None = None,
        freeze: Sequence[str] = (),
        pretrained_parts: Mapping[str, Any] | None = None,
        evaluation: Evaluation | None = None,
    ) -> None:
        model = BlipModel(encoder, text, embed_dim=embed_dim, init_temperature=init_temperature,
                          label_smoothing=label_smoothing, prompt_length=0)
        super().__init__(model, optimizer, scheduler, freeze, pretrained_parts, evaluation)
        self.caption_prompt = caption_prompt
        self.group_key = group_key
        self.generation = {"max_new_tokens": 24, "num_beams": 1, "do_sample": False} | dict(generation or {})

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return _losses(self.model(batch[PIXEL_VALUES], batch[INPUT_IDS], batch[ATTENTION_MASK], batch.get(GROUPS)))

    @torch.no_grad()
    def generate_text(self, pixel_values: torch.Tensor, prompt: Mapping[str, torch.Tensor], **kwargs: Any) -> list[str]:
        """Captions for a batch of images, continuing the collated caption prompt."""
        ids = self.model.generate(pixel_values.to(self.device), prompt[INPUT_IDS].to(self.device),
                                  prompt[ATTENTION_MASK].to(self.device), **(self.generation | kwargs))
        prefix = self.caption_prompt.strip()
        texts = [t.strip() for t in self.text_tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return [f"{prefix} {t}".strip() for t in texts]


class Blip2Stage1Module(ContrastiveModule):
    """BLIP-2 stage 1 (Li et al. 2023): a Q-Former learns to read a frozen image encoder."""

    def __init__(
        self,
        encoder: nn.Module,
        bridge: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        embed_dim: int = 64,
        init_temperature: float = 0.07,
        label_smoothing: float = 0.1,
        group_key: str | None = "scene",
        freeze: Sequence[str] = ("encoder",),
        pretrained_parts: Mapping[str, Any] | None = None,
        evaluation: Evaluation | None = None,
    ) -> None:
        model = Blip2Stage1(encoder, bridge, embed_dim=embed_dim, init_temperature=init_temperature,
                            label_smoothing=label_smoothing)
        super().__init__(model, optimizer, scheduler, freeze, pretrained_parts, evaluation)
        self.group_key = group_key

    @property
    def text_tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def text_max_length(self) -> int:
        return int(self.model.qformer.max_text_length)

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return _losses(self.model(batch[PIXEL_VALUES], batch[INPUT_IDS], batch[ATTENTION_MASK], batch.get(GROUPS)))
