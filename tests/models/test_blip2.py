"""BLIP-2 stage 1, the hand-over to stage 2 / InstructBLIP by weights, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmzoo import rundir
from mmzoo.components.llm import LanguageModel
from mmzoo.data.tokenizer import IMAGE_TOKEN, shapes_tokenizer
from mmzoo.models.blip2 import Blip2Stage1
from mmzoo.models.vision_language import VisionLanguageModel
from mmzoo.objectives import itc_loss
from tests.models.blip_fixtures import (
    QFORMER,
    assert_each_loss_fell,
    caption_batch,
    tiny_encoder,
    tiny_qformer_bridge,
    train_steps,
)

Q = QFORMER["num_queries"]


@pytest.fixture(scope="module")
def stage1() -> Blip2Stage1:
    torch.manual_seed(0)
    return Blip2Stage1(tiny_encoder(), tiny_qformer_bridge(), embed_dim=16)


def test_forward_computes_the_three_stage1_losses(stage1: Blip2Stage1) -> None:
    pixels, ids, mask = caption_batch()
    out = stage1(pixels, ids, mask, generator=torch.Generator().manual_seed(0))
    assert out.image_embeds.shape == (4, Q, 16) and out.text_embeds.shape == (4, 16)
    expected_itc = itc_loss(out.image_embeds, out.text_embeds, out.logit_scale, label_smoothing=0.1)
    torch.testing.assert_close(out.loss_itc, expected_itc)  # best query per pair, BLIP-2's smoothing
    assert out.itm_logits.shape == (12, 2)
    torch.testing.assert_close(out.loss, out.loss_itc + out.loss_itm + out.loss_itg)


def test_itg_ignores_padding_and_is_causal(stage1: Blip2Stage1) -> None:
    pixels, ids, mask = caption_batch()
    with torch.no_grad():
        tokens = stage1.encoder(pixels)
        logits = stage1.itg_logits(tokens, ids, mask)
        changed = ids.clone()
        changed[:, 2] = 7
        after = stage1.itg_logits(tokens, changed, mask)
        other_pads = stage1(pixels, ids.masked_fill(mask == 0, 9), mask, generator=torch.Generator().manual_seed(0))
        same_pads = stage1(pixels, ids, mask, generator=torch.Generator().manual_seed(0))
    assert logits.shape == (4, ids.shape[1], len(stage1.tokenizer))
    torch.testing.assert_close(after[:, :2], logits[:, :2])
    assert not torch.allclose(after[:, 2:], logits[:, 2:])
    torch.testing.assert_close(other_pads.loss_itg, same_pads.loss_itg)


def test_itm_scores_average_the_classifier_over_queries(stage1: Blip2Stage1) -> None:
    pixels, ids, mask = caption_batch()
    with torch.no_grad():
        tokens = stage1.encoder(pixels)
        out = stage1.qformer.encode_pair(tokens, ids, mask, "bidirectional")[:, :Q]
        expected = stage1.itm_head(out).mean(dim=1)[:, 1]
        torch.testing.assert_close(stage1.itm_scores(tokens, ids, mask), expected)


def test_bad_bridges_are_named_errors() -> None:
    with pytest.raises(ValueError, match="bridge=qformer"):
        Blip2Stage1(tiny_encoder(), lambda **kw: __import__("mmzoo.components.bridges", fromlist=["Bridge"]).Bridge(**kw))
    with pytest.raises(ValueError, match="without a text side.*bridge.qformer.tokenizer"):
        Blip2Stage1(tiny_encoder(), tiny_qformer_bridge(text_side=False))
    with pytest.raises(ValueError, match="bridge.frozen=false"):
        Blip2Stage1(tiny_encoder(), tiny_qformer_bridge(frozen=True))


def _vlm(text_side: bool) -> VisionLanguageModel:
    tokenizer = shapes_tokenizer(add_eos=False)
    llm = LanguageModel(
        config=dict(model_type="opt", hidden_size=32, word_embed_proj_dim=32, ffn_dim=64, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=64),
        tokenizer=tokenizer,
    )
    return VisionLanguageModel(
        tiny_encoder(), tiny_qformer_bridge(text_side=text_side), llm, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    )


@pytest.mark.parametrize("text_side", [False, True], ids=["blip2_stage2", "instructblip"])
def test_stage1_hands_its_qformer_over_bit_identically(stage1: Blip2Stage1, tmp_path: Path, text_side: bool) -> None:
    rundir.save_weights(stage1, tmp_path)  # what a stage-1 run writes
    state = rundir.read_weights(tmp_path, "bridge.qformer.")
    assert state, "the stage-1 Q-Former must be saved under bridge.qformer"
    vlm = _vlm(text_side)
    rundir.load_weights(vlm.bridge.qformer, state, "bridge.qformer from stage 1")  # strict
    source = stage1.bridge.qformer.state_dict()
    for name, tensor in vlm.bridge.qformer.state_dict().items():
        assert torch.equal(tensor, source[name]), name
    tokens = torch.randn(2, 17, 32, generator=torch.Generator().manual_seed(0))
    stage1.eval(), vlm.eval()
    with torch.no_grad():
        assert torch.equal(vlm.bridge.qformer(tokens), stage1.bridge.qformer(tokens))


def test_instructblip_queries_follow_the_instruction_blip2s_take_none() -> None:
    torch.manual_seed(0)
    vlm = _vlm(text_side=True).eval()
    qtok = vlm.bridge.qformer.tokenizer
    a = qtok(["what colour is the circle?"], return_tensors="pt")
    b = qtok(["how many squares are there?"], return_tensors="pt")
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = vlm.visual_embeds(pixels)
        with_a = vlm.visual_embeds(pixels, a["input_ids"], a["attention_mask"])
        with_b = vlm.visual_embeds(pixels, b["input_ids"], b["attention_mask"])
    assert with_a.shape == plain.shape == (1, Q, 32)
    assert not torch.allclose(with_a, with_b) and not torch.allclose(with_a, plain)
    # the instruction reaches the LLM's loss through forward
    llm_tok = vlm.llm.tokenizer
    prompt = torch.tensor([[llm_tok.bos_token_id] + [vlm.image_token_id] * Q + llm_tok("red")["input_ids"][1:]])
    mask = torch.ones_like(prompt)
    with torch.no_grad():
        la = vlm(pixels, prompt, mask, prompt, a["input_ids"], a["attention_mask"]).loss
        lb = vlm(pixels, prompt, mask, prompt, b["input_ids"], b["attention_mask"]).loss
    assert not torch.isclose(la, lb)
    blip2 = _vlm(text_side=False)
    with pytest.raises(ValueError, match="without a text side"):
        blip2.visual_embeds(pixels, a["input_ids"], a["attention_mask"])


@pytest.mark.slow
def test_a_few_steps_reduce_each_stage1_loss() -> None:
    torch.manual_seed(0)
    model = Blip2Stage1(tiny_encoder(), tiny_qformer_bridge(), embed_dim=16)
    model.encoder.requires_grad_(False)  # BLIP-2 keeps the image encoder frozen
    assert_each_loss_fell(train_steps(model, caption_batch(), steps=40), ("loss_itc", "loss_itm", "loss_itg"))
