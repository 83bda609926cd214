"""Impossible configs fail before any heavy work, each with a message naming its fix.

Each test runs ``train_and_evaluate`` with the zoo's maker, the embedded data's shard writer,
the caption BPE trainer and the model build all made to fail loudly if called: the error must
come from the pre-flight check, before any of them. The same configs with the problem fixed
pass the check (the baseline that shows the check is not just failing everything).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmzoo import preflight
from mmzoo.api import compose_config
from tests.conftest import TINY_DATA


class HeavyWorkRan(AssertionError):
    pass


@pytest.fixture
def no_heavy_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every heavy step raises (and is recorded) if reached."""
    import mmzoo.data.shards
    import mmzoo.data.tokenizer
    import mmzoo.run
    import mmzoo.zoo

    ran: list[str] = []

    def forbid(name: str):
        def heavy(*args, **kwargs):
            ran.append(name)
            raise HeavyWorkRan(f"{name} ran before the config was checked")

        return heavy

    monkeypatch.setattr(mmzoo.zoo, "build", forbid("zoo.build"))
    monkeypatch.setattr(mmzoo.data.shards, "ensure_shapes", forbid("ensure_shapes"))
    monkeypatch.setattr(mmzoo.data.tokenizer, "train_byte_level_bpe", forbid("train_byte_level_bpe"))
    monkeypatch.setattr(mmzoo.run, "build", forbid("run.build"))
    return ran


def fails_first(overrides: list[str], tmp_path: Path, ran: list[str], edit=None, tiny: bool = True) -> str:
    """Run the config; return the ConfigError's message, having checked nothing heavy ran."""
    from mmzoo.run import train_and_evaluate

    cfg = compose_config([*(TINY_DATA if tiny else []), *overrides])
    if edit is not None:
        edit(cfg)
    with pytest.raises(preflight.ConfigError) as caught:
        train_and_evaluate(cfg, tmp_path / "run")
    assert ran == []
    return str(caught.value)


def passes(overrides: list[str], edit=None) -> None:
    cfg = compose_config([*TINY_DATA, *overrides])
    if edit is not None:
        edit(cfg)
    preflight.check(cfg)


def test_a_stage_2_without_its_stage_1_run(tmp_path, no_heavy_work):
    message = fails_first(["experiment=llava_stage2"], tmp_path, no_heavy_work)
    assert "experiment=llava_stage2" in message and "pretrained=<run dir>" in message
    assert "experiment=llava_stage1" in message
    message = fails_first(["experiment=minigpt4_tune_llm"], tmp_path, no_heavy_work)
    assert "pretrained=<run dir>" in message and "a run of" not in message
    message = fails_first(["experiment=blip2_stage2"], tmp_path, no_heavy_work)
    assert "stage1=<run dir>" in message and "experiment=blip2_stage1" in message


def test_folder_data_without_its_shards(tmp_path, no_heavy_work):
    message = fails_first(["data=folder", "data.test=/data/mine/test"], tmp_path, no_heavy_work, tiny=False)
    assert "data=folder needs data.train=" in message and "python -m mmzoo.data.shards" in message
    message = fails_first([], tmp_path, no_heavy_work, edit=lambda c: _set(c, "data.train", str(tmp_path / "nope")))
    assert "data.train" in message and "nope" in message


def test_a_template_without_its_image_placeholder(tmp_path, no_heavy_work):
    message = fails_first(["model=llava"], tmp_path, no_heavy_work,
                          edit=lambda c: _set(c, "template.image", "<Img></Img>"))  # fmt: skip
    assert "template.image='<Img></Img>'" in message and "<image>" in message
    message = fails_first(["model=llava"], tmp_path, no_heavy_work,
                          edit=lambda c: _set(c, "template.system", "Look: <image>"))  # fmt: skip
    assert "template.system holds <image>" in message
    passes(["model=llava"], edit=lambda c: _set(c, "template.image", "<Img><image></Img>"))


def test_a_recipe_that_leaves_nothing_to_train(tmp_path, no_heavy_work):
    message = fails_first(["model=llava", "model.freeze=[encoder,bridge,llm]"], tmp_path, no_heavy_work)
    assert "nothing would train" in message and "model.freeze=[encoder, bridge]" in message
    passes(["model=llava", "model.freeze=[encoder,llm]"])
    passes(["model=llava", "model.freeze=[encoder,bridge,llm]", "stage=test"])  # evaluating needs nothing trainable
    message = fails_first(["model=clip", "bridge.frozen=true"], tmp_path, no_heavy_work)
    assert "bridge.frozen=true" in message and "bridge=qformer" in message


def test_a_part_resized_beside_from_run(tmp_path, no_heavy_work):
    """The zoo CLIP's encoder is 64 wide; asking for 128 beside encoder.from_run would be ignored."""
    message = fails_first(["model=llava", "+encoder.config.hidden_size=128"], tmp_path, no_heavy_work)
    assert "encoder.from_run=zoo:clip" in message and "encoder.config.hidden_size=64" in message
    assert "encoder.config.hidden_size=128 cannot resize it" in message


def test_pretrained_run_of_other_dimensions(tmp_path, no_heavy_work):
    """A stage-1 run with an mlp2 projector cannot start a stage 2 with a linear one."""
    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    saved = compose_config(["model=llava", "bridge=mlp2"])
    (stage1 / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"bridge": saved.bridge})))
    (stage1 / "model.safetensors").write_bytes(b"")  # never read by the check
    message = fails_first(["experiment=llava_stage2", f"pretrained={stage1}", "bridge=linear"], tmp_path,
                          no_heavy_work)  # fmt: skip
    assert f"pretrained={stage1} was trained with bridge.depth=2, this config has bridge.depth=1" in message
    passes(["experiment=llava_stage2", f"pretrained={stage1}", "bridge=mlp2"])


def test_pretrained_part_of_other_dimensions(tmp_path, no_heavy_work):
    other = tmp_path / "blip2_stage1"
    other.mkdir()
    saved = compose_config(["model=minigpt4", "bridge.qformer.num_queries=16"])
    (other / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"bridge": saved.bridge})))
    (other / "model.safetensors").write_bytes(b"")
    message = fails_first(["model=minigpt4", f"model.pretrained_parts.bridge.qformer={other}"], tmp_path,
                          no_heavy_work)  # fmt: skip
    assert "bridge.qformer.num_queries=16, this config bridge.qformer.num_queries=8" in message


def test_run_options(tmp_path, no_heavy_work):
    message = fails_first(["nonfinite=ignore", "callbacks.checkpoint.keep=0"], tmp_path, no_heavy_work)
    assert "nonfinite='ignore'" in message and "callbacks.checkpoint.keep=0" in message  # both at once
    assert "stage='train'" in fails_first(["stage=train"], tmp_path, no_heavy_work)


def test_every_shipped_model_passes(no_heavy_work):
    """No false alarms on the presets as shipped (zoo references are checked against their recipes)."""
    from mmzoo.api import models

    for model in models():
        passes([f"model={model}"])
    passes(["experiment=minigpt4_stage1"])
    passes(["experiment=llava_stage2_lora", "pretrained=some-org/some-hub-id"])


def _set(cfg, key: str, value) -> None:
    OmegaConf.update(cfg, key, value, force_add=True)
