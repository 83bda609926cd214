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
from typing import Any

import torch
from torchmetrics.retrieval import RetrievalHitRate

from mmzoo.eval.base import EvalStep, Evaluator
from mmzoo.types import META


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


def rerank_top_k(similarity: torch.Tensor, k: int, score: Any) -> torch.Tensor:
    """Re-score each query's top ``k`` candidates: ``score(query_idx, cand_idx) + similarity``.

    ``similarity`` is (Q, N); candidates outside the top k keep scores below every re-ranked
    one, so recall@K for K <= k is decided by the re-ranking alone (BLIP's protocol).
    """
    k = min(k, similarity.shape[1])
    top_sim, top_idx = similarity.topk(k, dim=1)  # (Q, k)
    queries = torch.arange(similarity.shape[0], device=similarity.device)[:, None].expand(-1, k)
    new = score(queries.reshape(-1), top_idx.reshape(-1)).reshape(-1, k).to(similarity.dtype) + top_sim
    out = torch.full_like(similarity, float("-inf"))
    return out.scatter(1, top_idx, new)


class RetrievalEvaluator(Evaluator):
    """Image <-> text recall@K from the module's embeddings (and, with ``rerank_k``, BLIP's
    ITM re-ranking of the top k by ITC; both are reported: ``t2i_r1`` and ``itm_t2i_r1``).

    The module provides ``retrieval_features(batch) -> {"image", "text", ...}`` (per-sample
    tensors; extra keys are kept for re-ranking), ``similarity(images, texts) -> (N_t, N_i)``
    and, for re-ranking, ``itm_scores(features_of_images, features_of_texts) -> (K,)``.
    Relevance is by ``group_key`` of the sample records when they have one (identical scenes
    are indistinguishable), else only the paired item is relevant.
    """

    def __init__(self, group_key: str | None = "scene", ks: Sequence[int] = (1, 5, 10), rerank_k: int | None = None) -> None:
        super().__init__()
        self.group_key, self.ks, self.rerank_k = group_key, tuple(ks), rerank_k

    def update(self, step: EvalStep) -> None:
        features = step.module.retrieval_features(step.batch)
        records = step.batch.get(META) or [{}] * len(features["image"])
        for i, record in enumerate(records):
            row = {name: value[i].cpu() for name, value in features.items()}
            row["group"] = record.get(self.group_key) if self.group_key else None
            self.rows.append(row)

    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        if not rows:
            return {}
        device = module.device
        images = torch.stack([r["image"] for r in rows]).to(device)  # (N, E) or (N, Q, E)
        texts = torch.stack([r["text"] for r in rows]).to(device)  # (N, E)
        groups = [r["group"] for r in rows]
        groups = None if any(g is None for g in groups) else [str(g) for g in groups]
        sim = module.similarity(images, texts).float()  # (N_text, N_image)
        relevant = relevance(groups, len(rows), device)
        metrics = {f"t2i_r{k}": v for k, v in recall_at_k(sim, relevant, self.ks).items()}
        metrics |= {f"i2t_r{k}": v for k, v in recall_at_k(sim.T, relevant.T, self.ks).items()}
        metrics["chance_r1"] = float(relevant.float().mean())
        if self.rerank_k:
            extra = {name: [r[name] for r in rows] for name in rows[0] if name not in ("image", "text", "group")}

            def t2i(text_idx: torch.Tensor, image_idx: torch.Tensor) -> torch.Tensor:
                return module.itm_scores(extra, image_idx.tolist(), text_idx.tolist())

            def i2t(image_idx: torch.Tensor, text_idx: torch.Tensor) -> torch.Tensor:
                return module.itm_scores(extra, image_idx.tolist(), text_idx.tolist())

            t2i_sim = rerank_top_k(sim, self.rerank_k, t2i)
            i2t_sim = rerank_top_k(sim.T, self.rerank_k, i2t)
            ks = [k for k in self.ks if k <= self.rerank_k]
            metrics |= {f"itm_t2i_r{k}": v for k, v in recall_at_k(t2i_sim, relevant, ks).items()}
            metrics |= {f"itm_i2t_r{k}": v for k, v in recall_at_k(i2t_sim, relevant.T, ks).items()}
        return metrics
