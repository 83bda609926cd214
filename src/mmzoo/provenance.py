"""Where a result comes from: code, config, data, libraries, machine and memory of a run.

A number on the leaderboard is only worth comparing when one can say what produced it.
``provenance(...)`` gathers, at the end of a run, everything the leaderboard shows next
to a row: the mmzoo git commit and whether the tree was dirty, a hash of the resolved
config, the identity of the training and evaluation data, library versions and the
device; ``peak_memory()`` is read separately because it belongs with the cost columns, and
``reset_peak_memory()`` starts its window when a run starts.

Each function degrades to ``None`` fields instead of failing (no git, no manifest, no
CUDA): provenance must never be the reason a finished run loses its metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# Keys of the resolved config that do not change what a run computes, only where it writes
# or how it reports; they are left out of the config hash (dotted paths).
VOLATILE_KEYS = (
    "hydra",
    "resume",
    "checkpoint_every_n_steps",
    "num_examples",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
)
LIBRARIES = ("torch", "lightning", "transformers", "mmzoo")
_CHUNK = 1 << 20  # bytes read at a time when hashing shards


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git work tree holding ``path`` (default: mmzoo's source).

    ``dirty`` counts modified tracked files and untracked files that are not ignored (a
    new module changes what runs as much as an edited one). Both are ``None`` outside a
    git repository (an installed wheel) or without a ``git`` binary.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    where = where if where.is_dir() else where.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _container(config: Any) -> Any:
    """A plain dict/list from a DictConfig (resolved) or a mapping."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        return config
    if isinstance(config, (DictConfig, ListConfig)):
        return OmegaConf.to_container(config, resolve=True)
    return config


def _drop(tree: Any, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if not isinstance(tree, dict) or head not in tree:
        return
    if rest:
        _drop(tree[head], rest)
    else:
        del tree[head]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def config_hash(config: Mapping[str, Any] | Any, exclude: Iterable[str] = VOLATILE_KEYS) -> str:
    """sha256 (hex) of the canonical JSON of the resolved ``config`` without the ``exclude`` keys.

    Key order does not matter; values do, including types (``1`` and ``"1"`` differ).
    """
    tree = json.loads(canonical_json(_container(config)))  # a deep copy with plain types
    for key in exclude:
        _drop(tree, key)
    return hashlib.sha256(canonical_json(tree).encode()).hexdigest()


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_identity(urls: str | Sequence[str], content_hash: bool = False) -> dict[str, Any]:
    """``{"shards", "samples", "content_hash"}`` of a shard list (a spec ``expand_urls`` reads).

    ``shards`` are basenames of local files (the folder is where this machine keeps them,
    not what they are) and whole urls of remote ones. ``samples`` comes from the folder's
    ``manifest.json`` or img2dataset ``*_stats.json`` (``None`` when undocumented).
    ``content_hash`` (when asked; meant for the evaluation split) is the sha256 of the
    sorted per-shard sha256s, so it names the bytes whatever the files are called or the
    order they are listed in; ``None`` when a shard is remote. Hashing reads the files
    once in 1 MiB chunks (~10 MB takes a few tens of milliseconds).
    """
    from mmzoo.data.webdata import expand_urls, shard_counts

    expanded = expand_urls(urls)
    local = all(map(_is_local, expanded))
    counts = shard_counts(expanded) if local else None
    digest = None
    if content_hash and local:
        per_shard = sorted(file_sha256(u) for u in expanded)
        digest = hashlib.sha256("\n".join(per_shard).encode()).hexdigest()
    return {
        "shards": [Path(u).name if _is_local(u) else u for u in expanded],
        "samples": None if counts is None else sum(counts),
        "content_hash": digest,
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of torch, lightning, transformers, mmzoo, and the Python version."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions["mmzoo"] is None:  # running from a source tree that was never installed
        from mmzoo import __version__

        versions["mmzoo"] = __version__
    versions["python"] = platform.python_version()
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - mmzoo depends on torch
        return None
    return torch


def device_description() -> str:
    """The GPUs a run can use (``"2 x NVIDIA H100 80GB HBM3"``), else the CPU model and core count.

    Cores are those this process may run on (its affinity), which is what bounds a CPU run.
    """
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{_cpu_model()}, {cores} cores"


def peak_memory() -> dict[str, float | None]:
    """Peak resident memory of this process and peak CUDA memory allocated by torch, in MiB.

    ``getrusage`` reports ``ru_maxrss`` in KiB on Linux and in bytes on macOS.
    ``gpu_max_allocated_mb`` is the maximum over visible devices, ``None`` without CUDA.
    """
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / (1 << 20) if sys.platform == "darwin" else rss / 1024
    gpu = None
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        gpu = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / (1 << 20)
    return {"cpu_rss_mb": round(rss_mb, 1), "gpu_max_allocated_mb": None if gpu is None else round(gpu, 1)}


def reset_peak_memory() -> bool:
    """Start a new peak-memory window, so that ``peak_memory()`` measures what follows.

    Several runs in one process (a Hydra sweep on the basic launcher, the zoo making its
    parts first) would otherwise each report the largest peak of any run before them. On
    Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the resident-set high-water
    mark to the current RSS (``ru_maxrss`` follows); CUDA's peak statistics are reset too.
    Returns False where the CPU peak cannot be reset (then it is the process's peak).
    """
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def provenance(
    config: Mapping[str, Any] | Any,
    train_urls: str | Sequence[str] | None = None,
    eval_urls: str | Sequence[str] | None = None,
    repo: str | Path | None = None,
) -> dict[str, Any]:
    """Everything the leaderboard shows about where a run comes from (``metrics.json``'s ``provenance``).

    ``config_hash`` identifies the resolved config; ``config_hash_without_seed`` the same
    config with ``seed`` removed, which is how the leaderboard recognises repeats of one
    configuration under different seeds. Only the evaluation split is content-hashed: it
    decides which rows may be ranked together, and it is small; training data is named
    by its shards and sample count.
    """
    return {
        "git": git_state(repo),
        "config_hash": config_hash(config),
        "config_hash_without_seed": config_hash(config, (*VOLATILE_KEYS, "seed")),
        "versions": library_versions(),
        "device": device_description(),
        "train_data": None if train_urls is None else data_identity(train_urls, content_hash=False),
        "eval_data": None if eval_urls is None else data_identity(eval_urls, content_hash=True),
    }
