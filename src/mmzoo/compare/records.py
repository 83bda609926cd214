"""Reading run directories: each ``metrics.json`` becomes a ``Run``, or the reason it cannot.

The schema is documented in ``mmzoo.leaderboard``. Reading never raises on a bad run:
a missing, truncated or malformed file, or one of another schema, becomes a ``Skipped``
with the reason, because one broken directory must not hide every other result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmzoo.provenance import VOLATILE_KEYS

SCHEMA = 2
METRICS_FILE = "metrics.json"
BLIND_SUFFIXES = ("@blank", "@shuffled")
# overrides that name how a job was launched or what it is (shown in columns of their own),
# not a setting that tells configurations apart in the label
UNLABELLED_KEYS = ("seed", "sweep", "model", "stage")


@dataclass
class Skipped:
    """A run directory the leaderboard cannot use, and why."""

    path: Path
    reason: str
    name: str = ""  # the path relative to the folder the leaderboard was asked about


@dataclass
class Run:
    """One run's ``metrics.json`` (schema 2) with the fields the tables need."""

    path: Path
    record: dict[str, Any]
    name: str = ""  # the path relative to the folder the leaderboard was asked about
    metrics: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.name or str(self.path)
        self.metrics = {k: float(v) for k, v in self.record.get("metrics", {}).items()}

    @property
    def model(self) -> str:
        return str(self.record.get("model"))

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def error(self) -> str:
        return str(self.record.get("error") or "no reason recorded")

    @property
    def overrides(self) -> list[str]:
        return [str(o) for o in self.record.get("overrides") or []]

    @property
    def seed(self) -> int | None:
        if self.record.get("seed") is not None:
            return int(self.record["seed"])
        seeds = [o.split("=", 1)[1] for o in self.overrides if override_key(o) == "seed"]
        return int(seeds[-1]) if seeds else None

    @property
    def settings(self) -> dict[str, str]:
        """Overrides as ``{key: value}`` without seed/sweep/model/stage, Hydra's own keys and the
        keys that change how a run reports, not what it computes (``trainer.enable_progress_bar``)."""
        pairs = ((override_key(k), v) for k, v in (o.split("=", 1) for o in self.overrides if "=" in o))
        return {k: v for k, v in pairs if k not in UNLABELLED_KEYS and not _volatile(k)}

    @property
    def stage(self) -> str:
        """``fit`` (train, then evaluate) or ``test`` (evaluate only), as the command asked."""
        stages = [o.split("=", 1)[1] for o in self.overrides if "=" in o and override_key(o) == "stage"]
        return stages[-1] if stages else "fit"

    @property
    def training(self) -> str:
        """``trained``; ``untrained`` (``stage=test`` of a freshly built model: the baseline that
        shows what training added); or ``pretrained`` (``stage=test`` of weights made elsewhere)."""
        steps = self.get("train.steps")
        if self.stage != "test" and steps != 0:
            return "trained"
        given = {override_key(o) for o in self.overrides}
        return "pretrained" if "pretrained" in self.lineage or given & {"pretrained", "init_from"} else "untrained"

    @property
    def label(self) -> str:
        """What distinguishes this configuration: its overrides except seed, sweep and model."""
        return " ".join(f"{k}={v}" for k, v in self.settings.items()) or "(defaults)"

    @property
    def provenance(self) -> dict[str, Any]:
        """The ``provenance`` block with its sub-blocks as dicts (absent or garbled: empty)."""
        block = self.record.get("provenance")
        if not isinstance(block, dict):
            return {}
        return {k: v if k not in ("git", "eval_data", "train_data", "versions") or isinstance(v, dict) else {}
                for k, v in block.items()}

    @property
    def lineage(self) -> dict[str, str]:
        lineage = self.record.get("lineage")
        return {str(k): str(v) for k, v in lineage.items()} if isinstance(lineage, dict) else {}

    @property
    def configuration(self) -> str:
        """Key shared by runs that differ only in their seed.

        The hash of the resolved config without ``seed`` when the run recorded it (two
        spellings of one config agree, two configs behind one spelling do not), else a
        hash of the model and the overrides without ``seed``.
        """
        recorded = self.provenance.get("config_hash_without_seed")
        if recorded:
            return str(recorded)
        text = json.dumps([self.model, sorted(self.settings.items())])
        return "overrides:" + hashlib.sha256(text.encode()).hexdigest()

    @property
    def eval_data(self) -> tuple[str, int | None] | None:
        """(content hash of the evaluation split, samples evaluated); None when unknown."""
        content = (self.provenance.get("eval_data") or {}).get("content_hash")
        if not content:
            return None
        samples = self.get("eval.samples")
        return str(content), None if samples is None else int(samples)

    def get(self, dotted: str) -> Any:
        """A nested value of the record (``"train.samples_per_second"``), None when absent."""
        node: Any = self.record
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def _volatile(key: str) -> bool:
    return any(key == v or key.startswith(v + ".") for v in VOLATILE_KEYS)


def override_key(override: str) -> str:
    """``"++bridge.frozen=true"`` -> ``"bridge.frozen"`` (Hydra's +/++/~ prefixes dropped)."""
    return override.split("=", 1)[0].lstrip("+~")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def schema_problem(record: Any) -> str | None:
    """Why ``record`` is not a usable schema-2 ``metrics.json``; None when it is.

    Usable means: a JSON object with ``"schema": 2``, ``status`` ok or failed, a model
    name, and (for ok runs) numeric metrics. Other fields are optional: a row shows a
    blank where they are missing.
    """
    if not isinstance(record, dict):
        return f"metrics.json holds a {type(record).__name__}, not an object"
    if "schema" not in record:
        return "schema 1 (written before provenance was recorded): re-run it to compare it"
    if record["schema"] != SCHEMA:
        return f"schema {record['schema']!r}: this leaderboard reads schema {SCHEMA}"
    if record.get("status") not in ("ok", "failed"):
        return f"status {record.get('status')!r} is neither 'ok' nor 'failed'"
    if not isinstance(record.get("model"), str):
        return "no model name"
    overrides = record.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return "overrides is not a list of strings"
    if record.get("seed") is not None and not isinstance(record["seed"], int):
        return f"seed {record['seed']!r} is not an integer"
    samples = (record.get("eval") or {}).get("samples") if isinstance(record.get("eval"), dict) else None
    if samples is not None and not isinstance(samples, int):
        return f"eval.samples {samples!r} is not an integer"
    if record["status"] == "failed":
        return None
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return "no metrics"
    bad = [k for k, v in metrics.items() if not _is_number(v)]
    if bad:
        return f"metric {bad[0]!r} is {metrics[bad[0]]!r}, not a number"
    return None


def read_run(run_dir: str | Path) -> Run | Skipped:
    """The run in ``run_dir``, or why it cannot be compared (never raises)."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return Skipped(run_dir, "no metrics.json: the run crashed before writing it, was killed, or is still running")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        return Skipped(run_dir, f"unreadable metrics.json: {err}")
    if not text.strip():
        return Skipped(run_dir, "empty metrics.json (the run was interrupted while writing it)")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return Skipped(run_dir, f"truncated or malformed metrics.json: {err}")
    problem = schema_problem(record)
    if problem:
        return Skipped(run_dir, problem)
    return Run(run_dir, record)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def run_dirs(root: str | Path) -> Iterator[Path]:
    """Folders under ``root`` that hold a run: a ``metrics.json``, a Hydra job's ``.hydra/``
    or an mmzoo ``config.yaml`` (so runs that died before writing metrics are found too).

    Hidden folders (``.hydra``, ``.submitit``) are not runs themselves.
    """
    root = Path(root)
    found: set[Path] = set()
    for marker in (METRICS_FILE, "config.yaml"):
        found |= {p.parent for p in root.rglob(marker) if p.is_file() and not _hidden(p.parent, root)}
    found |= {p.parent for p in root.rglob(".hydra") if p.is_dir() and not _hidden(p.parent, root)}
    yield from sorted(found)


@dataclass
class Collection:
    """Everything found under a folder: usable runs, failed runs, and skipped directories."""

    runs: list[Run]
    failed: list[Run]
    skipped: list[Skipped]


def _newest_per_seed(runs: list[Run]) -> tuple[list[Run], list[Skipped]]:
    """Keep one run per (evaluation data, configuration, seed): the newest.

    Re-running a seed repeats the same computation; counting both would shrink the spread
    that the seeds are there to measure.
    """
    newest: dict[tuple, Run] = {}
    for run in sorted(runs, key=lambda r: (r.path / METRICS_FILE).stat().st_mtime, reverse=True):
        newest.setdefault((run.eval_data, run.configuration, run.seed), run)
    kept = [r for r in runs if newest[(r.eval_data, r.configuration, r.seed)] is r]
    superseded = [
        Skipped(r.path, f"repeats seed {r.seed} of {newest[(r.eval_data, r.configuration, r.seed)].name} "
                        "(same configuration and evaluation data), which is newer: only the newest counts", r.name)
        for r in runs if newest[(r.eval_data, r.configuration, r.seed)] is not r
    ]
    return kept, superseded


def collect(root: str | Path) -> Collection:
    """Read every run directory under ``root`` (recursively; Hydra multirun folders included)."""
    root = Path(root)
    runs, failed, skipped = [], [], []
    for path in run_dirs(root):
        name = str(path.relative_to(root)) if path != root else path.name
        item = read_run(path)
        item.name = name
        if isinstance(item, Skipped):
            skipped.append(item)
        elif item.status == "failed":
            failed.append(item)
        else:
            runs.append(item)
    runs, superseded = _newest_per_seed(runs)
    return Collection(runs, failed, skipped + superseded)
