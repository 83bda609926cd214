"""Batch and output types shared by the data path, the models and the evaluators.

A batch is a plain ``dict[str, Tensor | list]`` produced by a model's collator in the
data path (tokenisation never happens in ``forward``); the keys used across the zoo are
named here so that a typo is a lookup error, not a silent miss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# keys of a collated batch
PIXEL_VALUES = "pixel_values"  # (B, 3, H, W) float
FEATURES = "features"  # (B, N, D) float: a frozen encoder's output in place of pixel_values (feature cache)
INPUT_IDS = "input_ids"  # (B, L) long
ATTENTION_MASK = "attention_mask"  # (B, L) long, 1 = real token
LABELS = "labels"  # (B, L) long, -100 = not supervised
CAPTIONS = "captions"  # list[str], the raw captions (for retrieval targets and metrics)
META = "meta"  # list[dict], the sample's json record

# the placeholder a prompt holds where the image goes; LLM tokenizers get it as a special
# token (the collator expands it to one position per visual token)
IMAGE_TOKEN = "<image>"

# the label of a position that no loss supervises (prompt, image, padding); PyTorch's
# cross-entropy default, so the data path (collators) and the objectives agree without
# the data package importing the objectives
IGNORE_INDEX = -100


class DualEncoderOutput(NamedTuple):
    """Normalised embeddings of a batch, as used by contrastive objectives."""

    image_embeds: torch.Tensor  # (B, E), L2-normalised
    text_embeds: torch.Tensor  # (B, E), L2-normalised
    logit_scale: torch.Tensor  # () scalar, exp of the learned temperature


class TextFeatures(NamedTuple):
    """What a text encoder returns."""

    tokens: torch.Tensor  # (B, L, D) last hidden state
    pooled: torch.Tensor  # (B, D) summary (EOS for CLIP, CLS for BERT)
