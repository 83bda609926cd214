"""A zoo module's training step outside Lightning, as the benchmarks time it.

The "bare loop" of ``bench_trainer_step.py`` and the steps of ``bench_memory.py``: the
module's own ``loss``, backward, gradient clipping, and the optimizer and scheduler its
config names, over the parameter groups ``ZooModule.configure_optimizers`` makes (trainable
parameters only). Also the config and the first batches of a run, as ``mmzoo.run`` builds them.
"""

from __future__ import annotations

import logging
import warnings
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mmzoo import rundir
from mmzoo.compose import compose_config
from mmzoo.lit.base import ZooModule, parameter_groups, to_device
from mmzoo.run import build


def quiet(threads: int) -> None:
    """torch on ``threads`` threads (1 is steadier on a shared CPU), Lightning's and the
    libraries' chatter off, so a benchmark prints its tables only."""
    torch.set_num_threads(threads)
    for name in ("lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def run_config(overrides: list[str], steps: int | None = None) -> DictConfig:
    """The run's config for ``overrides`` with its parts resolved (no zoo references in them)."""
    extra = [f"trainer.max_steps={steps}", "trainer.max_epochs=-1"] if steps else []
    return rundir.resolve_parts(compose_config([*overrides, *extra]))[0]


def first_batches(cfg: DictConfig, run_dir: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` training batches of the run's own data pipeline (collated by its module)."""
    _, datamodule, _ = build(cfg, run_dir)
    datamodule.num_workers = 0
    return list(islice(iter(datamodule.train_dataloader()), n))


class BareStep:
    """``step(batch)``: loss, backward, clipping, optimizer and scheduler step, zero_grad."""

    def __init__(self, module: ZooModule, steps: int, clip: float | None = None,
                 device: torch.device | str = "cpu") -> None:  # fmt: skip
        weight_decay = getattr(module.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
        groups = [g for g in parameter_groups(module.model, weight_decay) if g["params"]]
        self.module, self.clip, self.device = module.train(), clip, torch.device(device)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = module.optimizer_factory(params=groups)
        factory = module.scheduler_factory
        self.scheduler = factory(self.optimizer, num_training_steps=steps) if factory is not None else None

    def step(self, batch: dict[str, Any]) -> torch.Tensor:
        batch = to_device(batch, self.device)
        loss, _ = self.module.loss(batch)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()
