"""``load_pretrained``: any checkpoint the zoo understands, as a zoo model with its recipe.

The architecture is read from the checkpoint (``AutoConfig``: ``model_type``), a family
importer describes the zoo parts and the key table, the model is built from the zoo's
config tree (``model=<family>`` with its recipe: frozen parts, template, optimiser) with
those parts in place of the defaults, and every tensor is copied in by the table.

``pretrained_config`` and ``fill_model`` are the two halves, for ``python -m mmzoo.run
pretrained=...``: the run composes its config, swaps the parts, builds as usual, fills.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, load_model
from torch import nn
from transformers import AutoConfig
from transformers.utils.hub import cached_file

from mmzoo import rundir, zoo
from mmzoo.compose import compose_config
from mmzoo.convert import blip, blip2, clip, llava, openclip, originals
from mmzoo.convert.base import Imported
from mmzoo.convert.checkpoint import ConversionError, read_pretrained
from mmzoo.convert.mapping import FillReport, fill
from mmzoo.convert.projectors import load_projector

# model_type of a transformers checkpoint -> its importer
FAMILIES: dict[str, Callable[..., Imported]] = {
    "blip": blip.import_blip,
    "blip-2": blip2.import_blip2,
    "clip": clip.import_clip,
    "instructblip": blip2.import_instructblip,
    "llava": llava.import_llava,
}
INFO_FILE = "mmzoo.json"  # what an export holds (see mmzoo.convert.export)
EXTRA_FILE = "mmzoo_extra.safetensors"  # zoo tensors a transformers layout has no place for
PARTS_FORMAT = "mmzoo-parts"


def read_checkpoint(name_or_path: str, trust_remote_code: bool = False, **options: Any) -> Imported:
    """The zoo's reading of a transformers checkpoint (directory or hub id), ``open_clip:<name>``
    or a projector file (MiniGPT-4's ``llama_proj``, LLaVA's ``mm_projector.bin``).

    ``options`` go to the family importer (``tokenizer``: another tokenizer; ``pretrained``:
    open_clip's weights; for a projector file, the parts it was trained with: ``blip2``/``vision``
    and ``llm``, see ``mmzoo.convert.originals``). Remote code runs only with ``trust_remote_code=True``.
    """
    if name_or_path.startswith(openclip.PREFIX):
        if trust_remote_code:
            raise ConversionError("open_clip models run no remote code: trust_remote_code does not apply")
        return openclip.import_open_clip(name_or_path[len(openclip.PREFIX) :], **options)
    if Path(name_or_path).is_file():
        return originals.import_projector_file(name_or_path, trust_remote_code=trust_remote_code, **options)
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    importer = FAMILIES.get(config.model_type)
    if importer is None:
        raise ConversionError(
            f"{name_or_path}: {config.model_type!r} ({', '.join(config.architectures or [])}) has no zoo "
            f"importer; supported: {sorted(FAMILIES)} and open_clip:<model name>"
        )
    accepted = inspect.signature(importer).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ConversionError(
            f"{name_or_path} is a whole {config.model_type!r} checkpoint: {unknown} do not apply to it (parts are "
            "named only for a projector file)"
        )
    imported = importer(
        name_or_path, config, read_pretrained(name_or_path), trust_remote_code=trust_remote_code, **options
    )
    extra = cached_file(name_or_path, EXTRA_FILE, _raise_exceptions_for_missing_entries=False)
    if extra:  # written by mmzoo's exporter beside the transformers layout
        imported.extra = load_file(extra)
    return imported


def pretrained_config(cfg: DictConfig, imported: Imported) -> DictConfig:
    """``cfg`` (a composed run config) with the checkpoint's parts and model keys in place.

    Weights from other runs (``pretrained_parts``) are dropped: the checkpoint fills everything.
    """
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    for part, node in imported.parts.items():
        cfg[part] = OmegaConf.create(node)
    for key, value in imported.model_args.items():
        cfg.model[key] = value
    if "pretrained_parts" in cfg.model:
        cfg.model.pretrained_parts = None
    cfg.pretrained = imported.source
    return cfg


def fill_model(model: nn.Module, imported: Imported) -> FillReport:
    """Copy the checkpoint into a model built from ``pretrained_config``."""
    return fill(
        model, imported.weights, imported.rules, imported.source, imported.allow_unfilled, imported.extra
    )


def build_pretrained(
    imported: Imported, overrides: Sequence[str] = (), dtype: str | None = None
) -> tuple[nn.Module, DictConfig]:
    """The zoo module for ``imported`` (recipe: ``model=<family>`` + ``overrides``), filled, and its
    config."""
    cfg = pretrained_config(compose_config([f"model={imported.model}", *overrides]), imported)
    if dtype is not None and "llm" in cfg:  # the LLM is built in it, never materialised in fp32
        cfg.llm.torch_dtype = dtype
    build_cfg, cfg = rundir.resolve_parts(zoo.resolve_config(cfg))  # parts the overrides take from other runs
    module = instantiate(build_cfg.model, _convert_="all")
    fill_model(module.model, imported)
    if dtype is not None:
        module.to(getattr(torch, dtype))
    module.eval()
    return module, cfg


def load_parts_export(directory: Path) -> nn.Module:
    """A parts export (``mmzoo.convert.export``): its config, then each part's safetensors."""
    info = json.loads((directory / INFO_FILE).read_text())
    module = instantiate(rundir.read_config(directory).model, _convert_="all")
    loaded: set[str] = set()
    for name, entry in info["files"].items():
        target = module.model.get_submodule(entry["module"]) if entry.get("module") else module.model
        missing, unexpected = load_model(target, directory / name, strict=False)
        prefix = f"{entry['module']}." if entry.get("module") else ""
        if unexpected:
            raise ConversionError(f"{directory / name}: tensors the model does not have: {unexpected[:10]}")
        loaded.update(prefix + k for k in target.state_dict() if k not in missing)
    missing = sorted(set(module.model.state_dict()) - loaded)
    if missing:
        raise ConversionError(f"{directory}: no tensors for {missing[:10]} ({len(missing)} in all)")
    module.eval()
    return module


def load_pretrained(
    name_or_path: str | Path,
    overrides: Sequence[str] = (),
    model: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> nn.Module:
    """A zoo model (LightningModule, eval mode) from anything the zoo reads.

    - a zoo run directory, or a parts export (``python -m mmzoo.export``);
    - a transformers checkpoint (directory or hub id) of a supported family;
    - ``open_clip:<model name>`` with ``pretrained=<tag or file>``;
    - a projector file (LLaVA ``mm_projector.bin``, MiniGPT-4 ``llama_proj``) with the parts it
      was trained with named in ``options`` (``blip2=``/``vision=``, ``llm=``), or, without them,
      filling the bridge of ``model`` (``llava``/``minigpt4``) built with ``overrides``.

    ``overrides`` are config overrides for the recipe (e.g. ``["model.freeze=[encoder]"]``);
    ``model`` checks that the checkpoint is that zoo model; ``dtype`` (``"bfloat16"``...) is the
    dtype of the weights (default fp32); ``options`` go to ``read_checkpoint``.
    """
    path = Path(name_or_path)
    if (path / rundir.CONFIG_FILE).is_file() and (path / rundir.WEIGHTS_FILE).is_file():
        return rundir.load_run(path)
    if (path / INFO_FILE).is_file() and json.loads((path / INFO_FILE).read_text()).get(
        "format"
    ) == PARTS_FORMAT:
        return load_parts_export(path)
    if path.is_file() and not options:
        if model is None:
            raise ConversionError(
                f"{path} is a single file: name the parts its projector was trained with (blip2=/vision=, "
                "llm=), or say which zoo model's bridge it fills (model=...)"
            )
        build_cfg, _ = rundir.resolve_parts(zoo.resolve_config(compose_config([f"model={model}", *overrides])))
        module = instantiate(build_cfg.model, _convert_="all")
        load_projector(module, path)
        return module.eval()
    imported = read_checkpoint(str(name_or_path), **options)
    if model is not None and model != imported.model:
        raise ConversionError(f"{name_or_path} is a {imported.model!r} checkpoint, not {model!r}")
    return build_pretrained(imported, overrides, dtype)[0]
