"""Every model and experiment composes; every model builds from tiny parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from mmzoo.api import build, compose_config, models
from mmzoo.data.templates import conf_dir

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def test_models_are_the_files_of_conf_model():
    assert models() == sorted(p.stem for p in Path(conf_dir(), "model").glob("*.yaml"))
    assert {"clip", "llava", "minigpt4", "lm"} <= set(models())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    cfg = compose_config([f"experiment={experiment}", "init_from=some/run"])
    assert cfg.model._target_.endswith("VisionLanguageModule")
    assert cfg.trainer.max_steps > 0


def test_experiments_set_the_papers_recipes():
    s1 = compose_config(["experiment=llava_stage1"])
    assert s1.template.name == "plain" and list(s1.model.freeze) == ["encoder", "llm"]
    s2 = compose_config(["experiment=llava_stage2", "init_from=x"])
    assert s2.template.name == "llava_v1" and list(s2.model.freeze) == ["encoder"]
    m2 = compose_config(["experiment=minigpt4_stage2", "init_from=x"])
    assert m2.template.name == "vicuna_v0" and list(m2.model.tasks) == ["describe"]
    assert m2.bridge.qformer is not None and m2.bridge.frozen


def test_command_line_bridge_overrides_the_models_default():
    cfg = compose_config(["model=minigpt4", "bridge=mlp3"])
    assert cfg.bridge.depth == 3 and cfg.bridge.qformer.num_queries > 0


def test_unknown_choice_names_valid_options():
    with pytest.raises(ConfigCompositionException, match="Available options"):
        compose_config(["bridge=mlp9"])


@pytest.mark.parametrize("model", ["clip", "llava", "minigpt4", "lm"])
def test_every_model_builds_from_tiny_parts(model):
    overrides = [] if model in ("clip", "lm") else ["encoder=tiny_clip_vit", "llm=tiny_llama", "++model.init_from_runs=null"]
    module = build(model, overrides)
    counts = module.parameter_counts()
    assert 0 < counts["trainable"] <= counts["total"]
