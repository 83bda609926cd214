"""BLIP-2's Q-Former: learned queries read the image through cross-attention, with modes.

The transformer is transformers' ``Blip2QFormerModel``; this module adds what BLIP-2 keeps
outside it: the query tokens and, when built with a text side (``tokenizer`` or
``vocab_size``), word + position embeddings (transformers' ``Blip2TextEmbeddings``; the
Q-Former's own ``layernorm`` completes them into BERT's embedding layer) and the text
feed-forward of every layer (``use_qformer_text_input``). The same object runs as:

- queries only (``forward``): BLIP-2 stage 2, MiniGPT-4, LLaVA with ``bridge=qformer``;
- queries + instruction (``forward(..., instruction_ids=...)``): InstructBLIP; instruction
  tokens self-attend with the queries, only queries cross-attend to the image, the output
  is the query positions;
- text only (``encode_text``): BLIP-2 stage 1's ITC text side;
- queries + text under one of BLIP-2's masks (``encode_pair``): ITM (bidirectional) and ITG
  (multimodal causal); ``unimodal`` reproduces the two separate ITC passes.

Heads (projections, ITM classifier, LM head) live on the model that trains them, so stage 2
carries no dead weights. Parameter names (``query_tokens``, ``qformer.*``, ``embeddings.*``)
are transformers' ``Blip2ForImageTextRetrieval``'s, so the stage-1 -> stage-2 hand-over and
converted checkpoints go by name. A Q-Former built without a text side drops the text-side
weights of a stage-1 state dict when loading it, as BLIP-2 stage 2 does.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoTokenizer, Blip2QFormerConfig, Blip2QFormerModel, PreTrainedTokenizerBase
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

from mmzoo.components.attention_masks import (
    additive_mask,
    bidirectional_mask,
    multimodal_causal_mask,
    unimodal_mask,
)

PairMask = Literal["unimodal", "bidirectional", "multimodal_causal"]
_MASKS = {"unimodal": unimodal_mask, "bidirectional": bidirectional_mask, "multimodal_causal": multimodal_causal_mask}
# state-dict keys of the text side: embeddings and each layer's text feed-forward
TEXT_SIDE_KEY = re.compile(r"^(embeddings\.|qformer\.encoder\.layer\.\d+\.(intermediate|output)\.)")


class QFormerResampler(nn.Module):
    """``(B, N, in_dim)`` image tokens -> ``(B, num_queries, hidden_size)`` query outputs.

    Give ``tokenizer`` (the Q-Former's own; sets ``vocab_size`` and the padding id, and is
    exposed as ``.tokenizer`` for the data path) or ``vocab_size`` for a text side; without
    either the Q-Former is queries-only and rejects text.
    """

    def __init__(
        self,
        in_dim: int,
        num_queries: int = 32,
        num_layers: int = 2,
        hidden_size: int = 768,
        num_heads: int = 12,
        intermediate_size: int = 3072,
        cross_attention_frequency: int = 1,
        vocab_size: int | None = None,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        max_text_length: int = 512,
        pad_token_id: int = 0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if tokenizer is not None:
            if vocab_size is not None and vocab_size != len(tokenizer):
                raise ValueError(f"vocab_size={vocab_size} but the tokenizer has {len(tokenizer)} tokens: give one")
            vocab_size, pad_token_id = len(tokenizer), tokenizer.pad_token_id
        self.tokenizer = tokenizer
        config = Blip2QFormerConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            cross_attention_frequency=cross_attention_frequency,
            encoder_hidden_size=in_dim,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            vocab_size=vocab_size or 1,
            max_position_embeddings=max_text_length,
            pad_token_id=pad_token_id,
            use_qformer_text_input=vocab_size is not None,  # the text feed-forward of each layer
        )
        self.config = config
        self.qformer = Blip2QFormerModel(config)
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, hidden_size) * config.initializer_range)
        self.embeddings = Blip2TextEmbeddings(config) if vocab_size is not None else None
        if self.embeddings is not None:  # BERT's init (transformers' _init_weights; N(0, 1) would swamp the LM head)
            for table in (self.embeddings.word_embeddings, self.embeddings.position_embeddings):
                nn.init.normal_(table.weight, std=config.initializer_range)
                if table.padding_idx is not None:
                    nn.init.zeros_(table.weight[table.padding_idx])
        self.in_dim, self.num_queries, self.dim = in_dim, num_queries, hidden_size
        self.max_text_length = max_text_length
        if self.embeddings is None:
            self.register_load_state_dict_pre_hook(_drop_text_side)

    @property
    def has_text(self) -> bool:
        """True when built with a text side (embeddings + text feed-forward)."""
        return self.embeddings is not None

    def _require_text(self, what: str) -> Blip2TextEmbeddings:
        if self.embeddings is None:
            raise ValueError(
                f"{what} given, but this Q-Former was built without a text side: give it a tokenizer "
                "(bridge.qformer.tokenizer) or vocab_size, as BLIP-2 stage 1 and InstructBLIP do"
            )
        return self.embeddings

    def _run(
        self,
        embeds: torch.Tensor,
        query_length: int,
        attention_mask: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.qformer(
            query_embeds=embeds,
            query_length=query_length,  # the first query_length positions cross-attend to the image
            attention_mask=attention_mask,
            encoder_hidden_states=image_tokens,
            encoder_attention_mask=image_mask,
        )
        return out.last_hidden_state  # (B, L, H)

    def encode_pair(
        self,
        image_tokens: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mask: PairMask = "bidirectional",
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[queries | text]`` under one of BLIP-2's masks -> ``(B, Q + T, H)``.

        image_tokens: (B, N, in_dim); input_ids, attention_mask: (B, T), right-padded.
        ``bidirectional``: ITM and InstructBLIP; ``multimodal_causal``: ITG; ``unimodal``:
        ITC's two passes in one.
        """
        embeddings = self._require_text("text input")
        if input_ids.shape[1] > self.max_text_length:
            raise ValueError(f"text of {input_ids.shape[1]} tokens, the Q-Former holds {self.max_text_length}")
        queries = self.query_tokens.expand(image_tokens.shape[0], -1, -1)  # (B, Q, H)
        embeds = embeddings(input_ids=input_ids, query_embeds=queries)  # (B, Q + T, H)
        allowed = _MASKS[mask](self.num_queries, attention_mask)  # (B, Q + T, Q + T)
        bias = additive_mask(allowed, self.qformer.layernorm.weight.dtype)  # (B, 1, Q + T, Q + T)
        return self._run(embeds, self.num_queries, bias, image_tokens, image_mask)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text alone (no queries, no image; the text feed-forward) -> ``(B, T, H)``.

        BLIP-2's ITC text feature is position 0 ([CLS]) of this, through a text projection.
        """
        embeds = self._require_text("text input")(input_ids=input_ids)  # (B, T, H)
        return self._run(embeds, 0, attention_mask)

    def forward(
        self,
        image_tokens: torch.Tensor,
        image_mask: torch.Tensor | None = None,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, N, in_dim)`` [+ instruction ``(B, T)``] -> ``(B, num_queries, hidden_size)``."""
        if instruction_ids is None:
            queries = self.query_tokens.expand(image_tokens.shape[0], -1, -1)  # (B, Q, H)
            return self._run(queries, self.num_queries, None, image_tokens, image_mask)
        self._require_text("instruction_ids")
        if instruction_mask is None:
            instruction_mask = torch.ones_like(instruction_ids)
        out = self.encode_pair(image_tokens, instruction_ids, instruction_mask, "bidirectional", image_mask)
        return out[:, : self.num_queries]  # (B, Q, H)


def _drop_text_side(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook of a queries-only Q-Former: ignore a stage-1 text side.

    BLIP-2 stage 2 keeps the stage-1 queries, attention, cross-attention and query
    feed-forward and has no use for the text embeddings and text feed-forward.
    """
    for key in [k for k in state_dict if k.startswith(prefix) and TEXT_SIDE_KEY.match(k[len(prefix) :])]:
        del state_dict[key]
