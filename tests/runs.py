"""Hand-written run directories (``metrics.json`` as ``mmzoo.run`` writes it) for the comparison tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmzoo.provenance import config_hash

EVAL_A, EVAL_B = "a" * 64, "b" * 64


def write_run(
    path: Path,
    model: str,
    seed: int,
    metrics: dict[str, float],
    settings: tuple[str, ...] = (),
    eval_hash: str | None = EVAL_A,
    **extra: Any,
) -> Path:
    """A schema-2 run directory as ``mmzoo.run`` writes it (config hash from model + settings)."""
    path.mkdir(parents=True)
    config = {"model": model, **dict(s.split("=", 1) for s in settings)}
    record = {
        "schema": 2, "status": "ok", "error": None, "model": model, "parts": {"bridge": "mlp2"},
        "overrides": [f"model={model}", *settings, f"seed={seed}"], "seed": seed, "metrics": metrics,
        "params": {"trainable": 1_500_000, "total": 12_000_000},
        "train": {"steps": 100, "seconds": 60.0 + seed, "samples_per_second": 100.0 + 10 * seed},
        "eval": {"seconds": 5.0, "samples": 512},
        "memory": {"cpu_rss_mb": 800.0 + seed, "gpu_max_allocated_mb": None},
        "data": {"train_samples": 1000, "skipped_samples": 0, "skipped_by_reason": {}},
        "lineage": {"encoder": "/cache/mmzoo/zoo/clip-1234"},
        "provenance": {
            "git": {"commit": "0123456789abcdef", "dirty": seed == 2},
            "config_hash": config_hash({**config, "seed": seed}),
            "config_hash_without_seed": config_hash(config),
            "versions": {"torch": "2.14.1", "lightning": "2.6.6", "transformers": "5.24.0"},
            "device": "AMD EPYC, 2 cores",
            "train_data": {"shards": ["000000.tar"], "samples": 1000, "content_hash": None},
            "eval_data": {"shards": ["000000.tar"], "samples": 512, "content_hash": eval_hash},
        },
    }
    record.update(extra)
    (path / "metrics.json").write_text(json.dumps(record))
    return path


def cider(value: float, blank: float = 0.3, shuffled: float = 0.4) -> dict[str, float]:
    return {"caption/cider": value, "caption/cider@blank": blank, "caption/cider@shuffled": shuffled}
