"""Dual encoder: image tower + bridge, text tower + projection, shared embedding space.

This is CLIP's shape; BLIP and BLIP-2 stage 1 reuse it for their contrastive half. The
bridge is built here from a partial (``bridge(in_dim=..., out_dim=...)``) so its
dimensions come from the parts and are never repeated in config.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mmzoo.components.encoders.base import VisionEncoder
from mmzoo.types import DualEncoderOutput


class DualEncoder(nn.Module):
    """``forward(pixel_values, input_ids, attention_mask) -> DualEncoderOutput``.

    Image features are the bridge's output tokens pooled (CLS when the bridge keeps the
    encoder's tokens and the encoder has one, mean otherwise, e.g. after a Q-Former).
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        text: nn.Module,
        bridge: Callable[..., nn.Module],
        embed_dim: int = 64,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.text = text
        self.bridge = bridge(in_dim=encoder.dim, out_dim=embed_dim)
        # CLIP normalises the pooled token before projecting it; a Q-Former bridge reads the
        # encoder's own output instead (BLIP-2 normalises it there: ``encoder.norm=true``)
        keeps_tokens = getattr(self.bridge, "preserves_tokens", True)
        self.image_norm = nn.LayerNorm(encoder.dim) if keeps_tokens else nn.Identity()
        self.text_projection = nn.Linear(text.dim, embed_dim, bias=False)
        # shape (1,), not (): FSDP cannot shard scalar parameters (open_clip's nonscalar_logit_scale)
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / init_temperature)))
        self.max_logit_scale = max_logit_scale
        self.embed_dim = embed_dim

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.image_norm(self.encoder(pixel_values))  # (B, N, D_v)
        projected = self.bridge(tokens)  # (B, M, E)
        use_cls = getattr(self.bridge, "preserves_tokens", True) and self.encoder.has_cls
        pooled = projected[:, 0] if use_cls else projected.mean(dim=1)  # (B, E)
        return F.normalize(pooled, dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text(input_ids, attention_mask).pooled  # (B, D_t)
        return F.normalize(self.text_projection(pooled), dim=-1)  # (B, E)

    def scale(self) -> torch.Tensor:
        """exp(learned log-scale), clamped as in CLIP so training cannot diverge through it."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale).squeeze(0)  # ()

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> DualEncoderOutput:
        return DualEncoderOutput(
            self.encode_image(pixel_values), self.encode_text(input_ids, attention_mask), self.scale()
        )
