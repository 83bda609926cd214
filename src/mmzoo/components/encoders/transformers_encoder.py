"""Vision towers from ``transformers``: CLIP, SigLIP, BLIP and BLIP-2 (EVA ViT-g).

A hub id or local directory may hold a whole vision-language model (``openai/clip-vit-
large-patch14``, ``Salesforce/blip2-opt-2.7b``); only its vision tower is built and
loaded, and loading fails loudly if any tower weight is missing, rather than leaving the
tower silently random (transformers 5 only warns).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoConfig,
    Blip2VisionModel,
    BlipVisionModel,
    CLIPVisionModel,
    InstructBlipVisionModel,
    PreTrainedModel,
    SiglipVisionModel,
)
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from mmzoo.components.encoders.base import TokenSelection, VisionEncoder

# per family: the vision tower class, and the normalisation its weights were trained with
# (BLIP and BLIP-2 reuse CLIP's); AutoModel does not map every vision-only config
_FAMILIES: dict[str, tuple[type[PreTrainedModel], tuple[float, ...], tuple[float, ...]]] = {
    "clip": (CLIPVisionModel, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "siglip": (SiglipVisionModel, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "blip": (BlipVisionModel, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "blip-2": (Blip2VisionModel, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "instructblip": (InstructBlipVisionModel, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
}
# vision-only model types and the family they belong to
_VISION_MODEL_TYPES = {
    "clip_vision_model": "clip",
    "siglip_vision_model": "siglip",
    "blip_vision_model": "blip",
    "blip_2_vision_model": "blip-2",
    "instructblip_vision_model": "instructblip",
}
# families whose vision class does not know the composite checkpoint's key prefix
_STRIP_PREFIX = {"blip", "blip-2", "instructblip"}


def _load_vision_tower(name_or_path: str) -> tuple[PreTrainedModel, str]:
    """Build and load only the vision tower of a (possibly composite) checkpoint."""
    config = AutoConfig.from_pretrained(name_or_path)
    family = config.model_type
    if hasattr(config, "vision_config"):
        config = config.vision_config
    else:
        family = _VISION_MODEL_TYPES.get(family, family)
    if family not in _FAMILIES:
        raise ValueError(f"unsupported vision family {family!r}; known: {sorted(_FAMILIES)}")
    model_class = _FAMILIES[family][0]
    if family == "siglip":
        config.vision_use_head = False  # SigLIP's pooling head: unused here, and unused params break DDP
    key_mapping = {r"^vision_model\.": ""} if family in _STRIP_PREFIX else None
    model, info = model_class.from_pretrained(
        name_or_path, config=config, key_mapping=key_mapping, output_loading_info=True
    )
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise RuntimeError(f"{name_or_path}: vision tower weights missing from the checkpoint: {missing[:5]}...")
    return model, family


class TransformersVisionEncoder(VisionEncoder):
    """A transformers vision tower returning the tokens of one hidden layer.

    ``name_or_path`` loads pretrained weights; ``config`` (a dict with ``model_type``, e.g.
    ``clip_vision_model``) builds a random tower. Tokens are ``hidden_states[layer]``
    (pre-norm block outputs, as LLaVA takes them); ``norm=True`` applies the tower's
    ``post_layernorm``, which is what BLIP-2's Q-Former reads (its ``last_hidden_state``).

    ``gradient_checkpointing`` recomputes each block's activations in the backward pass instead
    of keeping them (less memory, about a third more compute; only while the tower trains).
    ``attn_implementation`` picks transformers' attention kernel (default ``sdpa``, PyTorch's
    scaled-dot-product attention with its flash kernels; ``eager``, ``flash_attention_2``...).
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        layer: int = -1,
        tokens: TokenSelection = "all",
        norm: bool = False,
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__(layer=layer, tokens=tokens)
        if (name_or_path is None) == (config is None):
            raise ValueError("give exactly one of name_or_path (pretrained) or config (random init)")
        if name_or_path is not None:
            self.model, family = _load_vision_tower(name_or_path)
        else:
            config = dict(config)
            model_type = config.pop("model_type")
            family = _VISION_MODEL_TYPES.get(model_type, model_type)
            if family not in _FAMILIES:
                raise ValueError(f"unsupported vision model_type {model_type!r}; known: {sorted(_VISION_MODEL_TYPES)}")
            if family == "siglip":
                config.setdefault("vision_use_head", False)
            model_class = _FAMILIES[family][0]
            self.model = model_class(model_class.config_class(**config))
        if attn_implementation is not None:
            self.model.set_attn_implementation(attn_implementation)
        if gradient_checkpointing:
            self.model.activation_checkpointing_enable()

        cfg = self.model.config
        self.norm = norm
        self.block_index(cfg.num_hidden_layers)  # validates layer early
        self.dim = cfg.hidden_size
        self.image_size = int(cfg.image_size)
        self.mean, self.std = tuple(_FAMILIES[family][1]), tuple(_FAMILIES[family][2])
        embeddings = self._tower.embeddings
        num_patches = embeddings.num_patches
        self.num_prefix_tokens = int(embeddings.num_positions - num_patches)  # 1 CLS, 0 for SigLIP
        self.num_tokens = self._count_tokens(num_patches)
        self.freeze_unused(self._tower.encoder.layers, getattr(self._tower, "post_layernorm", None))

    @property
    def _tower(self) -> torch.nn.Module:
        """The module holding embeddings/encoder/post_layernorm (older layouts wrap it)."""
        return getattr(self.model, "vision_model", self.model)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, N, D)``."""
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        hidden = out.hidden_states[self.layer]  # (B, P + N, D)
        if self.norm:
            hidden = self._tower.post_layernorm(hidden)
        return self.select_tokens(hidden)
