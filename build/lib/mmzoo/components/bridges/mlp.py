"""The MLP projector of LLaVA: one Linear (v1) or Linear-GELU-Linear (v1.5), any depth."""

from __future__ import annotations

import torch
from torch import nn

# activations by name, so a config says ``act: gelu`` instead of a class path
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "quick_gelu": lambda: nn.GELU(approximate="tanh"),  # type: ignore[dict-item]
}


def activation(name: str) -> nn.Module:
    """The activation called ``name``; unknown names list the valid ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLPProjector(nn.Module):
    """``(B, N, in_dim) -> (B, N, out_dim)`` through ``depth`` Linear layers.

    Depth 1 is a single Linear (LLaVA v1, BLIP-2's language projection); depth 2 with GELU
    is LLaVA-1.5's ``mlp2x_gelu``. Hidden widths default to ``out_dim`` as in LLaVA.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int = 1,
        act: str = "gelu",
        hidden_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        activation(act)  # validate even when depth 1 never uses it
        hidden_dim = hidden_dim or out_dim
        widths = [in_dim] + [hidden_dim] * (depth - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(depth):
            if i > 0:
                layers.append(activation(act))
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.depth = in_dim, out_dim, depth

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, in_dim) -> (B, N, out_dim)``."""
        return self.layers(tokens)
