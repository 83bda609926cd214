"""BLIP-2's Q-Former as a resampler: learned queries read the image through cross-attention.

The transformer is transformers' ``Blip2QFormerModel``; this module adds what BLIP-2 keeps
outside it (the query tokens) and what InstructBLIP adds (instruction embeddings that
self-attend with the queries). Parameter names (``query_tokens``, ``qformer.*``) match
transformers' BLIP-2 so converted weights load by name.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel


class QFormerResampler(nn.Module):
    """``(B, N, in_dim)`` image tokens -> ``(B, num_queries, hidden_size)`` query outputs.

    With ``vocab_size`` set, ``forward`` also takes instruction ids (from the Q-Former's own
    tokenizer): they are embedded (word + position), appended after the queries and
    self-attend with them in every layer, while only the queries cross-attend to the
    image, as in InstructBLIP. The output is the query positions only.
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
        max_instruction_length: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        config = Blip2QFormerConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            cross_attention_frequency=cross_attention_frequency,
            encoder_hidden_size=in_dim,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            use_qformer_text_input=vocab_size is not None,  # the text feed-forward of each layer
        )
        self.qformer = Blip2QFormerModel(config)
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, hidden_size) * config.initializer_range)
        if vocab_size is not None:
            self.word_embeddings = nn.Embedding(vocab_size, hidden_size)
            self.position_embeddings = nn.Embedding(max_instruction_length, hidden_size)
        else:
            self.word_embeddings = self.position_embeddings = None
        self.in_dim, self.num_queries, self.dim = in_dim, num_queries, hidden_size

    def forward(
        self,
        image_tokens: torch.Tensor,
        image_mask: torch.Tensor | None = None,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, N, in_dim)`` [+ instruction ``(B, T)``] -> ``(B, num_queries, hidden_size)``."""
        batch = image_tokens.shape[0]
        queries = self.query_tokens.expand(batch, -1, -1)  # (B, Q, H)
        attention_mask = None
        if instruction_ids is not None:
            if self.word_embeddings is None:
                raise ValueError("instruction_ids given, but this Q-Former was built without vocab_size")
            positions = torch.arange(instruction_ids.shape[1], device=instruction_ids.device)
            text = self.word_embeddings(instruction_ids) + self.position_embeddings(positions)  # (B, T, H)
            queries = torch.cat([queries, text], dim=1)  # (B, Q + T, H)
            if instruction_mask is None:
                instruction_mask = torch.ones_like(instruction_ids)
            query_mask = instruction_mask.new_ones(batch, self.num_queries)
            attention_mask = torch.cat([query_mask, instruction_mask], dim=1)  # (B, Q + T)
        out = self.qformer(
            query_embeds=queries,
            query_length=self.num_queries,  # only these cross-attend to the image
            attention_mask=attention_mask,
            encoder_hidden_states=image_tokens,
            encoder_attention_mask=image_mask,
        )
        return out.last_hidden_state[:, : self.num_queries]  # (B, Q, H)
