"""From runs to comparable rows: group by evaluation data, fold seeds, rank, check, cost.

* **Groups.** Runs are grouped by what they were evaluated on (content hash of the
  evaluation split and the number of samples evaluated) and ranked only within a group.
  Runs that did not record it form one group that is listed but not ranked.
* **Rows.** Runs that differ only in ``seed`` (``Run.configuration``) fold into one row:
  each metric as mean ± sample std over the seeds, and n.
* **Rank and noise.** Rows are ranked by the group's main metric; every other row is
  compared with the best by ``compare.significance.welch`` (see there for the rule).
* **Blind check.** A metric ``m`` with blind baselines (``m@blank``, ``m@shuffled``: the
  same model given blank or shuffled images) must beat the best of them by a clear
  margin, ``max(0.02, 10% of the blind value)``; a row that does not is flagged. The
  absolute floor keeps tiny blind scores from making any improvement "clear"; the
  relative part scales with metrics such as CIDEr that are not bounded by 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmzoo.compare.records import BLIND_SUFFIXES, Run
from mmzoo.compare.significance import Comparison, Summary, summarize, welch

PREFERRED_METRICS = ("caption/cider", "vqa/accuracy", "retrieval/t2i_r1", "retrieval/i2t_r1")
MARGIN_ABS, MARGIN_REL = 0.02, 0.10
DEFAULT = "(default)"


def is_blind(metric: str) -> bool:
    return metric.endswith(BLIND_SUFFIXES)


def is_chance(metric: str) -> bool:
    return "chance" in metric.rsplit("/", 1)[-1]


def base_metric(metric: str) -> str:
    return metric.split("@", 1)[0]


@dataclass
class Row:
    """One configuration: the runs that differ only by seed, and how it compares."""

    runs: list[Run]
    rank: int | None = None
    vs_best: Comparison | None = None  # None for the best row and unranked rows
    blind_failures: list[str] = field(default_factory=list)

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
    """Rows evaluated on the same data; ranked by ``metric`` when ``ranked``."""

    eval_data: tuple[str, int | None] | None
    rows: list[Row]
    metric: str | None = None
    ranked: bool = True

    @property
    def title(self) -> str:
        if self.eval_data is None:
            return "evaluation data not recorded: listed, not ranked"
        content, samples = self.eval_data
        shards = self.rows[0].first.provenance.get("eval_data", {}).get("shards")
        shards = len(shards) if isinstance(shards, list) else "?"
        evaluated = "? samples" if samples is None else f"{samples:,} samples"
        return f"evaluation data {content[:12]} ({evaluated} evaluated, {shards} shard(s))"

    @property
    def metrics(self) -> list[str]:
        """Metric columns: preferred first, each followed by its blind values; chance last."""
        names = {m for row in self.rows for r in row.runs for m in r.metrics}
        bases = sorted({base_metric(m) for m in names if not is_chance(m)}, key=_metric_order)
        ordered = [b for base in bases for b in (base, *(base + s for s in BLIND_SUFFIXES)) if b in names]
        return ordered + sorted(m for m in names if is_chance(m))

    @property
    def swept(self) -> list[str]:
        """Override keys (and ``model``) whose value differs between rows: what an ablation varies."""
        keys = ["model"] + list(dict.fromkeys(k for row in self.rows for k in row.first.settings))
        return [k for k in keys if len({row.setting(k) for row in self.rows}) > 1]


def _metric_order(metric: str) -> tuple[int, str]:
    return (PREFERRED_METRICS.index(metric) if metric in PREFERRED_METRICS else len(PREFERRED_METRICS), metric)


def main_metric(rows: list[Row], requested: str | None = None) -> str | None:
    """The metric to rank by: ``requested`` if any row has it, else the preferred metric most
    rows report (ties broken by ``PREFERRED_METRICS`` order, then by name)."""
    counts: dict[str, int] = {}
    for row in rows:
        for metric in {m for r in row.runs for m in r.metrics}:
            if not is_blind(metric) and not is_chance(metric):
                counts[metric] = counts.get(metric, 0) + 1
    if requested and requested in counts:
        return requested
    if not counts:
        return None
    return min(counts, key=lambda m: (-counts[m], *_metric_order(m)))


def blind_failures(row: Row) -> list[str]:
    """Metrics of ``row`` that do not beat their best blind baseline by the clear margin."""
    failures = []
    for run_metric in {m for r in row.runs for m in r.metrics}:
        if is_blind(run_metric) or is_chance(run_metric):
            continue
        blinds = [row.mean(run_metric + s) for s in BLIND_SUFFIXES]
        blinds = [b for b in blinds if b is not None]
        mean = row.mean(run_metric)
        if not blinds or mean is None:
            continue
        blind = max(blinds)
        if not mean >= blind + max(MARGIN_ABS, MARGIN_REL * abs(blind)):  # NaN fails too
            failures.append(run_metric)
    return sorted(failures, key=_metric_order)


def _rank(group: Group) -> None:
    metric = group.metric
    if not group.ranked or metric is None:
        return

    def key(row: Row) -> tuple[int, float]:
        mean = row.mean(metric)
        return (0, -mean) if mean is not None and not math.isnan(mean) else (1, 0.0)

    group.rows.sort(key=key)
    best = group.rows[0]
    for i, row in enumerate(group.rows):
        if key(row)[0]:
            break
        row.rank = i + 1
        if row is not best:
            row.vs_best = welch(row.values(metric), best.values(metric))


def build_groups(runs: list[Run], metric: str | None = None) -> list[Group]:
    """Rows per evaluation-data group, each group ranked by its main metric (``metric`` if given)."""
    by_data: dict[Any, dict[str, list[Run]]] = {}
    for run in runs:
        by_data.setdefault(run.eval_data, {}).setdefault(run.configuration, []).append(run)
    groups = []
    for eval_data, configurations in by_data.items():
        rows = [Row(sorted(rs, key=lambda r: (r.seed is None, r.seed or 0))) for rs in configurations.values()]
        for row in rows:
            row.blind_failures = blind_failures(row)
        group = Group(eval_data, rows, main_metric(rows, metric), ranked=eval_data is not None)
        _rank(group)
        groups.append(group)
    groups.sort(key=lambda g: g.eval_data is None)  # unranked group last
    return groups


# ---- columns shared by the markdown, CSV and HTML outputs -----------------------------------


@dataclass(frozen=True)
class Column:
    """A table column: ``cell`` is the text shown, ``raw`` the CSV fields (name -> value)."""

    name: str
    cell: Callable[[Row], str]
    raw: Callable[[Row], dict[str, Any]]
    kind: str  # id | metric | blind | check | cost | provenance


def _num(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _mean(values: list[Any]) -> float | None:
    return sum(values) / len(values) if values else None


def _short(count: Any) -> str:
    if not isinstance(count, (int, float)):
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(int(count))


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _commit(row: Row) -> str:
    states = _unique((r.provenance.get("git") or {}).get("commit") for r in row.runs)
    dirty = any((r.provenance.get("git") or {}).get("dirty") for r in row.runs)
    text = ", ".join(str(c)[:8] if c else "?" for c in states)
    return text + (" +dirty" if dirty else "")


def _memory(row: Row) -> tuple[float | None, str]:
    gpu = row.field_values("memory.gpu_max_allocated_mb")
    if gpu:
        return max(gpu), "GPU"
    cpu = row.field_values("memory.cpu_rss_mb")
    return (max(cpu), "CPU RSS") if cpu else (None, "")


def _lineage(row: Row) -> str:
    lineage = row.first.lineage
    return ", ".join(f"{part}←{'/'.join(Path(str(d)).parts[-2:])}" for part, d in lineage.items())


def _devices(row: Row) -> str:
    return "; ".join(str(d) for d in _unique(r.provenance.get("device") for r in row.runs) if d)


def _versions(row: Row) -> str:
    versions = row.first.provenance.get("versions") or {}
    return ", ".join(f"{k} {versions[k]}" for k in ("torch", "lightning", "transformers") if versions.get(k))


def _metric_column(metric: str, kind: str) -> Column:
    def cell(row: Row) -> str:
        summary = row.summary(metric)
        return "" if summary is None else summary.text()

    def raw(row: Row) -> dict[str, Any]:
        s = row.summary(metric)
        return {f"{metric} mean": s and s.mean, f"{metric} std": s and s.std}

    return Column(metric, cell, raw, kind)


def columns(group: Group) -> list[Column]:
    """The leaderboard's columns for ``group``: identity, the ranking metric beside its blind
    values and the two checks, the other metrics, cost, provenance."""
    main = group.metric

    def vs_best(row: Row) -> str:
        if row.rank == 1:
            return "best"
        return row.vs_best.text() if row.vs_best else ""

    def blind(row: Row) -> str:
        if not any(is_blind(m) for r in row.runs for m in r.metrics):
            return "not measured"
        return "NO: " + ", ".join(row.blind_failures) if row.blind_failures else "yes"

    cols = [
        Column("#", lambda r: str(r.rank or ""), lambda r: {"rank": r.rank}, "id"),
        Column("model", lambda r: r.model, lambda r: {"model": r.model}, "id"),
        Column("config", lambda r: r.label, lambda r: {"config": r.label}, "id"),
        Column("n", lambda r: f"n={r.n}", lambda r: {"n": r.n, "seeds": " ".join(map(str, r.seeds))}, "id"),
    ]
    metrics = group.metrics
    first = [m for m in metrics if main is not None and base_metric(m) == main]  # the ranking metric
    cols += [_metric_column(m, "blind" if is_blind(m) else "metric") for m in first]
    cols += [
        Column(f"vs best ({main})", vs_best, lambda r: {"vs best p": r.vs_best and r.vs_best.p}, "check"),
        Column("beats blind", blind, lambda r: {"blind failures": " ".join(r.blind_failures)}, "check"),
    ]
    cols += [_metric_column(m, "blind" if is_blind(m) else "metric") for m in metrics if m not in first]
    cols += [
        Column(
            "params (trainable / total)",
            lambda r: f"{_short(r.first.get('params.trainable'))} / {_short(r.first.get('params.total'))}",
            lambda r: {"params trainable": r.first.get("params.trainable"), "params total": r.first.get("params.total")},
            "cost",
        ),
        Column(
            "train samples/s",
            lambda r: _num(_mean(r.field_values("train.samples_per_second"))),
            lambda r: {"train samples/s": _mean(r.field_values("train.samples_per_second"))},
            "cost",
        ),
        Column(
            "peak memory (MiB)",
            lambda r: f"{_num(_memory(r)[0], 0)} {_memory(r)[1]}".strip(),
            lambda r: {"peak memory MiB": _memory(r)[0], "peak memory of": _memory(r)[1]},
            "cost",
        ),
        Column(
            "train time (s)",
            lambda r: _num(_mean(r.field_values("train.seconds"))),
            lambda r: {"train seconds": _mean(r.field_values("train.seconds"))},
            "cost",
        ),
        Column(
            "eval time (s)",
            lambda r: _num(_mean(r.field_values("eval.seconds"))),
            lambda r: {"eval seconds": _mean(r.field_values("eval.seconds"))},
            "cost",
        ),
        Column("commit", _commit, lambda r: {"commit": _commit(r)}, "provenance"),
        Column(
            "config hash",
            lambda r: "" if r.first.configuration.startswith("overrides:") else r.first.configuration[:10],
            lambda r: {"config hash without seed": r.first.provenance.get("config_hash_without_seed")},
            "provenance",
        ),
        Column("device", _devices, lambda r: {"device": _devices(r)}, "provenance"),
        Column("versions", _versions, lambda r: {"versions": _versions(r)}, "provenance"),
        Column("lineage", _lineage, lambda r: {"lineage": _lineage(r)}, "provenance"),
        Column("runs", lambda r: " ".join(x.name for x in r.runs), lambda r: {"runs": " ".join(x.name for x in r.runs)}, "provenance"),
    ]
    return cols


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
