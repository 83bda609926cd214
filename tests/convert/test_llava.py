"""transformers LlavaForConditionalGeneration -> the zoo's LLaVA: same logits, same greedy tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from mmzoo.components.bridges import Bridge
from mmzoo.components.encoders import TransformersVisionEncoder
from mmzoo.components.llm import LanguageModel
from mmzoo.convert import ConversionError, load_pretrained
from mmzoo.models.vision_language import VisionLanguageModel
from tests.convert.conftest import edit_config, image_prompt, save_llava, tokenizer


def _compare(directory: Path) -> tuple[float, torch.Tensor, torch.Tensor]:
    reference = LlavaForConditionalGeneration.from_pretrained(directory).eval()
    zoo = load_pretrained(directory).model
    ids, mask = image_prompt(zoo, ["<image> what is it ?", "a photo of <image> the red circle"])
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref_logits = reference(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        zoo_logits = zoo(pixels, ids, mask).logits
    greedy = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6)
    ref_new = reference.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, **greedy)[
        :, ids.shape[1] :
    ]
    zoo_new = zoo.generate(pixels, ids, mask, **greedy)
    diff = (zoo_logits - ref_logits)[mask.bool()].abs().max()  # every real position, image positions included
    return float(diff), ref_new, zoo_new


def test_llava_is_built_from_zoo_parts(llava_dir: Path) -> None:
    zoo = load_pretrained(llava_dir).model
    assert isinstance(zoo, VisionLanguageModel) and isinstance(zoo.llm, LanguageModel)
    assert isinstance(zoo.encoder, TransformersVisionEncoder) and isinstance(zoo.bridge, Bridge)
    assert (zoo.encoder.layer, zoo.encoder.tokens, zoo.bridge.projector.depth) == (-2, "patch", 2)
    assert zoo.num_image_tokens == 16  # (32 / 8)^2 patches, CLS dropped
    assert zoo.image_token_id == tokenizer().convert_tokens_to_ids("<image>")


def test_llava_logits_and_greedy_tokens_match_transformers(llava_dir: Path) -> None:
    diff, ref_new, zoo_new = _compare(llava_dir)
    assert diff <= 1e-4
    assert torch.equal(ref_new, zoo_new)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"vision_feature_select_strategy": "full", "vision_feature_layer": -1},  # CLS kept, last layer
        {"projector_hidden_act": "relu", "multimodal_projector_bias": False},
    ],
)
def test_llava_variants_match_transformers(make_checkpoint, options: dict) -> None:
    diff, ref_new, zoo_new = _compare(make_checkpoint(save_llava, **options))
    assert diff <= 1e-4
    assert torch.equal(ref_new, zoo_new)


def test_a_different_feature_layer_changes_the_logits(llava_dir: Path, tmp_path: Path) -> None:
    """The baseline for the layer carried over: reading another layer is visible in the logits."""
    shutil.copytree(llava_dir, tmp_path / "l")
    edit_config(tmp_path / "l", vision_feature_layer=-1)
    reference = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    zoo = load_pretrained(tmp_path / "l").model
    ids, mask = image_prompt(zoo, ["<image> what is it ?"])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        diff = (
            zoo(pixels, ids, mask).logits
            - reference(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        )
    assert diff.abs().max() > 1e-3


def test_embedding_table_padded_past_the_tokenizer_loads(make_checkpoint) -> None:
    """LLaVA-1.5 keeps 32064 embedding rows for 32002 tokens: the zoo's LLM must keep them all."""
    zoo = load_pretrained(make_checkpoint(save_llava, vocab_padding=5)).model
    assert zoo.llm.model.get_input_embeddings().num_embeddings == len(zoo.llm.tokenizer) + 5


def test_image_token_that_is_not_the_tokenizers_is_refused(llava_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(llava_dir, tmp_path / "l")
    edit_config(tmp_path / "l", image_token_index=7)
    with pytest.raises(ConversionError, match=r"image_token_id is 7, but the tokenizer maps '<image>' to 4"):
        load_pretrained(tmp_path / "l")


def test_multi_layer_features_are_refused(llava_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(llava_dir, tmp_path / "l")
    edit_config(tmp_path / "l", vision_feature_layer=[-2, -1])
    with pytest.raises(ConversionError, match=r"vision_feature_layer=\[-2, -1\]"):
        load_pretrained(tmp_path / "l")


def test_dtype_holds_for_every_part(llava_dir: Path) -> None:
    zoo = load_pretrained(llava_dir, dtype="bfloat16").model
    assert {p.dtype for p in zoo.parameters()} == {torch.bfloat16}
    reference = load_pretrained(llava_dir).model
    assert torch.equal(
        zoo.bridge.projector.layers[0].weight, reference.bridge.projector.layers[0].weight.bfloat16()
    )
