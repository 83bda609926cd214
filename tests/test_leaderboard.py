import json

from mmzoo.leaderboard import collect, main, to_markdown


def fake_run(path, model, metrics):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "model": model, "parts": {"encoder": "tiny"}, "metrics": metrics,
        "params": {"trainable": 10, "total": 20}, "train": {"steps": 5, "seconds": 1.0},
    }))
    (path / "logs").mkdir()
    (path / "logs" / "metrics.csv").write_text("step,train/loss\n0,2.0\n1,1.0\n")


def test_leaderboard_puts_every_model_in_one_table(tmp_path, capsys):
    fake_run(tmp_path / "clip" / "a", "clip", {"retrieval/t2i_r1": 0.9})
    fake_run(tmp_path / "llava" / "b", "llava", {"caption/cider": 1.5, "vqa/accuracy": 0.5})
    rows = collect(tmp_path)
    assert [r["model"] for r in rows] == ["clip", "llava"]
    md = to_markdown(rows)
    assert "caption/cider" in md and "retrieval/t2i_r1" in md and "0.9000" in md
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    for ext in ("md", "csv", "html", "png"):
        assert (tmp_path / "out" / f"leaderboard.{ext}").stat().st_size > 0
    assert "llava" in capsys.readouterr().out
