"""The installed config tree (``mmzoo.conf``) read as data, without Hydra.

The tree lives in the top-level ``conf/`` folder of the repository and is installed as
the package ``mmzoo.conf``; ``importlib.resources`` finds it in an editable checkout and
in an installed wheel alike, where ``Path(__file__)`` lookups would break. Hydra reads
the same tree through its ``pkg://mmzoo.conf`` search path.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml

CONFIG_PACKAGE = "mmzoo.conf"
SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"


def conf_root() -> Traversable:
    """The root of the config tree (a folder in a checkout, a package directory when installed)."""
    return resources.files(CONFIG_PACKAGE)


def groups() -> list[str]:
    """Top-level config groups (folders holding presets), e.g. ``['bridge', 'data', ...]``."""
    return sorted(p.name for p in conf_root().iterdir() if p.is_dir() and not p.name.startswith("_"))


def presets(group: str) -> list[str]:
    """The preset names of ``group`` (its ``*.yaml`` files), e.g. ``presets('model')``."""
    folder = conf_root().joinpath(*group.split("/"))
    if not folder.is_dir():
        raise ValueError(f"unknown config group {group!r}; valid: {groups()}")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(group: str, name: str) -> dict[str, Any]:
    """One preset's YAML as a plain dict; unknown names list the valid ones."""
    valid = presets(group)
    if name not in valid:
        raise ValueError(f"unknown {group} preset {name!r}; valid: {valid}")
    text = conf_root().joinpath(*group.split("/"), f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}
