"""``python -m mmzoo.leaderboard RUNS_DIR``: every run's ``metrics.json`` in one table.

Writes ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.html`` and
``leaderboard.png`` (one bar chart per metric family, plus training-loss curves read
from each run's Lightning CSV log) into the output folder, and prints the markdown.
All runs share one metrics schema, so models of different families sit side by side;
a metric a model does not report is left blank.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def collect(root: str | Path) -> list[dict[str, Any]]:
    """One row per run directory under ``root`` (searched recursively), newest last."""
    rows = []
    for path in sorted(Path(root).rglob("metrics.json")):
        data = json.loads(path.read_text())
        parts = data.get("parts", {})
        rows.append(
            {
                "run": str(path.parent),
                "model": data.get("model"),
                "parts": ", ".join(f"{k}={v}" for k, v in parts.items() if v),
                "trainable": data.get("params", {}).get("trainable"),
                "total": data.get("params", {}).get("total"),
                "steps": data.get("train", {}).get("steps"),
                "seconds": data.get("train", {}).get("seconds"),
                **{k: v for k, v in data.get("metrics", {}).items()},
            }
        )
    return rows


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    fixed = ["model", "parts", "trainable", "total", "steps", "seconds"]
    metrics = sorted({k for r in rows for k in r} - set(fixed) - {"run"})
    return [*fixed, *metrics, "run"]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_html(rows: Sequence[dict[str, Any]]) -> str:
    cols = columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    style = "table{border-collapse:collapse;font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 8px}"
    return f"<html><head><style>{style}</style></head><body><table><tr>{head}</tr>{body}</table></body></html>\n"


def loss_curve(run_dir: str | Path) -> tuple[list[int], list[float]]:
    """(steps, train/loss) from the run's Lightning CSV log, empty when absent."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    steps, losses = [], []
    if path.is_file():
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    steps.append(int(row["step"]))
                    losses.append(float(row["train/loss"]))
    return steps, losses


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric_cols = [c for c in columns(rows) if "/" in c and not c.endswith("chance") and "chance" not in c]
    families = sorted({c.split("/")[0] for c in metric_cols})
    fig, axes = plt.subplots(1, len(families) + 1, figsize=(5 * (len(families) + 1), 4), squeeze=False)
    labels = [f"{i}: {r['model']} ({r['parts']})" for i, r in enumerate(rows)]
    for ax, family in zip(axes[0], families, strict=False):
        cols = [c for c in metric_cols if c.startswith(family + "/")]
        width = 0.8 / max(len(rows), 1)
        for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
            values = [row.get(c) or 0.0 for c in cols]
            ax.bar([x + i * width for x in range(len(cols))], values, width, label=label)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(cols))], [c.split("/", 1)[1] for c in cols], rotation=45)
        ax.set_title(family)
    ax = axes[0][-1]
    for row, label in zip(rows, labels, strict=True):
        steps, losses = loss_curve(row["run"])
        if steps:
            ax.plot(steps, losses, label=label)
    ax.set_title("train loss")
    ax.set_xlabel("step")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(rows: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "html": out / "leaderboard.html"}
    paths["md"].write_text(to_markdown(rows))
    paths["html"].write_text(to_html(rows))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    paths["png"] = plot(rows, out / "leaderboard.png")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmzoo.leaderboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", default="runs", help="folder searched for run directories")
    parser.add_argument("--out", default=None, help="output folder (default: RUNS)")
    args = parser.parse_args(argv)
    rows = collect(args.runs)
    if not rows:
        raise SystemExit(f"no runs with metrics.json under {args.runs!r}: train some with `python -m mmzoo.run`")
    paths = write(rows, args.out or args.runs)
    print(to_markdown(rows))
    print("written: " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
