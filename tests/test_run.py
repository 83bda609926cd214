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


def test_a_users_own_presets_from_config_dir(tmp_path):
    """A preset in the user's folder composes over a shipped one, without editing the package."""
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "my_clip.yaml").write_text(
        "# @package _global_\ndefaults:\n  - clip\nmodel:\n  embed_dim: 48\n"
    )
    out = mmzoo_run("--config-dir", str(tmp_path / "mine"), "model=my_clip", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "embed_dim: 48" in out.stdout and "mmzoo.lit.clip" in out.stdout
    listed = mmzoo_run("--config-dir", str(tmp_path / "mine"), "--help", cwd=tmp_path)
    assert "my_clip" in listed.stdout and "llava" in listed.stdout


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


# ---- numerical faults -------------------------------------------------------------------------
def nan_loss_at(monkeypatch: pytest.MonkeyPatch, steps: set[int]) -> None:
    """CLIP's loss turns NaN at these global steps (as after an overflow)."""
    from mmzoo.lit.clip import ClipModule

    real = ClipModule.loss

    def loss(self, batch):
        value, extra = real(self, batch)
        return (value * float("nan") if self.global_step in steps else value), extra

    monkeypatch.setattr(ClipModule, "loss", loss)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import torch

    from mmzoo import resume
    from mmzoo.lit.base import NonFiniteLoss
    from tests.conftest import run_zoo

    nan_loss_at(monkeypatch, {5})
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"loss=nan at step 5 .*keeps its last good checkpoint .*step=00000004\.ckpt"
                       r".*nonfinite=skip"):  # fmt: skip
        run_zoo(run_dir, ["trainer.max_steps=10", "callbacks.checkpoint.every_n_train_steps=2"])
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step=*")) == ["step=00000004.ckpt"]
    saved = torch.load(run_dir / "checkpoints" / "step=00000004.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 4 and all(bool(v.isfinite().all()) for v in saved["state_dict"].values())
    state = resume.read_state(run_dir)
    assert state["status"] == resume.FAILED and "NonFiniteLoss" in state["error"]


def test_nonfinite_skip_skips_such_steps_and_counts_them(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from tests.conftest import run_zoo

    nan_loss_at(monkeypatch, {3, 5})
    metrics = run_zoo(tmp_path / "run", ["trainer.max_steps=10", "nonfinite=skip"])
    assert metrics["train"]["steps"] == 10 and metrics["train"]["nonfinite_steps_skipped"] == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["nonfinite_steps_skipped"] == 2
    # a NaN step that was not skipped would have made every weight NaN
    assert all(bool(w.isfinite().all()) for w in load_file(tmp_path / "run" / "model.safetensors").values())
