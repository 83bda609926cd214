"""Every part preset in conf/{encoder,text,bridge,llm} parses; tiny ones build and run.

Real presets are checked without downloading: their ``_target_`` resolves, their keys
bind to its signature, each value has the type the signature declares, and values with a
vocabulary (dtypes, hub ids, token selections) are valid, so a typo or a corrupted line
fails here rather than on a cluster.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from mmzoo.data.tokenizer import build_word_tokenizer
from mmzoo.presets import load_preset, presets

GROUPS = ("encoder", "text", "bridge", "llm")
PRESETS = [(group, name) for group in GROUPS for name in presets(group)]
TINY = [(g, n) for g, n in PRESETS if n.startswith("tiny_")]
REAL = [(g, n) for g, n in PRESETS if not n.startswith("tiny_") and "_target_" in load_preset(g, n)]
WORDS = "a red blue circle square on the left right".split()
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _id(item: tuple[str, str]) -> str:
    return "/".join(item)


def test_every_group_has_tiny_and_real_presets() -> None:
    assert len(PRESETS) > 20
    for group in GROUPS:
        assert any(n.startswith("tiny_") for n in presets(group)) or group == "bridge", group
    assert {"tiny_clip_vit", "tiny_timm_vit", "tiny_open_clip_vit", "tiny_siglip"} <= set(presets("encoder"))
    assert REAL, "no real presets found"


def conforms(value: Any, annotation: Any) -> bool:
    """A small runtime check of ``value`` against a signature annotation (unions, Literal,
    containers by their outer type); ``Any`` and unknown classes accept everything."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    outer = origin or annotation
    if outer in (dict, Mapping):
        return isinstance(value, dict)
    if outer in (list, tuple, Sequence):
        return isinstance(value, list | tuple)
    if isinstance(outer, type) and outer.__module__ == "builtins":
        return isinstance(value, outer)
    return True  # a class (a tokenizer, a dtype object): configs give strings or nodes for those


@pytest.mark.parametrize("item", [*TINY, *REAL], ids=_id)
def test_preset_binds_with_the_declared_types(item: tuple[str, str]) -> None:
    group, name = item
    cfg = load_preset(group, name)
    target = get_object(cfg.pop("_target_"))
    cfg.pop("_partial_", None)
    if group == "bridge":
        assert "in_dim" not in cfg and "out_dim" not in cfg  # injected at build time
        cfg.update(in_dim=8, out_dim=8)
    inspect.signature(target).bind(**cfg)
    hints = typing.get_type_hints(target.__init__)
    for key, value in cfg.items():
        if key in hints and not isinstance(value, dict):  # nodes (_target_) are built, not typed
            assert conforms(value, hints[key]), f"{group}/{name}: {key}={value!r} is not {hints[key]}"
    if cfg.get("torch_dtype") is not None:
        assert isinstance(getattr(torch, str(cfg["torch_dtype"]), None), torch.dtype), cfg["torch_dtype"]
    if isinstance(cfg.get("name_or_path"), str):
        assert HUB_ID.match(cfg["name_or_path"]), cfg["name_or_path"]


def test_the_type_check_catches_a_corrupted_value() -> None:
    from mmzoo.components.llm import LanguageModel

    hints = typing.get_type_hints(LanguageModel.__init__)
    assert not conforms("yes", hints["gradient_checkpointing"])
    assert not conforms(3, hints["name_or_path"])
    assert conforms(None, hints["attn_implementation"])


def test_presets_without_target_point_at_a_zoo_run() -> None:
    for group in GROUPS:
        for name in presets(group):
            cfg = load_preset(group, name)
            if "_target_" not in cfg:
                assert str(cfg.get("from_run", "")).startswith("zoo:"), f"{group}/{name}"


@pytest.mark.parametrize("item", TINY, ids=_id)
def test_tiny_preset_builds_and_runs(item: tuple[str, str]) -> None:
    group, name = item
    cfg = OmegaConf.create(load_preset(group, name))
    overrides = {}
    if "tokenizer" in cfg:
        overrides["tokenizer"] = build_word_tokenizer(WORDS, add_eos=cfg.tokenizer.get("add_eos", True))
    part = instantiate(cfg, _convert_="all", **overrides)
    if isinstance(part, functools.partial):  # the BLIP text side gets its image width injected
        part = part(image_dim=48)
    with torch.no_grad():
        if group == "encoder":
            out = part(torch.randn(2, 3, part.image_size, part.image_size))
            assert out.shape == (2, part.num_tokens, part.dim)
        elif group == "text" or group == "llm":
            batch = part.tokenizer(["a red circle", "a blue square on the left"], padding=True, return_tensors="pt")
            if group == "text":
                assert part(batch["input_ids"], batch["attention_mask"]).pooled.shape == (2, part.dim)
            else:
                out = part(part.embed(batch["input_ids"]), batch["attention_mask"], labels=batch["input_ids"])
                assert out.loss.isfinite()


@pytest.mark.parametrize("name", presets("bridge"))
def test_bridge_preset_builds_with_injected_dims(name: str) -> None:
    bridge = instantiate(OmegaConf.create(load_preset("bridge", name)), _convert_="all")(in_dim=48, out_dim=96)
    out = bridge(torch.randn(2, 17, 48))
    assert out.shape == (2, bridge.num_output_tokens(17), 96)


def test_llm_tokenizer_node_takes_the_datas_vocabulary_with_bos_only() -> None:
    from mmzoo.compose import compose_config

    cfg = compose_config(["model=lm"])  # tiny_llama on the embedded data: the shapes words
    tokenizer = instantiate(cfg.llm.tokenizer)
    ids = tokenizer("a red circle")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] != tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
