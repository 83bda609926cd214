"""Training throughput and MFU, measured without slowing training down, kept for metrics.json.

Lightning's ``ThroughputMonitor`` takes the time on every step, and on a GPU it synchronises
the device each time (so that the clock is right), which keeps the host from queueing the
next step. This subclass counts samples every step but takes the time, and synchronises,
only at the steps the logger writes (``trainer.log_every_n_steps``); its rates are over a
window of ``window_size`` of those. MFU needs the FLOPs of a batch: unless the module
declares ``flops_per_batch``, they are counted once, on the first training batch, with
torch's ``FlopCounterMode`` (the matmuls, convolutions and attention of forward and
backward; a run with ``compile.enabled=true`` counts the same FLOPs as the eager one, as
measured with the inductor on this CPU: the first batch is traced under the counter).
Lightning knows the peak FLOP/s of common GPUs (``get_available_flops``); on a CPU there is
no MFU, only FLOP/s.

``summary()`` is what ``mmzoo.run`` writes under ``train.throughput`` in metrics.json:
samples/s, batches/s, FLOP/s and MFU over the run after its first logging interval (start-up,
compilation and the FLOP count are left out), and the FLOPs per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ThroughputMonitor as LightningThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.flop_counter import FlopCounterMode

from mmzoo.lit.base import batch_size


class ThroughputMonitor(LightningThroughputMonitor):
    """``batch_size_fn(batch) -> samples`` (default: ``mmzoo.lit.base.batch_size``; not a Hydra
    ``_partial_``, whose every call costs ~0.4 ms of access checks); ``count_flops``: count the
    first batch's FLOPs for MFU."""

    def __init__(self, batch_size_fn: Callable[[Any], int] = batch_size, window_size: int = 5,
                 count_flops: bool = True, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(batch_size_fn=batch_size_fn, window_size=window_size, **kwargs)
        self.count_flops = count_flops
        self.flops_per_batch: int | None = None
        self._counter: FlopCounterMode | None = None
        self._samples_total = self._batches_total = 0
        self._marks: list[tuple[float, int, int]] = []  # (seconds since start, batches, samples) at logging steps
        self._started_at = 0.0

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        self._samples_total = self._batches_total = 0
        self._marks = []
        self._started_at = time.perf_counter()

    @rank_zero_only
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        declared = getattr(pl_module, "flops_per_batch", None)
        if declared is not None:
            self.flops_per_batch = int(declared)
        elif self.count_flops and self.flops_per_batch is None and self._counter is None:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_batch = int(self._counter.get_total_flops()) or None  # 0: nothing seen (compiled)
            self._counter = None
        self._samples_total += self.batch_size_fn(batch)
        self._batches_total += 1
        if trainer.fit_loop._should_accumulate() or not trainer._logger_connector.should_update_logs:
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # once per logging interval, not per step
        elapsed = time.perf_counter() - self._started_at
        batches_since = self._batches_total - (self._marks[-1][1] if self._marks else 0)
        self._marks.append((elapsed, self._batches_total, self._samples_total))
        stage = trainer.state.stage
        assert stage is not None
        self._throughputs[stage].update(
            time=elapsed, batches=self._batches_total, samples=self._samples_total,
            flops=self.flops_per_batch * batches_since if self.flops_per_batch else None,
        )  # fmt: skip
        self._compute(trainer)

    def summary(self) -> dict[str, float | int | None]:
        """Rates from the first logging step to the last (empty before two logging steps)."""
        if len(self._marks) < 2:
            return {}
        (t0, b0, s0), (t1, b1, s1) = self._marks[0], self._marks[-1]
        seconds = t1 - t0
        flops_per_second = self.flops_per_batch * (b1 - b0) / seconds if self.flops_per_batch else None
        available = getattr(self, "available_flops", None)
        return {
            "samples_per_second": round((s1 - s0) / seconds, 2),
            "batches_per_second": round((b1 - b0) / seconds, 3),
            "flops_per_batch": self.flops_per_batch,
            "flops_per_second": round(flops_per_second) if flops_per_second else None,
            "mfu": round(flops_per_second / available, 4) if flops_per_second and available else None,
            "measured_steps": b1 - b0,
        }


def throughput_summary(trainer: L.Trainer) -> dict[str, float | int | None]:
    """The ``summary()`` of the trainer's ``ThroughputMonitor`` (empty without one)."""
    monitor = next((c for c in trainer.callbacks if isinstance(c, ThroughputMonitor)), None)
    return monitor.summary() if monitor is not None else {}
