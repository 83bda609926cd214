"""The zoo's cached lineage: a recipe runs once, then its run directory is reused."""

import pytest

from mmzoo import zoo
from tests.conftest import TINY_DATA


@pytest.mark.slow
def test_zoo_recipe_runs_once_and_is_cached(monkeypatch):
    monkeypatch.setattr(zoo, "recipes", lambda: {"tinyclip": ["model=clip", "trainer.max_steps=2", *TINY_DATA]})
    from mmzoo.run import train_and_evaluate

    first = zoo.resolve("zoo:tinyclip", make=train_and_evaluate)
    assert (zoo.Path(first) / "model.safetensors").is_file()

    def no_rerun(*args, **kwargs):
        raise AssertionError("a cached recipe must not run again")

    assert zoo.resolve("zoo:tinyclip", make=no_rerun) == first


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"valid: \['blip2_stage1', 'clip', 'lm', 'qformer'\]"):
        zoo.resolve("zoo:nope")


def test_plain_paths_pass_through():
    assert zoo.resolve("runs/clip/x") == "runs/clip/x"


def test_building_a_model_never_trains_its_zoo_parts(tmp_path, monkeypatch):
    from mmzoo.api import build

    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"zoo:clip is not made yet.*python -m mmzoo.zoo build clip"):
        build("minigpt4")
    assert not (tmp_path / "empty").exists()  # nothing was generated or trained


def test_cache_key_follows_the_recipes_whole_config(monkeypatch):
    """Editing anything the recipe composes (a preset, an override, the data) gives another key."""
    from mmzoo.compose import compose_config

    base = zoo.recipe_key("clip")
    assert zoo.recipe_key("clip") == base  # stable
    monkeypatch.setattr(zoo, "recipes", lambda: {"clip": ["model=clip", "trainer.max_steps=401"]})
    assert zoo.recipe_key("clip") != base
    other_data = compose_config(["data.train_size=500"])
    monkeypatch.undo()
    assert zoo.recipe_key("clip", other_data) != base


def test_stage1_recipe_takes_the_askers_qformer_shape():
    """MiniGPT-4, BLIP-2 and InstructBLIP share one stage-1 Q-Former; another shape is another run."""
    from mmzoo.compose import compose_config

    keys = {m: zoo.recipe_key("blip2_stage1", compose_config([f"model={m}"])) for m in ("minigpt4", "blip2", "instructblip")}
    assert len(set(keys.values())) == 1, keys
    wide = compose_config(["model=blip2", "bridge.qformer.num_queries=16"])
    assert zoo.recipe_config("blip2_stage1", wide).bridge.qformer.num_queries == 16
    assert zoo.recipe_key("blip2_stage1", wide) != keys["blip2"]


def test_nested_zoo_references_change_the_key(monkeypatch):
    """The Q-Former recipe reads the zoo CLIP: a change to CLIP's recipe changes the Q-Former's key."""
    before = zoo.recipe_key("qformer")
    known = zoo.recipes()
    monkeypatch.setattr(zoo, "recipes", lambda: {**known, "clip": [*known["clip"], "model.embed_dim=32"]})
    assert zoo.recipe_key("qformer") != before


FOLDER = ["data=folder", "data.train=/nowhere/train", "data.test=/nowhere/test"]


def test_recipes_on_own_data_take_its_tokenizer_and_a_length_of_their_own(monkeypatch):
    """The zoo LM for data=folder is made over the asker's tokenizer (a BPE of its captions, or
    what the command line picked) and runs its own number of steps, not one pass of the data."""
    from mmzoo.compose import compose_config
    from mmzoo.data import tokenizer as tokenizer_module

    asker = compose_config([*FOLDER, "model=llava"])
    lm = zoo.recipe_config("lm", asker)
    assert lm.tokenizer._target_.endswith("caption_bpe_tokenizer") and lm.tokenizer.shards == "/nowhere/train"
    steps = next(int(o.split("=")[1]) for o in zoo.recipes()["lm"] if o.startswith("trainer.max_steps="))
    assert (lm.trainer.max_steps, lm.trainer.max_epochs) == (steps, -1)  # trainer=cpu alone: one pass, 4 steps here
    assert zoo.recipe_config("lm").choices.tokenizer == "shapes"  # the embedded data keeps its words

    base = zoo.recipe_key("lm", asker)
    assert zoo.recipe_key("lm", compose_config([*FOLDER, "model=llava"])) == base  # stable
    other = {
        "open_clip": compose_config([*FOLDER, "model=llava", "tokenizer=open_clip"]),
        "vocab": compose_config([*FOLDER, "model=llava", "tokenizer.vocab_size=1024"]),
        "data": compose_config(["data=folder", "data.train=/elsewhere/train", "data.test=/nowhere/test", "model=llava"]),
    }
    assert zoo.recipe_config("lm", other["open_clip"]).choices.tokenizer == "open_clip"
    keys = {name: zoo.recipe_key("lm", cfg) for name, cfg in other.items()}
    monkeypatch.setattr(tokenizer_module, "BPE_RECIPE", tokenizer_module.BPE_RECIPE + 1)
    keys["bpe recipe"] = zoo.recipe_key("lm", asker)
    assert base not in keys.values() and len(set(keys.values())) == len(keys), keys


def test_models_of_other_budgets_share_one_zoo_part():
    """The asker's batch sizes are its own budget: LLaVA (batch 64), the LM (128) and the default
    run all ask for the same zoo CLIP and LM, trained at their recipes' own batch sizes."""
    from mmzoo.compose import compose_config

    for name in ("clip", "lm"):
        keys = {zoo.recipe_key(name, compose_config([f"model={m}"])) for m in ("llava", "minigpt4", "blip2", "clip")}
        assert keys == {zoo.recipe_key(name)}, name
    assert zoo.recipe_config("lm", compose_config(["model=llava"])).data.batch_size == 128


@pytest.mark.slow
def test_a_run_that_makes_its_zoo_part_first_trains_as_one_that_finds_it_cached(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from tests.conftest import run_zoo

    monkeypatch.setattr(zoo, "recipes", lambda: {"tinyclip": ["model=clip", "trainer.max_steps=2", *TINY_DATA]})
    llava = ["model=llava", "encoder.from_run=zoo:tinyclip", "llm=tiny_llama", "model.pretrained_parts=null",
             "trainer.max_steps=2", "trainer.limit_test_batches=1"]  # fmt: skip
    run_zoo(tmp_path / "first", llava)  # makes zoo:tinyclip in this process, then trains
    run_zoo(tmp_path / "again", llava)  # finds it cached
    first, again = (load_file(tmp_path / run / "model.safetensors") for run in ("first", "again"))
    assert first.keys() == again.keys()
    assert all(first[k].equal(again[k]) for k in first)  # same initialisation, same batches, same steps
