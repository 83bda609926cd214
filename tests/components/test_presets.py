"""Every part preset in conf/{encoder,text,bridge,llm} parses; tiny ones build and run.

Real presets are checked without downloading: their ``_target_`` resolves and their keys
bind to its signature, so a typo fails here rather than on a cluster.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

import mmzoo
from mmzoo.data.tokenizer import build_word_tokenizer

CONF = Path(mmzoo.__file__).parent / "conf"
GROUPS = ("encoder", "text", "bridge", "llm")
PRESETS = sorted(p for group in GROUPS for p in (CONF / group).glob("*.yaml"))
TINY = [p for p in PRESETS if p.stem.startswith("tiny_")]
WORDS = "a red blue circle square on the left right".split()


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_group_has_presets() -> None:
    for group in GROUPS:
        assert list((CONF / group).glob("*.yaml")), group
    assert {"tiny_clip_vit", "tiny_timm_vit", "tiny_open_clip_vit", "tiny_siglip"} <= {p.stem for p in (CONF / "encoder").iterdir()}


@pytest.mark.parametrize("path", PRESETS, ids=_id)
def test_preset_parses_and_binds(path: Path) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    if "_target_" not in cfg:  # presets that point at a zoo run are resolved by the builder, not here
        assert "from_run" in cfg, f"{path.name} has neither _target_ nor from_run"
        return
    target = get_object(cfg.pop("_target_"))
    cfg.pop("_partial_", None)
    if path.parent.name == "bridge":
        assert "in_dim" not in cfg and "out_dim" not in cfg  # injected at build time
        cfg.update(in_dim=8, out_dim=8)
    inspect.signature(target).bind(**cfg)


@pytest.mark.parametrize("path", TINY, ids=_id)
def test_tiny_preset_builds_and_runs(path: Path) -> None:
    cfg = OmegaConf.load(path)
    group = path.parent.name
    overrides = {}
    if "tokenizer" in cfg:
        assert cfg.tokenizer._target_ == "mmzoo.data.tokenizer.shapes_tokenizer"
        overrides["tokenizer"] = build_word_tokenizer(WORDS, add_eos=cfg.tokenizer.get("add_eos", True))
    part = instantiate(cfg, _convert_="all", **overrides)
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


@pytest.mark.parametrize("path", sorted((CONF / "bridge").glob("*.yaml")), ids=_id)
def test_bridge_preset_builds_with_injected_dims(path: Path) -> None:
    bridge = instantiate(OmegaConf.load(path), _convert_="all")(in_dim=48, out_dim=96)
    out = bridge(torch.randn(2, 17, 48))
    assert out.shape == (2, bridge.num_output_tokens(17), 96)


def test_shapes_tokenizer_node_instantiates() -> None:
    shapes = pytest.importorskip("mmzoo.data.shapes")
    if not hasattr(shapes, "vocabulary"):
        pytest.skip("mmzoo.data.shapes.vocabulary() not written yet")
    tokenizer = instantiate(OmegaConf.load(CONF / "llm" / "tiny_llama.yaml").tokenizer)
    assert tokenizer("a red circle")["input_ids"][-1] != tokenizer.eos_token_id
