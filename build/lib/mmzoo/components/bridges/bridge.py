"""The bridge between a vision encoder and a language side: [Q-Former] then an MLP.

One class covers every model in the zoo: LLaVA (MLP of depth 1 or 2), BLIP-2 /
InstructBLIP (Q-Former + linear), MiniGPT-4 (frozen Q-Former + linear). Because the
Q-Former and the projector are separate children, ``bridge=mlp3`` swaps only the
projector while a model config keeps its (frozen) Q-Former.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmzoo.components.bridges.mlp import MLPProjector
from mmzoo.components.bridges.qformer import QFormerResampler


class Bridge(nn.Module):
    """``(B, N, in_dim) -> (B, M, out_dim)``; ``M = N`` without Q-Former, ``num_queries`` with.

    ``qformer`` holds ``QFormerResampler`` keyword arguments (``in_dim`` is injected).
    ``frozen=True`` freezes the Q-Former and its queries; the projector always trains.
    Dimensions are injected at build time by the model, never written in configs.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int = 1,
        act: str = "gelu",
        hidden_dim: int | None = None,
        bias: bool = True,
        qformer: dict[str, Any] | None = None,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        if frozen and qformer is None:
            raise ValueError("frozen=True but the bridge has no Q-Former: nothing to freeze")
        self.qformer = QFormerResampler(in_dim=in_dim, **qformer) if qformer is not None else None
        projector_in = self.qformer.dim if self.qformer is not None else in_dim
        self.projector = MLPProjector(projector_in, out_dim, depth=depth, act=act, hidden_dim=hidden_dim, bias=bias)
        self.frozen = frozen
        if frozen:
            self.qformer.requires_grad_(False)
        self.in_dim, self.out_dim = in_dim, out_dim

    @property
    def preserves_tokens(self) -> bool:
        """True when every input token maps to one output token (no resampling)."""
        return self.qformer is None

    def num_output_tokens(self, n_in: int) -> int:
        """How many tokens ``n_in`` visual tokens become."""
        return n_in if self.qformer is None else self.qformer.num_queries

    def frozen_modules(self) -> list[nn.Module]:
        """Children the training module must keep in eval mode and out of the optimiser."""
        return [self.qformer] if self.frozen else []

    def forward(
        self,
        image_tokens: torch.Tensor,
        image_mask: torch.Tensor | None = None,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, N, in_dim) -> (B, M, out_dim)``; instructions only reach a Q-Former."""
        if self.qformer is not None:
            image_tokens = self.qformer(image_tokens, image_mask, instruction_ids, instruction_mask)  # (B, Q, H)
        elif instruction_ids is not None:
            raise ValueError("instruction_ids need a Q-Former bridge (InstructBLIP); this bridge has none")
        return self.projector(image_tokens)  # (B, M, out_dim)
