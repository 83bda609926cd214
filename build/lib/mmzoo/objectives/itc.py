"""Image-text contrastive loss (CLIP's InfoNCE), symmetric over both directions.

Each rank scores its local batch against the features of *all* ranks (open_clip's
``local_loss`` with gathered features), so the effective batch is the global one while
memory stays O(B_local x B_global).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmzoo.objectives.distributed import gather_with_grad, world


def itc_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    gather: bool = True,
) -> torch.Tensor:
    """Symmetric cross-entropy over image-text similarities.

    image_embeds, text_embeds: (B, E) L2-normalised; logit_scale: () = exp(learned temperature).
    """
    rank, _ = world()
    b = image_embeds.shape[0]
    if gather:
        all_images = gather_with_grad(image_embeds)  # (W*B, E)
        all_texts = gather_with_grad(text_embeds)  # (W*B, E)
    else:
        all_images, all_texts, rank = image_embeds, text_embeds, 0
    logits_per_image = logit_scale * image_embeds @ all_texts.T  # (B, W*B)
    logits_per_text = logit_scale * text_embeds @ all_images.T  # (B, W*B)
    targets = torch.arange(b, device=image_embeds.device) + rank * b
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2
