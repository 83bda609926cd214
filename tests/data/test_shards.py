"""Shard writers (img2dataset layout) and the ``python -m mmzoo.data.shards`` command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from mmzoo.data import shapes
from mmzoo.data.shapes import make_sample
from mmzoo.data.shards import ShardWriter, ensure_shapes, main, write_from_folder, write_from_table


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def jpeg_bytes(colour: str = "red", fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 good images (jpg, png, jpg+json), one without caption, one corrupt."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes("red"))
    (folder / "a.txt").write_text("a red picture\n")
    (folder / "sub" / "b.png").write_bytes(jpeg_bytes("blue", "PNG"))
    (folder / "sub" / "b.txt").write_text("a blue picture")
    (folder / "c.jpg").write_bytes(jpeg_bytes("green"))
    (folder / "c.txt").write_text("a green picture")
    (folder / "c.json").write_text('{"licence": "cc0"}')
    (folder / "nocaption.jpg").write_bytes(jpeg_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder / "broken.txt").write_text("broken")
    return folder


def test_writer_round_trip(tmp_path: Path) -> None:
    jpg = jpeg_bytes()
    with ShardWriter(tmp_path, samples_per_shard=10) as writer:
        for i in range(23):
            image, caption, record = make_sample(i, "train", 0, 32)
            writer.write(jpg if i == 0 else image, caption, record)
        writer.skip("missing_caption")
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["000000.tar", "000001.tar", "000002.tar"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["total"] == 23 and [s["count"] for s in manifest["shards"]] == [10, 10, 3]
    assert manifest["skipped"] == {"missing_caption": 1}
    stats = json.loads((tmp_path / "000002_stats.json").read_text())
    assert stats["successes"] == 3 and stats["count"] == 4 and stats["failed_to_download"] == 1
    members = tar_members(tmp_path / "000000.tar")
    assert members["000000000.jpg"] == jpg  # JPEG bytes are copied as is
    assert len(members) == 30 and "000000009.json" in members
    _, caption, record = make_sample(5, "train", 0, 32)
    assert members["000000005.txt"].decode() == caption
    meta = json.loads(members["000000005.json"])
    assert meta["scene"] == record["scene"] and meta["key"] == "000000005"
    assert Image.open(io.BytesIO(members["000000005.jpg"])).size == (32, 32)


def test_writer_converts_other_formats_and_paths(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    Image.new("RGBA", (8, 8), (0, 0, 255, 128)).save(png)
    with ShardWriter(tmp_path / "out") as writer:
        key = writer.write(png, "a png", {"source": "x.png"})
        with pytest.raises(OSError):
            writer.write(b"garbage", "bad")
    members = tar_members(tmp_path / "out" / "000000.tar")
    assert key == "000000000" and members[f"{key}.jpg"][:3] == b"\xff\xd8\xff"
    assert set(members) == {f"{key}.jpg", f"{key}.txt", f"{key}.json"}


def test_write_from_folder_skips_and_counts(image_folder: Path, tmp_path: Path) -> None:
    summary = write_from_folder(image_folder, tmp_path / "out", samples_per_shard=2)
    assert summary["written"] == 3 and summary["shards"] == 2
    assert summary["skipped"] == {"missing_caption": 1, "unreadable_image": 1}
    members = {**tar_members(tmp_path / "out" / "000000.tar"), **tar_members(tmp_path / "out" / "000001.tar")}
    captions = sorted(v.decode() for k, v in members.items() if k.endswith(".txt"))
    assert captions == ["a blue picture", "a green picture", "a red picture"]
    metas = [json.loads(v) for k, v in members.items() if k.endswith(".json")]
    assert {"licence": "cc0"}.items() <= next(m for m in metas if m["source"] == "c.jpg").items()


def test_written_pngs_keep_their_picture(tmp_path: Path) -> None:
    """Re-encoding as JPEG puts transparency on white and scales 16-bit (a bare convert gives black, white)."""
    import numpy as np

    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(folder / "clear.png")
    Image.fromarray(np.full((16, 16), 0x4000, dtype=np.uint16)).save(folder / "deep.png")
    for stem in ("clear", "deep"):
        (folder / f"{stem}.txt").write_text(f"a {stem} picture")
    write_from_folder(folder, tmp_path / "out")
    members = tar_members(tmp_path / "out" / "000000.tar")
    pixels = {
        json.loads(members[name[:-3] + "json"])["source"]: Image.open(io.BytesIO(data)).getpixel((8, 8))
        for name, data in members.items()
        if name.endswith(".jpg")
    }
    assert min(pixels["clear.png"]) >= 250  # white, not black
    assert all(abs(v - 64) <= 2 for v in pixels["deep.png"])  # a quarter grey, not clipped to white


def test_write_from_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        write_from_folder(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        write_from_folder(tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_write_from_table(image_folder: Path, tmp_path: Path, fmt: str) -> None:
    import pandas as pd

    rows = pd.DataFrame(
        {
            "image": [
                "a.jpg",
                "sub/b.png",
                str(image_folder / "c.jpg"),
                "missing.jpg",
                "broken.jpg",
                "a.jpg",
            ],
            "caption": ["red", "blue", "green", "gone", "broken", ""],
            "width": [12, 12, 12, 0, 0, 12],
        }
    )
    path = image_folder / f"table.{fmt}"
    if fmt == "parquet":
        rows.to_parquet(path)
    else:
        rows.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    summary = write_from_table(path, tmp_path / "out")
    assert summary["written"] == 3
    assert summary["skipped"] == {"missing_image": 1, "unreadable_image": 1, "missing_caption": 1}
    members = tar_members(tmp_path / "out" / "000000.tar")
    assert json.loads(members["000000001.json"])["source"] == "sub/b.png"


def test_write_from_table_bad_columns(image_folder: Path, tmp_path: Path) -> None:
    path = image_folder / "t.csv"
    path.write_text("path,text\na.jpg,red\n")
    with pytest.raises(ValueError, match="no column"):
        write_from_table(path, tmp_path / "out")
    summary = write_from_table(path, tmp_path / "out", image_col="path", caption_col="text")
    assert summary["written"] == 1


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmzoo.data.shards", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_end_to_end(image_folder: Path, tmp_path: Path) -> None:
    done = run_cli("folder", str(image_folder), str(tmp_path / "f"), "--samples-per-shard", "2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["written"] == 3

    done = run_cli(
        "shapes",
        str(tmp_path / "s"),
        "--train-size",
        "12",
        "--test-size",
        "3",
        "--image-size",
        "16",
        "--samples-per-shard",
        "5",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["train"]["shards"] == 3


def test_cli_table_in_process(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (image_folder / "t.tsv").write_text("img\tcap\na.jpg\tred\n")
    assert (
        main(
            [
                "table",
                str(image_folder / "t.tsv"),
                str(tmp_path / "t"),
                "--image-col",
                "img",
                "--caption-col",
                "cap",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["written"] == 1
    assert main(["table", str(image_folder / "t.tsv"), str(tmp_path / "t")]) == 2
    assert "no column" in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    done = run_cli("folder", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert done.returncode == 2 and "error:" in done.stderr and "missing" in done.stderr
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.jpg").write_bytes(jpeg_bytes())  # no caption: nothing to write
    assert main(["folder", str(tmp_path / "only"), str(tmp_path / "out")]) == 1
    assert "no sample was written" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["table"])  # argparse usage error
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "img2dataset" in capsys.readouterr().out


def test_ensure_shapes_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    splits = ensure_shapes(tmp_path, train_size=25, test_size=5, image_size=32, samples_per_shard=10)
    assert [len(splits["train"]), len(splits["test"])] == [3, 1]
    assert all(Path(u).is_file() for u in splits["train"] + splits["test"])
    manifest = json.loads((Path(splits["train"][0]).parent / "manifest.json").read_text())
    assert manifest["total"] == 25
    monkeypatch.setattr(shapes, "make_sample", lambda *a: pytest.fail("regenerated"))
    assert ensure_shapes(tmp_path, train_size=25, test_size=5, image_size=32, samples_per_shard=10) == splits
    assert [p.name for p in tmp_path.iterdir()] == [Path(splits["train"][0]).parents[1].name]


def test_interrupted_generation_never_looks_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shapes.make_sample

    def flaky(index: int, *args: object) -> object:
        if index == 7:
            raise KeyboardInterrupt
        return real(index, *args)

    monkeypatch.setattr(shapes, "make_sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        ensure_shapes(tmp_path, train_size=10, test_size=2, image_size=16)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(shapes, "make_sample", real)
    splits = ensure_shapes(tmp_path, train_size=10, test_size=2, image_size=16)
    assert len(splits["train"]) == 1


def test_default_root_honours_mmzoo_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path))
    splits = ensure_shapes(train_size=3, test_size=2, image_size=16)
    assert Path(splits["train"][0]).is_relative_to(tmp_path / "shapes")


def _sources(folder: Path) -> set[str]:
    out = set()
    for tar in folder.glob("*.tar"):
        out |= {json.loads(v)["source"] for k, v in tar_members(tar).items() if k.endswith(".json")}
    return out


def test_held_out_split_is_disjoint_and_stable_as_the_folder_grows(tmp_path: Path) -> None:
    """A test image stays a test image when more images are added (split by a hash of the name)."""
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(60):
        Image.new("RGB", (8, 8), (i * 4, 0, 0)).save(folder / f"p{i:03d}.png")
        (folder / f"p{i:03d}.txt").write_text(f"picture number {i}")
    summary = write_from_folder(folder, tmp_path / "train", 25, test_out=tmp_path / "test", test_fraction=0.2)
    train, test = _sources(tmp_path / "train"), _sources(tmp_path / "test")
    assert summary["written"] + summary["test"]["written"] == 60 and not train & test
    assert 4 <= len(test) <= 20  # about a fifth
    for i in range(60, 90):
        Image.new("RGB", (8, 8), (0, i, 0)).save(folder / f"p{i:03d}.png")
        (folder / f"p{i:03d}.txt").write_text(f"picture number {i}")
    write_from_folder(folder, tmp_path / "train2", 25, test_out=tmp_path / "test2", test_fraction=0.2)
    assert test <= _sources(tmp_path / "test2") and train <= _sources(tmp_path / "train2")


def test_cli_writes_a_test_split(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["folder", str(image_folder), str(tmp_path / "tr"), "--test-out", str(tmp_path / "te"), "--test-fraction", "0.5"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] + summary["test"]["written"] == 3
    assert (tmp_path / "te" / "manifest.json").is_file()
    bad = ["folder", str(image_folder), str(tmp_path / "nothing"), "--test-out", str(tmp_path / "te2"), "--test-fraction", "1.5"]
    assert main(bad) == 2  # a fraction outside (0, 1): an error naming it, before anything is written
    assert "test_fraction" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()
