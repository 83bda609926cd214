"""Which directory a run writes to, so that the same command after a kill continues the same run.

A run's default directory is new on every start (``runs/<model>/<time>``), so "start it again"
would otherwise begin from scratch. Every run therefore records ``run_state.json`` in its
directory: the hash of its config (``mmzoo.provenance.config_hash``: the composed config,
without keys that only say where it writes), its status and its process. When a command
starts with no ``resume=`` and no ``hydra.run.dir=``, ``find_unfinished`` looks beside the
new directory (and, for sweeps, beside the sweep's directory) for a run of the same config
that did not finish and whose process is gone; the run continues there (Lightning resumes
from its newest intact checkpoint) and the new, empty directory is removed, its log moved.

``resume=<run dir>`` continues that run whatever its config (e.g. with a larger
``trainer.max_steps``); ``resume=false`` always starts a new run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mmzoo.provenance import config_hash

log = logging.getLogger(__name__)
STATE_FILE = "run_state.json"
RUNNING, FAILED, FINISHED = "running", "failed", "finished"
HYDRA_FILES = (".hydra",)  # what Hydra writes into a run directory before the run starts (besides logs)


def run_key(cfg: DictConfig | dict[str, Any]) -> str:
    """The identity of a run's config: the same command (same overrides) gives the same key."""
    return config_hash(cfg)


def read_state(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_state(run_dir: str | os.PathLike, key: str, status: str, **extra: Any) -> dict[str, Any]:
    """Record ``status`` of the run in ``run_dir`` (atomically), with this process's identity."""
    previous = read_state(run_dir) or {}
    state = {
        "config_hash": key,
        "status": status,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": previous.get("started") if previous.get("config_hash") == key else None,
        "updated": time.time(),
        "starts": int(previous.get("starts", 0)) + (status == RUNNING),
        **extra,
    }
    state["started"] = state["started"] or state["updated"]
    path = Path(run_dir) / STATE_FILE
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(partial, path)
    return state


def is_alive(state: dict[str, Any]) -> bool:
    """Whether the process that recorded ``state`` still runs (known only on the same host; a
    run recorded on another host counts as gone, as after a cluster requeue)."""
    if state.get("host") != socket.gethostname():
        return False
    pid = int(state.get("pid") or 0)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def find_unfinished(parent: str | os.PathLike, key: str, exclude: str | os.PathLike | None = None,
                    depth: int = 1) -> Path | None:
    """The newest run directory ``depth`` levels below ``parent`` whose config has ``key``, that did
    not finish and whose process is gone; None if there is none."""
    parent = Path(parent)
    if not parent.is_dir():
        return None
    pattern = "/".join(["*"] * depth) + "/" + STATE_FILE
    excluded = Path(exclude).resolve() if exclude is not None else None
    found = []
    for state_file in parent.glob(pattern):
        run_dir = state_file.parent
        state = read_state(run_dir)
        if (state is None or run_dir.resolve() == excluded or state.get("config_hash") != key
                or state.get("status") == FINISHED or is_alive(state)):
            continue
        found.append((float(state.get("updated") or 0), run_dir))
    return max(found)[1] if found else None


def holds_only_hydra_files(folder: Path) -> bool:
    """A directory Hydra made for this start and nothing else wrote to (its config and logs)."""
    return folder.is_dir() and all(p.name in HYDRA_FILES or p.suffix == ".log" for p in folder.iterdir())


def move_logs(fresh: Path, run_dir: Path) -> None:
    """Point the logging file handlers that write into ``fresh`` at ``run_dir`` (appending, after
    what they wrote so far), so the log of a resumed start joins the run it continues."""
    for handler in logging.getLogger().handlers:
        filename = getattr(handler, "baseFilename", None)
        if not isinstance(handler, logging.FileHandler) or filename is None:
            continue
        old = Path(filename)
        if old.parent.resolve() != fresh.resolve():
            continue
        new = run_dir / old.name
        handler.acquire()
        try:
            handler.flush()
            handler.close()
            with open(new, "a") as target, open(old) as written:
                target.write(written.read())
            handler.baseFilename = str(new.resolve())
            handler.mode = "a"
        finally:
            handler.release()


def continue_in(fresh: Path, run_dir: Path) -> None:
    """Move this start's log into ``run_dir`` and delete ``fresh`` if only Hydra wrote to it."""
    move_logs(fresh, run_dir)
    if fresh.resolve() != run_dir.resolve() and holds_only_hydra_files(fresh):
        shutil.rmtree(fresh, ignore_errors=True)
