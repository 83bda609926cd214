"""A user's own captioned pictures, end to end: shards, a tokenizer for any text, CLIP that learns,
and LLaVA on zoo parts made on that data.

The pictures come from ``tests/data/captioned_scenes.py``: free-form captions (dogs on beaches,
cars downtown at night) whose words the embedded ``shapes`` vocabulary mostly lacks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzoo import zoo
from mmzoo.api import compose_config
from mmzoo.data.shards import main as shards_main
from mmzoo.data.tokenizer import shapes_tokenizer, shard_captions
from mmzoo.data.webdata import expand_urls
from mmzoo.run import train_and_evaluate
from mmzoo.rundir import read_config
from tests.data.captioned_scenes import make_folder


@pytest.fixture(scope="module")
def scene_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """360 captioned 32 px pictures as a user has them (png + same-name txt), made into shards
    by the command line, a fifth held out for testing."""
    root = tmp_path_factory.mktemp("own")
    make_folder(root / "pictures", 360, size=32)
    args = ["folder", str(root / "pictures"), str(root / "train"), "--test-out", str(root / "test"),
            "--test-fraction", "0.2", "--samples-per-shard", "100"]  # fmt: skip
    assert shards_main(args) == 0
    return root / "train", root / "test"


def own_data(shards: tuple[Path, Path]) -> list[str]:
    train, test = shards
    return [
        "data=folder", f"data.train={train}", f"data.test={test}", "data.batch_size=32", "data.eval_batch_size=64",
        "data.num_workers=0", "data.shuffle_buffer=200", "trainer.max_epochs=-1", "trainer.enable_progress_bar=false",
    ]  # fmt: skip


def mean_r1(metrics: dict) -> float:
    return (metrics["metrics"]["retrieval/t2i_r1"] + metrics["metrics"]["retrieval/i2t_r1"]) / 2


@pytest.mark.slow
def test_clip_learns_retrieval_on_captions_outside_the_embedded_vocabulary(scene_shards, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    captions = shard_captions(expand_urls(str(scene_shards[0])))
    words = shapes_tokenizer()
    ids = [words(c, add_special_tokens=False).input_ids for c in captions]
    assert sum(seq.count(words.unk_token_id) for seq in ids) / sum(map(len, ids)) > 0.4  # why a new tokenizer

    trained = train_and_evaluate(compose_config([*own_data(scene_shards), "trainer.max_steps=150"]), tmp_path / "clip")
    untrained = train_and_evaluate(compose_config([*own_data(scene_shards), "stage=test"]), tmp_path / "untrained")
    chance = trained["metrics"]["retrieval/chance_r1"]
    assert mean_r1(trained) > max(3 * mean_r1(untrained), 5 * chance), (mean_r1(trained), mean_r1(untrained), chance)

    # the run carries its tokenizer: a BPE of these captions (cached beside the shards), no <unk>
    assert list(scene_shards[0].glob("tokenizer-*/tokenizer.json"))
    saved = AutoTokenizer.from_pretrained(tmp_path / "clip" / "tokenizers" / "text")
    assert not any(saved.unk_token_id in saved(c).input_ids for c in captions)
    assert read_config(tmp_path / "clip").text.tokenizer.pretrained_model_name_or_path.endswith("tokenizers/text")
    assert trained["data"]["train_samples"] == len(captions)


@pytest.mark.slow
def test_llava_runs_on_zoo_parts_made_on_the_same_data(scene_shards, tmp_path: Path, monkeypatch) -> None:
    """One command: the zoo makes its CLIP and LM on these pictures (cached by data identity),
    LLaVA trains on captions (its VQA and conversation tasks fall back), and evaluates."""
    from transformers import AutoTokenizer

    known = zoo.recipes()
    monkeypatch.setattr(zoo, "recipes", lambda: {n: [*o, "trainer.max_steps=30"] for n, o in known.items()})
    cfg = compose_config([*own_data(scene_shards), "model=llava", "trainer.max_steps=30"])
    metrics = train_and_evaluate(cfg, tmp_path / "llava")

    assert metrics["status"] == "ok" and metrics["train"]["steps"] == 30
    assert metrics["data"]["task_fallbacks"] > 0  # no Q&A, no conversations: captions
    assert "caption/cider" in metrics["metrics"] and not any(k.startswith("vqa/") for k in metrics["metrics"])
    lineage = metrics["lineage"]
    assert {Path(lineage["encoder"]).name, Path(lineage["llm"]).name} == {
        zoo.recipe_dir("clip", cfg).name, zoo.recipe_dir("lm", cfg).name
    }
    assert zoo.recipe_key("lm", cfg) != zoo.recipe_key("lm")  # not the embedded data's LM
    for part in ("encoder", "llm"):
        assert read_config(lineage[part]).data.train == str(scene_shards[0])  # made on this data
    lm_tokenizer = AutoTokenizer.from_pretrained(Path(lineage["llm"]) / "tokenizers" / "llm")
    llava_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "llava" / "tokenizers" / "llm")
    assert llava_tokenizer.get_vocab() == lm_tokenizer.get_vocab() != shapes_tokenizer().get_vocab()
