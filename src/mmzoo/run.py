"""``python -m mmzoo.run``: compose a config, train, evaluate, write the run directory.

Every zoo model goes through the same steps:

0. ``mmzoo.preflight`` checks the config (cheap, before anything heavy); the run directory is
   chosen: the same command after a kill continues its unfinished run (``mmzoo.resume``);
1. the zoo's lineage (``zoo:`` references to parts the zoo trains for itself) is made, or
   found in the cache, before anything is built;
2. model, data, callbacks and trainer are instantiated from the config; the model's
   LightningModule hands its image transform and collators to the data module;
3. ``fit`` (resuming from the run directory's newest intact checkpoint when there is one:
   weights, optimizer, scheduler, loop counters, RNG and the data stream's position), then
   ``test`` through the model's configured evaluators;
4. the run directory receives ``config.yaml``, ``model.safetensors``, ``metrics.json``
   (one schema for every model), ``examples.jsonl`` and the logs.

``train_and_evaluate`` is plain Python (tests and the zoo call it with a composed
config); ``main`` is the Hydra entry point.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from mmzoo import preflight, resume, rundir, zoo
from mmzoo.lit.base import ZooModule
from mmzoo.lit.checkpoint import AtomicCheckpointIO, newest_checkpoint, remove_partial_saves
from mmzoo.lit.throughput import throughput_summary
from mmzoo.presets import SEARCH_PATH
from mmzoo.provenance import peak_memory, provenance, reset_peak_memory
from mmzoo.report import print_metrics

log = logging.getLogger("mmzoo.run")
# frozen parts are kept in eval mode on purpose (see ZooModule.train)
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*`flops_per_batch` attribute.*")
warnings.filterwarnings("ignore", message=r".*overridden `transfer_batch_to_device`.*")  # on purpose: base.py
warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")  # inside Lightning
warnings.filterwarnings("ignore", message=r".*`training_step` returned `None`.*")  # nonfinite=skip, on purpose
warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended.*")  # the
# data module restores the stream's position (ShardDataModule.load_state_dict)
warnings.filterwarnings("ignore", message=r"(Experiment logs|Checkpoint) directory .* exists and is not empty")  # resume

METRICS_SCHEMA = 2
NONFINITE_COUNTER = "nonfinite_steps_skipped"


def choices(cfg: DictConfig) -> dict[str, str]:
    """The config-group choices of this run (``model: llava``, ``bridge: mlp2``...)."""
    if cfg.get("choices"):
        return {str(k): str(v) for k, v in cfg.choices.items() if v is not None}
    if HydraConfig.initialized():
        return {str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    return {}


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[L.Callback]:
    """The ``callbacks`` group's entries; checkpoints go to the run directory."""
    callbacks = []
    for node in (cfg.get("callbacks") or {}).values():
        if node is None:
            continue
        callback = instantiate(node, _convert_="all")
        if isinstance(callback, ModelCheckpoint):
            callback.dirpath = str(run_dir / "checkpoints")
        if isinstance(callback, ProgressBar) and not cfg.trainer.get("enable_progress_bar", True):
            continue
        callbacks.append(callback)
    return callbacks


def build(cfg: DictConfig, run_dir: Path) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Model, data and trainer from a config whose lineage is resolved (``zoo.resolve_config``,
    ``rundir.resolve_parts``): parts reused from other runs load here."""
    module = instantiate(cfg.model, _convert_="all")
    datamodule = instantiate(cfg.data, _convert_="partial")
    datamodule.attach(module.image_transform(), module.image_transform(), module.collator(train=True),
                      module.collator(train=False))
    no_validation = {} if cfg.data.get("val") else {"limit_val_batches": 0}
    atomic = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}  # mmzoo.lit.checkpoint
    trainer = instantiate(
        cfg.trainer,
        **no_validation,
        **atomic,
        default_root_dir=str(run_dir),
        callbacks=build_callbacks(cfg, run_dir),
        logger=CSVLogger(str(run_dir), name="logs", version=""),
    )
    return module, datamodule, trainer


def load_pretrained(module: L.LightningModule, source: str) -> int:
    """Start from another run's weights (stage 2 from stage 1); parts it lacks stay as built.

    Returns the number of tensors loaded; none fitting is an error, since a typo'd path or
    another architecture would otherwise train from scratch without a word.
    """
    state = rundir.read_weights(source)
    own = module.model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"pretrained={source}: tensors of another shape: {mismatched[:5]}")
    missing, unexpected = module.model.load_state_dict(state, strict=False)
    loaded = len(state) - len(unexpected)
    if loaded == 0:
        raise ValueError(f"pretrained={source}: none of its weights fit this model")
    log.info("initialised %d tensors from %s (%d of this model's are not in it)", loaded, source, len(missing))
    return loaded


def read_real_checkpoint(cfg: DictConfig, model: str | None) -> Any:
    """The checkpoint ``pretrained`` names (transformers dir or hub id, ``open_clip:<name>``),
    read for the zoo; it must be of the chosen ``model``."""
    from mmzoo.convert import read_checkpoint

    parts = {k: str(v) for k, v in (cfg.get("pretrained_with") or {}).items() if v is not None}
    imported = read_checkpoint(str(cfg.pretrained), **parts)
    if model and imported.model != model:
        raise ValueError(f"pretrained={cfg.pretrained} is a {imported.model!r} checkpoint: run it with model={imported.model}")
    return imported


def convert_config(cfg: DictConfig, imported: Any) -> DictConfig:
    from mmzoo.convert import pretrained_config

    return pretrained_config(cfg, imported)


def part_sources(cfg: DictConfig, saved_cfg: DictConfig) -> dict[str, str]:
    """Where each part's weights come from (the lineage; ``zoo:`` references with the run they
    name), and hub ids of parts built from real checkpoints: named in checkpoints' frozen manifest."""
    refs = {p: str(cfg[p].from_run) for p in rundir.PARTS if isinstance(cfg.get(p), DictConfig) and cfg[p].get("from_run")}
    model = cfg.get("model")
    if isinstance(model, DictConfig) and model.get("pretrained_parts"):
        refs |= rundir.flatten_paths(OmegaConf.to_container(model.pretrained_parts, resolve=True))
    if cfg.get("pretrained"):
        refs["pretrained"] = str(cfg.pretrained)
    sources = {}
    for path, where in saved_cfg.lineage.items():
        ref = refs.get(str(path), str(where))
        sources[str(path)] = ref if ref == str(where) else f"{ref} ({where})"
    for part in rundir.PARTS:
        node = saved_cfg.get(part)
        hub = (node.get("name_or_path") or node.get("model_name")) if isinstance(node, DictConfig) else None
        if part not in sources and hub:
            sources[part] = str(hub)
    return sources


def train_and_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Check the config, then fit (resuming from the run directory's newest checkpoint), test, and
    write the run directory; ``run_state.json`` records the run's config hash and whether it finished."""
    cfg = preflight.check(cfg)  # before anything heavy: a bad config costs a second, not a run
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key, lead = resume.run_key(cfg), getattr(rank_zero_only, "rank", 0) == 0
    if lead:
        resume.write_state(run_dir, key, resume.RUNNING)
    try:
        metrics = _train_and_evaluate(cfg, run_dir)
    except BaseException as error:  # a kill (SIGKILL) leaves "running" with a dead pid: unfinished too
        if lead:
            resume.write_state(run_dir, key, resume.FAILED, error=f"{type(error).__name__}: {error}"[:2000])
        raise
    if lead:
        resume.write_state(run_dir, key, resume.FINISHED)
    return metrics


def _train_and_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    picked = choices(cfg)
    torch.set_float32_matmul_precision("high")
    imported = None
    if cfg.get("pretrained") and not str(cfg.pretrained).startswith(zoo.PREFIX) and not rundir.is_run_dir(cfg.pretrained):
        imported = read_real_checkpoint(cfg, picked.get("model"))
        cfg = convert_config(cfg, imported)
    requested = cfg
    cfg = zoo.resolve_config(cfg, make=train_and_evaluate)  # the zoo's own parts, made once, before building
    # seeded after the zoo's parts: making one here (its own seeded run) must not change this run
    L.seed_everything(cfg.seed, workers=True)
    reset_peak_memory()  # this run's peak, not that of the zoo's parts or an earlier job of a sweep
    build_cfg, saved_cfg = rundir.resolve_parts(cfg)
    module, datamodule, trainer = build(build_cfg, run_dir)
    if imported is not None:
        from mmzoo.convert import fill_model

        fill_model(module.model, imported)
    elif cfg.get("pretrained"):
        load_pretrained(module, str(cfg.pretrained))
    saved_cfg = OmegaConf.create(OmegaConf.to_container(saved_cfg, resolve=True))
    saved_cfg.choices = picked
    saved_cfg.lineage = {**saved_cfg.lineage, **module.lineage}
    if cfg.get("pretrained"):
        saved_cfg.lineage["pretrained"] = str(cfg.pretrained)
    module.part_sources = part_sources(requested, saved_cfg)
    module.nonfinite = str(cfg.get("nonfinite", "stop"))
    compiling = cfg.get("compile") or {}  # absent from the configs of runs made before the switch
    if compiling.get("enabled"):
        options = OmegaConf.to_container(compiling.get("options") or OmegaConf.create({}), resolve=True)
        log.info("torch.compile: %s", ", ".join(module.compile_parts(compiling.get("parts"), **options)))
    saved_cfg.model.pretrained_parts = {}  # those weights are now this run's own
    saved_cfg.pretrained = None
    rundir.save_tokenizers(module.model, saved_cfg, run_dir)
    if trainer.is_global_zero:
        (run_dir / rundir.CONFIG_FILE).write_text(OmegaConf.to_yaml(saved_cfg))
    counts = module.parameter_counts()
    log.info("run directory: %s", run_dir)
    log.info("parameters: %s trainable / %s total", f"{counts['trainable']:,}", f"{counts['total']:,}")

    train_seconds, train_samples, resumed_at = 0.0, 0, None
    if cfg.stage == "fit":
        checkpoints = run_dir / "checkpoints"
        if trainer.is_global_zero:
            remove_partial_saves(checkpoints)  # what a kill during a save left
        last = newest_checkpoint(checkpoints)
        if last is not None:
            resumed_at = int(torch.load(last, map_location="cpu", mmap=True, weights_only=True)["global_step"])
            log.warning("resuming from %s (step %d)", last, resumed_at)
            if trainer.is_global_zero:
                trim_log(run_dir / "logs" / "metrics.csv", resumed_at)
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=None if last is None else str(last), weights_only=True)
        train_seconds = time.perf_counter() - started
        trained_steps = int(trainer.global_step) - (resumed_at or 0)
        train_samples = trained_steps * int(datamodule.batch_size) * trainer.world_size
    if cfg.stage == "fit" or cfg.get("pretrained"):  # a run of pretrained weights is self-contained too
        # after fit, a collective under FSDP (every rank gathers); before any fit, not sharded yet
        state = trainer.strategy.lightning_module_state_dict() if cfg.stage == "fit" else module.state_dict()
        if trainer.is_global_zero:
            rundir.save_weights({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}, run_dir)
    started = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    eval_seconds = time.perf_counter() - started

    metrics = {
        "schema": METRICS_SCHEMA,
        "status": "ok",
        "error": None,
        "model": picked.get("model"),
        "parts": {p: picked.get(p) for p in rundir.PARTS if p in cfg},
        "overrides": overrides(),
        "seed": int(cfg.seed),
        "metrics": module.results,
        "params": counts,
        "train": {
            "steps": int(trainer.global_step),
            "seconds": round(train_seconds, 1),
            "samples_per_second": round(train_samples / train_seconds, 1) if train_seconds else None,
            "loss_first": module.train_losses[0] if module.train_losses else None,
            "loss_last": _tail_mean(module.train_losses),
            "throughput": throughput_summary(trainer),  # steady-state samples/s, FLOP/s, MFU
            "resumed_at_step": resumed_at,  # this start continued a checkpoint of that step
            NONFINITE_COUNTER: module.counters.get(NONFINITE_COUNTER, 0),
        },
        "eval": {"seconds": round(eval_seconds, 1), "samples": module.evaluation.samples},
        "memory": peak_memory(),
        "data": {
            "train_samples": datamodule.num_train_samples,
            **datamodule.errors.summary(),  # skipped_samples, skipped_by_reason, converted
            **{k: v for k, v in module.counters.items() if k != NONFINITE_COUNTER},
        },
        "lineage": OmegaConf.to_container(saved_cfg.lineage),
        "provenance": provenance(saved_cfg, datamodule.train, datamodule.test),
    }
    if not trainer.is_global_zero:  # every rank holds the gathered results; one writes them
        return metrics
    rundir.write_metrics(run_dir, metrics)
    write_examples(module.examples[: cfg.num_examples], run_dir)
    write_example_images(module, run_dir)
    if datamodule.errors.total:
        log.warning("skipped %d bad samples: %s", datamodule.errors.total, datamodule.errors.report())
    print_metrics(metrics, run_dir)
    return metrics


def trim_log(path: Path, step: int) -> None:
    """Drop the rows a killed start logged after the checkpoint it resumes from (logged again now)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "step" not in rows[0]:
        return
    column = rows[0].index("step")
    kept = [rows[0]] + [r for r in rows[1:] if len(r) <= column or not r[column] or float(r[column]) < step]
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    partial.replace(path)


def write_examples(examples: list[dict[str, Any]], run_dir: Path) -> None:
    """Per-sample outputs (generations, answers) beside the metrics."""
    if not examples:
        return
    with open(run_dir / "examples.jsonl", "w") as f:
        for example in examples:
            f.write(json.dumps(example) + "\n")


def write_example_images(module: ZooModule, run_dir: Path) -> None:
    """``examples/<key>.png``: the first test images as the model saw them, for the
    leaderboard's side-by-side page."""
    images = module.example_images()
    if not images:
        return
    from torchvision.transforms.functional import to_pil_image

    folder = run_dir / "examples"
    folder.mkdir(exist_ok=True)
    for key, pixels in images.items():
        to_pil_image(pixels).save(folder / f"{key}.png")


def overrides() -> list[str]:
    """The command-line overrides of this run (empty outside a Hydra app)."""
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return []


def _tail_mean(values: list[float], n: int = 20) -> float | None:
    return sum(values[-n:]) / len(values[-n:]) if values else None


def _write_failure(run_dir: Path, cfg: DictConfig, error: BaseException) -> None:
    """A failed run still leaves a metrics.json, so a sweep's leaderboard lists it with the reason."""
    run_dir.mkdir(parents=True, exist_ok=True)
    picked = choices(cfg)
    rundir.write_metrics(run_dir, {
        "schema": METRICS_SCHEMA, "status": "failed", "error": f"{type(error).__name__}: {error}",
        "model": picked.get("model"), "parts": {p: picked.get(p) for p in rundir.PARTS if p in cfg},
        "overrides": overrides(), "seed": int(cfg.get("seed", 0)), "metrics": {},
    })


def _run_dir_given() -> bool:
    """Whether the command names its run directory (``hydra.run.dir=`` / ``hydra.sweep.dir=``)."""
    given = HydraConfig.get().overrides.hydra
    return any(str(o).lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for o in given)


def choose_run_dir(cfg: DictConfig, output_dir: Path, multirun: bool) -> Path:
    """Where this start writes: ``resume=<dir>``; else a directory the command names; else the
    unfinished run of the same config beside the new directory (``mmzoo.resume``), else the new one.
    ``resume=false`` always starts anew."""
    wanted = cfg.get("resume")
    if wanted is False:
        return output_dir
    if wanted:
        run_dir = Path(str(wanted))
        if not (run_dir / resume.STATE_FILE).is_file() and not (run_dir / "checkpoints").is_dir():
            raise FileNotFoundError(f"resume={wanted}: not a run directory (no {resume.STATE_FILE} or checkpoints/)")
        resume.continue_in(output_dir, run_dir)
        return run_dir
    if _run_dir_given():
        return output_dir
    parent, depth = (output_dir.parent.parent, 2) if multirun else (output_dir.parent, 1)
    found = resume.find_unfinished(parent, resume.run_key(cfg), exclude=output_dir, depth=depth)
    if found is None:
        return output_dir
    last = newest_checkpoint(found / "checkpoints")
    log.warning(
        "continuing the unfinished run %s (the same config; %s). `resume=false` starts a new run instead.",
        found, f"its newest checkpoint is {last.name}" if last else "it stopped before its first checkpoint",
    )
    resume.continue_in(output_dir, found)
    return found


@hydra.main(version_base="1.3", config_path=SEARCH_PATH, config_name="config")
def main(cfg: DictConfig) -> float | None:
    output_dir = run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        cfg = preflight.check(cfg)  # before the config's hash is taken (it resolves every value)
        run_dir = choose_run_dir(cfg, output_dir, multirun)
        metrics = train_and_evaluate(cfg, run_dir)
    except Exception as error:
        _write_failure(run_dir, cfg, error)
        if not multirun:
            raise
        # one failed job of a sweep must not cost the others: record it and go on
        log.exception("this job failed; the sweep goes on (its metrics.json says why)")
        print(f"mmzoo: job failed: {error}", file=sys.stderr)
        return None
    # the returned value is what Hydra sweepers (e.g. Optuna) optimise
    first = next(iter(metrics["metrics"].values()), None)
    return float(first) if first is not None else None


if __name__ == "__main__":
    main()
