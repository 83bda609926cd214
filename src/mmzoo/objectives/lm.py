"""Next-token language-modelling loss over supervised positions only, and the targets of
BLIP's and BLIP-2's image-grounded text decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmzoo.types import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "lm_loss"]


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, L, V) predicting ``labels`` (B, L) shifted by one.

    Positions labelled ``IGNORE_INDEX`` (prompt, image, padding) contribute nothing. BLIP's
    decoder and BLIP-2's Q-Former generation train with ``label_smoothing=0.1``.
    """
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(L-1), V)
    shift_labels = labels[:, 1:].reshape(-1)  # (B*(L-1),)
    return F.cross_entropy(
        shift_logits.float(), shift_labels, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing
    )


def decoder_targets(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_token_id: int, prompt_length: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs and labels from caption ids (B, L) as the text encoder sees them.

    BLIP and BLIP-2 tokenise a caption once ([CLS] caption [SEP]) and, for the decoder,
    replace the first token by the decoding token ([DEC], the tokenizer's BOS): the task
    token tells the shared weights which job they do. Padding is never a target, nor the
    first ``prompt_length`` tokens (BLIP's "a picture of " prompt). Returns
    ``(decoder_input_ids (B, L), labels (B, L))``; ``lm_loss`` shifts the labels.
    """
    decoder_ids = input_ids.clone()
    decoder_ids[:, 0] = bos_token_id
    labels = decoder_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    labels[:, :prompt_length] = IGNORE_INDEX
    return decoder_ids, labels
