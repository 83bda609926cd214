"""``python -m mmzoo.leaderboard RUNS_DIR [--out DIR]``: a leaderboard that says what is comparable.

Collects every ``metrics.json`` under ``RUNS_DIR`` (recursively, Hydra multirun folders
included; ``make leaderboard`` first trains the whole zoo into one) and writes ``leaderboard.md``, ``.csv``, ``.html`` (self-contained, sortable,
with model outputs side by side) and ``.png`` into ``--out`` (default ``RUNS_DIR``),
plus ``ablation.png`` / ``ablation_<i>.png`` where configurations differ in their
overrides (a sweep), and prints the markdown. How rows are grouped, folded over seeds,
ranked and checked is explained in ``mmzoo.compare.table`` and
``mmzoo.compare.significance``; the rules are restated at the top of every output.

``metrics.json``, schema 2 (what a run writes; ``compare.records.schema_problem`` checks it)::

    {"schema": 2,
     "status": "ok" | "failed",          # a failed run is listed with its error, never ranked
     "error": null | "<one-line reason>",  # e.g. "ValueError: bridge out_dim 64 != llm dim 128"
     "model": "llava",                    # the config-group choice
     "parts": {"encoder": "zoo_clip", "bridge": "mlp2", "llm": "zoo_lm"},
     "overrides": ["model=llava", "bridge=mlp2", "seed=1"],  # Hydra's task overrides
     "seed": 1,
     "metrics": {"caption/cider": 2.1, "caption/cider@blank": 0.3, "caption/cider@shuffled": 0.4,
                 "vqa/accuracy": 0.9, "retrieval/t2i_r1": 0.6, "retrieval/chance_r1": 0.01},
     "params": {"trainable": int, "total": int},
     "train": {"steps": int, "seconds": float, "samples_per_second": float,
               "loss_first": float, "loss_last": float},
     "eval": {"seconds": float, "samples": int},   # samples evaluated (limit_test_batches counts)
     "memory": {"cpu_rss_mb": float, "gpu_max_allocated_mb": float | null},
     "data": {"train_samples": int, "skipped_samples": int, "skipped_by_reason": {...}},
     "lineage": {"encoder": "<run dir>", "bridge.qformer": "<run dir>"},
     "provenance": {"git": {"commit": str | null, "dirty": bool | null},
                    "config_hash": str, "config_hash_without_seed": str,
                    "versions": {...}, "device": str,
                    "train_data": {"shards": [...], "samples": int | null, "content_hash": null},
                    "eval_data": {"shards": [...], "samples": int | null, "content_hash": str}}}

``mmzoo.provenance.provenance(config, train_urls, eval_urls)`` fills ``provenance``
and ``mmzoo.provenance.peak_memory()`` fills ``memory``. Added beyond the first draft:
``provenance.config_hash_without_seed`` (how seeds of one configuration are recognised)
and ``eval.samples`` (part of the evaluation-data identity: two runs that evaluated 512
and 1000 samples of the same split are not ranked together). Metric keys ending in
``@blank`` / ``@shuffled`` are the blind baselines of the metric before the ``@``; keys
whose name contains ``chance`` are chance levels (shown, never ranked). A failed run
needs only ``schema``, ``status``, ``error``, ``model`` (and, usefully, ``overrides``).
Files without ``"schema"`` are schema 1 (no provenance): listed as skipped. A ``stage=test``
override (evaluation only) marks a row ``untrained`` (or ``pretrained`` when the run names
``pretrained`` weights, see ``Run.training``).

Besides ``metrics.json`` the page reads ``examples.jsonl`` and ``examples/<key>.png``
from a run directory (see ``mmzoo.compare.page``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmzoo.compare.page import to_html
from mmzoo.compare.plots import ablation_plot, leaderboard_plot
from mmzoo.compare.records import Collection, collect
from mmzoo.compare.render import EMPTY, has_ablation, to_markdown, write_csv
from mmzoo.compare.table import Group, build_groups

__all__ = ["build_groups", "collect", "main", "to_markdown", "write"]


def ablation_name(index: int) -> str:
    return "ablation.png" if index == 0 else f"ablation_{index + 1}.png"


def write(
    collection: Collection, groups: list[Group], out: str | Path, k: int = 6, all_metrics: bool = False
) -> dict[str, Path]:
    """Write the markdown, CSV, plots and HTML page into ``out``; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv", "png": out / "leaderboard.png"}
    paths["md"].write_text(to_markdown(collection, groups, all_metrics=all_metrics))
    write_csv(groups, paths["csv"])
    leaderboard_plot(groups, paths["png"])
    images = {"leaderboard": paths["png"]}
    sweeps = [(i, g) for i, g in enumerate(groups) if has_ablation(g) and g.metric]
    for n, (i, group) in enumerate(sweeps):
        images[f"ablation-{i}"] = paths[f"ablation-{i}"] = ablation_plot(group, out / ablation_name(n))
    paths["html"] = out / "leaderboard.html"
    paths["html"].write_text(to_html(collection, groups, images, k, all_metrics))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmzoo.leaderboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", default="runs", help="folder searched for run directories")
    parser.add_argument("--out", default=None, help="output folder (default: RUNS)")
    parser.add_argument("--metric", default=None, help="metric to rank by (default: the most common preferred one)")
    parser.add_argument("--examples", type=int, default=6, help="test images shown side by side")
    parser.add_argument("--all-metrics", action="store_true",
                        help="every metric in the tables (default: each task's headline metrics; the CSV has all)")
    args = parser.parse_args(argv)
    if not Path(args.runs).is_dir():
        print(EMPTY.format(root=f"{args.runs!r} (no such folder)"))
        return 1
    collection = collect(args.runs)
    if not (collection.runs or collection.failed or collection.skipped):
        print(EMPTY.format(root=repr(args.runs)))
        return 1
    groups = build_groups(collection.runs, args.metric)
    paths = write(collection, groups, args.out or args.runs, args.examples, args.all_metrics)
    print(to_markdown(collection, groups, args.runs, args.all_metrics))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
