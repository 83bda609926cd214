"""Held-out loss and perplexity of a language model (``model=lm``)."""

from __future__ import annotations

import math
from typing import Any

from mmzoo.eval.base import EvalStep, Evaluator


class PerplexityEvaluator(Evaluator):
    """Token-weighted mean loss over the test split; the module provides
    ``token_loss(batch) -> (summed loss, number of supervised tokens)``."""

    def update(self, step: EvalStep) -> None:
        summed, tokens = step.module.token_loss(step.batch)
        self.rows.append({"loss_sum": float(summed), "tokens": int(tokens)})

    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        total = sum(r["tokens"] for r in rows)
        loss = sum(r["loss_sum"] for r in rows) / max(total, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
