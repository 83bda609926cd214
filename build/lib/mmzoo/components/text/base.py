"""The contract every text encoder honours: token ids in, token features + a summary out.

Tokenisation happens in the data path with ``encoder.tokenizer`` (never in ``forward``),
so an encoder only ever sees ``input_ids``/``attention_mask``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmzoo.types import TextFeatures


class TextEncoder(nn.Module):
    """Base class: ``forward(input_ids (B, L), attention_mask (B, L)) -> TextFeatures``.

    Subclasses set ``dim`` (D), ``max_length`` (the longest sequence the position table
    holds; the data path truncates to it) and ``tokenizer`` (what the data path calls).
    """

    dim: int
    max_length: int
    tokenizer: Any

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        raise NotImplementedError


def eos_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of each row's first EOS token, or of its last real token when it has none.

    CLIP-style towers summarise a caption at its EOS token. Upstream code finds it with
    ``argmax(input_ids)``, which only works while EOS has the largest id in the vocabulary
    (true for OpenAI's BPE, false for our word tokenizers), so we look for the id itself.
    """
    is_eos = (input_ids == eos_token_id) & attention_mask.bool()  # (B, L)
    last_real = attention_mask.long().sum(dim=1).clamp(min=1) - 1  # (B,), right padding
    first_eos = is_eos.int().argmax(dim=1)  # (B,), 0 when absent
    return torch.where(is_eos.any(dim=1), first_eos, last_real)


def gather_positions(tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``tokens (B, L, D)`` at one position per row ``(B,)`` -> ``(B, D)``."""
    return tokens[torch.arange(tokens.shape[0], device=tokens.device), positions]
