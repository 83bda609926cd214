"""Throughput and FLOPs reach metrics.json; the training loss is logged only where the logger writes,
with the value of that very step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmzoo.api import build
from mmzoo.lit.base import ZooModule
from tests.conftest import run_zoo


def test_a_run_records_throughput_flops_and_the_losses_of_its_logging_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    losses: list[float] = []
    original = ZooModule.training_step

    def spy(self: ZooModule, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = original(self, batch, batch_idx)
        losses.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(ZooModule, "training_step", spy)
    run_zoo(tmp_path, ["model=clip", "trainer.max_steps=20", "trainer.log_every_n_steps=5"])

    throughput = json.loads((tmp_path / "metrics.json").read_text())["train"]["throughput"]
    assert throughput["samples_per_second"] > 0 and throughput["measured_steps"] == 15  # steps 5 -> 20
    assert throughput["mfu"] is None  # a CPU has no known peak FLOP/s

    # the forward alone on a batch of the same shape: the counted training batch holds forward and
    # backward, about three forwards for a model that trains all its matmuls
    module = build("clip", ["data.image_size=32"])
    pixels, ids = torch.randn(32, 3, 32, 32), torch.randint(5, 20, (32, 12))  # TINY_DATA's batch of 32
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.model(pixels, ids, torch.ones_like(ids))
    assert 2.0 < throughput["flops_per_batch"] / counter.get_total_flops() < 4.5  # captions vary in length

    rows = list(csv.DictReader(open(tmp_path / "logs" / "metrics.csv")))
    logged = {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}
    assert sorted(logged) == [4, 9, 14, 19]  # every log_every_n_steps, nothing in between
    for step, value in logged.items():
        assert value == pytest.approx(losses[step], abs=1e-6), step
