"""Image-text matching (ITM): a binary match/no-match loss on hard negatives.

BLIP and BLIP-2 train a classifier on (image, text) pairs: every true pair, plus for each
image a *hard* negative text and for each text a hard negative image, drawn in proportion
to their contrastive similarity (softmax over the candidates), so the classifier learns
from the confusable pairs rather than from easy random ones. Candidates may be gathered
from every rank (the global batch), as in both papers.

These are functions over tensors; the classifier (``itm_head``) lives on the model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mmzoo.objectives.distributed import candidates, gather_padded, gather_with_grad
from mmzoo.objectives.itc import candidate_groups


class HardNegatives(NamedTuple):
    """Candidate indices: one negative text per local image and one negative image per local text."""

    text_for_image: torch.Tensor  # (B,) column of a negative text for each local image
    image_for_text: torch.Tensor  # (B,) column of a negative image for each local text
    positive_index: torch.Tensor  # (B,) column of each local item's own pair


class ItmBatch(NamedTuple):
    """The pairs ITM classifies, as candidate indices, with their labels."""

    image_index: torch.Tensor  # (3B,) candidate image of each pair
    text_index: torch.Tensor  # (3B,) candidate text of each pair
    labels: torch.Tensor  # (3B,) 1 = matching pair, 0 = negative


def forbidden_candidates(
    positive_index: torch.Tensor, num_candidates: int, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, N) True where a candidate may not serve as a row's negative: its own pair, or
    any candidate of its group (an identical caption is no negative)."""
    rows = torch.arange(positive_index.shape[0], device=positive_index.device)
    forbidden = torch.zeros(positive_index.shape[0], num_candidates, dtype=torch.bool, device=positive_index.device)
    forbidden[rows, positive_index] = True
    if groups is not None:
        forbidden |= groups[:, None] == candidate_groups(groups, num_candidates)[None, :]
    return forbidden


def _sample(similarity: torch.Tensor, forbidden: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    weights = similarity.detach().float().masked_fill(forbidden, float("-inf")).softmax(dim=1)  # (B, N)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (B,)


def mine_hard_negatives(
    similarity_i2t: torch.Tensor,
    similarity_t2i: torch.Tensor,
    groups: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    positive_index: torch.Tensor | None = None,
) -> HardNegatives:
    """Sample a negative text per image and a negative image per text, softmax-weighted.

    similarity_i2t: (B, N) local images x candidate texts; similarity_t2i: (B, N) local texts
    x candidate images (e.g. ``ContrastiveLogits.per_image/per_text``; N = B, or the global
    batch gathered from every rank). groups: (B,) optional; candidates of the same group
    are never negatives. positive_index: (B,) each row's own column; by default this rank's
    block (``rank * B + arange(B)`` when gathered). ``generator`` must live on the
    similarities' device. Never returns a row's own pair nor a member of its group.
    """
    if similarity_i2t.shape != similarity_t2i.shape or similarity_i2t.dim() != 2:
        raise ValueError(
            f"similarities must both be (B, N), got {tuple(similarity_i2t.shape)} and {tuple(similarity_t2i.shape)}"
        )
    b, n = similarity_i2t.shape
    if positive_index is None:
        offset, _ = candidates(b, n)
        positive_index = torch.arange(b, device=similarity_i2t.device) + offset
    forbidden = forbidden_candidates(positive_index, n, groups)  # (B, N)
    stranded = forbidden.all(dim=1)
    if bool(stranded.any()):
        why = "a batch of one pair" if n == 1 else f"all {n} candidates share the group of each stranded item"
        raise ValueError(
            f"ITM hard-negative mining found no negative for {int(stranded.sum())} of {b} items ({why}): "
            "ITM needs at least one candidate pair of another group per item. Use a larger batch "
            "(data.batch_size >= 2, with distinct captions/groups in it)."
        )
    return HardNegatives(
        text_for_image=_sample(similarity_i2t, forbidden, generator),
        image_for_text=_sample(similarity_t2i, forbidden, generator),
        positive_index=positive_index,
    )


def itm_pairs(negatives: HardNegatives) -> ItmBatch:
    """(positive pairs, [negative image, text] pairs, [image, negative text] pairs) with labels.

    The order is BLIP's: B positives, then B texts with their negative image, then B
    images with their negative text. Index the candidate images/texts with these.
    """
    pos = negatives.positive_index
    b = pos.shape[0]
    image_index = torch.cat([pos, negatives.image_for_text, pos])  # (3B,)
    text_index = torch.cat([pos, pos, negatives.text_for_image])  # (3B,)
    labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)]).to(pos.device)
    return ItmBatch(image_index, text_index, labels)


def gather_itm_inputs(
    pairs: ItmBatch,
    image_tokens: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_length: int,
    pad_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ITM pairs' inputs from this rank's batch and every other rank's.

    image_tokens: (B, N, D) (gradients flow back through the gather); input_ids and
    attention_mask: (B, L), right-padded, padded to ``max_length`` before a multi-rank gather.
    Returns ``(images (3B, N, D), ids (3B, L'), mask (3B, L'))``.
    """
    all_images = gather_with_grad(image_tokens)  # (W*B, N, D)
    all_ids = gather_padded(input_ids, max_length, pad_token_id)  # (W*B, L')
    all_mask = gather_padded(attention_mask, max_length, 0)  # (W*B, L')
    return all_images[pairs.image_index], all_ids[pairs.text_index], all_mask[pairs.text_index]


def itm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the 2-way ITM logits (N, 2) (index 1 = match) against labels (N,)."""
    if logits.dim() != 2 or logits.shape[1] != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"ITM wants logits (N, 2) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(logits.float(), labels)
