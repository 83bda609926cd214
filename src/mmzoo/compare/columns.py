"""The leaderboard's columns, shared by the markdown, CSV and HTML outputs so they never disagree.

A ``Column`` has the text a table shows (``cell``) and the numeric/plain fields the CSV
keeps (``raw``). Tables show a group's headline metrics (``Group.headline``: for
generative models, grounding and VQA beside their blind values as well as CIDEr); the CSV
always has every metric, and ``python -m mmzoo.leaderboard --all-metrics`` shows them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmzoo.compare.table import Group, Row, base_metric, is_blind


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


def training_text(row: Row) -> str:
    """How the row's weights came about, in words a reader of the table needs."""
    if row.training == "untrained":
        return "untrained (stage=test)"
    if row.training == "pretrained":
        return "pretrained weights (stage=test)"
    steps = row.field_values("train.steps")
    return f"trained, {int(max(steps)):,} steps" if steps else "trained"


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


def _train_data(row: Row) -> dict[str, Any]:
    data = row.first.provenance.get("train_data")
    return data if isinstance(data, dict) else {}


def _train_data_text(row: Row) -> str:
    data = _train_data(row)
    shards, samples = data.get("shards"), data.get("samples")
    if not isinstance(shards, list):
        return ""
    count = f"{samples:,}" if isinstance(samples, int) else "?"
    return f"{count} in {len(shards)} shard(s)"


def _mean_cost_column(name: str, field: str, csv_name: str) -> Column:
    """A cost column of one run field's mean over the row's seeds (``train.seconds``)."""
    return Column(
        name,
        lambda r: _num(_mean(r.field_values(field))),
        lambda r: {csv_name: _mean(r.field_values(field))},
        "cost",
    )


def _metric_column(metric: str) -> Column:
    def cell(row: Row) -> str:
        summary = row.summary(metric)
        return "" if summary is None else summary.text()

    def raw(row: Row) -> dict[str, Any]:
        s = row.summary(metric)
        return {f"{metric} mean": s and s.mean, f"{metric} std": s and s.std}

    return Column(metric, cell, raw, "blind" if is_blind(metric) else "metric")


def _vs_best(row: Row) -> str:
    if row.rank == 1:
        return "best"
    return row.vs_best.text() if row.vs_best else ""


def _beats_blind(shown: list[str]) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        if not any(is_blind(m) for r in row.runs for m in r.metrics):
            return "not measured"
        listed = [m for m in row.blind_failures if m in shown]
        hidden = len(row.blind_failures) - len(listed)
        more = f" (+{hidden} metric(s) not shown)" if hidden else ""
        return "NO: " + ", ".join(listed) + more if listed else "yes" + (f" ({hidden} not shown do not)" if hidden else "")

    return cell


def _beats_untrained(metric: str | None) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        if row.is_baseline:
            return "(the baseline)"
        if row.untrained is None or row.beats_untrained is None or metric is None:
            return ""
        diff = (row.mean(metric) or 0.0) - (row.untrained.mean(metric) or 0.0)
        return f"{'yes' if row.beats_untrained else 'NO'} ({diff:+.4f})"

    return cell


def columns(group: Group, all_metrics: bool = False) -> list[Column]:
    """The leaderboard's columns for ``group``: identity, the ranking metric beside its blind
    values and its comparison with the best, the other headline metrics (every metric with
    ``all_metrics``), the blind and untrained checks, cost, provenance."""
    main = group.metric
    shown = group.metrics if all_metrics else group.headline()
    first = [m for m in shown if main is not None and base_metric(m) == main]  # the ranking metric
    cols = [
        Column("#", lambda r: str(r.rank or ""), lambda r: {"rank": r.rank}, "id"),
        Column("model", lambda r: r.model, lambda r: {"model": r.model}, "id"),
        Column("config", group.label, lambda r: {"config": r.label}, "id"),  # the CSV: the whole label
        Column("training", training_text, lambda r: {"training": r.training}, "id"),
        Column("n", lambda r: f"n={r.n}", lambda r: {"n": r.n, "seeds": " ".join(map(str, r.seeds))}, "id"),
    ]
    cols += [_metric_column(m) for m in first]
    cols.append(Column(f"vs best ({main})", _vs_best, lambda r: {"vs best p": r.vs_best and r.vs_best.p}, "check"))
    cols += [_metric_column(m) for m in shown if m not in first]
    cols += [
        Column("beats blind", _beats_blind(shown), lambda r: {"blind failures": " ".join(r.blind_failures)}, "check"),
        Column(f"beats untrained ({main})", _beats_untrained(main),
               lambda r: {"beats untrained": r.beats_untrained}, "check"),
        Column(
            "params (trainable / total)",
            lambda r: f"{_short(r.first.get('params.trainable'))} / {_short(r.first.get('params.total'))}",
            lambda r: {"params trainable": r.first.get("params.trainable"), "params total": r.first.get("params.total")},
            "cost",
        ),
        _mean_cost_column("train samples/s", "train.samples_per_second", "train samples/s"),
        Column(
            "peak memory (MiB)",
            lambda r: f"{_num(_memory(r)[0], 0)} {_memory(r)[1]}".strip(),
            lambda r: {"peak memory MiB": _memory(r)[0], "peak memory of": _memory(r)[1]},
            "cost",
        ),
        _mean_cost_column("train time (s)", "train.seconds", "train seconds"),
        _mean_cost_column("eval time (s)", "eval.seconds", "eval seconds"),
        Column("commit", _commit, lambda r: {"commit": _commit(r)}, "provenance"),
        Column(
            "config hash",
            lambda r: "" if r.first.configuration.startswith("overrides:") else r.first.configuration[:10],
            lambda r: {"config hash without seed": r.first.provenance.get("config_hash_without_seed")},
            "provenance",
        ),
        Column(
            "train data",
            _train_data_text,
            lambda r: {"train samples": _train_data(r).get("samples"),
                       "train shards": " ".join(map(str, _train_data(r).get("shards") or []))},
            "provenance",
        ),
        Column("device", _devices, lambda r: {"device": _devices(r)}, "provenance"),
        Column("versions", _versions, lambda r: {"versions": _versions(r)}, "provenance"),
        Column("lineage", _lineage, lambda r: {"lineage": _lineage(r)}, "provenance"),
        Column("runs", lambda r: " ".join(x.name for x in r.runs), lambda r: {"runs": " ".join(x.name for x in r.runs)},
               "provenance"),
    ]
    return cols
