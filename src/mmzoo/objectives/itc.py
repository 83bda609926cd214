"""Image-text contrastive loss (CLIP's InfoNCE; BLIP's and BLIP-2's ITC), symmetric.

Each rank scores its local batch against the features of *all* ranks (open_clip's
``local_loss`` with gathered features), so the effective batch is the global one while
memory stays O(B_local x B_global).

Two generalisations serve the BLIP family:

- image features may be one vector per image ``(B, E)`` (CLIP, BLIP) or one per query
  ``(B, Q, E)`` (BLIP-2): an image-text pair then scores its best query (max over Q);
- ``groups`` (B,) marks items that are the same pair in content (BLIP's image ids; the
  embedded data repeats scenes with identical captions). Every candidate of a row's group
  is a positive, with equal share of a soft target, instead of a false negative.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mmzoo.objectives.distributed import candidates, gather_tensor, gather_with_grad


class ContrastiveLogits(NamedTuple):
    """Scaled similarities of local rows against all (gathered) candidates."""

    per_image: torch.Tensor  # (B, N) local images x candidate texts; N = world * B when gathered
    per_text: torch.Tensor  # (B, N) local texts x candidate images
    positive_index: torch.Tensor  # (B,) column of each row's own pair


def pairwise_similarity(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """``(B_i, E)`` or ``(B_i, Q, E)`` against ``(B_t, E)`` -> ``(B_i, B_t)``.

    With queries, a pair's similarity is that of its best-matching query (BLIP-2).
    """
    if image_embeds.dim() == 2:
        return image_embeds @ text_embeds.T  # (B_i, B_t)
    if image_embeds.dim() != 3:
        raise ValueError(f"image features must be (B, E) or (B, Q, E), got shape {tuple(image_embeds.shape)}")
    return torch.einsum("bqe,te->bqt", image_embeds, text_embeds).amax(dim=1)  # (B_i, B_t)


def contrastive_logits(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor, gather: bool = True
) -> ContrastiveLogits:
    """Scaled similarities of this rank's images and texts against every rank's.

    image_embeds: (B, E) or (B, Q, E), text_embeds: (B, E), both L2-normalised;
    logit_scale: () = exp(learned log-scale). ``gather=False`` keeps to the local batch.
    """
    if image_embeds.shape[0] != text_embeds.shape[0] or image_embeds.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(
            f"image features {tuple(image_embeds.shape)} and text features {tuple(text_embeds.shape)} must "
            "have the same batch size and embedding width"
        )
    b = text_embeds.shape[0]
    all_images = gather_with_grad(image_embeds) if gather else image_embeds  # (N, [Q,] E)
    all_texts = gather_with_grad(text_embeds) if gather else text_embeds  # (N, E)
    offset, _ = candidates(b, all_texts.shape[0])
    per_image = logit_scale * pairwise_similarity(image_embeds, all_texts)  # (B, N)
    per_text = logit_scale * pairwise_similarity(all_images, text_embeds).T  # (B, N)
    positive_index = torch.arange(b, device=text_embeds.device) + offset
    return ContrastiveLogits(per_image, per_text, positive_index)


def candidate_groups(groups: torch.Tensor, num_candidates: int) -> torch.Tensor:
    """The groups of all ``num_candidates`` candidates: local ``groups`` (B,), gathered if needed."""
    if num_candidates == groups.shape[0]:
        return groups
    gathered = gather_tensor(groups)
    if gathered.shape[0] != num_candidates:
        raise ValueError(f"{gathered.shape[0]} gathered groups for {num_candidates} candidates")
    return gathered


def contrastive_targets(
    positive_index: torch.Tensor, num_candidates: int, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Target distribution (B, N): one-hot at each row's pair, or uniform over its group."""
    if groups is None:
        return F.one_hot(positive_index, num_candidates).float()
    same = groups[:, None] == candidate_groups(groups, num_candidates)[None, :]  # (B, N)
    return same.float() / same.sum(dim=1, keepdim=True)


def itc_loss_from_logits(
    logits: ContrastiveLogits, groups: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean of the image->text and text->image cross-entropies (BLIP-2: label_smoothing=0.1)."""
    num_candidates = logits.per_image.shape[1]
    if groups is None:
        targets = logits.positive_index
    else:
        targets = contrastive_targets(logits.positive_index, num_candidates, groups)
    loss_i2t = F.cross_entropy(logits.per_image, targets, label_smoothing=label_smoothing)
    loss_t2i = F.cross_entropy(logits.per_text, targets, label_smoothing=label_smoothing)
    return (loss_i2t + loss_t2i) / 2


def itc_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    gather: bool = True,
    groups: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Symmetric cross-entropy over image-text similarities.

    image_embeds: (B, E) or (B, Q, E), text_embeds: (B, E), L2-normalised; logit_scale: ();
    groups: (B,) optional ids, equal ids = interchangeable pairs (all counted as positives).
    """
    logits = contrastive_logits(image_embeds, text_embeds, logit_scale, gather)
    return itc_loss_from_logits(logits, groups, label_smoothing)
