"""`python -m mmzoo.run model=<m> pretrained=<checkpoint> stage=test`: a real checkpoint on the
leaderboard beside the zoo's runs, and fine-tuning from one with the model's recipe."""

from __future__ import annotations

import pytest
import torch

from mmzoo.compare.records import Run, read_run
from mmzoo.rundir import read_weights
from tests.conftest import run_zoo


@pytest.mark.slow
def test_a_real_clip_checkpoint_is_evaluated_into_a_run_the_leaderboard_reads(clip_dir, tmp_path):
    from transformers import CLIPModel

    metrics = run_zoo(tmp_path / "run", ["model=clip", f"pretrained={clip_dir}", "stage=test"])
    assert metrics["train"]["steps"] == 0 and "retrieval/t2i_r1" in metrics["metrics"]
    assert metrics["lineage"]["pretrained"] == str(clip_dir)
    assert isinstance(read_run(tmp_path / "run"), Run)  # not skipped: the leaderboard ranks it
    reference = CLIPModel.from_pretrained(clip_dir).visual_projection.weight
    assert torch.equal(read_weights(tmp_path / "run")["bridge.projector.layers.0.weight"], reference)


@pytest.mark.slow
def test_fine_tuning_a_real_checkpoint_keeps_the_recipes_frozen_parts(clip_dir, tmp_path):
    run_zoo(tmp_path / "run", ["model=clip", f"pretrained={clip_dir}", "model.freeze=[encoder]", "trainer.max_steps=2"])
    from transformers import CLIPModel

    reference = CLIPModel.from_pretrained(clip_dir)
    saved = read_weights(tmp_path / "run", "encoder.")
    assert all(torch.equal(saved[f"model.vision_model.{k}"], v) for k, v in reference.vision_model.state_dict().items()
               if f"model.vision_model.{k}" in saved)
    assert not torch.equal(read_weights(tmp_path / "run")["text_projection.weight"], reference.text_projection.weight)


def test_a_checkpoint_of_another_family_names_the_model_to_use(clip_dir, tmp_path):
    with pytest.raises(ValueError, match="model=clip"):
        run_zoo(tmp_path / "run", ["model=llava", f"pretrained={clip_dir}", "stage=test"])
