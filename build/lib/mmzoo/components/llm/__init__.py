"""The language side: transformers LMs driven by input embeddings."""

from mmzoo.components.llm.language_model import LanguageModel

__all__ = ["LanguageModel"]
