"""Projector-only releases into a zoo model's bridge: LLaVA's ``mm_projector.bin`` and
MiniGPT-4's ``llama_proj`` checkpoint.

Both papers released their stage-1 projector on its own; the rest of the model is a
public vision tower and LLM (and, for MiniGPT-4, BLIP-2's Q-Former), which the zoo model
already holds. The file fills ``bridge.projector`` only, strictly: the file's depth
must be the bridge's, and every shape must fit.

- LLaVA: ``model.mm_projector.weight`` (linear, v1) or ``model.mm_projector.{0,2}.*``
  (``mlp2x_gelu``, v1.5): the indices of ``nn.Sequential(Linear, GELU, Linear)``, which
  are the zoo MLP's own.
- MiniGPT-4: ``{"model": {"llama_proj.weight", "llama_proj.bias"}}``, one Linear from
  the Q-Former's width to the LLM's.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from mmzoo.convert.checkpoint import Checkpoint, ConversionError, read_file
from mmzoo.convert.mapping import FillReport, Rule, fill

LLAVA = (
    Rule(r"model\.mm_projector\.(weight|bias)", (r"layers.0.\1",)),
    Rule(r"model\.mm_projector\.(\d+)\.(weight|bias)", (r"layers.\1.\2",)),
)
MINIGPT4 = (Rule(r"llama_proj\.(weight|bias)", (r"layers.0.\1",)),)
FORMATS = {"llava": LLAVA, "minigpt4": MINIGPT4}


def detect_format(weights: Checkpoint) -> str:
    """``llava`` or ``minigpt4`` from the file's keys."""
    keys = list(weights)
    if keys and all(k.startswith("llama_proj.") for k in keys):
        return "minigpt4"
    if keys and all(k.startswith("model.mm_projector.") for k in keys):
        return "llava"
    raise ConversionError(
        f"{weights.source}: not a projector checkpoint (expected llama_proj.* or model.mm_projector.* keys, "
        f"found {sorted(keys)[:8]})"
    )


def file_depth(weights: Checkpoint, form: str) -> int:
    """How many Linear layers the file holds."""
    if form == "minigpt4":
        return 1
    indices = {m.group(1) for k in weights if (m := re.fullmatch(r"model\.mm_projector\.(\d+)\.weight", k))}
    return len(indices) or 1


def load_projector(model: nn.Module, path: str | Path, form: str | None = None) -> FillReport:
    """Fill ``model.bridge.projector`` (a zoo model or LightningModule) from a projector file.

    ``form`` (``llava`` / ``minigpt4``) is detected from the keys when not given.
    """
    model = getattr(model, "model", model)  # a ZooModule holds the model
    bridge = getattr(model, "bridge", None)
    if bridge is None or not hasattr(bridge, "projector"):
        raise ConversionError(f"{type(model).__name__} has no bridge projector to fill")
    weights = read_file(path)
    form = form or detect_format(weights)
    if form not in FORMATS:
        raise ConversionError(f"unknown projector format {form!r}; valid: {sorted(FORMATS)}")
    what = f"{form} projector {path}"
    depth, zoo_depth = file_depth(weights, form), bridge.projector.depth
    if depth != zoo_depth:
        raise ConversionError(
            f"{what}: the file holds a depth-{depth} projector, this model's bridge has depth {zoo_depth} "
            f"(use bridge={'linear' if depth == 1 else f'mlp{depth}'})"
        )
    if form == "minigpt4" and getattr(bridge, "qformer", None) is None:
        raise ConversionError(
            f"{what}: llama_proj maps Q-Former outputs, but this model's bridge has no Q-Former"
        )
    if form == "llava" and getattr(bridge, "qformer", None) is not None:
        raise ConversionError(
            f"{what}: mm_projector maps vision-tower tokens, but this bridge has a Q-Former first"
        )
    return fill(bridge.projector, weights, FORMATS[form], what)
