"""Rows a reader can trust: untrained baselines beside their trained selves, generative models
ranked by grounding with blind values beside each headline metric, metric directions."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmzoo.compare.plots import row_name
from mmzoo.compare.records import collect
from mmzoo.compare.table import build_groups, direction
from mmzoo.leaderboard import main
from tests.runs import cider, write_run

UNTRAINED = {"steps": 0, "seconds": 0.0, "samples_per_second": None}


def _rows(root: Path) -> list:
    (group,) = build_groups(collect(root).runs)
    return group.rows


def test_untrained_baseline_sits_under_its_trained_self_unranked(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"llava{seed}", "llava", seed, cider(1.5 + 0.1 * seed), ("bridge=mlp2",))
    write_run(tmp_path / "llava_untrained", "llava", 0, cider(0.3), ("bridge=mlp2", "stage=test"), train=UNTRAINED)
    write_run(tmp_path / "minigpt4", "minigpt4", 0, cider(0.9))
    write_run(tmp_path / "minigpt4_untrained", "minigpt4", 0, cider(0.85), ("stage=test",), train=UNTRAINED)
    rows = _rows(tmp_path)
    assert [(r.model, r.training, r.rank) for r in rows] == [
        ("llava", "trained", 1), ("llava", "untrained", None), ("minigpt4", "trained", 2), ("minigpt4", "untrained", None)
    ]
    llava, llava_untrained, minigpt4, _ = rows
    assert llava.label == llava_untrained.label == "bridge=mlp2"  # stage is a column, not a setting
    assert llava.untrained is llava_untrained and llava.beats_untrained is True  # 1.55 vs 0.3
    assert minigpt4.beats_untrained is False  # 0.9 vs 0.85: within the clear margin
    assert minigpt4.vs_best is not None and llava_untrained.vs_best is None  # a baseline is not compared
    assert row_name(llava_untrained) == "llava bridge=mlp2 (untrained)"

    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| 1 | llava | bridge=mlp2 | trained, 100 steps | n=2 |" in md
    assert "|  | llava | bridge=mlp2 | untrained (stage=test) | n=1 |" in md
    assert "yes (+1.2500)" in md and "NO (+0.0500)" in md and "(the baseline)" in md


def test_evaluating_given_weights_is_not_called_untrained(tmp_path):
    write_run(tmp_path / "eval", "llava", 0, cider(1.0), ("stage=test", "pretrained=/runs/llava/x"), train=UNTRAINED)
    (row,) = _rows(tmp_path)
    assert row.training == "pretrained" and row.rank == 1


def grounded(scene: float, blank: float, precision: float, cider_value: float, **more: float) -> dict[str, float]:
    metrics = {
        "grounding/scene_accuracy": scene, "grounding/scene_accuracy@blank": blank,
        "grounding/scene_accuracy@shuffled": blank / 2,
        "grounding/object_precision": precision, "grounding/object_precision@blank": 0.02,
        "grounding/object_precision@shuffled": 0.03,
        "grounding/colour_accuracy": 0.7, "grounding/colour_accuracy@blank": 0.2,
        "grounding/objects_per_caption": 1.5, "grounding/objects_per_caption@blank": 2.0,
        "vqa/accuracy": 0.6, "vqa/accuracy@blank": 0.4, "vqa/accuracy@shuffled": 0.45,
        "vqa/colour_accuracy": 0.5, "vqa/colour_accuracy@blank": 0.17,
        **cider(cider_value),
    }
    return {**metrics, **more}


def test_generative_models_are_ranked_by_grounding_with_blind_values_beside_each_headline_metric(tmp_path):
    write_run(tmp_path / "grounded", "blip", 0, grounded(0.30, 0.0, 0.4, cider_value=1.0))
    write_run(tmp_path / "templated", "llava", 0, grounded(0.01, 0.0, 0.03, cider_value=3.0))  # high CIDEr, blind
    grounded_row, templated = _rows(tmp_path)
    assert (grounded_row.model, grounded_row.rank, templated.rank) == ("blip", 1, 2)  # not by CIDEr
    assert "grounding/scene_accuracy" in templated.blind_failures
    assert "grounding/object_precision" in templated.blind_failures  # 0.03 vs 0.03 shuffled
    assert "grounding/objects_per_caption" not in templated.blind_failures  # a description, not a score

    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # |")).split(" | ")
    metrics = [h for h in header if h.startswith(("grounding/", "vqa/", "caption/"))]
    assert metrics == [
        f"{m}{s}" for m in ("grounding/scene_accuracy", "grounding/object_precision", "vqa/accuracy", "caption/cider")
        for s in ("", "@blank", "@shuffled")
    ]
    assert "Ranked by `grounding/scene_accuracy`" in md
    assert "NO: grounding/scene_accuracy, grounding/object_precision" in md
    with open(tmp_path / "out" / "leaderboard.csv") as f:
        (first, _) = list(csv.DictReader(f))
    assert float(first["vqa/colour_accuracy@blank mean"]) == pytest.approx(0.17)  # the CSV keeps every metric

    assert main([str(tmp_path), "--out", str(tmp_path / "all"), "--all-metrics"]) == 0
    assert "grounding/colour_accuracy@blank" in (tmp_path / "all" / "leaderboard.md").read_text()


def test_lower_is_better_for_losses_and_descriptive_statistics_are_not_ranked():
    assert direction("lm/perplexity") == direction("lm/loss") == -1
    assert direction("grounding/objects_per_caption") == 0 and direction("retrieval/chance_r1") == 0
    assert direction("vqa/accuracy@blank") == 1


def test_language_models_rank_by_perplexity_ascending(tmp_path):
    write_run(tmp_path / "big", "lm", 0, {"lm/perplexity": 5.0, "lm/loss": 1.6}, ("llm.num_layers=4",))
    write_run(tmp_path / "small", "lm", 0, {"lm/perplexity": 9.0, "lm/loss": 2.2}, ("llm.num_layers=1",))
    rows = _rows(tmp_path)
    assert [(r.label, r.rank) for r in rows] == [("llm.num_layers=4", 1), ("llm.num_layers=1", 2)]


def test_reporting_overrides_do_not_split_or_label_configurations(tmp_path):
    write_run(tmp_path / "a", "clip", 0, {"retrieval/t2i_r1": 0.5}, ("trainer.enable_progress_bar=false",))
    (row,) = _rows(tmp_path)
    assert row.label == "(defaults)"


def test_settings_every_row_shares_are_said_once_above_the_table(tmp_path):
    for bridge, value in (("linear", 1.0), ("mlp2", 1.2)):
        write_run(tmp_path / bridge, "llava", 0, cider(value), (f"bridge={bridge}", "trainer.max_steps=5"))
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Every row also sets `trainer.max_steps=5`." in md
    assert "| 1 | llava | bridge=mlp2 | trained" in md and "| llava | bridge=linear | trained" in md
    with open(tmp_path / "out" / "leaderboard.csv") as f:
        assert {r["config"] for r in csv.DictReader(f)} == {"bridge=linear trainer.max_steps=5",
                                                             "bridge=mlp2 trainer.max_steps=5"}
