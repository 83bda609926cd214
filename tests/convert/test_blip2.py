"""transformers Blip2ForConditionalGeneration / InstructBlipForConditionalGeneration -> the zoo's
BLIP-2 and InstructBLIP, with a decoder-only and an encoder-decoder LLM: same logits (and loss),
same greedy tokens; and the errors a checkpoint that does not fit gets."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Blip2ForConditionalGeneration, InstructBlipForConditionalGeneration

from mmzoo.components.bridges import Bridge
from mmzoo.components.llm import LanguageModel
from mmzoo.convert import ConversionError, load_pretrained
from mmzoo.models.vision_language import VisionLanguageModel
from tests.convert.conftest import NUM_QUERIES, edit_config, image_prompt, save_blip2, save_instructblip

INSTRUCTIONS = ["what is it ?", "the red circle"]


def compare(directory: Path, instructblip: bool = False) -> dict[str, Any]:
    """Reference and zoo on the same two images and left-padded prompts (plus, for an
    encoder-decoder LLM, targets): max abs differences and both greedy continuations."""
    cls = InstructBlipForConditionalGeneration if instructblip else Blip2ForConditionalGeneration
    reference = cls.from_pretrained(directory).eval()
    zoo = load_pretrained(directory).model
    ids, mask = image_prompt(zoo, ["<image> what is it ?", "a photo of <image> the red"])
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 32, 32)
    ref_kw: dict[str, Any] = {}
    zoo_kw: dict[str, Any] = {}
    if instructblip:
        q = zoo.bridge.qformer.tokenizer(INSTRUCTIONS, padding=True, return_tensors="pt")
        ref_kw = {"qformer_input_ids": q["input_ids"], "qformer_attention_mask": q["attention_mask"]}
        zoo_kw = {"instruction_ids": q["input_ids"], "instruction_mask": q["attention_mask"]}
    seq2seq = zoo.llm.is_encoder_decoder
    labels = zoo.llm.tokenizer(["red circle", "a dog"], padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = reference(
            pixel_values=pixels,
            input_ids=ids,
            attention_mask=mask,
            labels=labels if seq2seq else None,
            **ref_kw,
        )
        out = zoo(pixels, ids, mask, labels if seq2seq else None, **zoo_kw)
    greedy = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    ref_new = reference.generate(pixel_values=pixels, input_ids=ids, attention_mask=mask, **ref_kw, **greedy)
    ref_new = (
        ref_new[:, 1:] if seq2seq else ref_new[:, ids.shape[1] :]
    )  # T5: its start token; else the prompt
    logits = out.logits - ref.logits
    return {
        "logits": float((logits if seq2seq else logits[mask.bool()]).abs().max()),
        "loss": float((out.loss - ref.loss).abs()) if seq2seq else 0.0,
        "greedy_equal": torch.equal(ref_new, zoo.generate(pixels, ids, mask, **zoo_kw, **greedy)),
        "zoo": zoo,
    }


def test_blip2_is_built_from_zoo_parts(blip2_dir: Path) -> None:
    zoo = load_pretrained(blip2_dir).model
    assert isinstance(zoo, VisionLanguageModel) and isinstance(zoo.llm, LanguageModel)
    assert (
        isinstance(zoo.bridge, Bridge) and zoo.bridge.qformer is not None and not zoo.bridge.qformer.has_text
    )
    assert (zoo.encoder.layer, zoo.encoder.tokens, zoo.encoder.norm) == (-1, "all", True)
    assert zoo.num_image_tokens == NUM_QUERIES and zoo.bridge.projector.depth == 1


def test_blip2_opt_matches_transformers(blip2_dir: Path) -> None:
    result = compare(blip2_dir)
    assert result["logits"] <= 1e-4 and result["greedy_equal"]


def test_instructblip_llama_matches_transformers(instructblip_dir: Path) -> None:
    result = compare(instructblip_dir, instructblip=True)
    assert result["logits"] <= 1e-4 and result["greedy_equal"]
    assert result["zoo"].instruction_aware and result["zoo"].bridge.qformer.has_text


@pytest.mark.parametrize("instructblip", [False, True], ids=["blip2", "instructblip"])
def test_flan_t5_llm_matches_transformers(make_checkpoint, instructblip: bool) -> None:
    save = save_instructblip if instructblip else save_blip2
    result = compare(make_checkpoint(save, llm="t5"), instructblip=instructblip)
    assert result["logits"] <= 1e-4 and result["loss"] <= 1e-4 and result["greedy_equal"]


def test_the_instruction_reaches_the_visual_tokens(instructblip_dir: Path) -> None:
    """The baseline for InstructBLIP's parity: another instruction gives other visual tokens."""
    zoo = load_pretrained(instructblip_dir).model
    tok = zoo.bridge.qformer.tokenizer
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = (
            zoo.visual_embeds(pixels, tok([text], return_tensors="pt")["input_ids"])  # (1, Q, D)
            for text in INSTRUCTIONS
        )
    assert (a - b).abs().max() > 1e-3


# ---- what does not fit -------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite(directory: Path, change) -> Path:
    state = load_file(directory / "model.safetensors")
    change(state)
    save_file(state, str(directory / "model.safetensors"))
    return directory


def test_missing_tensors_are_listed(blip2_dir: Path, tmp_path: Path) -> None:
    d = _rewrite(_copy(blip2_dir, tmp_path / "b"), lambda s: s.pop("query_tokens"))
    with pytest.raises(
        ConversionError, match=r"(?s)no tensors for 1 zoo weights.*bridge\.qformer\.query_tokens"
    ):
        load_pretrained(d)


def test_unexpected_tensors_are_listed(instructblip_dir: Path, tmp_path: Path) -> None:
    d = _rewrite(
        _copy(instructblip_dir, tmp_path / "b"), lambda s: s.update({"qformer.pooler.weight": torch.ones(2)})
    )
    with pytest.raises(
        ConversionError, match=r"(?s)1 checkpoint tensors have no place.*qformer\.pooler\.weight"
    ):
        load_pretrained(d)


def test_shape_mismatches_are_listed(blip2_dir: Path, tmp_path: Path) -> None:
    d = _copy(blip2_dir, tmp_path / "b")
    edit_config(d, num_query_tokens=8)  # the config says 8 queries, the weights hold 4
    with pytest.raises(
        ConversionError, match=r"query_tokens \[1, 4, 32\] -> bridge\.qformer\.query_tokens \[1, 8, 32\]"
    ):
        load_pretrained(d)


def test_a_qformer_the_zoo_cannot_build_is_refused(blip2_dir: Path, tmp_path: Path) -> None:
    d = _copy(blip2_dir, tmp_path / "b")
    edit_config(d, qformer_config__hidden_act="relu")
    with pytest.raises(
        ConversionError, match=r"qformer_config\.hidden_act='relu'; the zoo's Q-Former has 'gelu'"
    ):
        load_pretrained(d)


def test_an_image_token_the_tokenizer_does_not_have_is_refused(blip2_dir: Path, tmp_path: Path) -> None:
    d = _copy(blip2_dir, tmp_path / "b")
    edit_config(d, image_token_index=7)
    with pytest.raises(
        ConversionError, match=r"image_token_index is 7, but the tokenizer maps '<image>' to 4"
    ):
        load_pretrained(d)


def test_another_blip2_class_is_refused(blip2_dir: Path, tmp_path: Path) -> None:
    d = _copy(blip2_dir, tmp_path / "b")
    edit_config(d, architectures=["Blip2ForImageTextRetrieval"])
    with pytest.raises(ConversionError, match=r"Blip2ForImageTextRetrieval has no zoo importer"):
        load_pretrained(d)


def test_instructblip_without_its_qformer_tokenizer_says_where_it_looked(
    instructblip_dir: Path, tmp_path: Path
) -> None:
    d = _copy(instructblip_dir, tmp_path / "b")
    shutil.rmtree(d / "qformer_tokenizer")
    with pytest.raises(ConversionError, match=r"its own tokenizer, found neither in qformer_tokenizer/"):
        load_pretrained(d)
