"""Bridges: ``(B, N, D_in)`` visual tokens to ``(B, M, D_out)`` language-side tokens."""

from mmzoo.components.bridges.bridge import Bridge
from mmzoo.components.bridges.mlp import ACTIVATIONS, MLPProjector
from mmzoo.components.bridges.qformer import QFormerResampler

__all__ = ["ACTIVATIONS", "Bridge", "MLPProjector", "QFormerResampler"]
