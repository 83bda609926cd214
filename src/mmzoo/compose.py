"""Composing run configs from the config tree without running anything.

Used by the API, by tests, and by the zoo (which composes its recipes on the caller's data).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from mmzoo.presets import CONFIG_PACKAGE


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The run config for ``overrides`` (as on the command line), composed without running.

    The config-group choices are kept under ``choices`` (Hydra keeps them in its own node,
    which a composed config does not carry).
    """
    if GlobalHydra.instance().is_initialized():
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    else:
        with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    picked = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None and "hydra" not in str(k)}
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    cfg.choices = picked
    return cfg
