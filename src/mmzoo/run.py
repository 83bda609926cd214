"""``python -m mmzoo.run``: compose a config, train, evaluate, write the run directory.

Every zoo model goes through the same steps; the model's LightningModule supplies its
image transform and collator to the data module, and its ``results`` after testing.
``train_and_evaluate`` is plain Python (tests call it with a composed config); ``main``
is the Hydra entry point.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from mmzoo import runs
from mmzoo.report import print_metrics

log = logging.getLogger("mmzoo.run")
# frozen parts are kept in eval mode on purpose (see ZooModule.train)
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

LAST_CHECKPOINT = "checkpoints/last.ckpt"


def resume_checkpoint(run_dir: Path) -> str | None:
    """The checkpoint an interrupted run in ``run_dir`` left behind, if any."""
    path = run_dir / LAST_CHECKPOINT
    return str(path) if path.is_file() else None


def build(cfg: DictConfig, run_dir: Path) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Instantiate model, data and trainer from a config whose parts are resolved
    (``runs.resolve_parts``): parts reused from other runs load here."""
    module = instantiate(cfg.model, _convert_="all")
    if cfg.get("init_from"):
        init_from(module, str(cfg.init_from))
    datamodule = instantiate(cfg.data, _convert_="partial")
    datamodule.attach(module.image_transform(), module.image_transform(), module.collator(train=True), module.collator(train=False))
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=cfg.checkpoint_every_n_steps,
    )
    trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        callbacks=[checkpoints],
        logger=CSVLogger(str(run_dir), name="logs", version=""),
    )
    return module, datamodule, trainer


def init_from(module: L.LightningModule, run_dir: str) -> None:
    """Start from another run's weights (stage 2 from stage 1); parts it lacks stay as built."""
    state = runs.read_weights(run_dir)
    missing, unexpected = module.model.load_state_dict(state, strict=False)
    loaded = len(state) - len(unexpected)
    if loaded == 0:
        raise ValueError(f"init_from={run_dir}: none of its weights fit this model")
    log.info("initialised %d tensors from %s (%d not in that run)", loaded, run_dir, len(missing))


def train_and_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit (resuming if the run directory holds a checkpoint), test, and write the run directory."""
    if cfg.stage not in ("fit", "test"):
        raise ValueError(f"stage={cfg.stage!r}: valid stages are 'fit' (train, then evaluate) and 'test'")
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    build_cfg, saved_cfg = runs.resolve_parts(cfg)
    module, datamodule, trainer = build(build_cfg, run_dir)
    saved_cfg = OmegaConf.create(OmegaConf.to_container(saved_cfg, resolve=True))
    if getattr(module, "lineage", None):  # those weights are now this run's own
        saved_cfg.lineage = {**saved_cfg.lineage, **module.lineage}
        saved_cfg.model.init_from_runs = {}
    runs.save_tokenizers(module.model, saved_cfg, run_dir)
    (run_dir / runs.CONFIG_FILE).write_text(OmegaConf.to_yaml(saved_cfg))
    counts = module.parameter_counts()
    log.info("run directory: %s", run_dir)
    log.info("parameters: %s trainable / %s total", f"{counts['trainable']:,}", f"{counts['total']:,}")

    started = time.perf_counter()
    if cfg.stage == "fit":
        ckpt = resume_checkpoint(run_dir)
        if ckpt:
            log.info("resuming from %s", ckpt)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        if trainer.is_global_zero:
            runs.save_weights(module.model, run_dir)
    train_seconds = time.perf_counter() - started
    trainer.test(module, datamodule=datamodule, verbose=False)

    metrics = {
        "model": _choice(cfg, "model"),
        "parts": {p: _choice(cfg, p) for p in runs.PARTS if p in cfg},
        "metrics": module.results,
        "params": counts,
        "train": {
            "steps": int(trainer.global_step),
            "seconds": round(train_seconds, 1),
            "loss_first": module.train_losses[0] if module.train_losses else None,
            "loss_last": _tail_mean(module.train_losses),
        },
        "data": {
            "train_samples": getattr(datamodule, "num_train_samples", None),
            "skipped_samples": datamodule.errors.total,
            "skipped_by_reason": datamodule.errors.counts,
            "truncated_sequences": getattr(module, "num_truncated", 0),
        },
        "lineage": OmegaConf.to_container(saved_cfg.get("lineage", {})),
    }
    if not trainer.is_global_zero:  # every rank holds the gathered results; one writes them
        return metrics
    runs.write_metrics(run_dir, metrics)
    if hasattr(module, "write_examples"):
        module.write_examples(run_dir, cfg.num_examples)
    if datamodule.errors.total:
        log.warning("skipped %d bad samples: %s", datamodule.errors.total, datamodule.errors.report())
    print_metrics(metrics, run_dir)
    return metrics


def _tail_mean(values: list[float], n: int = 20) -> float | None:
    return sum(values[-n:]) / len(values[-n:]) if values else None


def _choice(cfg: DictConfig, group: str) -> str | None:
    """The config-group choice (e.g. 'clip') when running under Hydra, else the target's name."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return str(choice)
    node = cfg.get(group)
    return str(node.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(node, DictConfig) else None


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(cfg.resume) if cfg.get("resume") else Path(HydraConfig.get().runtime.output_dir)
    metrics = train_and_evaluate(cfg, run_dir)
    # the returned value is what Hydra sweepers (e.g. Optuna) optimise
    first = next(iter(metrics["metrics"].values()), None)
    return float(first) if first is not None else None


if __name__ == "__main__":
    main()
