"""Vision encoders from ``timm`` (ViT, EVA, DeiT...), e.g. BLIP-2's EVA ViT-g.

Layer selection uses ``forward_intermediates``, timm's own API for hidden states, so any
timm ViT-style model works without knowing its block layout.
"""

from __future__ import annotations

from typing import Any

import timm
import torch

from mmzoo.components.encoders.base import TokenSelection, VisionEncoder


class TimmVisionEncoder(VisionEncoder):
    """A ``timm`` ViT returning the tokens of one hidden layer.

    ``checkpoint_path`` loads a local weight file through timm's pretrained loader
    (``pretrained_cfg_overlay={'file': ...}``), which also drops a classifier head the
    file may carry; ``model_kwargs`` go to ``timm.create_model`` (tiny models for tests:
    ``img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2``). ``norm`` applies the
    backbone's final norm to the selected layer. ``gradient_checkpointing`` recomputes block
    activations in the backward pass instead of keeping them (timm's ``set_grad_checkpointing``).
    """

    def __init__(
        self,
        model_name: str,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        layer: int = -1,
        tokens: TokenSelection = "all",
        norm: bool = False,
        gradient_checkpointing: bool = False,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(layer=layer, tokens=tokens)
        if checkpoint_path is not None:
            model_kwargs["pretrained_cfg_overlay"] = {"file": str(checkpoint_path)}
            pretrained = True
        self.model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, **model_kwargs)
        self.model.set_grad_checkpointing(gradient_checkpointing)
        self.norm = norm
        self.take = self.block_index(len(self.model.blocks))

        cfg = self.model.pretrained_cfg
        self.dim = self.model.num_features
        self.image_size = int(self.model.patch_embed.img_size[0])
        self.mean = tuple(cfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN))
        self.std = tuple(cfg.get("std", timm.data.IMAGENET_DEFAULT_STD))
        self.num_prefix_tokens = int(self.model.num_prefix_tokens)
        self.num_tokens = self._count_tokens(self.model.patch_embed.num_patches)
        self.freeze_unused(self.model.blocks, getattr(self.model, "norm", None))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, N, D)``."""
        (patches, prefix), = self.model.forward_intermediates(
            pixel_values,
            indices=[self.take],
            return_prefix_tokens=True,
            norm=self.norm,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )
        hidden = torch.cat([prefix, patches], dim=1) if prefix is not None else patches  # (B, P + N, D)
        return self.select_tokens(hidden)
