"""Text encoders: token ids to ``TextFeatures(tokens (B, L, D), pooled (B, D))``."""

from mmzoo.components.text.base import TextEncoder
from mmzoo.components.text.blip_text import BlipText
from mmzoo.components.text.open_clip_text import OpenClipTextEncoder
from mmzoo.components.text.transformers_text import TransformersTextEncoder

__all__ = ["BlipText", "OpenClipTextEncoder", "TextEncoder", "TransformersTextEncoder"]
