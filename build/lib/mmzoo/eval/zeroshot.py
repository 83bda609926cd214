"""Zero-shot classification with a dual encoder: classes become prompt ensembles.

A task is data (see ``conf/data/shapes.yaml``): class names, prompt templates with a
``{label}`` slot and optional other slots expanded over lists, and a filter on the
sample records (e.g. only single-object scenes, where "the colour" is well defined).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy

from mmzoo.eval.base import EvalStep, Evaluator
from mmzoo.types import META


def class_prompts(
    classes: Sequence[str], templates: Sequence[str], expand: Mapping[str, Sequence[str]] | None = None
) -> list[list[str]]:
    """For each class, every template filled with the class and each combination of ``expand``."""
    expand = dict(expand or {})
    names = list(expand)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*expand.values())]
    return [[t.format(label=c, **combo) for t in templates for combo in combos] for c in classes]


def matches(record: Mapping, where: Mapping | None) -> bool:
    """True when every ``key: value`` of ``where`` equals the record's ``labels[key]``."""
    labels = record.get("labels", {})
    return all(labels.get(k) == v for k, v in (where or {}).items())


def zero_shot_accuracy(image_embeds: torch.Tensor, class_embeds: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``argmax(image @ class.T)``; embeds (N, E) and (C, E) normalised."""
    logits = image_embeds.float() @ class_embeds.float().T  # (N, C)
    return float(multiclass_accuracy(logits, labels, num_classes=class_embeds.shape[0], average="micro"))


class ZeroShotEvaluator(Evaluator):
    """Zero-shot classification of the test images for each task of the data (``data.zero_shot``).

    The module provides ``retrieval_features(batch)["image"]`` (normalised image features),
    ``embed_texts(prompts) -> (P, E)`` and ``similarity``; a class is the mean of its prompt
    ensemble's embeddings, as in CLIP.
    """

    def __init__(self, tasks: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self.tasks = dict(tasks or {})

    def update(self, step: EvalStep) -> None:
        if not self.tasks:
            return
        images = step.module.retrieval_features(step.batch, texts=False)["image"]
        for image, record in zip(images, step.batch[META], strict=True):
            self.rows.append({"image": image.cpu(), "labels": record.get("labels", {})})

    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        results: dict[str, float] = {}
        for name, task in self.tasks.items():
            keep = [r for r in rows if matches(r, task.get("where"))]
            if not keep:
                continue
            prompts = class_prompts(task["classes"], task["templates"], task.get("expand"))
            classes = torch.stack([F.normalize(module.embed_texts(p).mean(0), dim=-1) for p in prompts])  # (C, E)
            images = torch.stack([r["image"] for r in keep]).to(classes.device)
            labels = torch.tensor([r["labels"][task["label"]] for r in keep], device=classes.device)
            logits = module.similarity(images, classes).T  # (N, C)
            predicted = logits.argmax(dim=1)
            results[f"{name}_acc"] = float((predicted == labels).float().mean())
            results[f"{name}_chance"] = 1.0 / len(prompts)
        return results
