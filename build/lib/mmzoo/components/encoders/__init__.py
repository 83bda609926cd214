"""Vision encoders: ``(B, 3, H, W)`` images to ``(B, N, D)`` tokens, whatever the library."""

from mmzoo.components.encoders.base import TokenSelection, VisionEncoder
from mmzoo.components.encoders.open_clip_encoder import OpenClipVisionEncoder
from mmzoo.components.encoders.timm_encoder import TimmVisionEncoder
from mmzoo.components.encoders.transformers_encoder import TransformersVisionEncoder

__all__ = [
    "OpenClipVisionEncoder",
    "TimmVisionEncoder",
    "TokenSelection",
    "TransformersVisionEncoder",
    "VisionEncoder",
]
