"""The leaderboard as markdown (for terminals and the README) and CSV (for analysis).

Both are written from ``compare.table`` columns, so the two never disagree on a number;
the CSV keeps mean and std as separate numeric fields instead of ``"a ± b"`` text.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmzoo.compare.columns import columns
from mmzoo.compare.records import Collection
from mmzoo.compare.table import MARGIN_ABS, MARGIN_REL, Group, ablation_rows, is_blind, is_chance

RULES = (
    "Rows are ranked only against rows of the same task evaluated on the same data: one table "
    "per (evaluation data, task), never ranked against each other. Runs differing only in "
    "`seed` share a row (mean ± sample std, n). Generative models are ranked by "
    "`grounding/scene_accuracy` (the caption names exactly the objects in the scene), which a "
    "caption template cannot score, not by CIDEr, which it can. **vs best**: Welch's two-sided "
    "t-test of the row against the best row on the ranking metric, `differs` at p < 0.05, `n/a` "
    "when either has fewer than 2 seeds. **beats blind**: each metric must exceed its best blind "
    "baseline (`@blank`: blank images, `@shuffled`: images shuffled across the batch) by max("
    f"{MARGIN_ABS}, {MARGIN_REL:.0%} of the blind value). **training** `untrained (stage=test)`: "
    "the same model evaluated before training, listed under its trained self and not ranked; "
    "**beats untrained** applies the same margin to the ranking metric. The CSV holds every metric."
)
EMPTY = (
    "No runs under {root}. Train and evaluate some first, e.g.\n"
    "  python -m mmzoo.run                      # one tiny CLIP on the embedded data\n"
    "  make leaderboard                         # every model of the zoo, then this leaderboard\n"
    "  python -m mmzoo.run -m sweep=llava_projector  # an ablation over three seeds\n"
    "then: python -m mmzoo.leaderboard runs/   (or multirun/<sweep>)"
)


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in body]
    return "\n".join(lines) + "\n"


def ablation_table(group: Group) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the group's ablation: one line per value of the swept keys."""
    keys = group.swept
    metrics = [m for m in group.headline() if not is_blind(m) and not is_chance(m)]
    header = [*keys, "n", *metrics, f"vs best ({group.metric})"]
    body = []
    for row in ablation_rows(group):
        cells = [row.setting(k) for k in keys] + [f"n={row.n}"]
        cells += [s.text() if (s := row.summary(m)) else "" for m in metrics]
        cells.append("best" if row.rank == 1 else row.vs_best.text() if row.vs_best else "")
        body.append(cells)
    return header, body


def common_text(group: Group) -> str:
    return " ".join(f"{k}={v}" for k, v in group.common.items())


def has_ablation(group: Group) -> bool:
    """A group is an ablation when its configurations differ in more than the model (a sweep)."""
    return len(group.rows) > 1 and bool(group.swept) and group.swept != ["model"]


def to_markdown(
    collection: Collection, groups: Sequence[Group], root: str | Path = "", all_metrics: bool = False
) -> str:
    """The whole leaderboard: one table per (evaluation data, task), ablations, failed and skipped runs;
    the headline metrics of each group, or every metric with ``all_metrics``."""
    if not (collection.runs or collection.failed or collection.skipped):
        return EMPTY.format(root=root or "this folder") + "\n"
    configs = sum(len(g.rows) for g in groups)
    parts = [
        "# mmzoo leaderboard\n",
        f"{len(collection.runs)} runs in {configs} configurations, {len(groups)} group(s) of one task and "
        f"evaluation data; {len(collection.failed)} failed, {len(collection.skipped)} skipped.\n",
        RULES + "\n",
    ]
    for group in groups:
        parts.append(f"## {group.title}\n")
        if group.ranked:
            parts.append(f"Ranked by `{group.metric}`.\n")
        if group.common:
            parts.append(f"Every row also sets `{common_text(group)}`.\n")
        cols = columns(group, all_metrics)
        parts.append(md_table([c.name for c in cols], [[c.cell(row) for c in cols] for row in group.rows]))
        if has_ablation(group):
            parts.append(f"### Ablation over {', '.join(group.swept)}\n")
            parts.append(md_table(*ablation_table(group)))
    if collection.failed:
        parts.append("## Failed runs\n")
        body = [[r.name, r.model, r.label, r.seed, r.error] for r in collection.failed]
        parts.append(md_table(["run", "model", "config", "seed", "reason"], body))
    if collection.skipped:
        parts.append("## Skipped run directories\n")
        parts.append(md_table(["run", "reason"], [[s.name, s.reason] for s in collection.skipped]))
    return "\n".join(parts)


def write_csv(groups: Sequence[Group], path: Path) -> Path:
    """One line per configuration with numeric fields and every metric; ``eval data`` and ``task``
    name its group."""
    records: list[dict[str, Any]] = []
    for group in groups:
        cols = columns(group, all_metrics=True)
        for row in group.rows:
            record: dict[str, Any] = {"eval data": group.eval_data[0] if group.eval_data else ""}
            record["eval samples"] = group.eval_data[1] if group.eval_data else ""
            record["task"] = group.task
            for col in cols:
                record.update(col.raw(row))
            records.append(record)
    fields = list(dict.fromkeys(k for r in records for k in r)) or ["eval data"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    return path
