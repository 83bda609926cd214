"""The public Python API: compose configs, build models, load finished runs.

    import mmzoo
    mmzoo.models()                                  # ['clip', 'llava', 'lm', 'minigpt4']
    module = mmzoo.build("llava", ["bridge=mlp2"])  # a LightningModule from the config tree
    module = mmzoo.from_pretrained("runs/llava/2026-11-24_05-00-00")
    module.generate([image], "What colour is the circle?")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from mmzoo import runs
from mmzoo.data.templates import conf_dir


def models() -> list[str]:
    """The architectures in the zoo (the files of ``conf/model``)."""
    return sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The run config for ``overrides`` (as on the command line), composed without running."""
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=list(overrides), return_hydra_config=False)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def build(model: str = "clip", overrides: Sequence[str] = ()):
    """Instantiate a zoo model (a LightningModule) from the config tree."""
    if model not in models():
        raise ValueError(f"unknown model {model!r}; valid: {models()}")
    cfg = compose_config([f"model={model}", *overrides])
    build_cfg, _ = runs.resolve_parts(cfg)
    return instantiate(build_cfg.model, _convert_="all")


def from_pretrained(run_dir: str | Path):
    """The trained model of a run directory (its saved config, its safetensors weights)."""
    cfg = runs.read_config(run_dir)
    module = instantiate(cfg.model, _convert_="all")
    runs.load_weights(module.model, runs.read_weights(run_dir), f"model from {run_dir}")
    module.eval()
    return module
