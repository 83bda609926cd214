"""The papers' ablations as named sweeps, and sweeps through submitit's local launcher."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from mmzoo.api import compose_config
from mmzoo.compare.records import collect
from mmzoo.presets import CONFIG_PACKAGE, conf_root, presets

SEEDS = ["seed=0", "seed=1", "seed=2"]
ZOO_MODELS = ("clip", "blip2_stage1", "blip", "blip2", "instructblip", "llava", "minigpt4")


def grid(*axes: list[str]) -> set[frozenset[str]]:
    return {frozenset(job) for job in itertools.product(*axes)}


EXPECTED = {
    "llava_projector": grid(["model=llava"], ["bridge=linear", "bridge=mlp2", "bridge=mlp3"], SEEDS),
    "minigpt4_qformer": grid(
        # the basic sweeper writes parsed booleans back as Python spells them
        ["model=minigpt4"], ["bridge.frozen=True", "bridge.frozen=False"], ["bridge=linear", "bridge=mlp3"], SEEDS
    ),
    "blip2_queries": grid(
        ["model=blip2"], [f"bridge.qformer.num_queries={n}" for n in (8, 16, 32)], SEEDS
    ),
    "llava_layer": grid(["model=llava"], ["encoder.layer=-1", "encoder.layer=-2"], SEEDS),
    "zoo": grid(
        [f"model={m}" for m in ZOO_MODELS], ["stage=fit", "stage=test"], ["seed=0"]  # trained, and untrained baseline
    ),
}


def sweep_jobs(name: str) -> list[list[str]]:
    """The jobs ``python -m mmzoo.run -m sweep=<name>`` launches, as Hydra's basic sweeper
    computes them: the sweep's ``hydra.sweeper.params`` expanded, then the command line."""
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        cfg = compose("config", overrides=[f"sweep={name}"], return_hydra_config=True)
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides([*params, f"sweep={name}"])
    batches = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"  # `sweep=<name>` alone starts a multirun
    assert str(cfg.hydra.sweep.dir).startswith(f"multirun/{name}/")  # the leaderboard's folder
    return [list(job) for batch in batches for job in batch]


def test_every_sweep_file_is_tested():
    assert presets("sweep") == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep_composes_into_the_papers_grid(name):
    jobs = sweep_jobs(name)
    assert all(f"sweep={name}" in job for job in jobs)
    got = [frozenset(o for o in job if not o.startswith("sweep=")) for job in jobs]
    assert len(got) == len(set(got)) == len(EXPECTED[name])
    assert set(got) == EXPECTED[name]


@pytest.mark.slow  # ~1 s per composed job on a busy 2-core machine
@pytest.mark.parametrize("name", ["llava_projector", "minigpt4_qformer", "llava_layer", "blip2_queries"])
def test_each_job_of_a_sweep_sets_what_it_names(name):
    depth = {"linear": 1, "mlp2": 2, "mlp3": 3}
    jobs = sweep_jobs(name)
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        configs = [compose_config(job) for job in jobs]  # one Hydra initialisation for all jobs
    for job, cfg in zip(jobs, configs, strict=True):
        settings = dict(o.split("=", 1) for o in job)
        assert cfg.seed == int(settings["seed"])
        assert cfg.choices.model == settings["model"]
        assert cfg.model._target_.endswith("VisionLanguageModule")
        if "bridge.qformer.num_queries" in settings:
            assert cfg.bridge.qformer.num_queries == int(settings["bridge.qformer.num_queries"])
        if "bridge" in settings:
            assert cfg.bridge.depth == depth[settings["bridge"]]
        if "bridge.frozen" in settings:
            assert cfg.bridge.frozen is (settings["bridge.frozen"] == "True") and cfg.bridge.qformer.num_queries > 0
        if "encoder.layer" in settings:
            assert cfg.encoder.layer == int(settings["encoder.layer"])


# ---- submitit's local launcher on a trivial app -------------------------------------------
APP = '''
import json, os, pathlib, sys
import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = pathlib.Path(HydraConfig.get().runtime.output_dir)
    overrides = list(HydraConfig.get().overrides.task)
    record = {"schema": 2, "model": "toy", "overrides": overrides, "seed": 0}
    try:
        if cfg.x == "bad":
            raise RuntimeError("job asked to fail")
        record |= {"status": "ok", "error": None, "metrics": {"toy/score": float(cfg.x)}, "pid": os.getpid()}
    except Exception as err:
        record |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        raise
    finally:
        (out / "metrics.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
'''


def run_sweep(tmp_path: Path, values: str) -> tuple[subprocess.CompletedProcess, Path]:
    sweep_dir = tmp_path / "multirun"
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "conf" / "config.yaml").write_text(
        f"x: 0\nhydra:\n  searchpath: ['file://{conf_root()}']\n"
        f"  sweep: {{dir: '{sweep_dir}', subdir: '${{hydra.job.num}}'}}\n"
    )
    (tmp_path / "app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cmd = [sys.executable, "app.py", "-m", "hydra/launcher=local", "hydra.launcher.timeout_min=5", f"x={values}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return done, sweep_dir


def _metrics(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


@pytest.mark.slow
def test_local_submitit_sweep_runs_each_job_in_its_own_process(tmp_path):
    done, sweep_dir = run_sweep(tmp_path, "1,2")
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = _metrics(sweep_dir / "0"), _metrics(sweep_dir / "1")
    assert first["metrics"] == {"toy/score": 1.0} and second["metrics"] == {"toy/score": 2.0}
    assert first["pid"] != second["pid"] != os.getpid()  # submitit processes, not this one
    assert any((sweep_dir / ".submitit").rglob("*_log.out"))


@pytest.mark.slow
def test_a_failing_job_does_not_lose_the_others_results(tmp_path):
    done, sweep_dir = run_sweep(tmp_path, "3,bad")
    assert done.returncode != 0  # the sweep reports the failure...
    assert _metrics(sweep_dir / "0")["metrics"] == {"toy/score": 3.0}  # ...and keeps the other job
    # Hydra catches the job's exception inside the submitit process and re-raises it here, so
    # the job's own metrics.json (status failed) is the only record of it in the sweep folder
    assert "job asked to fail" in done.stderr
    collection = collect(sweep_dir)  # the leaderboard lists it as failed, with the reason
    assert [r.name for r in collection.runs] == ["0"]
    assert [(r.name, r.error) for r in collection.failed] == [("1", "RuntimeError: job asked to fail")]


@pytest.mark.slow  # composes the 14 jobs of the zoo sweep
def test_the_zoo_sweep_trains_and_evaluates_untrained_each_model_with_its_own_recipe():
    jobs = sweep_jobs("zoo")
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        configs = [compose_config(job) for job in jobs]
    assert sorted((cfg.choices.model, cfg.stage) for cfg in configs) == sorted(
        (m, stage) for m in ZOO_MODELS for stage in ("fit", "test")
    )
    fitted = {cfg.choices.model: cfg for cfg in configs if cfg.stage == "fit"}
    modules = {m: cfg.model._target_.rsplit(".", 1)[-1] for m, cfg in fitted.items()}
    assert len({modules[m] for m in ("clip", "blip", "blip2_stage1", "llava")}) == 4  # each its own objective
    for model, cfg in fitted.items():  # each model's tuned budget on the embedded data, not one for all
        assert cfg.choices.budget == f"shapes_{model}" and cfg.trainer.max_steps >= 400, model


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_job_folders_name_the_swept_values_and_stay_short_whatever_else_is_overridden(name):
    from hydra.core.hydra_config import HydraConfig

    jobs = sweep_jobs(name)
    varying = {o.split("=")[0] for o in set().union(*jobs) if sum(o in job for job in jobs) < len(jobs)}
    job = jobs[-1]
    extra = [f"data.{k}={v}" for k, v in (("train_size", 500), ("test_size", 64), ("samples_per_shard", 250),
                                          ("image_size", 32), ("batch_size", 32), ("eval_batch_size", 64))]
    extra += ["trainer.max_steps=5", "trainer.enable_progress_bar=false", "hydra.job.num=13"]
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        cfg = compose("config", overrides=[*job, *extra], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # for the ${hydra:runtime.choices.*} resolver, as in a launched job
    try:
        subdir = str(cfg.hydra.sweep.subdir)
    finally:
        HydraConfig.instance().cfg = None  # later in-process runs must not see this config as theirs
    assert subdir.startswith("13_") and len(subdir) < 60, subdir  # 255 bytes is a file name's limit
    for override in job:
        key, value = override.split("=", 1)
        if key in varying:
            assert value in subdir, (override, subdir)
