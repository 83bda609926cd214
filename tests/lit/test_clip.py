"""CLIP learns on the embedded data: the loss falls and recall beats the untrained model."""

from __future__ import annotations

import pytest
import torch

from mmzoo.api import build
from tests.conftest import run_zoo


@pytest.mark.slow
def test_clip_learns_on_shapes(clip_run, tmp_path):
    from mmzoo.rundir import read_metrics

    trained = read_metrics(clip_run)
    untrained = run_zoo(tmp_path / "untrained", ["model=clip", "stage=test"])
    assert trained["train"]["loss_last"] < 0.7 * trained["train"]["loss_first"]
    for key in ("retrieval/t2i_r1", "retrieval/i2t_r1"):
        assert trained["metrics"][key] > untrained["metrics"][key] + 0.1
        assert trained["metrics"][key] > 5 * trained["metrics"]["retrieval/chance_r1"]
    assert trained["metrics"]["zeroshot/colour_acc"] > untrained["metrics"]["zeroshot/colour_acc"]


def test_clip_module_shapes_and_frozen_tower():
    module = build("clip", ["model.freeze=[encoder]"])
    assert all(not p.requires_grad for p in module.model.encoder.parameters())
    assert any(p.requires_grad for p in module.model.text.parameters())
    module.train()
    assert not module.model.encoder.training  # frozen parts stay in eval mode
    collate = module.collator()
    samples = [{"image": torch.randn(3, 32, 32), "caption": c, "meta": {}} for c in ["a red circle.", "a blue square on the left."]]
    batch = collate(samples)
    out = module.model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    assert out.image_embeds.shape == out.text_embeds.shape == (2, 64)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_unknown_frozen_part_is_a_clear_error():
    with pytest.raises(Exception, match="cannot freeze 'vision'"):
        build("clip", ["model.freeze=[vision]"])


def test_clip_with_every_tiny_encoder_and_a_qformer_bridge_builds():
    for encoder in ("tiny_timm_vit", "tiny_open_clip_vit", "tiny_siglip"):
        module = build("clip", [f"encoder={encoder}"])
        px = torch.randn(2, 3, module.model.encoder.image_size, module.model.encoder.image_size)
        assert module.model.encode_image(px).shape == (2, 64)
    module = build("clip", ["bridge=qformer", "text=tiny_bert"])
    assert module.model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 64)


@pytest.mark.parametrize(
    "overrides",
    [[], ["encoder=tiny_timm_vit"], ["encoder=tiny_open_clip_vit", "text=tiny_open_clip_text"],
     ["encoder=tiny_siglip", "text=tiny_bert"], ["bridge=qformer"], ["encoder.layer=-2"]],
)
def test_every_trainable_parameter_gets_a_gradient(overrides):
    """DDP fails on trainable parameters that never reach the loss (e.g. an unused final norm)."""
    from mmzoo.objectives import itc_loss

    module = build("clip", overrides)
    size = module.model.encoder.image_size
    batch = module.collator()([{"image": torch.randn(3, size, size), "caption": c, "meta": {}} for c in ["a red circle.", "a blue square."]])
    out = module.model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    itc_loss(out.image_embeds, out.text_embeds, out.logit_scale).backward()
    unused = [n for n, p in module.model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
