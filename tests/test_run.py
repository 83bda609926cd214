"""The command line end to end (subprocesses, as a user runs it) and config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_DATA


def mmzoo_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mmzoo.run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_help_lists_config_groups(tmp_path):
    out = mmzoo_run("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for group in ("model", "encoder", "bridge", "llm", "data", "trainer", "experiment"):
        assert f"{group}:" in out.stdout
    assert "minigpt4" in out.stdout and "mlp3" in out.stdout


def test_unknown_choice_lists_the_valid_ones(tmp_path):
    out = mmzoo_run("model=foo", cwd=tmp_path)
    assert out.returncode != 0
    assert "model/foo" in out.stderr and "clip" in out.stderr and "llava" in out.stderr


def test_impossible_combination_names_the_mismatch(tmp_path):
    out = mmzoo_run("bridge.frozen=true", *TINY_DATA, "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert out.returncode != 0
    assert "nothing to freeze" in out.stderr


@pytest.mark.slow
def test_cli_trains_evaluates_writes_run_dir_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY_DATA, f"hydra.run.dir={run_dir}", "callbacks.checkpoint.every_n_train_steps=3"]
    first = mmzoo_run(*args, "trainer.max_steps=6", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("config.yaml", "metrics.json", "model.safetensors", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "clip" and metrics["train"]["steps"] == 6
    assert "retrieval/t2i_r1" in metrics["metrics"] and "zeroshot/colour_acc" in metrics["metrics"]
    assert "retrieval/t2i_r1" in first.stdout  # the metrics table is printed

    # an interrupted run continues from its last checkpoint when started again in its directory
    second = mmzoo_run(*args, "trainer.max_steps=9", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stderr + second.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["steps"] == 9


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gathers_the_whole_test_split(tmp_path):
    """Lightning DDP (gloo, 2 CPU ranks) on the data as it comes (the test split is one shard):
    the ITC loss gathers features across ranks, evaluation splits the shard by sample and sees
    every sample once, and rank 0 alone writes the run directory."""
    run_dir = tmp_path / "ddp"
    args = [*TINY_DATA, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.precision=32-true", "trainer.max_steps=3", f"hydra.run.dir={run_dir}"]
    out = mmzoo_run(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3
    assert metrics["train"]["loss_first"] is not None and metrics["train"]["loss_last"] is not None
    # 128 test samples in one shard, split by sample across the ranks: all of them are ranked
    assert 0 < metrics["metrics"]["retrieval/chance_r1"] < 1 / 64
    assert out.stdout.count("mmzoo · clip") == 1  # one metrics table, from rank 0
