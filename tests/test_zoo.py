"""The zoo's cached lineage: a recipe runs once, then its run directory is reused."""

import subprocess

import pytest

from mmzoo import zoo
from tests.conftest import TINY_DATA


@pytest.mark.slow
def test_zoo_recipe_runs_once_and_is_cached(monkeypatch):
    monkeypatch.setattr(zoo, "recipes", lambda: {"tinyclip": ["model=clip", "trainer.max_steps=2", *TINY_DATA]})
    first = zoo.resolve("zoo:tinyclip")
    assert (zoo.Path(first) / "model.safetensors").is_file()

    def no_rerun(*args, **kwargs):
        raise AssertionError("a cached recipe must not run again")

    monkeypatch.setattr(subprocess, "run", no_rerun)
    assert zoo.resolve("zoo:tinyclip") == first


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="valid: \\['clip', 'lm', 'qformer'\\]"):
        zoo.resolve("zoo:nope")


def test_plain_paths_pass_through():
    assert zoo.resolve("runs/clip/x") == "runs/clip/x"
