"""Every model and experiment composes; every model builds from tiny parts."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from mmzoo.api import build, compose_config, models
from mmzoo.presets import presets

EXPERIMENTS = presets("experiment")


def test_models_are_the_files_of_conf_model():
    assert {"clip", "llava", "minigpt4", "lm"} <= set(models())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    cfg = compose_config([f"experiment={experiment}", "pretrained=some/run"])
    assert cfg.model._target_.rsplit(".", 1)[-1] in ("VisionLanguageModule", "Blip2Stage1Module")
    assert cfg.trainer.max_steps > 0


def test_experiments_set_the_papers_recipes():
    s1 = compose_config(["experiment=llava_stage1"])
    assert s1.template.name == "plain" and list(s1.model.freeze) == ["encoder", "llm"]
    s2 = compose_config(["experiment=llava_stage2", "pretrained=x"])
    assert s2.template.name == "llava_v1" and list(s2.model.freeze) == ["encoder"]
    m2 = compose_config(["experiment=minigpt4_stage2", "pretrained=x"])
    assert m2.template.name == "vicuna_v0" and list(m2.model.tasks) == ["describe"]
    assert m2.bridge.qformer is not None and m2.bridge.frozen
    tuned = compose_config(["experiment=minigpt4_tune_llm", "pretrained=x"])
    assert list(tuned.model.freeze) == ["encoder"] and not tuned.bridge.frozen and tuned.template.name == "vicuna_v0"


def test_command_line_bridge_overrides_the_models_default():
    cfg = compose_config(["model=minigpt4", "bridge=mlp3"])
    assert cfg.bridge.depth == 3 and cfg.bridge.qformer.num_queries > 0


def test_unknown_choice_names_valid_options():
    with pytest.raises(ConfigCompositionException, match="Available options"):
        compose_config(["bridge=mlp9"])


TINY_PARTS = {
    "clip": [], "lm": [], "blip": [],
    "blip2_stage1": ["encoder=tiny_clip_vit"],
}


@pytest.mark.parametrize("model", models())
def test_every_model_builds_from_tiny_parts(model):
    overrides = TINY_PARTS.get(model, ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"])
    module = build(model, overrides)
    counts = module.parameter_counts()
    assert 0 < counts["trainable"] <= counts["total"]


REAL_DATA = [d for d in presets("data") if d != "shapes"]


@pytest.mark.parametrize("data", REAL_DATA)
@pytest.mark.parametrize("model", models())
def test_no_toy_budget_leaks_into_real_data(model, data):
    """A model preset describes the model: composed with real data it gets that data's settings."""
    from mmzoo.presets import load_preset

    cfg = compose_config([f"model={model}", f"data={data}"])
    preset, trainer = load_preset("data", data), load_preset("trainer", "cpu")
    assert cfg.data.batch_size == preset["batch_size"] and cfg.data.eval_batch_size == preset["eval_batch_size"]
    assert cfg.trainer.max_steps == trainer["max_steps"] and cfg.trainer.max_epochs == trainer["max_epochs"]
    assert cfg.trainer.limit_test_batches == 1.0 and "limit_train_batches" not in cfg.trainer


@pytest.mark.parametrize("model", models())
def test_model_presets_hold_no_budget(model):
    from mmzoo.presets import load_preset

    assert not {"data", "trainer"} & set(load_preset("model", model))


def test_the_embedded_data_has_a_budget_for_every_model():
    for model in models():
        cfg = compose_config([f"model={model}"])
        assert cfg.choices["budget"] in presets("budget"), model
        assert cfg.trainer.max_steps > 0
