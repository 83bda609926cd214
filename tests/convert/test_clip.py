"""transformers CLIPModel -> the zoo's CLIP: same features and logits, and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, CLIPModel

from mmzoo.components.encoders import TransformersVisionEncoder
from mmzoo.components.text import TransformersTextEncoder
from mmzoo.convert import ConversionError, load_pretrained
from mmzoo.models.dual_encoder import DualEncoder
from tests.convert.conftest import edit_config, prompts, save_clip, tokenizer

TEXTS = ["a photo of a cat", "the red circle", "dog", "a blue square and a green triangle"]


def _outputs(clip_dir: Path) -> tuple:
    reference = CLIPModel.from_pretrained(clip_dir).eval()
    zoo = load_pretrained(clip_dir).model
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    batch = prompts(tokenizer(), TEXTS)
    with torch.no_grad():
        ref = reference(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixels
        )
        out = zoo(pixels, batch["input_ids"], batch["attention_mask"])
    return ref, out, zoo


def test_clip_is_built_from_zoo_parts(clip_dir: Path) -> None:
    zoo = load_pretrained(clip_dir).model
    assert isinstance(zoo, DualEncoder)
    assert isinstance(zoo.encoder, TransformersVisionEncoder) and isinstance(
        zoo.text, TransformersTextEncoder
    )
    assert zoo.bridge.projector.layers[0].bias is None  # CLIP's visual projection has no bias


def test_clip_features_and_logits_match_transformers(clip_dir: Path) -> None:
    ref, out, _ = _outputs(clip_dir)
    assert (out.image_embeds - ref.image_embeds).abs().max() <= 1e-4
    assert (out.text_embeds - ref.text_embeds).abs().max() <= 1e-4
    logits = out.logit_scale * out.image_embeds @ out.text_embeds.T  # (B_img, B_txt)
    assert (logits - ref.logits_per_image).abs().max() <= 1e-4
    assert float(out.logit_scale) == pytest.approx(
        float(torch.tensor(2.0).exp())
    )  # the checkpoint's, not the init


def test_a_different_checkpoint_gives_different_features(clip_dir: Path, make_checkpoint) -> None:
    """The baseline: parity is not a property of any two random CLIPs."""
    ref, _, _ = _outputs(clip_dir)
    _, other, _ = _outputs(make_checkpoint(save_clip, seed=1))
    assert (other.image_embeds - ref.image_embeds).abs().max() > 1e-2


def test_unsupported_architecture_names_it(tmp_path: Path) -> None:
    BertModel(
        BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(
        ConversionError, match=r"'bert'.*supported: \['blip', 'blip-2', 'clip', 'instructblip', 'llava'\]"
    ):
        load_pretrained(tmp_path)


def _rewrite_weights(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    change(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


def test_unexpected_tensor_is_listed(clip_dir: Path, tmp_path: Path) -> None:
    path = _rewrite_weights(
        clip_dir, tmp_path / "c", lambda s: s.update({"vision_model.extra_head.weight": torch.ones(2)})
    )
    with pytest.raises(
        ConversionError, match=r"(?s)no place in the zoo model.*vision_model\.extra_head\.weight"
    ):
        load_pretrained(path)


def test_missing_tensor_is_listed(clip_dir: Path, tmp_path: Path) -> None:
    path = _rewrite_weights(clip_dir, tmp_path / "c", lambda s: s.pop("text_projection.weight"))
    with pytest.raises(ConversionError, match=r"(?s)no tensors for 1 zoo weights.*text_projection\.weight"):
        load_pretrained(path)


def test_shape_mismatch_is_listed(clip_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(clip_dir, tmp_path / "c")
    edit_config(tmp_path / "c", projection_dim=8)  # the weights are 16 wide
    with pytest.raises(
        ConversionError,
        match=r"(?s)shapes do not match.*visual_projection\.weight \[16, 24\] -> "
        r"bridge\.projector\.layers\.0\.weight \[8, 24\]",
    ):
        load_pretrained(tmp_path / "c")


def test_legacy_argmax_pooling_with_a_tokenizer_it_would_mispool_is_refused(
    clip_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(clip_dir, tmp_path / "c")
    edit_config(tmp_path / "c", text_config__eos_token_id=2)  # transformers would pool at argmax(ids)
    with pytest.raises(ConversionError, match="argmax"):
        load_pretrained(tmp_path / "c")


def test_asking_for_another_model_is_an_error(clip_dir: Path) -> None:
    with pytest.raises(ConversionError, match="is a 'clip' checkpoint, not 'llava'"):
        load_pretrained(clip_dir, model="llava")
