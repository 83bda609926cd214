"""The whole training step as users run it against a bare PyTorch loop, side by side, step by step.

    python benchmarks/bench_trainer_step.py [--steps 230] [--repeats 3] [--models clip,llava]
                                            [--threads 1] [--profile] [OVERRIDES...]

"mmzoo" is ``trainer.fit`` exactly as ``python -m mmzoo.run`` builds it (``mmzoo.run.build``):
the Trainer from the run's ``trainer`` config, the LightningModule, the ``callbacks`` group
(checkpoint every 200 steps, learning-rate monitor, throughput monitor, rich progress bar),
the CSV logger, gradient clipping and the cosine scheduler. "bare" is a plain loop over a
twin module built from the same config with the same seed: ``module.loss(batch)``, backward,
the same gradient clipping, the same AdamW parameter groups and scheduler. Both read the same
collated batches from memory (the loader has its own benchmark, ``bench_loader.py``).

The two take turns step by step in one process: after each Trainer step, a callback runs one
bare step on the same batch and times it; the Trainer's step is the time from the end of one
bare step to the start of the next, so it holds everything the Trainer does per step (batch
transfer, hooks, logging, progress bar, the checkpoint at step 200). Turns this fine make the
ratio robust on a shared machine, where load changes within seconds. Times are CPU seconds of
the process (all its threads, the progress bar's included) and wall seconds; the first 10
steps are warm-up. Prints per model and repeat the ratio of the summed times, then the
median and range over repeats. ``--profile`` runs the Trainer side once under cProfile.

The default sizes make a step >= 50 ms on the 2-core development CPU: CLIP at the default
config with batch 256; LLaVA with random parts of the zoo's ViT and LM shapes at batch 128.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from zoo_steps import BareStep, first_batches, quiet, run_config

from mmzoo.run import build

WARMUP = 10
MODELS: dict[str, list[str]] = {
    "clip": ["model=clip", "data.batch_size=256"],
    "llava": ["model=llava", "encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null",
              "data.batch_size=128"],
}


def clock() -> tuple[float, float]:
    """(CPU seconds of this process, all its threads; wall seconds)."""
    return time.process_time(), time.perf_counter()


class Cycle:
    """``steps`` batches drawn in turn from a few in memory (an iterable with a length, not a
    list: Lightning would take a list for several dataloaders)."""

    def __init__(self, batches: list[dict[str, Any]], steps: int) -> None:
        self.batches, self.steps = batches, steps

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.batches[i % len(self.batches)] for i in range(self.steps))

    def __len__(self) -> int:
        return self.steps


class BareTwin(L.Callback):
    """After every Trainer step, one bare step of the twin module on the same batch, timed;
    the Trainer's step is timed from the end of one bare step to the start of the next."""

    def __init__(self, twin: BareStep, batches: list[dict[str, Any]]) -> None:
        self.twin, self.batches = twin, batches
        self.trainer_steps: list[tuple[float, float]] = []
        self.bare_steps: list[tuple[float, float]] = []
        self._last_end: tuple[float, float] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        start = clock()
        if self._last_end is not None:
            self.trainer_steps.append((start[0] - self._last_end[0], start[1] - self._last_end[1]))
        self.twin.step(self.batches[batch_idx % len(self.batches)])
        end = clock()
        self.bare_steps.append((end[0] - start[0], end[1] - start[1]))
        self._last_end = end


def side_by_side(cfg, batches: list[dict[str, Any]], steps: int, run_dir: Path) -> BareTwin:
    """One ``trainer.fit`` with the bare twin taking turns; returns the twin with both timings."""
    torch.manual_seed(0)
    module, _, trainer = build(cfg, run_dir)
    torch.manual_seed(0)
    twin, _, _ = build(cfg, run_dir / "twin")
    timer = BareTwin(BareStep(twin, steps, trainer.gradient_clip_val), batches)
    trainer.callbacks.append(timer)
    trainer.fit(module, train_dataloaders=Cycle(batches, steps))
    return timer


def ratios(timer: BareTwin) -> tuple[list[float], list[float], list[float]]:
    """Per clock (CPU, wall): mmzoo ms/step, bare ms/step, ratio of the sums (steps after warm-up)."""
    ours, bare = timer.trainer_steps[WARMUP:], timer.bare_steps[WARMUP + 1 :]
    n = min(len(ours), len(bare))
    ours_ms = [1000 * sum(t[i] for t in ours[:n]) / n for i in range(2)]
    bare_ms = [1000 * sum(t[i] for t in bare[:n]) / n for i in range(2)]
    return ours_ms, bare_ms, [o / b for o, b in zip(ours_ms, bare_ms, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=230, help="per repeat (the default checkpoint falls at 200)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8, help="distinct batches, cycled")
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS), help="clip,llava")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steadier on a shared CPU; the ratio is what matters)")
    parser.add_argument("--profile", action="store_true", help="cProfile the Trainer side once, print the top")
    parser.add_argument("overrides", nargs="*", help="more config overrides for every model")
    args = parser.parse_args()
    quiet(args.threads)
    print(f"threads={args.threads} steps={args.steps} (timed after {WARMUP}) overrides={args.overrides} "
          f"stdout is a terminal: {sys.stdout.isatty()}", flush=True)
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = run_config([*MODELS[name], *args.overrides], args.steps)
            batches = first_batches(cfg, Path(tmp) / "data", args.batches)
            if args.profile:
                profiler = cProfile.Profile(time.process_time)
                profiler.runcall(side_by_side, cfg, batches, args.steps, Path(tmp) / "profile")
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(40)
                continue
            cpu, wall = [], []
            for repeat in range(args.repeats):
                ours_ms, bare_ms, ratio = ratios(side_by_side(cfg, batches, args.steps, Path(tmp) / f"r{repeat}"))
                cpu.append(ratio[0])
                wall.append(ratio[1])
                print(f"{name:6s} repeat {repeat}: mmzoo Trainer {ours_ms[0]:6.1f} ms CPU/step ({ours_ms[1]:6.1f} "
                      f"wall) | bare loop {bare_ms[0]:6.1f} ms CPU/step ({bare_ms[1]:6.1f} wall) | ratio CPU "
                      f"{ratio[0]:.3f}x, wall {ratio[1]:.3f}x", flush=True)
            print(f"{name:6s} ratio over {args.repeats} repeats, median [range]: CPU {statistics.median(cpu):.3f}x "
                  f"[{min(cpu):.3f}-{max(cpu):.3f}], wall {statistics.median(wall):.3f}x "
                  f"[{min(wall):.3f}-{max(wall):.3f}]", flush=True)


if __name__ == "__main__":
    main()
