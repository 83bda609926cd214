"""Evaluation as a list of evaluators, shared by every model in the zoo.

A model's config names its evaluators (``conf/evaluation/*.yaml``); the LightningModule
only feeds test batches to an ``Evaluation`` and never computes a metric itself, so BLIP
(contrastive and generative at once) lists retrieval, zero-shot and captioning, and a new
metric is a new ``Evaluator`` class plus a config line.

An evaluator asks the module for what it needs through a few documented methods
(``retrieval_features``, ``similarity``, ``embed_texts``, ``generate_text``...; see
``mmzoo.lit.base.ZooModule``). Generations are made once per batch and shared through
``EvalStep``, so captioning and grounding metrics read the same captions.

*Blind baselines*: with ``blind=[blank, shuffled]`` every evaluator that supports it runs
again on the same batches with the images replaced by a blank (mean-grey) image, and with
the images shuffled across the batch. Their metrics are reported as ``name@blank`` and
``name@shuffled``: a generative model that does not beat its blind self answers from the
language prior, not from the picture.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mmzoo.objectives.distributed import gather_objects
from mmzoo.types import META, PIXEL_VALUES

BLIND_CONDITIONS = ("blank", "shuffled")


def blind_images(pixel_values: torch.Tensor, condition: str) -> torch.Tensor:
    """``(B, 3, H, W)`` images for a blind condition.

    ``blank``: zeros, i.e. the normalisation mean, a uniform grey image. ``shuffled``: every
    image moved one place along the batch (a derangement for B >= 2, so no sample keeps its
    own picture; a batch of one keeps it, which the caller's batch size makes rare).
    """
    if condition == "blank":
        return torch.zeros_like(pixel_values)
    if condition == "shuffled":
        return pixel_values.roll(1, dims=0)
    raise ValueError(f"unknown blind condition {condition!r}; valid: {list(BLIND_CONDITIONS)}")


class EvalStep:
    """One test batch under one condition, with generations made once and shared."""

    def __init__(self, module: Any, batch: Mapping[str, Any], condition: str = "real") -> None:
        self.module, self.batch, self.condition = module, batch, condition
        self._generated: dict[str, list[str]] = {}

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.batch.get(META, []))

    def generate(self, prompt_key: str) -> list[str]:
        """The module's texts for the prompts under ``batch[prompt_key]`` (made once)."""
        if prompt_key not in self._generated:
            if prompt_key not in self.batch:
                raise KeyError(f"the evaluation batch has no {prompt_key!r}; the model's eval collator must make it")
            self._generated[prompt_key] = self.module.generate_text(self.batch[PIXEL_VALUES], self.batch[prompt_key])
        return self._generated[prompt_key]


class Evaluator(ABC):
    """Accumulates over test batches; ``compute`` sees every rank's outputs.

    ``blind = True`` when the evaluator's metric should also be reported on blind images.
    ``example_fields`` lists per-sample fields it contributes to ``examples.jsonl``.
    """

    blind: bool = False

    def __init__(self) -> None:
        self.name = type(self).__name__
        self.rows: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.rows = []

    @abstractmethod
    def update(self, step: EvalStep) -> None:
        """Look at one batch (per-sample rows go to ``self.rows``)."""

    @abstractmethod
    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics over the gathered ``rows`` of every rank (keys without the evaluator's name)."""


class Evaluation:
    """The evaluators of a model, run over the test split (and blind conditions, if asked).

    ``evaluators`` maps a name (the metric prefix: ``retrieval/t2i_r1``) to an ``Evaluator``;
    ``None`` entries are skipped, so a config can drop one with ``evaluation.evaluators.X=null``.
    """

    KEEP_IMAGES = 16  # test images kept for the run's examples/ (the leaderboard shows them side by side)

    def __init__(self, evaluators: Mapping[str, Evaluator | None], blind: Sequence[str] = ()) -> None:
        self.evaluators = {name: ev for name, ev in evaluators.items() if ev is not None}
        for name, ev in self.evaluators.items():
            ev.name = name
        unknown = set(blind) - set(BLIND_CONDITIONS)
        if unknown:
            raise ValueError(f"unknown blind conditions {sorted(unknown)}; valid: {list(BLIND_CONDITIONS)}")
        self.blind = list(blind)
        self._blind_copies: dict[str, dict[str, Evaluator]] = {}
        self.reset()

    def reset(self) -> None:
        self.images: dict[str, torch.Tensor] = {}  # sample key -> (3, H, W) as the model saw it
        self.samples = 0
        self._blind_copies = {
            cond: {name: copy.deepcopy(ev) for name, ev in self.evaluators.items() if ev.blind} for cond in self.blind
        }
        for ev in self._all():
            ev.reset()

    def _all(self) -> list[Evaluator]:
        return [*self.evaluators.values(), *(ev for copies in self._blind_copies.values() for ev in copies.values())]

    @torch.no_grad()
    def update(self, module: Any, batch: Mapping[str, Any]) -> None:
        step = EvalStep(module, batch)
        for ev in self.evaluators.values():
            ev.update(step)
        for record, pixels in zip(step.records, batch.get(PIXEL_VALUES, []), strict=False):
            if len(self.images) < self.KEEP_IMAGES and record.get("key") is not None:
                self.images[str(record["key"])] = pixels.detach().cpu()
        for cond, copies in self._blind_copies.items():
            if not copies:
                continue
            blind_batch = {**batch, PIXEL_VALUES: blind_images(batch[PIXEL_VALUES], cond)}
            blind_step = EvalStep(module, blind_batch, cond)
            for ev in copies.values():
                ev.update(blind_step)

    def compute(self, module: Any) -> dict[str, float]:
        """Every metric as ``<evaluator>/<metric>`` (``...@<condition>`` for blind runs)."""
        results: dict[str, float] = {}
        for name, ev in self.evaluators.items():
            rows = gather_objects(ev.rows)
            self.samples = max(self.samples, len(rows))
            results |= {f"{name}/{k}": v for k, v in ev.compute(module, rows).items()}
        for cond, copies in self._blind_copies.items():
            for name, ev in copies.items():
                results |= {f"{name}/{k}@{cond}": v for k, v in ev.compute(module, gather_objects(ev.rows)).items()}
        return results

    def examples(self, limit: int) -> list[dict[str, Any]]:
        """Per-sample outputs of the real-image evaluation merged by sample key (first ``limit``)."""
        merged: dict[str, dict[str, Any]] = {}
        for ev in self.evaluators.values():
            for row in ev.rows:
                key = row.get("key")
                if key is None:
                    continue
                merged.setdefault(str(key), {"key": str(key)}).update(
                    {k: v for k, v in row.items() if k in getattr(ev, "example_fields", ())}
                )
        return [merged[k] for k in sorted(merged)[:limit]]
