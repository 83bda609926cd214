"""From runs to comparable rows: group by evaluation data and task, fold seeds, rank, check.

* **Groups.** Runs are grouped by what they were evaluated on (content hash of the
  evaluation split and the number of samples evaluated) and by their task (``TASKS``:
  generative models, retrieval/zero-shot models, language models), and ranked only within
  a group: a CLIP is not ranked below a captioner on a caption metric it does not have.
  Runs that did not record their evaluation data form groups that are listed, not ranked.
* **Rows.** Runs that differ only in ``seed`` (``Run.configuration``) fold into one row:
  each metric as mean ± sample std over the seeds, and n.
* **Rank and noise.** Rows are ranked by the group's main metric (the first of the task's
  ``HEADLINE`` metrics that most rows report; lower is better for losses and perplexity);
  every other row is compared with the best by ``compare.significance.welch``.
* **Untrained baselines.** A run of ``stage=test`` on a freshly built model shows what
  training added. Its row is not ranked: it sits right under its trained self (same model
  and settings), and the trained row says whether it beats it by the clear margin below.
* **Blind check.** A metric ``m`` with blind baselines (``m@blank``, ``m@shuffled``: the
  same model given blank or shuffled images) must beat the best of them by a clear
  margin, ``max(0.02, 10% of the blind value)``; a row that does not is flagged. The
  absolute floor keeps tiny blind scores from making any improvement "clear"; the
  relative part scales with metrics such as CIDEr that are not bounded by 1. Descriptive
  statistics (``grounding/objects_per_caption``) are shown but neither ranked nor checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from mmzoo.compare.records import BLIND_SUFFIXES, Run
from mmzoo.compare.significance import Comparison, Summary, summarize, welch

# task -> prefixes of its metrics, in the order a run's task is decided (BLIP, which
# retrieves and captions, is a generative model)
TASKS: dict[str, tuple[str, ...]] = {
    "generative": ("grounding/", "vqa/", "caption/"),
    "retrieval": ("retrieval/", "zeroshot/"),
    "language": ("lm/",),
}
# the metrics a group's table shows by default (each beside its blind values), the first the
# group reports being the one it is ranked by. Generative models are ranked by whether their
# caption names exactly what is in the scene, not by CIDEr, which templated captions inflate.
HEADLINE: dict[str, tuple[str, ...]] = {
    "generative": ("grounding/scene_accuracy", "grounding/object_precision", "vqa/accuracy", "caption/cider"),
    "retrieval": ("retrieval/t2i_r1", "retrieval/i2t_r1", "zeroshot/colour_acc", "zeroshot/shape_acc"),
    "language": ("lm/perplexity",),
}
PREFERRED_METRICS = tuple(m for names in HEADLINE.values() for m in names) + ("caption/cider", "vqa/accuracy")
LOWER_IS_BETTER = ("loss", "perplexity")  # metric names (after the last "/")
DESCRIPTIVE = ("objects_per_caption",)  # neither better high nor low: shown, never ranked or checked
MARGIN_ABS, MARGIN_REL = 0.02, 0.10
DEFAULT = "(default)"


def is_blind(metric: str) -> bool:
    return metric.endswith(BLIND_SUFFIXES)


def is_chance(metric: str) -> bool:
    return "chance" in metric.rsplit("/", 1)[-1]


def base_metric(metric: str) -> str:
    return metric.split("@", 1)[0]


def direction(metric: str) -> int:
    """+1 when higher is better, -1 when lower is, 0 for chance levels and descriptive statistics."""
    name = base_metric(metric).rsplit("/", 1)[-1]
    if is_chance(metric) or name in DESCRIPTIVE:
        return 0
    return -1 if name in LOWER_IS_BETTER else 1


def clears(value: float | None, baseline: float | None, sign: int = 1) -> bool | None:
    """Does ``value`` beat ``baseline`` by the clear margin (in the metric's direction)? None if unknown."""
    if value is None or baseline is None:
        return None
    return bool(sign * (value - baseline) >= max(MARGIN_ABS, MARGIN_REL * abs(baseline)))  # NaN: False


def task_of(run: Run) -> str:
    """The run's task (``TASKS``) from the metrics it reports; ``other`` when none matches."""
    for task, prefixes in TASKS.items():
        if any(m.startswith(prefixes) for m in run.metrics):
            return task
    return "other"


@dataclass
class Row:
    """One configuration: the runs that differ only by seed, and how it compares."""

    runs: list[Run]
    rank: int | None = None
    vs_best: Comparison | None = None  # None for the best row and unranked rows
    blind_failures: list[str] = field(default_factory=list)
    untrained: Row | None = None  # this configuration's untrained baseline, when it was run
    beats_untrained: bool | None = None  # on the group's main metric, by the clear margin

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def model(self) -> str:
        return self.first.model

    @property
    def label(self) -> str:
        return self.first.label

    @property
    def training(self) -> str:
        return self.first.training

    @property
    def is_baseline(self) -> bool:
        return self.training == "untrained"

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def values(self, metric: str) -> list[float]:
        return [r.metrics[metric] for r in self.runs if metric in r.metrics]

    def summary(self, metric: str) -> Summary | None:
        values = self.values(metric)
        return summarize(values) if values else None

    def mean(self, metric: str) -> float | None:
        summary = self.summary(metric)
        return None if summary is None else summary.mean

    def field_values(self, dotted: str) -> list[float]:
        """The numeric values of a record field over the seeds (missing or garbled ones left out)."""
        values = (r.get(dotted) for r in self.runs)
        return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def setting(self, key: str) -> str:
        if key == "model":
            return self.model
        return self.first.settings.get(key, DEFAULT)


@dataclass
class Group:
    """Rows of one task evaluated on the same data; ranked by ``metric`` when ``ranked``."""

    eval_data: tuple[str, int | None] | None
    rows: list[Row]
    metric: str | None = None
    ranked: bool = True
    task: str = "other"

    @property
    def title(self) -> str:
        models = f"{self.task} models" if self.task != "other" else "other runs"
        if self.eval_data is None:
            return f"{models}, evaluation data not recorded: listed, not ranked"
        content, samples = self.eval_data
        shards = self.rows[0].first.provenance.get("eval_data", {}).get("shards")
        shards = len(shards) if isinstance(shards, list) else "?"
        evaluated = "? samples" if samples is None else f"{samples:,} samples"
        return f"{models}, evaluation data {content[:12]} ({evaluated} evaluated, {shards} shard(s))"

    @property
    def metrics(self) -> list[str]:
        """Every metric: headline first, each followed by its blind values; chance levels last."""
        names = {m for row in self.rows for r in row.runs for m in r.metrics}
        bases = sorted({base_metric(m) for m in names if not is_chance(m)}, key=self.metric_order)
        ordered = [b for base in bases for b in (base, *(base + s for s in BLIND_SUFFIXES)) if b in names]
        return ordered + sorted(m for m in names if is_chance(m))

    def headline(self) -> list[str]:
        """The metrics a table shows by default: the ranking metric and the task's headline
        ones the group reports, each with its blind values, then the chance levels of their
        families (``retrieval/chance_r1``). Groups of no known task show every metric."""
        everything = self.metrics
        if self.task not in HEADLINE:
            return everything
        names = set(everything)
        bases = [m for m in dict.fromkeys((self.metric, *HEADLINE[self.task])) if m in names]
        shown = [b for base in bases for b in (base, *(base + s for s in BLIND_SUFFIXES)) if b in names]
        families = {b.split("/", 1)[0] for b in bases}
        return shown + [m for m in everything if is_chance(m) and m.split("/", 1)[0] in families]

    def metric_order(self, metric: str) -> tuple[int, str]:
        order = (self.metric, *HEADLINE.get(self.task, ()), *PREFERRED_METRICS)
        return (order.index(metric) if metric in order else len(order), metric)

    @property
    def swept(self) -> list[str]:
        """Override keys (and ``model``) whose value differs between rows: what an ablation varies."""
        keys = ["model"] + list(dict.fromkeys(k for row in self.rows for k in row.first.settings))
        return [k for k in keys if len({row.setting(k) for row in self.rows}) > 1]

    @property
    def common(self) -> dict[str, str]:
        """Settings every row of the group shares (e.g. ``trainer.max_steps=5`` given to a whole
        sweep): said once above the table instead of in every row's label."""
        if len(self.rows) < 2:
            return {}
        first = self.rows[0].first.settings
        return {k: v for k, v in first.items() if all(row.first.settings.get(k) == v for row in self.rows)}

    def label(self, row: Row) -> str:
        """``row``'s settings without the group's common ones."""
        common = self.common
        return " ".join(f"{k}={v}" for k, v in row.first.settings.items() if k not in common) or "(defaults)"


def main_metric(rows: list[Row], task: str = "other", requested: str | None = None) -> str | None:
    """The metric to rank by: ``requested`` if any row has it, else the first of the task's
    headline metrics that most rows report (then ``PREFERRED_METRICS``, then by name)."""
    counts: dict[str, int] = {}
    for row in rows:
        for metric in {m for r in row.runs for m in r.metrics}:
            if not is_blind(metric) and direction(metric):
                counts[metric] = counts.get(metric, 0) + 1
    if requested and requested in counts:
        return requested
    if not counts:
        return None
    order = (*HEADLINE.get(task, ()), *PREFERRED_METRICS)
    return min(counts, key=lambda m: (-counts[m], order.index(m) if m in order else len(order), m))


def blind_failures(row: Row, order: Any = None) -> list[str]:
    """Metrics of ``row`` that do not beat their best blind baseline by the clear margin."""
    failures = []
    for metric in {m for r in row.runs for m in r.metrics}:
        sign = direction(metric)
        if is_blind(metric) or not sign:
            continue
        blinds = [b for s in BLIND_SUFFIXES if (b := row.mean(metric + s)) is not None]
        if blinds and not clears(row.mean(metric), max(blinds) if sign > 0 else min(blinds), sign):
            failures.append(metric)
    return sorted(failures, key=order or (lambda m: m))


def _rank(group: Group) -> None:
    """Order the rows (ranked ones by the main metric, each untrained baseline under its trained
    self) and fill in the comparisons."""
    metric = group.metric
    sign = direction(metric) if metric else 0

    def key(row: Row) -> tuple[int, float]:
        mean = row.mean(metric) if metric else None
        return (0, -sign * mean) if mean is not None and not math.isnan(mean) and sign else (1, 0.0)

    trained = [r for r in group.rows if not r.is_baseline]
    baselines = [r for r in group.rows if r.is_baseline]
    if group.ranked and metric is not None:
        trained.sort(key=key)
        best = trained[0] if trained else None
        for i, row in enumerate(trained):
            if key(row)[0]:
                break
            row.rank = i + 1
            if row is not best:
                row.vs_best = welch(row.values(metric), best.values(metric))
    ordered: list[Row] = []
    for row in trained:
        ordered.append(row)
        own = [b for b in baselines if b.model == row.model and b.label == row.label]
        if own:
            row.untrained = own[0]
            row.beats_untrained = clears(row.mean(metric), own[0].mean(metric), sign) if metric and sign else None
            ordered += [b for b in own if b not in ordered]
    group.rows = ordered + [b for b in baselines if b not in ordered]


def build_groups(runs: list[Run], metric: str | None = None) -> list[Group]:
    """Rows per (evaluation data, task) group, each ranked by its main metric (``metric`` if given)."""
    by_group: dict[tuple[Any, str], dict[str, list[Run]]] = {}
    for run in runs:
        by_group.setdefault((run.eval_data, task_of(run)), {}).setdefault(run.configuration, []).append(run)
    data_order = list(dict.fromkeys(eval_data for eval_data, _ in by_group))
    groups = []
    for (eval_data, task), configurations in by_group.items():
        rows = [Row(sorted(rs, key=lambda r: (r.seed is None, r.seed or 0))) for rs in configurations.values()]
        group = Group(eval_data, rows, main_metric(rows, task, metric), ranked=eval_data is not None, task=task)
        for row in rows:
            row.blind_failures = blind_failures(row, group.metric_order)
        _rank(group)
        groups.append(group)
    tasks = list(TASKS) + ["other"]
    # data recorded first (in the order it was met), unranked groups last; within data, by task
    groups.sort(key=lambda g: (g.eval_data is None, data_order.index(g.eval_data), tasks.index(g.task)))
    return groups


def natural_key(value: str) -> tuple[int, float, str]:
    """Sort swept values as numbers when they are numbers (8 < 16 < 32), else as text."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def ablation_rows(group: Group) -> list[Row]:
    """The group's rows ordered by the swept values (first swept key first), for tables and plots."""
    keys = group.swept
    return sorted(group.rows, key=lambda row: [natural_key(row.setting(k)) for k in keys])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")

