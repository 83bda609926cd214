"""Image <-> text retrieval recall@K, via torchmetrics.

Recall@K here is the retrieval-literature one (COCO, Flickr30k, CLIP): the fraction of
queries with a relevant item in the top K, which torchmetrics calls ``RetrievalHitRate``
(its ``RetrievalRecall`` is the fraction of *all* relevant items found, a different number
once several items are relevant).

Relevance is by *group*: two items are a match when they share a group id (on the
``shapes`` data, the canonical scene string, because identical scenes have identical
captions and no model could tell them apart). Without groups, only the paired item is
relevant, as in COCO/Flickr retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.retrieval import RetrievalHitRate


def relevance(groups: Sequence[str] | None, n: int, device: torch.device | None = None) -> torch.Tensor:
    """(N, N) bool: item i and item j describe the same thing."""
    if groups is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} items")
    ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    codes = torch.tensor([ids[g] for g in groups], device=device)
    return codes[:, None] == codes[None, :]


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Mean over queries (rows) of 'a relevant item is in the top k'."""
    q, n = similarity.shape
    indexes = torch.arange(q, device=similarity.device)[:, None].expand(q, n).reshape(-1)
    out = {}
    for k in ks:
        metric = RetrievalHitRate(top_k=k)
        out[k] = float(metric(similarity.reshape(-1).float(), relevant.reshape(-1), indexes=indexes))
    return out


def retrieval_metrics(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    groups: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K both ways for paired (N, E) normalised embeddings, plus the chance level of R@1.

    Returns keys ``t2i_r{k}``, ``i2t_r{k}`` and ``chance_r1`` (the recall@1 a random ranking
    gets in expectation, so "5x chance" is a number one can check).
    """
    relevant = relevance(groups, image_embeds.shape[0], image_embeds.device)
    sim = text_embeds.float() @ image_embeds.float().T  # (N_text, N_image)
    metrics = {f"t2i_r{k}": v for k, v in recall_at_k(sim, relevant, ks).items()}
    metrics |= {f"i2t_r{k}": v for k, v in recall_at_k(sim.T, relevant.T, ks).items()}
    metrics["chance_r1"] = float(relevant.float().mean())
    return metrics
