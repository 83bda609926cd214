"""BLIP (Li et al. 2022): a ViT and a multimodal mixture of encoder-decoder, three losses.

``BlipModel`` composes a vision encoder with ``BlipText`` (unimodal encoder, image-grounded
encoder, image-grounded decoder over shared weights) and the heads BLIP trains: the ITC
projections, the logit scale and the ITM classifier. One ``forward`` computes the paper's
three losses on one batch:

- ITC between the image's first token (CLS; the mean when the encoder has none) and the
  caption's [CLS], both projected and normalised, against every rank's batch;
- ITM on the image-grounded encoder's [ENC] output, for the true pairs and for hard
  negatives drawn from the ITC similarities (``mine_hard_negatives``);
- LM: the image-grounded decoder captions the image (label smoothing 0.1, as BLIP).

Not here: BLIP's momentum encoders and queue (its ITC distillation) and CapFilt; the ITC
uses ``groups`` instead of momentum targets to spare identical captions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmzoo.components.encoders.base import VisionEncoder
from mmzoo.components.text.blip_text import BlipText
from mmzoo.objectives.itc import contrastive_logits, itc_loss_from_logits
from mmzoo.objectives.itm import gather_itm_inputs, itm_loss, itm_pairs, mine_hard_negatives
from mmzoo.objectives.lm import decoder_targets, lm_loss


class BlipOutput(NamedTuple):
    """BLIP's losses on a batch and what evaluators or logs may want from it."""

    loss: torch.Tensor  # () loss_itc + loss_itm + loss_lm
    loss_itc: torch.Tensor  # ()
    loss_itm: torch.Tensor  # ()
    loss_lm: torch.Tensor  # ()
    image_embeds: torch.Tensor  # (B, E) L2-normalised
    text_embeds: torch.Tensor  # (B, E) L2-normalised
    logit_scale: torch.Tensor  # ()
    itm_logits: torch.Tensor  # (3B, 2) positives, (negative image, text), (image, negative text)
    itm_labels: torch.Tensor  # (3B,) 1 = match


class BlipModel(nn.Module):
    """``forward(pixel_values, input_ids, attention_mask, groups=None) -> BlipOutput``.

    ``text`` is a partial ``BlipText``; the image width it cross-attends to is injected from
    the encoder. ``input_ids`` are captions as the text tokenizer makes them, right-padded;
    ``prompt_length`` leading tokens are not captioning targets (BLIP's "a picture of ").
    Parameter names follow transformers' ``BlipForImageTextRetrieval`` (``vision_proj``,
    ``text_proj``, ``itm_head``).
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        text: Callable[..., BlipText],
        embed_dim: int = 256,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        label_smoothing: float = 0.1,
        prompt_length: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.text = text(image_dim=encoder.dim)
        self.vision_proj = nn.Linear(encoder.dim, embed_dim)
        self.text_proj = nn.Linear(self.text.dim, embed_dim)
        self.itm_head = nn.Linear(self.text.dim, 2)
        # shape (1,), not (): FSDP cannot shard scalar parameters (open_clip's nonscalar_logit_scale)
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / init_temperature)))
        self.max_logit_scale = max_logit_scale
        self.label_smoothing = label_smoothing
        self.prompt_length = prompt_length
        self.embed_dim = embed_dim

    @property
    def tokenizer(self) -> Any:
        return self.text.tokenizer

    def scale(self) -> torch.Tensor:
        """exp(learned log-scale), clamped (BLIP clamps its temperature the same way)."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale).squeeze(0)  # ()

    # ---- features (retrieval, zero-shot) ----------------------------------------------
    def image_features(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D_v)`` encoder tokens -> ``(B, E)`` normalised ITC feature."""
        pooled = image_tokens[:, 0] if self.encoder.has_cls else image_tokens.mean(dim=1)  # (B, D_v)
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_features(self.encoder(pixel_values))  # (B, E)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text(input_ids, attention_mask).pooled  # (B, D_t)
        return F.normalize(self.text_proj(pooled), dim=-1)  # (B, E)

    # ---- matching (re-ranking) ----------------------------------------------------------
    def itm_logits(
        self, image_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Row-aligned pairs: image tokens (B, N, D_v) with captions (B, L) -> (B, 2) (1 = match)."""
        hidden = self.text.encode_grounded(input_ids, attention_mask, image_tokens)  # (B, L, D_t)
        return self.itm_head(hidden[:, 0])

    def itm_scores(
        self, image_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B,) match logit of each row-aligned pair, what BLIP re-ranks its top k by."""
        return self.itm_logits(image_tokens, input_ids, attention_mask)[:, 1]

    # ---- training -------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> BlipOutput:
        """pixel_values (B, 3, H, W); input_ids, attention_mask (B, L); groups (B,) optional
        ids of interchangeable pairs; ``generator`` seeds the negative sampling."""
        image_tokens = self.encoder(pixel_values)  # (B, N, D_v)
        image_embeds = self.image_features(image_tokens)  # (B, E)
        text_embeds = self.encode_text(input_ids, attention_mask)  # (B, E)
        scale = self.scale()
        logits = contrastive_logits(image_embeds, text_embeds, scale)
        loss_itc = itc_loss_from_logits(logits, groups)

        negatives = mine_hard_negatives(logits.per_image, logits.per_text, groups, generator, logits.positive_index)
        pairs = itm_pairs(negatives)
        pad = self.tokenizer.pad_token_id or 0
        images, ids, mask = gather_itm_inputs(pairs, image_tokens, input_ids, attention_mask, self.text.max_length, pad)
        itm_logits = self.itm_logits(images, ids, mask)  # (3B, 2)
        loss_itm = itm_loss(itm_logits, pairs.labels)

        _, labels = decoder_targets(input_ids, attention_mask, self.text.dec_token_id, self.prompt_length)
        lm_logits = self.text.decode(input_ids, attention_mask, image_tokens)  # (B, L, V)
        loss_lm = lm_loss(lm_logits, labels, self.label_smoothing)

        return BlipOutput(
            loss_itc + loss_itm + loss_lm, loss_itc, loss_itm, loss_lm,
            image_embeds, text_embeds, scale, itm_logits, pairs.labels,
        )

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Captions: new token ids (B, T) after ``prompt_ids`` (B, P), greedy by default."""
        return self.text.generate(self.encoder(pixel_values), prompt_ids, prompt_mask, **kwargs)
