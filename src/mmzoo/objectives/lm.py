"""Next-token language-modelling loss over supervised positions only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmzoo.types import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "lm_loss"]


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, L, V) predicting ``labels`` (B, L) shifted by one.

    Positions labelled ``IGNORE_INDEX`` (prompt, image, padding) contribute nothing.
    """
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(L-1), V)
    shift_labels = labels[:, 1:].reshape(-1)  # (B*(L-1),)
    return F.cross_entropy(shift_logits.float(), shift_labels, ignore_index=IGNORE_INDEX)
