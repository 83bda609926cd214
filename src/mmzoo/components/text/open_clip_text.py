"""Text towers from ``open_clip`` (the causal text transformer CLIP was trained with).

The tower's modules are taken over directly, so a real checkpoint (``create_model``) and
a tiny one (a ``text_cfg`` dict in open_clip's json format) run the same ``forward``.
Pooling is at the EOS id itself, not open_clip's ``argmax(ids)``, which assumes EOS has
the largest id (true for OpenAI's BPE, not for our word tokenizers).
"""

from __future__ import annotations

from typing import Any

import open_clip
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mmzoo.components.text.base import TextEncoder, eos_positions, gather_positions
from mmzoo.types import TextFeatures

# open_clip's default tokenizer is OpenAI's BPE; this is the same vocabulary as an HF tokenizer
OPENAI_BPE_TOKENIZER = "openai/clip-vit-base-patch32"


_TINY_VISION_CFG = {"image_size": 8, "patch_size": 8, "width": 8, "layers": 1, "head_width": 8}


class OpenClipTextEncoder(TextEncoder):
    """An ``open_clip`` causal text transformer returning all token states and the EOS one.

    Give ``model_name`` (+ ``pretrained`` tag or local file) for a real tower, or
    ``text_cfg`` (+ ``tokenizer``, which sets vocab size and pad/eos ids) for a random one.
    Sequences must be right-padded: the causal mask keeps pads from reaching real tokens.
    ``quick_gelu`` builds a ``text_cfg`` tower with OpenAI's QuickGELU.
    """

    def __init__(
        self,
        model_name: str | None = None,
        pretrained: str | None = None,
        text_cfg: dict[str, Any] | None = None,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        embed_dim: int = 512,
        max_length: int | None = None,
        quick_gelu: bool = False,
    ) -> None:
        super().__init__()
        if (model_name is None) == (text_cfg is None):
            raise ValueError("give exactly one of model_name (real tower) or text_cfg (random tower)")
        if model_name is not None:
            model = open_clip.create_model(model_name, pretrained=pretrained)
            tower = getattr(model, "text", model)  # CustomTextCLIP keeps a module, CLIP flattens it
            if tokenizer is None:
                hf_name = (open_clip.get_model_config(model_name) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
                tokenizer = hf_name or OPENAI_BPE_TOKENIZER
        else:
            if tokenizer is None:
                raise ValueError("a tokenizer is needed to build a text tower from text_cfg")
            cfg = {"context_length": max_length or 77, **text_cfg, "vocab_size": len(tokenizer)}
            cfg.update(pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id, pool_type="eos")
            # open_clip's public constructor flattens the text tower onto the CLIP module; a
            # throwaway 1-block vision tower is the price of not using its private builders
            tower = open_clip.CLIP(embed_dim, vision_cfg=_TINY_VISION_CFG, text_cfg=cfg, quick_gelu=quick_gelu)
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if getattr(tower, "cls_emb", None) is not None or not hasattr(tower, "token_embedding"):
            raise ValueError(f"unsupported open_clip text tower {type(tower).__name__} (CoCa / HF towers)")
        self.tokenizer = tokenizer

        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)  # (C, C) additive causal mask
        self.dim = tower.transformer.width
        context = self.positional_embedding.shape[0]
        self.max_length = min(max_length, context) if max_length else context

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """``(B, L), (B, L) -> TextFeatures(tokens (B, L, D), pooled (B, D))``."""
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]  # (B, L, D)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
        tokens = self.ln_final(self.transformer(x, attn_mask=mask))  # (B, L, D)
        positions = eos_positions(input_ids, attention_mask, self.tokenizer.eos_token_id)
        return TextFeatures(tokens=tokens, pooled=gather_positions(tokens, positions))
