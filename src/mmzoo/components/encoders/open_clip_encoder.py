"""Vision encoders from ``open_clip`` (the ViTs CLIP was trained as, LAION weights).

Real towers come from ``open_clip.create_model`` (a name plus a pretrained tag or a local
checkpoint file); tiny ones from a ``vision_cfg`` dict in open_clip's own
``model_configs/*.json`` format, built with the same function ``create_model`` uses.
"""

from __future__ import annotations

from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from mmzoo.components.encoders.base import TokenSelection, VisionEncoder

_TINY_TEXT_CFG = {"context_length": 2, "vocab_size": 8, "width": 8, "heads": 1, "layers": 1}


class OpenClipVisionEncoder(VisionEncoder):
    """An ``open_clip`` ViT tower returning the tokens of one hidden layer.

    Give ``model_name`` (+ ``pretrained``: a tag such as ``laion2b_s34b_b79k`` or a local
    file) for a real tower, or ``vision_cfg`` for a random one. Tokens are raw block
    outputs; ``norm=True`` applies ``ln_post`` as open_clip's pooled feature does.
    ``quick_gelu`` builds a ``vision_cfg`` tower with OpenAI's QuickGELU (what the OpenAI
    weights were trained with; open_clip's ``*-quickgelu`` configs). ``gradient_checkpointing``
    recomputes block activations in the backward pass instead of keeping them.
    """

    def __init__(
        self,
        model_name: str | None = None,
        pretrained: str | None = None,
        vision_cfg: dict[str, Any] | None = None,
        embed_dim: int = 512,
        layer: int = -1,
        tokens: TokenSelection = "all",
        norm: bool = False,
        quick_gelu: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__(layer=layer, tokens=tokens)
        if (model_name is None) == (vision_cfg is None):
            raise ValueError("give exactly one of model_name (real tower) or vision_cfg (random tower)")
        if model_name is not None:
            visual = open_clip.create_model(model_name, pretrained=pretrained).visual
        else:
            # open_clip's public constructor builds both towers; a throwaway 1-layer text tower
            # is the price of not reaching into its private builders
            visual = open_clip.CLIP(embed_dim, vision_cfg=dict(vision_cfg), text_cfg=_TINY_TEXT_CFG, quick_gelu=quick_gelu).visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer):
            raise ValueError(f"OpenClipVisionEncoder needs a ViT tower, got {type(visual).__name__}")
        visual.proj = None  # the pooled projection is a head, owned by the model that needs it
        visual.set_grad_checkpointing(gradient_checkpointing)
        self.visual = visual
        self.norm = norm
        self.take = self.block_index(len(visual.transformer.resblocks))

        preprocess = getattr(visual, "preprocess_cfg", None) or {}
        self.dim = visual.transformer.width
        self.image_size = int(visual.image_size[0])
        self.mean = tuple(preprocess.get("mean") or OPENAI_DATASET_MEAN)
        self.std = tuple(preprocess.get("std") or OPENAI_DATASET_STD)
        self.num_prefix_tokens = 1  # open_clip ViTs always carry one class token
        self.num_tokens = self._count_tokens(visual.grid_size[0] * visual.grid_size[1])
        self.freeze_unused(visual.transformer.resblocks, visual.ln_post)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, N, D)``."""
        out = self.visual.forward_intermediates(
            pixel_values,
            indices=[self.take],
            stop_early=True,
            normalize_intermediates=self.norm,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        prefix = out["image_intermediates_prefix"][0]  # (B, 1, D)
        patches = out["image_intermediates"][0]  # (B, N, D)
        return self.select_tokens(torch.cat([prefix, patches], dim=1))
