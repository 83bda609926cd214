"""The frozen-feature cache: same losses as from pixels, keyed by what it depends on, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torchvision import transforms

from mmzoo.api import build as build_module
from mmzoo.api import compose_config
from mmzoo.data.feature_cache import FeatureCacheError, cached_split, check_deterministic
from mmzoo.data.sample_errors import SampleErrors
from mmzoo.run import build as build_run
from mmzoo.rundir import resolve_parts
from tests.conftest import TINY_DATA, run_zoo

TINY_PARTS = ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]  # random parts


def build_fit(run_dir: Path, overrides: list[str]) -> tuple:
    """Module, data module and Trainer of a tiny run, as ``mmzoo.run`` builds them."""
    cfg = compose_config([*TINY_DATA, *TINY_PARTS, "callbacks=none", f"data.feature_cache_dir={run_dir.parent / 'features'}",
                          *overrides])  # fmt: skip
    L.seed_everything(0)  # the same random parts every time
    return build_run(resolve_parts(cfg)[0], run_dir)


def fit_losses(run_dir: Path, overrides: list[str], steps: int = 6) -> tuple[list[float], object]:
    """Per-step training losses of a tiny run through the real Trainer (no evaluation)."""
    module, datamodule, trainer = build_fit(run_dir, [f"trainer.max_steps={steps}", *overrides])
    trainer.fit(module, datamodule=datamodule)
    return module.train_losses, module


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("model", [["model=llava"], ["model=minigpt4", "bridge=mlp3"]], ids=["llava", "minigpt4"])
def test_cached_training_gives_the_losses_of_training_from_pixels(model, tmp_path):
    pixels, _ = fit_losses(tmp_path / "pixels", model)
    cached, _ = fit_losses(tmp_path / "cached", [*model, "data.feature_cache=true"])
    # the same batches in the same order, so every step's loss agrees (float noise only)
    assert len(cached) == len(pixels) == 6
    for a, b in zip(cached, pixels, strict=True):
        assert abs(a - b) <= 1e-5 * abs(b), (cached, pixels)
    # and a second run reads the cache: its frozen front never runs on a training batch
    module, datamodule, trainer = build_fit(tmp_path / "again", [*model, "trainer.max_steps=3", "data.feature_cache=true"])
    calls = count_calls(module.model.encoder)
    trainer.fit(module, datamodule=datamodule)
    assert calls == [0] and len(module.train_losses) == 3
    assert len(list((tmp_path / "features").iterdir())) == 1  # one cache, built once


@pytest.mark.slow
def test_a_cached_run_still_evaluates_from_pixels_with_blind_baselines(tmp_path):
    metrics = run_zoo(tmp_path / "run", ["model=llava", *TINY_PARTS, "trainer.max_steps=3", "data.feature_cache=true",
                                         "trainer.limit_test_batches=1", "evaluation.evaluators.grounding=null"])
    results = metrics["metrics"]
    assert {"caption/cider", "caption/cider@blank", "caption/cider@shuffled", "vqa/accuracy@blank"} <= set(results)
    assert metrics["eval"]["samples"] == 64  # one test batch, from pixels


def datamodule_for(module, root: Path, transform=None):
    from mmzoo.data.datamodule import ShapesDataModule

    dm = ShapesDataModule(train_size=40, test_size=8, image_size=32, samples_per_shard=20, batch_size=8,
                          feature_cache=True, feature_cache_dir=str(root))  # fmt: skip
    dm.attach(transform or module.image_transform(), module.image_transform(), module.collator(), module.collator(False))
    dm.feature_module = module
    return dm


def test_cache_is_keyed_by_the_frozen_weights_and_reused(tmp_path):
    module = build_module("llava", TINY_PARTS)
    dm = datamodule_for(module, tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert "features" in batch and "pixel_values" not in batch
    assert tuple(batch["features"].shape) == (8, *module.model.feature_shape())
    folders = list(tmp_path.iterdir())
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert manifest["total"] == 40 and [s["count"] for s in manifest["shards"]] == [20, 20]

    calls = count_calls(module.model.encoder)
    next(iter(dm.train_dataloader()))
    assert calls == [0] and list(tmp_path.iterdir()) == folders  # reused, not rebuilt

    with torch.no_grad():
        next(module.model.encoder.parameters()).mul_(2.0)  # other frozen weights
    next(iter(datamodule_for(module, tmp_path).train_dataloader()))
    assert calls[0] > 0 and len(list(tmp_path.iterdir())) == 2  # a new cache beside the old


def test_cached_features_are_what_the_frozen_front_computes(tmp_path):
    module = build_module("minigpt4", [*TINY_PARTS, "bridge=mlp3"])
    assert module.feature_source().level == "qformer"
    dm = datamodule_for(module, tmp_path)
    dm.shuffle_buffer = 0
    cached = next(iter(dm.train_dataloader()))
    dm.feature_cache = False
    pixels = next(iter(dm.train_dataloader()))
    assert [m["key"] for m in cached["meta"]] == [m["key"] for m in pixels["meta"]]
    with torch.no_grad():
        expected = module.model.image_features(pixels["pixel_values"])  # (B, Q, H)
    torch.testing.assert_close(cached["features"], expected, rtol=1e-5, atol=1e-6)


def test_a_trainable_qformer_trains_on_cached_encoder_tokens():
    module = build_module("minigpt4", [*TINY_PARTS, "bridge.frozen=false"])
    source = module.feature_source()
    assert source.level == "encoder" and set(source.parts) == {"encoder"}  # the Q-Former is not cached
    pixels = torch.randn(2, 3, 32, 32)
    from tests.lit.tiny import fake_batch

    batch = fake_batch(module)
    batch = {k: v for k, v in batch.items() if k != "pixel_values"} | {"features": source.compute(pixels)}
    module.train()
    module.loss(batch)[0].backward()
    assert all(p.grad is not None for p in module.model.bridge.qformer.parameters() if p.requires_grad)


def test_trainable_encoder_refuses_with_the_reason(tmp_path):
    module = build_module("llava", [*TINY_PARTS, "model.freeze=[llm]"])
    with pytest.raises(FeatureCacheError, match="trains it"):
        datamodule_for(module, tmp_path).train_dataloader()


def test_a_model_without_a_frozen_front_refuses(tmp_path):
    module = build_module("clip", [])
    with pytest.raises(FeatureCacheError, match="no frozen visual front"):
        cached_split(["x.tar"], "train", module=module, transform=module.image_transform(), errors=SampleErrors(),
                     batch_size=8)  # fmt: skip


def test_augmented_transforms_refuse_and_deterministic_ones_pass():
    module = build_module("llava", TINY_PARTS)
    check_deterministic(module.image_transform())  # the model's own: resize, crop, normalise
    flip = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    with pytest.raises(FeatureCacheError, match="RandomHorizontalFlip"):
        check_deterministic(flip)
    jitter = transforms.Compose([transforms.ToTensor(), transforms.RandomApply([transforms.ColorJitter(0.5)], p=0.5)])
    with pytest.raises(FeatureCacheError, match="ColorJitter"):
        check_deterministic(jitter)

    def noisy(image):  # random, but not by a torchvision name: found by running it
        return transforms.functional.to_tensor(image) + torch.randn(1)

    with pytest.raises(FeatureCacheError, match="different outputs"):
        check_deterministic(noisy)


def test_augmented_train_transform_refuses_in_the_data_module(tmp_path):
    module = build_module("llava", TINY_PARTS)
    augmented = transforms.Compose([transforms.RandomResizedCrop(32), transforms.ToTensor()])
    with pytest.raises(FeatureCacheError, match="augments"):
        datamodule_for(module, tmp_path, transform=augmented).train_dataloader()


def test_features_of_another_shape_are_rejected_at_the_model():
    module = build_module("llava", TINY_PARTS)
    with pytest.raises(ValueError, match="feature cache"):
        module.model.visual_embeds(None, features=torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="exactly one"):
        module.model.visual_embeds(torch.zeros(2, 3, 32, 32), features=torch.zeros(2, 16, 64))


def test_the_zoo_parts_of_a_cached_run_are_those_of_a_pixel_run():
    from mmzoo.zoo import recipe_config, recipe_key

    plain = compose_config(["model=llava"])
    cached = compose_config(["model=llava", "data.feature_cache=true", "data.feature_cache_dir=/elsewhere"])
    assert recipe_config("clip", cached).data.feature_cache is False  # the zoo's CLIP trains from pixels
    assert recipe_key("clip", cached) == recipe_key("clip", plain)  # and is the same cached run
