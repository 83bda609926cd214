"""transformers BlipForConditionalGeneration / BlipForImageTextRetrieval -> the zoo's BLIP:
same decoder logits and loss, same greedy captions, same ITC scores and ITM logits."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

from mmzoo.components.encoders import TransformersVisionEncoder
from mmzoo.components.text import BlipText
from mmzoo.convert import ConversionError, load_pretrained
from mmzoo.models.blip import BlipModel
from mmzoo.objectives.lm import decoder_targets, lm_loss
from tests.convert.conftest import blip_tokenizer, edit_config

CAPTIONS = ["a photo of the red circle", "the cat"]


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch = blip_tokenizer()(CAPTIONS, padding=True, return_tensors="pt")
    torch.manual_seed(0)
    return torch.randn(2, 3, 32, 32), batch["input_ids"], batch["attention_mask"]


def _first(ids: torch.Tensor, token: str) -> torch.Tensor:
    """``ids`` with the task token first: what BLIP's code (and the zoo) feeds its grounded modes;
    transformers' classes take the ids as given."""
    out = ids.clone()
    out[:, 0] = blip_tokenizer().convert_tokens_to_ids(token)
    return out


def test_blip_is_built_from_zoo_parts(blip_dirs: dict[str, Path]) -> None:
    zoo = load_pretrained(blip_dirs["retrieval"]).model
    assert isinstance(zoo, BlipModel) and isinstance(zoo.text, BlipText)
    assert isinstance(zoo.encoder, TransformersVisionEncoder)
    assert (zoo.encoder.layer, zoo.encoder.tokens, zoo.encoder.norm, zoo.embed_dim) == (-1, "all", True, 16)


def test_captioning_logits_loss_and_greedy_tokens_match_transformers(blip_dirs: dict[str, Path]) -> None:
    reference = BlipForConditionalGeneration.from_pretrained(blip_dirs["captioning"]).eval()
    zoo = load_pretrained(blip_dirs["captioning"]).model
    pixels, ids, mask = _batch()
    decoder_ids = _first(ids, "[DEC]")
    with torch.no_grad():
        ref = reference(
            pixel_values=pixels,
            input_ids=decoder_ids,
            attention_mask=mask,
            labels=decoder_ids.masked_fill(mask == 0, -100),
        )
        logits = zoo.text.decode(ids, mask, zoo.encoder(pixels))  # the zoo swaps [DEC] in itself
        loss = lm_loss(logits, decoder_targets(ids, mask, zoo.text.dec_token_id)[1], zoo.label_smoothing)
    assert (logits - ref.logits)[mask.bool()].abs().max() <= 1e-4
    assert abs(loss - ref.loss) <= 1e-4

    prompt = blip_tokenizer()(["a photo of"], return_tensors="pt")["input_ids"]  # [CLS] a photo of [SEP]
    greedy = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    ref_new = reference.generate(pixels[:1], input_ids=prompt.clone(), **greedy)[:, prompt.shape[1] - 1 :]
    zoo_new = zoo.generate(pixels[:1], prompt[:, :-1], **greedy)  # the prompt without its end
    assert torch.equal(ref_new, zoo_new)


def test_retrieval_scores_match_transformers(blip_dirs: dict[str, Path]) -> None:
    reference = BlipForImageTextRetrieval.from_pretrained(blip_dirs["retrieval"]).eval()
    zoo = load_pretrained(blip_dirs["retrieval"]).model
    pixels, ids, mask = _batch()
    with torch.no_grad():
        itc = reference(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False).itm_score
        itm = reference(input_ids=_first(ids, "[ENC]"), pixel_values=pixels, attention_mask=mask).itm_score
        zoo_itc = zoo.encode_image(pixels) @ zoo.encode_text(ids, mask).T  # (B, B) cosine similarities
        zoo_itm = zoo.itm_logits(zoo.encoder(pixels), ids, mask)  # (B, 2)
        with_cls = reference(input_ids=ids, pixel_values=pixels, attention_mask=mask).itm_score
    assert (zoo_itc - itc).abs().max() <= 1e-4
    assert (zoo_itm - itm).abs().max() <= 1e-4
    # the baseline: BLIP's [ENC] at position 0 is what the ITM head reads, and it matters
    assert (zoo_itm - with_cls).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("kind", "kept", "filled"),
    [
        ("captioning", "text.encoder.encoder.layer.0.attention.self.query.weight", "itm_head.weight"),
        ("retrieval", "text.decoder.bert.encoder.layer.0.attention.self.query.weight", "logit_scale"),
    ],
)
def test_what_a_class_does_not_hold_is_named_and_the_rest_is_filled(
    blip_dirs: dict[str, Path], kind: str, kept: str, filled: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each transformers class holds half of BLIP: the other half keeps its init and is named."""
    with caplog.at_level(logging.WARNING):
        load_pretrained(blip_dirs[kind])
    assert kept in caplog.text and filled in caplog.text
    assert "text.encoder.embeddings.word_embeddings" not in caplog.text  # shared, and filled


def test_a_tokenizer_whose_dec_is_not_the_checkpoints_bos_is_refused(
    blip_dirs: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(blip_dirs["captioning"], tmp_path / "b")
    edit_config(tmp_path / "b", text_config__bos_token_id=2)
    with pytest.raises(ConversionError, match=r"decodes from id 2 .* the tokenizer's \[DEC\]/BOS is 5"):
        load_pretrained(tmp_path / "b")


def test_an_unsupported_blip_class_names_the_supported_ones(
    blip_dirs: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(blip_dirs["captioning"], tmp_path / "b")
    edit_config(tmp_path / "b", architectures=["BlipForQuestionAnswering"])
    with pytest.raises(ConversionError, match=r"BlipForQuestionAnswering has no zoo importer.*model=blip"):
        load_pretrained(tmp_path / "b")
