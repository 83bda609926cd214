"""Vision encoders: shape contracts, layer/token selection, and loading saved weights back."""

from __future__ import annotations

import json

import open_clip
import pytest
import timm
import torch
from transformers import Blip2Config, Blip2ForConditionalGeneration, CLIPConfig, CLIPModel

from mmzoo.components.encoders import (
    OpenClipVisionEncoder,
    TimmVisionEncoder,
    TransformersVisionEncoder,
    VisionEncoder,
)

TINY_VIT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
TINY_TIMM = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
TINY_OPEN_CLIP = dict(image_size=32, patch_size=8, width=64, layers=2, head_width=32)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _check(encoder: VisionEncoder, images: torch.Tensor) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        tokens = encoder(images)
    assert tokens.shape == (2, encoder.num_tokens, encoder.dim)
    assert len(encoder.mean) == len(encoder.std) == 3
    assert encoder.image_size == 32
    return tokens


@pytest.mark.parametrize(
    ("model_type", "prefix"),
    [("clip_vision_model", 1), ("siglip_vision_model", 0), ("blip_vision_model", 1), ("blip_2_vision_model", 1)],
)
def test_transformers_families(images: torch.Tensor, model_type: str, prefix: int) -> None:
    encoder = TransformersVisionEncoder(config={"model_type": model_type, **TINY_VIT})
    assert encoder.num_prefix_tokens == prefix
    assert _check(encoder, images).shape[1] == 16 + prefix
    assert encoder.mean == ((0.5,) * 3 if model_type.startswith("siglip") else encoder.mean)


@pytest.mark.parametrize(("tokens", "count"), [("all", 17), ("patch", 16), ("cls", 1)])
def test_transformers_layer_and_tokens_match_hidden_states(images: torch.Tensor, tokens: str, count: int) -> None:
    encoder = TransformersVisionEncoder(config={"model_type": "clip_vision_model", **TINY_VIT}, layer=-2, tokens=tokens)
    out = _check(encoder, images)
    with torch.no_grad():
        hidden = encoder.model(pixel_values=images, output_hidden_states=True).hidden_states[-2]
    expected = {"all": hidden, "patch": hidden[:, 1:], "cls": hidden[:, :1]}[tokens]
    assert out.shape[1] == count
    torch.testing.assert_close(out, expected)


def test_transformers_norm_matches_last_hidden_state_of_blip2(images: torch.Tensor) -> None:
    """BLIP-2's Q-Former reads the post-layernorm output: norm=True must give exactly that."""
    encoder = TransformersVisionEncoder(config={"model_type": "blip_2_vision_model", **TINY_VIT}, norm=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), encoder.model(pixel_values=images).last_hidden_state)


def test_siglip_has_no_cls(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="no CLS"):
        TransformersVisionEncoder(config={"model_type": "siglip_vision_model", **TINY_VIT}, tokens="cls")(images)


def test_bad_layer_and_arguments() -> None:
    with pytest.raises(ValueError, match="layer"):
        TransformersVisionEncoder(config={"model_type": "clip_vision_model", **TINY_VIT}, layer=-5)
    with pytest.raises(ValueError, match="exactly one"):
        TransformersVisionEncoder()


def test_transformers_loads_tower_of_saved_clip(tmp_path, images: torch.Tensor) -> None:
    """A local dir holding a whole CLIP model loads its vision tower, weights intact."""
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=50)
    clip = CLIPModel(CLIPConfig(vision_config=TINY_VIT, text_config=text)).eval()
    clip.save_pretrained(tmp_path)
    encoder = TransformersVisionEncoder(str(tmp_path), layer=-1).eval()
    with torch.no_grad():
        expected = clip.vision_model(pixel_values=images).last_hidden_state
        torch.testing.assert_close(encoder(images), expected)


def test_transformers_loads_tower_of_saved_blip2(tmp_path, images: torch.Tensor) -> None:
    """transformers 5 would leave Blip2VisionModel random here (key prefix); we must not."""
    config = Blip2Config(
        vision_config=TINY_VIT,
        qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        text_config=dict(model_type="opt", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         ffn_dim=64, vocab_size=60, word_embed_proj_dim=32),
        num_query_tokens=4,
    )
    blip2 = Blip2ForConditionalGeneration(config).eval()
    blip2.save_pretrained(tmp_path)
    encoder = TransformersVisionEncoder(str(tmp_path), norm=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), blip2.vision_model(pixel_values=images).last_hidden_state)


@pytest.mark.parametrize(("tokens", "count"), [("all", 17), ("patch", 16), ("cls", 1)])
def test_timm_tokens(images: torch.Tensor, tokens: str, count: int) -> None:
    encoder = TimmVisionEncoder("vit_tiny_patch16_224", tokens=tokens, **TINY_TIMM)
    assert _check(encoder, images).shape[1] == count


def test_timm_layer_matches_blocks(images: torch.Tensor) -> None:
    encoder = TimmVisionEncoder("vit_tiny_patch16_224", layer=-2, **TINY_TIMM).eval()
    model = encoder.model
    with torch.no_grad():
        x = model._pos_embed(model.patch_embed(images))
        x = model.norm_pre(model.patch_drop(x))
        expected = model.blocks[0](x)  # output of the first of two blocks
        torch.testing.assert_close(encoder(images), expected)


def test_timm_checkpoint_path_round_trip(tmp_path, images: torch.Tensor) -> None:
    source = timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_TIMM)
    torch.save(source.state_dict(), tmp_path / "vit.pth")  # with a classifier head: dropped on load
    a = TimmVisionEncoder("vit_tiny_patch16_224", checkpoint_path=str(tmp_path / "vit.pth"), **TINY_TIMM).eval()
    b = TimmVisionEncoder("vit_tiny_patch16_224", checkpoint_path=str(tmp_path / "vit.pth"), **TINY_TIMM).eval()
    with torch.no_grad():
        torch.testing.assert_close(a(images), b(images))
    torch.testing.assert_close(a.model.patch_embed.proj.weight, source.patch_embed.proj.weight)


@pytest.mark.parametrize(("tokens", "count"), [("all", 17), ("patch", 16), ("cls", 1)])
def test_open_clip_tokens(images: torch.Tensor, tokens: str, count: int) -> None:
    encoder = OpenClipVisionEncoder(vision_cfg=TINY_OPEN_CLIP, embed_dim=32, tokens=tokens)
    assert _check(encoder, images).shape[1] == count


def test_open_clip_last_layer_normed_matches_open_clip_tokens(images: torch.Tensor) -> None:
    encoder = OpenClipVisionEncoder(vision_cfg=TINY_OPEN_CLIP, embed_dim=32, norm=True).eval()
    visual = encoder.visual
    with torch.no_grad():
        x = visual.transformer(visual._embeds(images))
        torch.testing.assert_close(encoder(images), visual.ln_post(x))


def test_open_clip_local_pretrained_file(tmp_path, images: torch.Tensor) -> None:
    """The user path: ``create_model(name, pretrained=<local file>)`` for a registered config."""
    (tmp_path / "configs").mkdir()
    text_cfg = dict(context_length=16, vocab_size=50, width=32, heads=2, layers=1)
    config = {"embed_dim": 32, "vision_cfg": TINY_OPEN_CLIP, "text_cfg": text_cfg}
    (tmp_path / "configs" / "mmzoo-test-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "configs")
    source = open_clip.create_model("mmzoo-test-tiny")
    torch.save({"state_dict": source.state_dict()}, tmp_path / "tiny.pt")
    encoder = OpenClipVisionEncoder("mmzoo-test-tiny", pretrained=str(tmp_path / "tiny.pt"), norm=True).eval()
    source.eval()
    with torch.no_grad():
        pooled = encoder(images)[:, 0] @ source.visual.proj  # CLS after ln_post, projected
        torch.testing.assert_close(pooled, source.encode_image(images))
