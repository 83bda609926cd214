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


# ---- tiny end-to-end runs ---------------------------------------------------------------
# Overrides that shrink any zoo run to seconds: a small shapes split, 32 px, no workers.
TINY_DATA = [
    "data.train_size=1000",
    "data.test_size=128",
    "data.samples_per_shard=250",
    "data.image_size=32",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.num_workers=0",
    "data.shuffle_buffer=200",
    "trainer.enable_progress_bar=false",
]


def run_zoo(run_dir: Path, overrides: list[str]) -> dict:
    """Compose the real config with ``overrides`` and run it in-process into ``run_dir``."""
    from mmzoo.api import compose_config
    from mmzoo.run import train_and_evaluate

    return train_and_evaluate(compose_config([*TINY_DATA, *overrides]), run_dir)


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP trained briefly: the frozen vision tower of the generative-model tests."""
    out = tmp_path_factory.mktemp("runs") / "clip"
    run_zoo(out, ["model=clip", "trainer.max_steps=150"])
    return out


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LLaMA pretrained on the shapes text with the scene where the image goes, as
    zoo:lm is: the frozen LLM of those tests. Reading its context emerges after ~100k texts
    (800 packed steps of 128), and without it no frozen-LLM model can see."""
    out = tmp_path_factory.mktemp("runs") / "lm"
    run_zoo(out, ["model=lm", "data.batch_size=128", "trainer.max_steps=800"])
    return out


@pytest.fixture(scope="session")
def qformer_run(tmp_path_factory: pytest.TempPathFactory, clip_run: Path) -> Path:
    """A tiny Q-Former trained by ITC on the frozen tiny CLIP ViT (what zoo:qformer makes)."""
    from mmzoo.zoo import recipes

    recipe = recipes()["qformer"]
    overrides = [o for o in recipe if not o.startswith(("encoder=", "trainer.max_steps"))]
    out = tmp_path_factory.mktemp("runs") / "qformer"
    run_zoo(out, [*overrides, f"encoder.from_run={clip_run}", "trainer.max_steps=150"])
    return out


@pytest.fixture(scope="session")
def blip2_stage1_run(tmp_path_factory: pytest.TempPathFactory, clip_run: Path) -> Path:
    """A tiny BLIP-2 stage 1 (ITC + ITM + ITG) on the frozen tiny CLIP ViT (what zoo:blip2_stage1 makes)."""
    out = tmp_path_factory.mktemp("runs") / "blip2_stage1"
    run_zoo(out, ["experiment=blip2_stage1", f"encoder.from_run={clip_run}", "trainer.max_steps=300"])
    return out
