"""The leaderboard on hand-written run directories: seeds folded, data groups kept apart,
noise and blind baselines checked, broken runs listed, outputs written."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from mmzoo.compare.records import collect
from mmzoo.compare.table import build_groups
from mmzoo.leaderboard import main, write
from tests.runs import EVAL_A, EVAL_B, cider, write_run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, (lin, mlp2, mlp3) in enumerate([(1.0, 1.5, 1.45), (1.1, 1.55, 1.65), (1.2, 1.6, 1.5)]):
        write_run(root / f"sweep/{seed}_lin", "llava", seed, {**cider(lin), "vqa/accuracy": 0.5}, ("bridge=linear",))
        write_run(root / f"sweep/{seed}_mlp2", "llava", seed, {**cider(mlp2), "vqa/accuracy": 0.6}, ("bridge=mlp2",))
        write_run(root / f"sweep/{seed}_mlp3", "llava", seed, cider(mlp3), ("bridge=mlp3",))
    write_run(root / "minigpt4", "minigpt4", 0, cider(0.35, blank=0.34, shuffled=0.2))
    write_run(root / "clip", "clip", 0, {"retrieval/t2i_r1": 0.6, "retrieval/chance_r1": 0.01})
    write_run(root / "other_data", "llava", 0, cider(9.0), ("bridge=linear",), eval_hash=EVAL_B)
    write_run(root / "no_hash", "llava", 0, cider(3.0), ("bridge=mlp3",), eval_hash=None)
    write_run(root / "vqa_only", "instructblip", 0, {"vqa/accuracy": 0.4})  # generative, no CIDEr: a blank
    failed = root / "crashed"
    failed.mkdir()
    (failed / "metrics.json").write_text(json.dumps({
        "schema": 2, "status": "failed", "error": "RuntimeError: CUDA out of memory", "model": "blip2",
        "overrides": ["model=blip2", "bridge.qformer.num_queries=32", "seed=1"], "seed": 1}))
    broken = {
        "truncated": '{"schema": 2, "status": "ok", "metr',
        "empty": "",
        "old": json.dumps({"model": "clip", "metrics": {"retrieval/t2i_r1": 0.9}}),
        "list": "[1, 2]",
        "text_metric": json.dumps({"schema": 2, "status": "ok", "model": "clip", "metrics": {"x/y": "high"}}),
        "future": json.dumps({"schema": 3, "status": "ok", "model": "clip", "metrics": {"x/y": 1}}),
    }
    for name, text in broken.items():
        (root / "broken" / name).mkdir(parents=True)
        (root / "broken" / name / "metrics.json").write_text(text)
    (root / "broken" / "killed" / ".hydra").mkdir(parents=True)  # a Hydra job that never wrote metrics
    return root


def _row(groups, model, label):
    return next(r for g in groups for r in g.rows if r.model == model and r.label == label)


def test_collect_sorts_runs_failed_and_skipped_with_reasons(runs):
    collection = collect(runs)
    assert len(collection.runs) == 9 + 5
    assert [(r.name, r.error) for r in collection.failed] == [("crashed", "RuntimeError: CUDA out of memory")]
    reasons = {Path(s.name).name: s.reason for s in collection.skipped}
    assert set(reasons) == {"truncated", "empty", "old", "list", "text_metric", "future", "killed"}
    assert "truncated or malformed" in reasons["truncated"] and "empty" in reasons["empty"]
    assert "schema 1" in reasons["old"] and "schema 3" in reasons["future"]
    assert "not an object" in reasons["list"] and "not a number" in reasons["text_metric"]
    assert "no metrics.json" in reasons["killed"]


def test_seeds_fold_into_mean_and_sample_std(runs):
    groups = build_groups(collect(runs).runs)
    linear = _row(groups, "llava", "bridge=linear")
    assert linear.n == 3 and linear.seeds == [0, 1, 2]
    summary = linear.summary("caption/cider")
    assert summary.mean == pytest.approx(1.1) and summary.std == pytest.approx(0.1)
    assert _row(groups, "minigpt4", "(defaults)").summary("caption/cider").std is None


def test_runs_on_different_evaluation_data_or_tasks_are_never_ranked_together(runs):
    groups = build_groups(collect(runs).runs)
    assert [(g.eval_data, g.task) for g in groups] == [
        ((EVAL_A, 512), "generative"), ((EVAL_A, 512), "retrieval"), ((EVAL_B, 512), "generative"), (None, "generative")
    ]
    a, a_retrieval, b, unknown = groups
    assert a.rows[0].label == "bridge=mlp2" and a.rows[0].rank == 1  # not the 9.0 of data B
    assert [r.summary("caption/cider").mean for r in b.rows] == [9.0] and b.rows[0].rank == 1
    assert not unknown.ranked and all(r.rank is None for r in unknown.rows)
    assert a.metric == "caption/cider"
    assert _row(groups, "instructblip", "(defaults)").rank is None  # reports no CIDEr: listed, not ranked
    # clip reports no CIDEr either: it is ranked among retrieval models, by retrieval
    assert a_retrieval.metric == "retrieval/t2i_r1" and [r.model for r in a_retrieval.rows] == ["clip"]
    assert _row(groups, "clip", "(defaults)").rank == 1


def test_samples_evaluated_are_part_of_the_data_identity(tmp_path):
    write_run(tmp_path / "full", "llava", 0, cider(1.0), eval={"seconds": 9.0, "samples": 1000})
    write_run(tmp_path / "part", "llava", 1, cider(2.0))
    assert sorted(g.eval_data[1] for g in build_groups(collect(tmp_path).runs)) == [512, 1000]


def test_difference_from_best_is_judged_against_seed_spread(runs):
    groups = build_groups(collect(runs).runs)
    assert _row(groups, "llava", "bridge=mlp2").vs_best is None  # it is the best
    linear = _row(groups, "llava", "bridge=linear").vs_best
    assert linear.differs is True and linear.p < 0.05
    mlp3 = _row(groups, "llava", "bridge=mlp3").vs_best
    assert mlp3.differs is False and mlp3.p > 0.5
    assert _row(groups, "minigpt4", "(defaults)").vs_best.p is None  # n=1: no spread to compare


def test_rows_that_do_not_clear_their_blind_baseline_are_flagged(runs):
    groups = build_groups(collect(runs).runs)
    assert _row(groups, "minigpt4", "(defaults)").blind_failures == ["caption/cider"]  # 0.35 vs 0.34 blank
    assert _row(groups, "llava", "bridge=linear").blind_failures == []  # 1.1 vs 0.4 shuffled


def test_blind_margin_is_relative_for_large_values(tmp_path):
    write_run(tmp_path / "close", "llava", 0, cider(2.15, blank=2.0, shuffled=1.0))  # +7.5%: < 10%
    write_run(tmp_path / "clear", "llava", 0, cider(2.25, blank=2.0, shuffled=1.0), ("bridge=mlp2",))
    groups = build_groups(collect(tmp_path).runs)
    assert _row(groups, "llava", "(defaults)").blind_failures == ["caption/cider"]
    assert _row(groups, "llava", "bridge=mlp2").blind_failures == []


def test_outputs_show_groups_cost_provenance_failures_and_skips(runs, capsys):
    out = runs.parent / "out"
    assert main([str(runs), "--out", str(out)]) == 0
    md = (out / "leaderboard.md").read_text()
    assert len(re.findall(r"## generative models, evaluation data [0-9a-f]{12} ", md)) == 2
    assert len(re.findall(r"## retrieval models, evaluation data [0-9a-f]{12} ", md)) == 1
    assert "evaluation data not recorded" in md
    assert "aaaaaaaaaaaa" in md and "bbbbbbbbbbbb" in md and "never ranked against each other" in md
    assert "1.1000 ± 0.1000" in md and "n=3" in md and "n=1" in md
    assert "differs (p=" in md and "within noise (p=" in md and "n/a (n<2)" in md
    assert "NO: caption/cider" in md
    assert "1.5M / 12M" in md and "110.0" in md  # params; mean samples/s over seeds 0,1,2
    assert "802 CPU RSS" in md  # peak memory: the max over seeds
    assert "01234567 +dirty" in md and "AMD EPYC, 2 cores" in md and "encoder←zoo/clip-1234" in md
    assert "torch 2.14.1" in md
    assert "CUDA out of memory" in md and "blip2" in md
    for name in ("truncated", "old", "killed"):
        assert f"broken/{name}" in md
    assert "## generative models, evaluation data aaaaaaaaaaaa" in capsys.readouterr().out
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    linear = next(r for r in rows if r["config"] == "bridge=linear" and r["eval data"] == EVAL_A)
    assert float(linear["caption/cider mean"]) == pytest.approx(1.1)
    assert float(linear["caption/cider std"]) == pytest.approx(0.1)
    assert linear["n"] == "3" and linear["train seconds"] == "61.0"
    for name in ("leaderboard.png", "leaderboard.html"):
        assert (out / name).stat().st_size > 1000


def test_empty_folder_says_what_to_run(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "python -m mmzoo.run" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 1
    assert "no such folder" in capsys.readouterr().out


def sweep(root: Path, key: str, values: list[str], means: list[float], seeds: int = 3) -> Path:
    for i, (value, mean) in enumerate(zip(values, means, strict=True)):
        for seed in range(seeds):
            metrics = {**cider(mean + 0.05 * (seed - 1)), "vqa/accuracy": 0.5}
            write_run(root / f"{i * seeds + seed}_{key}={value},seed={seed}", "blip2", seed, metrics, (f"{key}={value}",))
    return root


def test_sweep_folder_gets_an_ablation_table_and_plot_in_numeric_order(tmp_path):
    root = sweep(tmp_path / "multirun" / "blip2_queries", "bridge.qformer.num_queries", ["32", "8", "16"],
                 [1.3, 1.0, 1.2])
    groups = build_groups(collect(root).runs)
    assert len(groups) == 1 and groups[0].swept == ["bridge.qformer.num_queries"]
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    ablation = md.split("### Ablation over bridge.qformer.num_queries")[1]
    lines = [line for line in ablation.splitlines() if line.startswith("| ") and "n=3" in line]
    assert [line.split(" | ")[0] for line in lines] == ["| 8", "| 16", "| 32"]
    assert "1.0000 ± 0.0500" in lines[0] and "1.3000 ± 0.0500" in lines[2]
    assert (tmp_path / "out" / "ablation.png").stat().st_size > 1000


def test_two_swept_keys_plot_one_line_per_value_of_the_second(tmp_path):
    root = tmp_path / "minigpt4_qformer"
    for frozen in ("true", "false"):
        for bridge in ("linear", "mlp3"):
            for seed in range(2):
                write_run(root / f"{frozen}{bridge}{seed}", "minigpt4", seed, cider(1.0 + seed * 0.1),
                          (f"bridge.frozen={frozen}", f"bridge={bridge}"))
    (group,) = build_groups(collect(root).runs)
    assert group.swept == ["bridge.frozen", "bridge"] and len(group.rows) == 4
    paths = write(collect(root), [group], tmp_path / "o")
    assert paths["ablation-0"].name == "ablation.png"


def write_examples(run_dir: Path, keys: list[str], caption: str, answer: str, images: bool = False) -> None:
    lines = [{"key": k, "captions": f"a red circle {k}", "generated_captions": f"{caption} {k}",
              "questions": "what colour is the circle?", "answers": "red", "generated_answers": answer}
             for k in keys]
    (run_dir / "examples.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\nnot json\n")
    if images:
        (run_dir / "examples").mkdir()
        for k in keys:
            Image.new("RGB", (64, 64), (200, 30, 30)).save(run_dir / "examples" / f"{k}.png")


def test_html_is_self_contained_and_shows_models_side_by_side(tmp_path):
    llava = write_run(tmp_path / "llava", "llava", 0, cider(1.5))
    minigpt4 = write_run(tmp_path / "minigpt4", "minigpt4", 0, cider(1.2))
    write_run(tmp_path / "clip", "clip", 0, {"retrieval/t2i_r1": 0.5})
    write_examples(llava, ["k3", "k1", "k2", "k9"], "llava says", "red", images=True)
    write_examples(minigpt4, ["k1", "k2", "k3"], "minigpt4 says", "blue")
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--examples", "2"]) == 0
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    assert "<script>" in page and "<style>" in page
    side = page.split("Side by side")[1]
    assert re.findall(r"<h3>(k\d)</h3>", side) == ["k3", "k1"]  # llava's order, keys both runs have
    assert "llava says k3" in side and "minigpt4 says k3" in side and "a red circle k3" in side
    assert side.count('class="thumb"') == 2 and "data:image/png;base64," in side
    assert page.count("data:image/png;base64,") >= 3  # two thumbnails and the leaderboard plot


# ---- the page in a real browser -----------------------------------------------------------
CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


class _Tables(HTMLParser):
    """Header and cell texts of every ``<table id=...>`` in a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None
        self.sorted: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table" and attr.get("id"):
            self.current = str(attr["id"])
            self.tables[self.current] = {"header": [], "rows": []}
        elif self.current and tag == "tr":
            self.tables[self.current]["rows"].append([])
        elif self.current and tag in ("th", "td"):
            self.cell = []
            if attr.get("aria-sort"):
                self.sorted[self.current] = f"{len(self.tables[self.current]['header'])}:{attr['aria-sort']}"

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self.current and tag in ("th", "td") and self.cell is not None:
            table = self.tables[self.current]
            (table["header"] if tag == "th" else table["rows"][-1]).append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None


# as root in a container (CI) chromium needs --no-sandbox; the rest keep it off the network (no
# component updates, sync, field trials or first-run pings) and on a fresh profile per call
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps")


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tempfile.mkdtemp(prefix="profile-", dir=tmp_path)
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def dom_tables(tmp_path: Path, url: str) -> _Tables:
    parser = _Tables()
    parser.feed(chromium(tmp_path, "--dump-dom", url))
    for table in parser.tables.values():
        table["rows"] = [r for r in table["rows"] if r]  # the header row holds no td
    return parser


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_page_renders_and_sorts_in_headless_chromium(runs, tmp_path):
    out = tmp_path / "out"
    main([str(runs), "--out", str(out)])
    url = (out / "leaderboard.html").as_uri()

    shot = tmp_path / "page.png"
    chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", url)
    image = Image.open(shot).convert("L")
    assert image.size == (1400, 1000)
    assert len(set(image.resize((140, 100)).getdata())) > 20  # text and table rules, not a blank page

    before = dom_tables(tmp_path, url)
    table = before.tables["group-0"]
    config, cider_col = table["header"].index("config"), table["header"].index("caption/cider")
    assert [r[config] for r in table["rows"]][:3] == ["bridge=mlp2", "bridge=mlp3", "bridge=linear"]
    assert "group-0" not in before.sorted

    by_config = dom_tables(tmp_path, f"{url}#sort=group-0:{config}")  # one click: text ascending
    configs = [r[config] for r in by_config.tables["group-0"]["rows"]]
    assert configs == sorted(configs) and configs != [r[config] for r in table["rows"]]
    assert by_config.sorted["group-0"] == f"{config}:ascending"

    ascending = dom_tables(tmp_path, f"{url}#sort=group-0:{cider_col}:asc")  # two clicks on a number column
    values = [r[cider_col] for r in ascending.tables["group-0"]["rows"]]
    numbers = [float(v.split(" ")[0]) for v in values if v]
    assert numbers == sorted(numbers) == [0.35, 1.1, 1.5333, 1.55] and values[-1] == ""  # blanks last
    assert ascending.sorted["group-0"] == f"{cider_col}:ascending"


def test_a_rerun_of_the_same_seed_replaces_the_older_run(tmp_path):
    import os

    old = write_run(tmp_path / "2024/0", "llava", 0, cider(1.0))
    write_run(tmp_path / "2025/0", "llava", 0, cider(1.4))
    write_run(tmp_path / "2025/1", "llava", 1, cider(1.6))
    os.utime(old / "metrics.json", (1_000_000, 1_000_000))
    collection = collect(tmp_path)
    assert sorted(r.name for r in collection.runs) == ["2025/0", "2025/1"]
    assert [(s.name, "repeats seed 0 of 2025/0" in s.reason) for s in collection.skipped] == [("2024/0", True)]
    (row,) = build_groups(collection.runs)[0].rows
    assert row.n == 2 and row.summary("caption/cider").mean == pytest.approx(1.5)


def test_garbled_optional_fields_leave_blanks_not_a_crash(tmp_path, capsys):
    write_run(tmp_path / "odd", "llava", 0, cider(1.0), provenance="garbage", lineage=[1], params="many",
              train={"seconds": "fast"}, memory=None)
    bad = write_run(tmp_path / "bad_seed", "llava", 1, cider(1.0))
    record = json.loads((bad / "metrics.json").read_text())
    (bad / "metrics.json").write_text(json.dumps({**record, "seed": "one"}))
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    collection = collect(tmp_path)
    assert [s.reason for s in collection.skipped] == ["seed 'one' is not an integer"]
    (group,) = build_groups(collection.runs)
    assert group.eval_data is None  # no provenance: its evaluation data is unknown, so not ranked
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| llava | (defaults) | trained | n=1 | 1.0000 |" in md and "? / ?" in md
