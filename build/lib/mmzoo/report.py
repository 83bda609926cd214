"""Printing a run's metrics as a table people can read at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_metrics(metrics: dict[str, Any], run_dir: Path | None = None, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"mmzoo · {metrics.get('model')}", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.get("metrics", {}).items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    params, train, data = metrics.get("params", {}), metrics.get("train", {}), metrics.get("data", {})
    if params:
        table.add_row("params (trainable / total)", f"{params['trainable']:,} / {params['total']:,}")
    if train:
        table.add_row("train steps / seconds", f"{train.get('steps')} / {train.get('seconds')}")
    if data:
        table.add_row("skipped samples", str(data.get("skipped_samples", 0)))
    console.print(table)
    if run_dir is not None:
        console.print(f"run directory: {run_dir}")
