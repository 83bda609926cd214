"""The public Python API: compose configs, build models, load finished runs.

    import mmzoo
    mmzoo.models()                                  # ['clip', 'llava', 'lm', 'minigpt4', ...]
    module = mmzoo.build("llava", ["bridge=mlp2"])  # a LightningModule from the config tree
    module = mmzoo.from_pretrained("runs/llava/2026-11-24_05-00-00")       # a run of the zoo
    module = mmzoo.from_pretrained("llava-hf/llava-1.5-7b-hf")              # a real checkpoint
    module.generate([image], "What colour is the circle?")

``build`` never trains: a model whose parts come from the zoo's own runs (``zoo:clip``)
needs them made first (``python -m mmzoo.zoo build clip``, or any ``python -m mmzoo.run``
that uses them), and says so otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def from_pretrained(source: str | Path, **options: Any):
    """A zoo model from a run directory, a transformers checkpoint (directory or hub id) of a
    supported family, ``open_clip:<name>`` (with ``pretrained=<tag or file>``), an export of
    ``python -m mmzoo.export``, or a projector file (with ``model=``); see
    ``mmzoo.convert.load_pretrained`` for the options."""
    from mmzoo.convert import load_pretrained

    return load_pretrained(source, **options)
