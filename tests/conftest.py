"""Shared fixtures: a private cache for every test and tiny shard folders for the data tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from mmzoo.data.shapes import make_sample
from mmzoo.data.shards import ShardWriter


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test generates lands in the home directory."""
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path_factory.getbasetemp() / "mmzoo-cache"))


def write_shapes(
    out: Path, n: int, samples_per_shard: int, split: str = "train", image_size: int = 32
) -> Path:
    with ShardWriter(out, samples_per_shard) as writer:
        for i in range(n):
            image, caption, record = make_sample(i, split, 0, image_size)
            writer.write(image, caption, record, key=record["key"])
    return out


@pytest.fixture(scope="session")
def shapes_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 shards x 10 samples of 32 px shapes, with manifest and stats."""
    return write_shapes(tmp_path_factory.mktemp("shapes") / "shards", 40, 10)


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="session")
def bad_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shards of 6 samples each: per shard, one corrupt jpg and one sample without .txt."""
    out = tmp_path_factory.mktemp("bad")
    for shard in range(2):
        with tarfile.open(out / f"{shard:06d}.tar", "w") as tar:
            for i in range(6):
                key = f"{shard:05d}{i:04d}"
                image, caption, _ = make_sample(shard * 10 + i, "train", 0, 32)
                buf = io.BytesIO()
                image.save(buf, format="JPEG")
                jpg = b"\xff\xd8\xff this is not a jpeg" if i == 1 else buf.getvalue()
                add_tar_member(tar, f"{key}.jpg", jpg)
                if i != 3:
                    add_tar_member(tar, f"{key}.txt", caption.encode())
                add_tar_member(tar, f"{key}.json", b"{}")
    return out


def collate_list(samples: list[dict]) -> dict:
    """A model-free collator for the tests: stacked images, lists of the rest."""
    return {
        "pixel_values": torch.stack([s["image"] for s in samples]),  # (B, 3, H, W)
        "captions": [s["caption"] for s in samples],
        "keys": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }


@pytest.fixture
def collate():
    return collate_list


@pytest.fixture
def shapes_writer():
    return write_shapes
