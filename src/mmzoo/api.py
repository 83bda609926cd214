"""The public Python API: compose configs, build models, load finished runs.

    import mmzoo
    mmzoo.models()                                  # ['clip', 'llava', 'lm', 'minigpt4']
    module = mmzoo.build("llava", ["bridge=mlp2"])  # a LightningModule from the config tree
    module = mmzoo.from_pretrained("runs/llava/2026-11-24_05-00-00")
    module.generate([image], "What colour is the circle?")

``build`` never trains: a model whose parts come from the zoo's own runs (``zoo:clip``)
needs them made first (``python -m mmzoo.zoo build clip``, or any ``python -m mmzoo.run``
that uses them), and says so otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate

from mmzoo import rundir, zoo
from mmzoo.compose import compose_config
from mmzoo.presets import presets

__all__ = ["build", "compose_config", "from_pretrained", "models"]


def models() -> list[str]:
    """The architectures in the zoo (the presets of ``conf/model``)."""
    return presets("model")


def build(model: str = "clip", overrides: Sequence[str] = ()):
    """Instantiate a zoo model (a LightningModule) from the config tree, untrained.

    Parts taken from the zoo's own runs must exist already (a clear error says how to make
    them); building never trains anything.
    """
    if model not in models():
        raise ValueError(f"unknown model {model!r}; valid: {models()}")
    cfg = zoo.resolve_config(compose_config([f"model={model}", *overrides]))
    build_cfg, _ = rundir.resolve_parts(cfg)
    return instantiate(build_cfg.model, _convert_="all")


def from_pretrained(run_dir: str | Path):
    """The trained model of a run directory (its saved config, its safetensors weights)."""
    cfg = rundir.read_config(run_dir)
    module = instantiate(cfg.model, _convert_="all")
    rundir.load_weights(module.model, rundir.read_weights(run_dir), f"model from {run_dir}")
    module.eval()
    return module
