"""Text encoders from ``transformers``: CLIP's text tower and BERT-style encoders.

CLIP summarises a caption at its EOS token, BERT at its first (CLS) token. A tiny tower
is built from a config dict with its vocabulary and special ids taken from the tokenizer,
so ids, embeddings and pooling agree.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel, PreTrainedTokenizerBase

from mmzoo.components.text.base import TextEncoder, eos_positions, gather_positions
from mmzoo.components.tokenization import special_token_config
from mmzoo.types import TextFeatures

_EOS_POOLED = {"clip_text_model"}  # model types summarised at EOS; all others at the first token


def _load_text_tower(name_or_path: str) -> torch.nn.Module:
    """The text tower of a text-only (BERT) or dual-encoder (CLIP) checkpoint."""
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type == "clip":
        model, info = CLIPTextModel.from_pretrained(
            name_or_path, config=config.text_config, output_loading_info=True
        )
    elif hasattr(config, "text_config"):
        raise ValueError(f"{name_or_path}: text towers of {config.model_type!r} models are not supported")
    else:
        model, info = AutoModel.from_pretrained(name_or_path, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
    if missing:
        raise RuntimeError(f"{name_or_path}: text tower weights missing from the checkpoint: {sorted(missing)[:5]}...")
    return model


class TransformersTextEncoder(TextEncoder):
    """A transformers text tower: CLIP (pooled at EOS) or BERT-style (pooled at CLS).

    Give ``name_or_path`` (hub id or local dir; the tokenizer defaults to the one saved
    there) or ``config`` (a dict with ``model_type``: ``clip_text_model`` or ``bert``...;
    ``tokenizer`` required). ``pooled`` is the last hidden state at the pooling position,
    before any projection: projections are heads, owned by the model that trains them.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        max_length: int = 77,
    ) -> None:
        super().__init__()
        if (name_or_path is None) == (config is None):
            raise ValueError("give exactly one of name_or_path (pretrained) or config (random init)")
        if isinstance(tokenizer, str) or (tokenizer is None and name_or_path is not None):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer or name_or_path)
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to build a text tower from a config")
        self.tokenizer = tokenizer

        if name_or_path is not None:
            self.model = _load_text_tower(name_or_path)
        else:
            config = dict(config)
            model_type = config.pop("model_type")
            config = {
                **special_token_config(tokenizer),
                "max_position_embeddings": max_length,
                **config,
            }
            self.model = AutoModel.from_config(AutoConfig.for_model(model_type, **config))
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # BERT's tanh pooler: we pool the CLS state (as BLIP); unused params break DDP

        cfg = self.model.config
        self.pool_at_eos = cfg.model_type in _EOS_POOLED
        if self.pool_at_eos and tokenizer.eos_token_id is None:
            raise ValueError("a CLIP text tower pools at EOS, but the tokenizer has no eos_token_id")
        self.dim = cfg.hidden_size
        self.max_length = min(max_length, cfg.max_position_embeddings)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """``(B, L), (B, L) -> TextFeatures(tokens (B, L, D), pooled (B, D))``."""
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        if self.pool_at_eos:
            pooled = gather_positions(tokens, eos_positions(input_ids, attention_mask, self.tokenizer.eos_token_id))
        else:
            pooled = tokens[:, 0]  # (B, D)
        return TextFeatures(tokens=tokens, pooled=pooled)
