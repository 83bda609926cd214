"""Nothing lost: a run SIGKILLed mid-run or mid-save, started again with the same command,
continues its own run directory from its newest intact checkpoint and ends where an
uninterrupted run ends; and ``mmzoo.resume`` finds that run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mmzoo import resume
from mmzoo.lit.checkpoint import checkpoint_step
from tests.conftest import TINY_DATA, run_zoo

# 40 steps over 31 batches per epoch (1000 samples / 32): a kill after step 10 resumes mid-epoch,
# and the run then crosses into a second epoch
STEPS, EVERY = 40, 5
RUN = [*TINY_DATA, "model=clip", f"trainer.max_steps={STEPS}", f"callbacks.checkpoint.every_n_train_steps={EVERY}"]
# resumed vs uninterrupted: same final step; train.loss_last (mean of the last 20 losses) within
# LOSS_TOLERANCE (relative); the final weights within WEIGHT_TOLERANCE. Measured: equal to the
# last bit on CPU (same process count and threads); the tolerances leave room for other BLAS.
LOSS_TOLERANCE, WEIGHT_TOLERANCE = 1e-4, 1e-4

# the killed-mid-save start: torch.save of the checkpoint of step SAVE_STEP writes half of its
# bytes into the partial file, says so, and waits for the kill
MID_SAVE = """
import io, os, sys, time, torch
real_save, marker, step = torch.save, os.environ["MARKER"], os.environ["SAVE_STEP"]
def save(obj, f, *args, **kwargs):
    name = str(getattr(f, "name", ""))
    if name.endswith(".partial") and f"step={int(step):08d}" in name:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: buffer.tell() // 2])
        f.flush()
        os.fsync(f.fileno())
        open(marker, "w").close()
        time.sleep(600)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.argv = ["mmzoo.run", *sys.argv[1:]]
from mmzoo.run import main
main()
"""


def start(cwd: Path, *argv: str, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, *argv, *RUN], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before the kill:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def only_run_dir(cwd: Path) -> Path:
    runs = [p for p in (cwd / "runs" / "clip").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"the same command must continue its run, not start another: {runs}"
    return runs[0]


def checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step=*.ckpt"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_zoo(out, RUN[len(TINY_DATA):])
    return out


def assert_same_end(resumed: Path, uninterrupted: Path) -> dict:
    mine, theirs = (json.loads((d / "metrics.json").read_text())["train"] for d in (resumed, uninterrupted))
    assert mine["steps"] == theirs["steps"] == STEPS
    assert mine["resumed_at_step"] is not None and 0 < mine["resumed_at_step"] < STEPS
    assert abs(mine["loss_last"] - theirs["loss_last"]) <= LOSS_TOLERANCE * abs(theirs["loss_last"])
    weights = load_file(resumed / "model.safetensors")
    reference = load_file(uninterrupted / "model.safetensors")
    assert weights.keys() == reference.keys()
    assert max(float((weights[k] - reference[k]).abs().max()) for k in weights) <= WEIGHT_TOLERANCE
    assert resume.read_state(resumed)["status"] == resume.FINISHED
    return mine


@pytest.mark.slow
def test_sigkill_mid_run_then_same_command_resumes_to_the_same_end(tmp_path, uninterrupted):
    first = start(tmp_path, "-m", "mmzoo.run")
    saved = lambda: [checkpoint_step(p) for p in (tmp_path / "runs").glob("clip/*/checkpoints/step=*.ckpt")]  # noqa: E731
    wait_for(lambda: max(saved(), default=0) >= 2 * EVERY, first)
    kill(first)
    run_dir = only_run_dir(tmp_path)
    assert not (run_dir / "metrics.json").exists()  # killed before the end, indeed
    assert resume.read_state(run_dir)["status"] == resume.RUNNING  # what a SIGKILL leaves

    second = start(tmp_path, "-m", "mmzoo.run")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    assert "continuing the unfinished run" in out and "resuming from" in out
    assert only_run_dir(tmp_path) == run_dir
    train = assert_same_end(run_dir, uninterrupted)
    assert train["resumed_at_step"] % EVERY == 0 and train["resumed_at_step"] >= 2 * EVERY
    assert checkpoints(run_dir) == [f"step={STEPS:08d}.ckpt"]  # keep=1
    assert "resuming from" in (run_dir / "run.log").read_text()  # the second start's log joined the run's


@pytest.mark.slow
def test_sigkill_during_a_save_keeps_the_previous_checkpoint_and_resumes(tmp_path, uninterrupted):
    marker, save_step = tmp_path / "saving", 3 * EVERY
    first = start(tmp_path, "-c", MID_SAVE, env={"MARKER": str(marker), "SAVE_STEP": str(save_step)})
    wait_for(marker.exists, first)
    kill(first)
    run_dir = only_run_dir(tmp_path)
    folder = run_dir / "checkpoints"
    partial = list(folder.glob(".*.partial"))
    assert len(partial) == 1 and f"step={save_step:08d}" in partial[0].name  # the save was under way
    assert not (folder / f"step={save_step:08d}.ckpt").exists()
    assert checkpoints(run_dir) == [f"step={save_step - EVERY:08d}.ckpt"]  # the previous one, whole

    second = start(tmp_path, "-m", "mmzoo.run")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    assert f"step={save_step - EVERY:08d}.ckpt (step {save_step - EVERY})" in out
    assert not list(folder.glob(".*.partial"))  # the interrupted save's leftovers are gone
    train = assert_same_end(run_dir, uninterrupted)
    assert train["resumed_at_step"] == save_step - EVERY


# ---- finding the run to continue ---------------------------------------------------------
def test_find_unfinished_picks_the_newest_dead_run_of_the_same_config(tmp_path):
    def run(name: str, key: str, status: str, pid: int | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        resume.write_state(folder, key, status)
        if pid is not None:  # recorded by another process
            state = json.loads((folder / resume.STATE_FILE).read_text()) | {"pid": pid}
            (folder / resume.STATE_FILE).write_text(json.dumps(state))
        return folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    run("finished", "a", resume.FINISHED)
    run("other-config", "b", resume.FAILED, pid=dead_pid)
    alive = run("alive", "a", resume.RUNNING, pid=os.getppid())  # a live process holds it
    assert resume.find_unfinished(tmp_path, "a") is None
    older = run("older", "a", resume.RUNNING, pid=dead_pid)
    time.sleep(0.01)
    newer = run("newer", "a", resume.FAILED, pid=dead_pid)
    assert resume.find_unfinished(tmp_path, "a") == newer
    assert resume.find_unfinished(tmp_path, "a", exclude=newer) == older
    assert resume.find_unfinished(tmp_path, "b") == tmp_path / "other-config"
    assert alive.exists()


def test_continue_in_moves_the_log_and_removes_the_empty_new_directory(tmp_path):
    import logging

    fresh, run_dir = tmp_path / "fresh", tmp_path / "run"
    (fresh / ".hydra").mkdir(parents=True)
    run_dir.mkdir()
    (run_dir / "run.log").write_text("first start\n")
    handler = logging.FileHandler(fresh / "run.log")
    logger = logging.getLogger()
    logger.addHandler(handler)
    try:
        logger.warning("second start, before the move")
        resume.continue_in(fresh, run_dir)
        logger.warning("second start, after the move")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert not fresh.exists()
    assert (run_dir / "run.log").read_text().splitlines() == [
        "first start", "second start, before the move", "second start, after the move"
    ]
