"""Projector-only releases (LLaVA mm_projector.bin, MiniGPT-4 llama_proj) into a zoo bridge."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from mmzoo.components.bridges import Bridge
from mmzoo.components.encoders import TransformersVisionEncoder
from mmzoo.components.llm import LanguageModel
from mmzoo.convert import ConversionError, load_projector
from mmzoo.models.vision_language import VisionLanguageModel
from tests.convert.conftest import VISION, tokenizer

LLM_DIM = 32
QFORMER = {"num_queries": 4, "num_layers": 1, "hidden_size": 16, "num_heads": 2, "intermediate_size": 32}


def _vlm(depth: int = 2, qformer: dict | None = None) -> VisionLanguageModel:
    tok = tokenizer(add_eos=False)
    encoder = TransformersVisionEncoder(
        config={**VISION, "model_type": "clip_vision_model"}, layer=-2, tokens="patch"
    )
    llm = LanguageModel(
        config={
            "model_type": "llama",
            "hidden_size": LLM_DIM,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
        tokenizer=tok,
    )
    bridge = functools.partial(Bridge, depth=depth, qformer=qformer, frozen=qformer is not None)
    return VisionLanguageModel(encoder, bridge, llm, tok.convert_tokens_to_ids("<image>"))


def _llava_projector(depth: int) -> nn.Module:
    """What LLaVA's ``build_vision_projector`` makes: Linear, or Sequential(Linear, GELU, Linear)."""
    if depth == 1:
        return nn.Linear(VISION["hidden_size"], LLM_DIM)
    return nn.Sequential(nn.Linear(VISION["hidden_size"], LLM_DIM), nn.GELU(), nn.Linear(LLM_DIM, LLM_DIM))


def _save_llava(projector: nn.Module, path: Path) -> Path:
    torch.save({f"model.mm_projector.{k}": v for k, v in projector.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("depth", [1, 2])
def test_llava_mm_projector_gives_the_same_projected_features(depth: int, tmp_path: Path) -> None:
    torch.manual_seed(depth)
    reference = _llava_projector(depth)
    model = _vlm(depth=depth)
    load_projector(model, _save_llava(reference, tmp_path / "mm_projector.bin"))
    tokens = torch.randn(2, 16, VISION["hidden_size"])  # (B, N, D_v) vision-tower patch tokens
    with torch.no_grad():
        assert (model.bridge(tokens) - reference(tokens)).abs().max() <= 1e-6


def test_llava_mm_projector_of_another_depth_names_the_bridge_to_use(tmp_path: Path) -> None:
    path = _save_llava(_llava_projector(2), tmp_path / "mm_projector.bin")
    with pytest.raises(
        ConversionError, match=r"depth-2 projector, this model's bridge has depth 1 \(use bridge=mlp2\)"
    ):
        load_projector(_vlm(depth=1), path)


def test_minigpt4_llama_proj_gives_the_same_projected_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    llama_proj = nn.Linear(QFORMER["hidden_size"], LLM_DIM)
    torch.save(
        {"model": {f"llama_proj.{k}": v for k, v in llama_proj.state_dict().items()}}, tmp_path / "ckpt.pth"
    )
    model = _vlm(depth=1, qformer=QFORMER)
    load_projector(model, tmp_path / "ckpt.pth")
    query_outputs = torch.randn(
        2, QFORMER["num_queries"], QFORMER["hidden_size"]
    )  # (B, Q, H) Q-Former outputs
    with torch.no_grad():
        assert (model.bridge.projector(query_outputs) - llama_proj(query_outputs)).abs().max() <= 1e-6


def test_minigpt4_projector_of_the_wrong_width_lists_the_shapes(tmp_path: Path) -> None:
    torch.save(
        {"model": {"llama_proj.weight": torch.ones(LLM_DIM, 768), "llama_proj.bias": torch.ones(LLM_DIM)}},
        tmp_path / "ckpt.pth",
    )
    with pytest.raises(
        ConversionError, match=r"llama_proj\.weight \[32, 768\] -> layers\.0\.weight \[32, 16\]"
    ):
        load_projector(_vlm(depth=1, qformer=QFORMER), tmp_path / "ckpt.pth")


def test_minigpt4_projector_needs_a_qformer_bridge(tmp_path: Path) -> None:
    torch.save({"model": {"llama_proj.weight": torch.ones(LLM_DIM, 16)}}, tmp_path / "ckpt.pth")
    with pytest.raises(ConversionError, match="no Q-Former"):
        load_projector(_vlm(depth=1), tmp_path / "ckpt.pth")


def test_other_files_are_not_taken_for_projectors(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ConversionError, match="not a projector checkpoint"):
        load_projector(_vlm(), tmp_path / "other.pt")


def test_a_projector_file_fills_the_bridge_of_a_zoo_model_built_by_name(tmp_path: Path) -> None:
    """``load_pretrained(mm_projector.bin, model="llava", overrides)``: the recipe's parts, the file's
    projector."""
    from mmzoo.convert import load_pretrained

    torch.manual_seed(0)
    projector = nn.Sequential(
        nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64)
    )  # tiny_clip_vit -> tiny_llama widths
    path = _save_llava(projector, tmp_path / "mm_projector.bin")
    module = load_pretrained(
        path, model="llava", overrides=["encoder=tiny_clip_vit", "llm=tiny_llama", "bridge=mlp2"]
    )
    tokens = torch.randn(1, 4, 64)
    with torch.no_grad():
        assert torch.equal(module.model.bridge(tokens), projector(tokens))
    assert module.frozen_names == ["encoder", "llm"]  # LLaVA's recipe came with it
