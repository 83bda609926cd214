"""Trained parts the zoo makes for itself, cached like the shards.

LLaVA takes CLIP's ViT and a pretrained Vicuna; MiniGPT-4 takes BLIP-2's Q-Former. On
the embedded data (or the user's own) the zoo reproduces that lineage: ``zoo:<name>`` in
a config value (``encoder.from_run``, ``model.pretrained_parts``, ``pretrained``) names a
recipe (``mmzoo/recipes/<name>.yaml``: the overrides of an ordinary ``python -m mmzoo.run``),
run once on first use into ``$MMZOO_CACHE/zoo/<name>-<key>``.

The recipe runs on the data of the run that asks for it, with that run's tokenizer (so a
zoo CLIP and LM made for ``data=folder`` are trained on that folder, over a BPE of its
captions), and takes from that run what its ``inherit`` list names (BLIP-2 stage 1 takes the
asking model's Q-Former shape and encoder settings, so ``model=blip2
bridge.qformer.num_queries=16`` pretrains a 16-query Q-Former). Its cache key is a hash of
the recipe's whole composed config (its zoo references replaced by their own keys, the
tokenizer node included), the package version, the recipes of generated things (the
embedded data, the caption BPE) and the identity of the data: editing a preset, a recipe,
the tokenizer or the data can never silently reuse a stale part.

    python -m mmzoo.zoo build clip    # make (or find) the cached CLIP run and print its path
    python -m mmzoo.zoo build lm data=folder data.train=data/mine/train data.test=data/mine/test
    python -m mmzoo.zoo list

Making a recipe means training it: the caller passes the trainer (``mmzoo.run``'s
``train_and_evaluate``), so this module never imports the run script.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
PREFIX = "zoo:"


def cache_root() -> Path:
    return Path(os.environ.get("MMZOO_CACHE", Path.home() / ".cache" / "mmzoo")) / "zoo"


def _recipe_files() -> dict[str, dict[str, Any]]:
    folder = resources.files("mmzoo") / "recipes"
    return {
        path.name.removesuffix(".yaml"): yaml.safe_load(path.read_text())
        for path in sorted(folder.iterdir(), key=lambda p: p.name)
        if path.name.endswith(".yaml")
    }


def recipes() -> dict[str, list[str]]:
    """Recipe name -> overrides, from ``mmzoo/recipes/*.yaml`` (kept out of the config tree
    so that they do not show up as a config group)."""
    return {name: [str(o) for o in spec["overrides"]] for name, spec in _recipe_files().items()}


def inherited_keys(name: str) -> list[str]:
    """Config paths a recipe takes from the run that asks for it (besides ``data``, always)."""
    return [str(k) for k in _recipe_files().get(name, {}).get("inherit", [])]


def _check_name(name: str) -> list[str]:
    known = recipes()
    if name not in known:
        raise ValueError(f"unknown zoo recipe {name!r}; valid: {sorted(known)}")
    return known[name]


# data keys that are a model's budget on that data (budget/<data>_<model>.yaml), not the data's
# identity: a zoo part keeps its recipe's, so every model on the same data shares one part
BUDGET_KEYS = ("batch_size", "eval_batch_size")
# how a step is executed, not what it computes: not part of a recipe's identity
EXECUTION_KEYS = ("compile",)


def recipe_config(name: str, parent: DictConfig | None = None) -> DictConfig:
    """The composed run config of recipe ``name`` for the run config ``parent`` (its data and
    the keys the recipe inherits; default: the embedded data)."""
    from mmzoo.compose import compose_config

    overrides = _check_name(name)
    data = parent.get("data") if parent is not None else None
    if data is not None and data.get("name"):
        overrides = [*overrides, f"data={data.name}"]
    cfg = compose_config(overrides)
    OmegaConf.set_struct(cfg, False)
    if data is not None:
        own = cfg.data
        cfg.data = data.copy()
        for key in BUDGET_KEYS:  # the asker's batch sizes are its own model's budget, not the recipe's
            if key in own:
                cfg.data[key] = own[key]
        if "feature_cache" in cfg.data:  # the asker's cache is of its own frozen parts: the zoo's train from pixels
            cfg.data.feature_cache, cfg.data.feature_cache_dir = False, None
    tokenizer = parent.get("tokenizer") if parent is not None else None
    if tokenizer is not None:  # the asker's vocabulary (e.g. tokenizer=open_clip on the command line)
        cfg.tokenizer = tokenizer.copy()
        cfg.choices.tokenizer = (parent.get("choices") or {}).get("tokenizer", cfg.choices.get("tokenizer"))
    for path in inherited_keys(name) if parent is not None else ():
        value = OmegaConf.select(parent, path)
        if value is None:
            continue
        mine = OmegaConf.select(cfg, path)
        if isinstance(value, DictConfig) and isinstance(mine, DictConfig):
            value = OmegaConf.merge(mine, value)
        OmegaConf.update(cfg, path, value, merge=False, force_add=True)
    return cfg


def _map_refs(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {k: _map_refs(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_refs(v, fn) for v in value]
    if isinstance(value, str) and value.startswith(PREFIX):
        return fn(value)
    return value


def data_identity(data: DictConfig) -> str:
    """What the data is beyond its config: the manifests/stats of shards that already exist."""
    from mmzoo.data.webdata import expand_urls

    parts = []
    for split in ("train", "val", "test"):
        spec = data.get(split)
        if not spec:
            continue
        try:
            urls = expand_urls(OmegaConf.to_container(spec) if isinstance(spec, DictConfig | list) else str(spec))
        except FileNotFoundError:
            continue
        for url in urls:
            path = Path(url)
            parts.append(f"{path.name}:{path.stat().st_size if path.is_file() else '?'}")
    return "\n".join(parts)


def recipe_key(name: str, parent: DictConfig | None = None) -> str:
    """Hash of the recipe's composed config (nested zoo references by their keys), the package
    version and the data identity."""
    from mmzoo.data.shapes import GENERATOR_VERSION
    from mmzoo.data.tokenizer import BPE_RECIPE
    from mmzoo.version import __version__

    cfg = recipe_config(name, parent)
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in EXECUTION_KEYS:
        container.pop(key, None)
    container = _map_refs(container, lambda ref: PREFIX + recipe_key(ref[len(PREFIX):], cfg))
    text = json.dumps(container, sort_keys=True, default=str)
    # what generated inputs are made by, before they exist: the embedded data and the caption BPE
    # (whose other inputs, the training shards and its settings, are in the data identity and config)
    generated = f"shapes generator v{GENERATOR_VERSION}, caption BPE v{BPE_RECIPE}"
    digest = hashlib.sha256("\n".join([text, __version__, generated, data_identity(cfg.data)]).encode())
    return digest.hexdigest()[:12]


def recipe_dir(name: str, parent: DictConfig | None = None) -> Path:
    return cache_root() / f"{name}-{recipe_key(name, parent)}"


Trainer = Callable[[DictConfig, Path], Any]  # (config, run directory) -> metrics: mmzoo.run.train_and_evaluate


def resolve(ref: str, parent: DictConfig | None = None, make: Trainer | None = None) -> str:
    """A run directory for ``ref``: itself, or for ``zoo:<name>`` the cached recipe run.

    ``make`` trains a recipe that is not cached yet; without it that is an error saying
    how to make it: building a model must never train another one as a side effect.
    """
    if not ref.startswith(PREFIX):
        return ref
    name = ref[len(PREFIX):]
    target = recipe_dir(name, parent)
    if (target / "model.safetensors").is_file():
        return str(target)
    if make is None:
        raise FileNotFoundError(
            f"{ref} is not made yet (it would be {target}). `python -m mmzoo.run` makes it on first use; "
            f"or run `python -m mmzoo.zoo build {name}` first."
        )
    return str(build(name, make, parent))


def resolve_config(cfg: DictConfig, make: Trainer | None = None) -> DictConfig:
    """``cfg`` with every ``zoo:`` reference replaced by its run directory (made by ``make``)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    resolved = _map_refs(container, lambda ref: resolve(ref, cfg, make=make))
    out = OmegaConf.create(resolved)
    OmegaConf.set_struct(out, False)
    return out


def build(name: str, make: Trainer, parent: DictConfig | None = None) -> Path:
    """Run the recipe once with ``make`` (atomically: an interrupted build never looks finished)."""
    target = recipe_dir(name, parent)
    if (target / "model.safetensors").is_file():
        return target
    cfg = recipe_config(name, parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.warning("zoo: %s is not cached yet; making it once (%s) in %s", name, " ".join(_check_name(name)), target)
    make(cfg, tmp)
    if target.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(target)
    return target
