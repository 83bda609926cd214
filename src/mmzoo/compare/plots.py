"""Figures: the ranking metric per configuration, and an ablation's metric against the swept value.

Error bars are the sample std over seeds (none when n=1); blind baselines are drawn as
grey crosses beside the metric they qualify, so a bar that barely clears its cross is
visible at a glance. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmzoo.compare.records import BLIND_SUFFIXES
from mmzoo.compare.table import Group, Row, ablation_rows, natural_key


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _blind(row: Row, metric: str) -> float | None:
    values = [v for s in BLIND_SUFFIXES if (v := row.mean(metric + s)) is not None]
    return max(values) if values else None


def row_name(row: Row, group: Group | None = None) -> str:
    """``"llava bridge=mlp2"``; just the model when it runs with its defaults; ``(untrained)`` or
    ``(pretrained)`` after an evaluated-only run. Within ``group``, without the settings all its
    rows share."""
    label = group.label(row) if group is not None else row.label
    name = row.model if label == "(defaults)" else f"{row.model} {label}"
    return name if row.training == "trained" else f"{name} ({row.training})"


def leaderboard_plot(groups: Sequence[Group], path: Path) -> Path:
    """One panel per evaluation-data group: each configuration's main metric, mean ± std."""
    plt = _pyplot()
    panels = [g for g in groups if g.metric] or []
    heights = [max(2.0, 0.45 * len(g.rows) + 1.2) for g in panels] or [2.0]
    fig, axes = plt.subplots(len(heights), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    if not panels:
        axes[0][0].text(0.5, 0.5, "no comparable runs", ha="center", va="center")
        axes[0][0].axis("off")
    for ax, group in zip(axes[:, 0], panels, strict=False):
        rows = [r for r in group.rows if r.summary(group.metric) is not None][::-1]  # best on top
        summaries = [r.summary(group.metric) for r in rows]
        y = range(len(rows))
        for untrained, colour, label in ((False, "#4c78a8", f"{group.metric} (mean ± std over seeds)"),
                                         (True, "#c7c7c7", "the same model untrained (stage=test)")):
            bars = [(i, s) for i, (r, s) in enumerate(zip(rows, summaries, strict=True)) if r.is_baseline is untrained]
            if bars:
                ax.barh([i for i, _ in bars], [s.mean for _, s in bars], xerr=[s.std or 0.0 for _, s in bars],
                        color=colour, capsize=3, label=label)
        blinds = [(i, b) for i, r in enumerate(rows) if (b := _blind(r, group.metric)) is not None]
        if blinds:
            ax.scatter([b for _, b in blinds], [i for i, _ in blinds], marker="x", color="#444", zorder=3,
                       label="best blind baseline")
        ax.set_yticks(list(y), [f"{row_name(r, group)} (n={r.n})" for r in rows], fontsize="small")
        ax.set_xlabel(group.metric)
        ax.set_title(group.title, fontsize="medium")
        ax.legend(fontsize="x-small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def ablation_plot(group: Group, path: Path) -> Path:
    """The main metric against the first swept key, one series per value of the other swept keys
    (joined by lines only when the swept values are numbers)."""
    plt = _pyplot()
    keys, metric = group.swept, group.metric
    x_key, series_keys = keys[0], keys[1:]
    rows = [r for r in ablation_rows(group) if r.summary(metric) is not None]
    x_values = list(dict.fromkeys(r.setting(x_key) for r in rows))
    series: dict[str, list[Row]] = {}
    for row in rows:
        name = ", ".join(f"{k}={row.setting(k)}" for k in series_keys) or metric
        series.setdefault(name, []).append(row)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    offset = 0.08 * (len(series) > 1)
    blind_shown = False
    ordered = all(natural_key(v)[0] == 0 for v in x_values)  # lines only between numeric values
    for i, (name, members) in enumerate(series.items()):
        xs = [x_values.index(r.setting(x_key)) + offset * (i - (len(series) - 1) / 2) for r in members]
        summaries = [r.summary(metric) for r in members]
        ax.errorbar(xs, [s.mean for s in summaries], yerr=[s.std or 0.0 for s in summaries], marker="o",
                    capsize=4, label=name, linestyle="-" if ordered else "none")
        for x, s in zip(xs, summaries, strict=True):
            ax.annotate(f"n={s.n}", (x, s.mean), textcoords="offset points", xytext=(6, -10), fontsize="x-small")
        blinds = [(x, b) for x, r in zip(xs, members, strict=True) if (b := _blind(r, metric)) is not None]
        if blinds:
            ax.scatter(*zip(*blinds, strict=True), marker="x", color="#777",
                       label="_nolegend_" if blind_shown else "best blind baseline (blank / shuffled images)")
            blind_shown = True
    ax.set_xticks(range(len(x_values)), x_values)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{metric} (mean ± std)")
    ax.set_title(f"{metric} vs {x_key}", fontsize="medium")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
