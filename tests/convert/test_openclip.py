"""open_clip CLIP -> the zoo's CLIP: same image/text features and logit scale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip
import pytest
import torch

from mmzoo.components.encoders import OpenClipVisionEncoder
from mmzoo.components.text import OpenClipTextEncoder
from mmzoo.convert import ConversionError, load_pretrained
from tests.convert.conftest import tokenizer

CONTEXT = 12


def _register(tmp: Path, name: str, quick_gelu: bool = True, **text: Any) -> str:
    """A tiny open_clip config, registered under ``name`` as open_clip's own presets are."""
    tok = tokenizer()
    cfg = {
        "embed_dim": 16,
        "quick_gelu": quick_gelu,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
        "text_cfg": {
            "context_length": CONTEXT,
            "vocab_size": len(tok),
            "width": 32,
            "heads": 2,
            "layers": 2,
            "pool_type": "eos",
            "eos_id": tok.eos_token_id,
            **text,
        },
    }
    (tmp / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp / f"{name}.json")
    return name


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path, torch.nn.Module]:
    tmp = tmp_path_factory.mktemp("open_clip")
    name = _register(tmp, "mmzoo-test-tiny")
    torch.manual_seed(0)
    reference = open_clip.create_model(name).eval()
    with torch.no_grad():
        reference.logit_scale.fill_(3.0)
    torch.save(
        reference.state_dict(), tmp / "weights.pt"
    )  # as open_clip's training script saves a state dict
    tokenizer().save_pretrained(tmp / "tokenizer")
    return name, tmp / "weights.pt", tmp / "tokenizer", reference


def test_open_clip_features_and_scale_match(tiny_open_clip) -> None:
    name, weights, tok_dir, reference = tiny_open_clip
    zoo = load_pretrained(f"open_clip:{name}", pretrained=str(weights), tokenizer=str(tok_dir)).model
    assert isinstance(zoo.encoder, OpenClipVisionEncoder) and isinstance(zoo.text, OpenClipTextEncoder)
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    # open_clip's encode_text adds the whole position table: ids padded to the context length
    batch = tokenizer()(
        ["a photo of a cat", "the red circle", "dog"],
        padding="max_length",
        max_length=CONTEXT,
        return_tensors="pt",
    )
    with torch.no_grad():
        ref_image = reference.encode_image(pixels, normalize=True)
        ref_text = reference.encode_text(batch["input_ids"], normalize=True)
        out = zoo(pixels, batch["input_ids"], batch["attention_mask"])
    assert (out.image_embeds - ref_image).abs().max() <= 1e-4
    assert (out.text_embeds - ref_text).abs().max() <= 1e-4
    assert float(out.logit_scale) == pytest.approx(float(reference.logit_scale.exp()))


def test_quick_gelu_is_carried_over(tiny_open_clip, tmp_path: Path) -> None:
    """The baseline: the same weights under nn.GELU give other features, so parity above needs QuickGELU."""
    name, weights, tok_dir, reference = tiny_open_clip
    zoo = load_pretrained(f"open_clip:{name}", pretrained=str(weights), tokenizer=str(tok_dir)).model
    assert type(zoo.encoder.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert type(zoo.text.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    plain = open_clip.create_model(_register(tmp_path, "mmzoo-test-gelu", quick_gelu=False)).eval()
    plain.load_state_dict(torch.load(weights, weights_only=True))
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (plain.encode_image(pixels) - reference.encode_image(pixels)).abs().max() > 1e-3


def test_argmax_pooling_with_a_tokenizer_whose_eos_is_not_the_largest_id_is_refused(tmp_path: Path) -> None:
    name = _register(tmp_path, "mmzoo-test-argmax", pool_type="argmax")
    torch.save(open_clip.create_model(name).state_dict(), tmp_path / "w.pt")
    tokenizer().save_pretrained(tmp_path / "tok")
    with pytest.raises(ConversionError, match="argmax"):
        load_pretrained(
            f"open_clip:{name}", pretrained=str(tmp_path / "w.pt"), tokenizer=str(tmp_path / "tok")
        )


def test_unknown_model_and_missing_weights_are_errors(tiny_open_clip) -> None:
    with pytest.raises(ConversionError, match="unknown open_clip model"):
        load_pretrained("open_clip:no-such-model", pretrained="x.pt")
    with pytest.raises(ConversionError, match="neither a file nor a known tag"):
        load_pretrained(f"open_clip:{tiny_open_clip[0]}", pretrained="no-such-tag")
