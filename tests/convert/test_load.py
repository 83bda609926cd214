"""The two halves ``python -m mmzoo.run pretrained=...`` needs: a run config with the
checkpoint's parts (savable as a run's config.yaml), and filling the model built from it."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmzoo import rundir as runs
from mmzoo.compose import compose_config
from mmzoo.convert import fill_model, load_pretrained, pretrained_config, read_checkpoint


def test_pretrained_config_builds_the_checkpoints_model_under_the_recipe(
    llava_dir: Path, tmp_path: Path
) -> None:
    imported = read_checkpoint(str(llava_dir))
    cfg = pretrained_config(compose_config(["model=llava", "model.freeze=[encoder]"]), imported)
    assert cfg.pretrained == str(llava_dir) and cfg.encoder.layer == -2 and cfg.bridge.depth == 2

    # what a run directory would record: plain YAML that builds the same architecture later
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    build_cfg, _ = runs.resolve_parts(OmegaConf.load(tmp_path / "config.yaml"))
    module = instantiate(build_cfg.model, _convert_="all")
    assert module.frozen_names == ["encoder"]  # the recipe's override, not the checkpoint's business

    built = module.model.bridge.projector.layers[0].weight.clone()
    report = fill_model(module.model, imported)
    assert report.unfilled == []
    assert not torch.equal(module.model.bridge.projector.layers[0].weight, built)
    expected = load_pretrained(llava_dir).model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in module.model.state_dict().items())
