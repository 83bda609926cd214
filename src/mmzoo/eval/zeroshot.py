"""Zero-shot classification with a dual encoder: classes become prompt ensembles.

A task is data (see ``conf/data/shapes.yaml``): class names, prompt templates with a
``{label}`` slot and optional other slots expanded over lists, and a filter on the
sample records (e.g. only single-object scenes, where "the colour" is well defined).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from torchmetrics.functional.classification import multiclass_accuracy


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
