"""Checkpoints a kill cannot spoil: atomic writes, the last N kept, the newest intact one found.

Why not Lightning's defaults alone (Lightning 2.6): its ``_atomic_save`` writes through an
fsspec transaction, i.e. to a temporary file in ``$TMPDIR`` that is then moved over the
checkpoint. The move is a rename (atomic) only when ``$TMPDIR`` and the run directory share
a filesystem; otherwise it is a copy, and a kill during the copy leaves a truncated
checkpoint. A kill during the write also leaves the temporary file behind in ``$TMPDIR``
(as large as the checkpoint), and ``save_last=True`` with ``save_top_k=0`` keeps exactly one
file, so there is never an older one to fall back on.

- ``AtomicCheckpointIO`` writes ``.<name>.<pid>.partial`` beside the target, fsyncs it and
  renames it over the target (one filesystem by construction), then fsyncs the directory;
  partial files of killed saves are removed when the run starts again (``remove_partial_saves``).
- ``RunCheckpoint`` is Lightning's ``ModelCheckpoint`` saving ``step=<N>.ckpt`` every
  ``every_n_train_steps``, keeping the newest ``keep`` of them (``last.ckpt`` links to the
  newest), and saving once more when training ends, so a kill during evaluation costs no
  training step.
- ``newest_checkpoint`` picks the newest checkpoint whose zip directory reads, skipping (and
  saying so) a damaged one.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"
STEP_PATTERN = re.compile(r"step=(\d+)")


def _is_local(path: str | os.PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a partial file beside ``path``, then a rename over it: readers (and a
    resume after a kill) see the old file or the new one, never half of one."""
    path = Path(str(path).removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with local writes made atomic (remote paths: Lightning's)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)


def remove_partial_saves(folder: str | os.PathLike) -> list[Path]:
    """Delete what killed saves left in ``folder`` (``.*.partial``); returns the removed paths."""
    folder = Path(folder)
    removed = sorted(folder.glob(f".*{PARTIAL_SUFFIX}")) if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        log.warning("removed %d partial checkpoint file(s) of an interrupted save in %s", len(removed), folder)
    return removed


def checkpoint_step(path: Path) -> int | None:
    """The global step in a checkpoint's name (``step=00000200.ckpt``), if it has one."""
    match = STEP_PATTERN.search(path.name)
    return int(match.group(1)) if match else None


def is_intact(path: Path) -> bool:
    """A torch zip checkpoint whose central directory reads (a truncated file fails here; cheap:
    the directory sits at the end of the file and no tensor is read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def newest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest intact ``*.ckpt`` in ``folder`` (links such as ``last.ckpt`` are skipped; their
    target is among the files), by step in the name, then modification time."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = [p for p in folder.glob("*.ckpt") if p.is_file() and not p.is_symlink()]
    files.sort(key=lambda p: (checkpoint_step(p) or -1, p.stat().st_mtime), reverse=True)
    for path in files:
        if is_intact(path):
            return path
        log.warning("checkpoint %s is damaged (unreadable zip directory): trying an older one", path)
    return None


class RunCheckpoint(ModelCheckpoint):
    """``step=<N>.ckpt`` every ``every_n_train_steps`` steps and at the end of training; the newest
    ``keep`` are kept, ``last.ckpt`` links to the newest. Other ``ModelCheckpoint`` arguments pass
    through (``dirpath`` is the run's own, set by ``mmzoo.run``)."""

    def __init__(self, keep: int = 1, every_n_train_steps: int = 200, **kwargs: Any) -> None:
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep}: keep at least 1 checkpoint (the one a resume starts from)")
        kwargs = {"filename": "step={step:08d}", "auto_insert_metric_name": False, "save_last": "link", **kwargs}
        super().__init__(every_n_train_steps=every_n_train_steps, save_top_k=-1, monitor=None, **kwargs)
        self.keep = keep

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            self.prune()

    def prune(self) -> list[Path]:
        """Remove all but the newest ``keep`` step checkpoints; returns the removed paths."""
        if self.dirpath is None or not Path(self.dirpath).is_dir():
            return []
        files = [p for p in Path(self.dirpath).glob("*.ckpt") if checkpoint_step(p) is not None and not p.is_symlink()]
        files.sort(key=lambda p: (checkpoint_step(p), p.stat().st_mtime))
        removed = files[: max(0, len(files) - self.keep)]
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One more checkpoint at the final step (a kill during evaluation then loses no training)."""
        if not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
