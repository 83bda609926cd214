"""BLIP's composition: three losses that learn, ITM scores, captioning, bad input."""

from __future__ import annotations

import pytest
import torch

from mmzoo.models.blip import BlipModel
from mmzoo.objectives import itc_loss
from tests.models.blip_fixtures import (
    assert_each_loss_fell,
    caption_batch,
    tiny_blip_text,
    tiny_encoder,
    train_steps,
)


@pytest.fixture(scope="module")
def model() -> BlipModel:
    torch.manual_seed(0)
    return BlipModel(tiny_encoder(), tiny_blip_text(), embed_dim=16)


def test_forward_returns_blips_three_losses(model: BlipModel) -> None:
    pixels, ids, mask = caption_batch()
    out = model(pixels, ids, mask, generator=torch.Generator().manual_seed(0))
    assert out.image_embeds.shape == out.text_embeds.shape == (4, 16)
    assert out.itm_logits.shape == (12, 2) and out.itm_labels.tolist() == [1] * 4 + [0] * 8
    torch.testing.assert_close(out.loss_itc, itc_loss(out.image_embeds, out.text_embeds, out.logit_scale))
    torch.testing.assert_close(out.loss, out.loss_itc + out.loss_itm + out.loss_lm)
    assert model.text.image_dim == model.encoder.dim  # injected, never configured twice


def test_itm_scores_are_row_aligned_match_logits(model: BlipModel) -> None:
    pixels, ids, mask = caption_batch()
    with torch.no_grad():
        tokens = model.encoder(pixels)
        scores = model.itm_scores(tokens, ids, mask)
        logits = model.itm_logits(tokens, ids, mask)
        swapped = model.itm_scores(tokens.flip(0), ids, mask)
    assert scores.shape == (4,)
    torch.testing.assert_close(scores, logits[:, 1])
    assert not torch.allclose(scores, swapped)


def test_captioning_is_greedy_decoding_from_the_image(model: BlipModel) -> None:
    pixels, ids, _ = caption_batch()
    new = model.generate(pixels, ids[:, :1], max_new_tokens=3)
    assert new.shape[0] == 4 and new.shape[1] <= 3
    with torch.no_grad():
        first = model.text.decode(ids[:, :1], torch.ones_like(ids[:, :1]), model.encoder(pixels))[:, -1].argmax(-1)
    assert torch.equal(new[:, 0], first)


def test_itm_with_a_batch_of_one_names_the_fix(model: BlipModel) -> None:
    pixels, ids, mask = caption_batch(n=1)
    with pytest.raises(ValueError, match="batch of one.*larger batch"):
        model(pixels, ids, mask)
    pixels, ids, mask = caption_batch(n=2)
    with pytest.raises(ValueError, match="share the group"):
        model(pixels, ids, mask, groups=torch.tensor([3, 3]))


@pytest.mark.slow
def test_a_few_steps_reduce_each_loss() -> None:
    torch.manual_seed(0)
    model = BlipModel(tiny_encoder(), tiny_blip_text(), embed_dim=16)
    assert_each_loss_fell(train_steps(model, caption_batch(), steps=30), ("loss_itc", "loss_itm", "loss_lm"))
