"""Writing a zoo model for others: the matching transformers class's layout, or its parts.

``export_model`` tries each transformers layout whose parts the model fits (``CLIPModel``
for a CLIP of transformers CLIP towers with a bias-free projection; ``LlavaForConditional
Generation`` for a CLIP-family encoder + MLP bridge of depth 1-2 + causal LLM). The
tensors go through the importer's key table read backwards, so the same table is tested
both ways. Zoo tensors the layout has no place for (a tower's unused copy of its final
norm) go to ``mmzoo_extra.safetensors`` beside it, which ``from_pretrained`` of the
transformers class ignores and mmzoo's importer reads back: export then import is the
identity, bit for bit.

Everything else is written as parts: ``<part>.safetensors`` for each part (encoder,
text, bridge, llm), ``heads.safetensors`` for the model's own tensors, the run's config
and tokenizers, and ``mmzoo.json`` saying what is what.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file, save_model
from torch import nn

from mmzoo import rundir
from mmzoo.convert import blip, blip2, clip, llava
from mmzoo.convert.checkpoint import ConversionError
from mmzoo.convert.load import EXTRA_FILE, INFO_FILE, PARTS_FORMAT
from mmzoo.convert.mapping import invert, map_tensors

log = logging.getLogger(__name__)

# transformers class -> (its layout, zoo model); a layout (a family module, or a namespace when a
# family has several classes) gives export_problems, reference_for, export_rules (or RULES) and
# optionally save_processor. ``auto`` takes the first that fits.
LAYOUTS: dict[str, tuple[ModuleType | SimpleNamespace, str]] = {
    "CLIPModel": (clip, "clip"),
    "LlavaForConditionalGeneration": (llava, "llava"),
    "BlipForConditionalGeneration": (blip.CAPTIONING, "blip"),
    "BlipForImageTextRetrieval": (blip.RETRIEVAL, "blip"),
    "Blip2ForConditionalGeneration": (blip2.BLIP2, "blip2"),
    "InstructBlipForConditionalGeneration": (blip2.INSTRUCTBLIP, "instructblip"),
}


def _storage(tensor: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """What tells tied tensors apart from merely equal ones: where they live, and their shape."""
    return tensor.data_ptr(), tuple(tensor.shape)


def _rules(family: ModuleType | SimpleNamespace, model: nn.Module) -> tuple:
    return family.export_rules(model) if hasattr(family, "export_rules") else family.RULES


def export_transformers(
    model: nn.Module, out: Path, class_name: str, source: str | None = None
) -> dict[str, Any]:
    """Write ``model`` as ``class_name`` (a key of ``LAYOUTS``); returns what ``mmzoo.json`` says."""
    family, zoo_model = LAYOUTS[class_name]
    problems = family.export_problems(model)
    if problems:
        raise ConversionError(f"cannot write this model as {class_name}:\n  " + "\n  ".join(problems))
    what = f"export to {class_name}"
    rules = _rules(family, model)
    reference, tokenizer = family.reference_for(model)
    zoo_state = model.state_dict()
    state = invert(zoo_state, reference.state_dict(), rules, what)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    derived = {k for k in reference.state_dict() if not any(r.targets for r in rules if r.match(k))}
    if unexpected or set(missing) - derived:
        raise ConversionError(
            f"{what}: missing {sorted(set(missing) - derived)[:10]}, unexpected {unexpected[:10]}"
        )
    out.mkdir(parents=True, exist_ok=True)
    reference.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if hasattr(family, "save_processor"):
        family.save_processor(model, out)

    # what re-importing the layout would give back, and what it would not
    back = map_tensors(reference.state_dict(), rules, what)
    # one name per tensor: weights the zoo shares under several names (BLIP's text side) are
    # written once, and not at all when the layout already gives them back under another name
    recovered = {_storage(v) for k, v in zoo_state.items() if k in back and torch.equal(back[k], v)}
    extra: dict[str, torch.Tensor] = {}
    for k, v in zoo_state.items():
        if _storage(v) not in recovered:
            recovered.add(_storage(v))
            extra[k] = v.detach().contiguous()
    files = {"config.json": f"{class_name} config", "model.safetensors": f"{class_name} weights"}
    if extra:
        save_file(extra, str(out / EXTRA_FILE))
        files[EXTRA_FILE] = (
            f"zoo tensors the {class_name} layout has no place for (not used by {class_name}; "
            f"mmzoo reads them back): {sorted(extra)}"
        )
    info = {
        "format": "transformers",
        "class": class_name,
        "zoo_model": zoo_model,
        "source": source,
        "files": files,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def _describe(part: nn.Module) -> str:
    doc = (type(part).__doc__ or "").strip().splitlines()
    return f"{type(part).__module__}.{type(part).__name__}" + (f": {doc[0]}" if doc else "")


def export_parts(
    model: nn.Module,
    config: DictConfig,
    out: Path,
    why: dict[str, list[str]] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Write each part's safetensors, the config that builds the model and its tokenizers."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    rundir.save_tokenizers(model, cfg, out)  # tokenizer nodes now point into ``out``
    (out / rundir.CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg))
    files: dict[str, dict[str, Any]] = {}
    for name, part in model.named_children():
        if name in rundir.PARTS:
            save_model(part, str(out / f"{name}.safetensors"))
            files[f"{name}.safetensors"] = {
                "module": name,
                "what": _describe(part),
                "parameters": sum(p.numel() for p in part.parameters()),
            }
    heads = {
        k: v.detach().contiguous() for k, v in model.state_dict().items() if k.split(".")[0] not in rundir.PARTS
    }
    if heads:
        save_file(heads, str(out / "heads.safetensors"))
        files["heads.safetensors"] = {
            "module": "",
            "what": f"the model's own tensors: {sorted(heads)}",
            "parameters": sum(v.numel() for v in heads.values()),
        }
    info = {
        "format": PARTS_FORMAT,
        "zoo_model": type(model).__name__,
        "source": source,
        "config": f"{rundir.CONFIG_FILE}: builds the model (python: mmzoo.convert.load_pretrained(<this dir>))",
        "tokenizers": "tokenizers/<part>/",
        "files": files,
        "why_not_transformers": why or {},
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def export_model(
    model: nn.Module,
    out: str | Path,
    config: DictConfig | None = None,
    layout: str = "auto",
    source: str | None = None,
) -> dict[str, Any]:
    """Write a zoo model (or its LightningModule) to ``out``; returns the ``mmzoo.json`` contents.

    ``layout``: ``auto`` (the first transformers class that fits, else parts), a class name
    of ``LAYOUTS``, or ``parts`` (needs ``config``, the run config that builds the model).
    """
    from mmzoo.lit.base import ZooModule

    model = model.model if isinstance(model, ZooModule) else model
    out = Path(out)
    if layout in LAYOUTS:
        return export_transformers(model, out, layout, source)
    if layout not in ("auto", "parts"):
        raise ValueError(f"layout must be 'auto', 'parts' or one of {sorted(LAYOUTS)}, got {layout!r}")
    why: dict[str, list[str]] = {}
    if layout == "auto":
        for class_name, (family, _) in LAYOUTS.items():
            why[class_name] = family.export_problems(model)
            if not why[class_name]:
                return export_transformers(model, out, class_name, source)
    if config is None:
        raise ConversionError(
            f"a parts export needs the config that builds the model; no transformers layout fits: {why}"
        )
    log.info("no transformers layout fits (%s): writing parts", why)
    return export_parts(model, config, out, why, source)


def export_run(run_dir: str | Path, out: str | Path, layout: str = "auto") -> dict[str, Any]:
    """Export the trained model of a run directory."""
    module = rundir.load_run(run_dir)
    return export_model(
        module.model, out, config=rundir.read_config(run_dir), layout=layout, source=str(run_dir)
    )
