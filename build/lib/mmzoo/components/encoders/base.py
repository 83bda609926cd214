"""The contract every vision encoder honours, whatever library it wraps.

An encoder turns images into a sequence of tokens. Which hidden layer and which tokens
(CLS + patches, patches only, CLS only) is a constructor choice, because LLaVA takes the
penultimate layer's patch tokens while CLIP pools the last layer's CLS token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

TokenSelection = Literal["all", "patch", "cls"]


class VisionEncoder(nn.Module):
    """Base class: ``forward(pixel_values (B, 3, H, W)) -> tokens (B, N, D)``.

    Subclasses set ``dim`` (D), ``image_size``, ``mean``/``std`` (normalisation the
    weights expect), ``num_prefix_tokens`` (CLS/register tokens before the patches in
    the backbone's own output) and ``num_tokens`` (N after token selection).
    """

    dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_tokens: int
    num_prefix_tokens: int

    def __init__(self, layer: int = -1, tokens: TokenSelection = "all") -> None:
        super().__init__()
        if tokens not in ("all", "patch", "cls"):
            raise ValueError(f"tokens must be one of 'all', 'patch', 'cls', got {tokens!r}")
        self.layer = layer
        self.tokens = tokens

    @property
    def has_cls(self) -> bool:
        """True when the first output token is a CLS-style summary token."""
        return self.num_prefix_tokens > 0 and self.tokens in ("all", "cls")

    def select_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Keep the tokens asked for from a backbone hidden state (B, P + N_patch, D)."""
        if self.tokens == "patch":
            return hidden[:, self.num_prefix_tokens :]
        if self.tokens == "cls":
            if self.num_prefix_tokens == 0:
                raise ValueError(f"{type(self).__name__} has no CLS token; use tokens='all' or 'patch'")
            return hidden[:, :1]
        return hidden

    def block_index(self, depth: int) -> int:
        """The 0-based transformer block whose output is hidden layer ``self.layer``.

        ``layer`` indexes hidden states as transformers does (``hidden_states[0]`` is the
        embedding output, ``[-1]`` the last block, ``[-2]`` LLaVA's penultimate), so the
        same number means the same depth whichever library the encoder wraps.
        """
        index = self.layer if self.layer >= 0 else depth + 1 + self.layer
        if not 1 <= index <= depth:
            raise ValueError(f"layer={self.layer} is not a transformer block output of a {depth}-block encoder")
        return index - 1

    def freeze_unused(self, blocks: Sequence[nn.Module], final_norm: nn.Module | None) -> None:
        """Blocks past the selected layer, and a final norm that is not applied, never reach
        the output: give their parameters ``requires_grad=False``. DDP demands a gradient for
        every trainable parameter, and an optimiser should not carry dead weights."""
        for block in blocks[self.block_index(len(blocks)) + 1 :]:
            block.requires_grad_(False)
        if final_norm is not None and not getattr(self, "norm", False):
            final_norm.requires_grad_(False)

    def _count_tokens(self, num_patches: int) -> int:
        return {"all": num_patches + self.num_prefix_tokens, "patch": num_patches, "cls": 1}[self.tokens]
