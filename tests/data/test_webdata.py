"""The streaming pipeline, bad-sample accounting across workers, and the data modules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmzoo.data.datamodule import ShapesDataModule, ShardDataModule
from mmzoo.data.webdata import (
    SampleErrors,
    ShardLoader,
    dataset_size,
    expand_urls,
    image_transform,
    make_pipeline,
    num_batches,
)

TRANSFORM = image_transform(16)


def pipeline(urls, collate, errors, **kw):
    kw = {"batch_size": 4, "shuffle_buffer": 0, **kw}
    return make_pipeline(urls, transform=TRANSFORM, collate=collate, errors=errors, **kw)


def read_all(pipe, num_workers: int = 0) -> list[dict]:
    batches = list(ShardLoader(pipe, num_workers=num_workers))
    return batches


def keys_of(batches: list[dict]) -> list[str]:
    return [k for b in batches for k in b["keys"]]


def test_expand_urls(shapes_shards: Path) -> None:
    tars = [str(shapes_shards / f"{i:06d}.tar") for i in range(4)]
    assert expand_urls(shapes_shards) == tars
    assert expand_urls(str(shapes_shards / "{000000..000003}.tar")) == tars
    assert expand_urls(str(shapes_shards / "*.tar")) == tars
    assert expand_urls([tars[1], str(shapes_shards / "00000{2,3}.tar")]) == tars[1:]
    assert expand_urls("pipe:cat x.tar") == ["pipe:cat x.tar"]


def test_expand_urls_missing_names_the_spec(tmp_path: Path, shapes_shards: Path) -> None:
    for spec in [
        str(tmp_path / "nope.tar"),
        str(tmp_path / "*.tar"),
        str(tmp_path),
        [str(tmp_path / "a.tar"), str(tmp_path / "b.tar")],
    ]:
        with pytest.raises(FileNotFoundError, match="spec"):
            expand_urls(spec)


def test_expand_urls_keeps_gaps_for_the_reader_to_count(
    shapes_shards: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """img2dataset leaves gaps where a shard failed: streaming goes on, each gap is counted when read."""
    urls = expand_urls(str(shapes_shards / "{000003..000004}.tar"))
    assert urls == [str(shapes_shards / "000003.tar"), str(shapes_shards / "000004.tar")]
    assert "1 of 2 listed shards do not exist" in caplog.text and "000004.tar" in caplog.text


def test_dataset_size_from_manifest_and_stats(shapes_shards: Path, tmp_path: Path) -> None:
    urls = expand_urls(shapes_shards)
    assert dataset_size(urls) == 40 and dataset_size(urls[:2]) == 20
    copy = tmp_path / "img2dataset"
    shutil.copytree(shapes_shards, copy)
    (copy / "manifest.json").unlink()  # img2dataset writes only *_stats.json
    assert dataset_size(expand_urls(copy)) == 40
    (copy / "000001_stats.json").unlink()
    assert dataset_size(expand_urls(copy)) is None


def test_round_trip(shapes_shards: Path, collate) -> None:
    errors = SampleErrors()
    batches = read_all(pipeline(shapes_shards, collate, errors))
    assert keys_of(batches) == [f"{i:09d}" for i in range(40)]  # no shuffle: shard order
    assert [len(b["keys"]) for b in batches] == [4] * 10
    first = batches[0]
    assert first["pixel_values"].shape == (4, 3, 16, 16) and first["pixel_values"].dtype == torch.float32
    assert first["captions"][0] == first["meta"][0]["caption"] and "scene" in first["meta"][0]
    assert errors.total == 0 and errors.report() == "no samples skipped"


def test_a_model_without_a_transform_gets_the_same_samples_without_pixels(
    shapes_shards: Path, bad_shards: Path, collate
) -> None:
    def texts(samples: list[dict]) -> dict:
        assert all(s["image"] is None for s in samples)  # never decoded
        return {"keys": [s["key"] for s in samples], "captions": [s["caption"] for s in samples]}

    def read(urls, transform, collate) -> list[dict]:
        pipe = make_pipeline(urls, transform=transform, collate=collate, batch_size=4, shuffle_buffer=8, errors=SampleErrors())
        return read_all(pipe)

    with_pixels = read(shapes_shards, TRANSFORM, collate)
    text_only = read(shapes_shards, None, texts)
    assert [b["keys"] for b in text_only] == [b["keys"] for b in with_pixels]
    assert [b["captions"] for b in text_only] == [b["captions"] for b in with_pixels]
    # a text-only reader still skips a sample without its caption, but an unreadable image is not its concern
    errors = SampleErrors()
    read_all(make_pipeline(bad_shards, transform=None, collate=texts, batch_size=4, shuffle_buffer=0, errors=errors))
    assert errors.counts == {"missing_caption": 2}


def test_partial_batches_and_num_batches(shapes_shards: Path, collate) -> None:
    counts = [10, 10, 10, 10]
    for partial in (True, False):
        for workers in (0, 2):
            pipe = pipeline(
                shapes_shards, collate, SampleErrors(), batch_size=3, partial=partial, num_workers=workers
            )
            batches = read_all(pipe, workers)
            assert len(batches) == num_batches(counts, 3, num_workers=workers, partial=partial)
    assert num_batches(counts, 3, rank=1, world_size=2, num_workers=2) == 8


def test_shuffle_is_seeded_and_changes_with_epoch(shapes_shards: Path, collate) -> None:
    def epochs(seed: int) -> list[list[str]]:
        loader = ShardLoader(pipeline(shapes_shards, collate, SampleErrors(), shuffle_buffer=8, seed=seed))
        return [keys_of(list(loader)) for _ in range(2)]

    a, b = epochs(0), epochs(0)
    assert a == b
    assert a[0] != a[1] and sorted(a[0]) == sorted(a[1]) == [f"{i:09d}" for i in range(40)]
    assert a[0] != sorted(a[0]) and epochs(1)[0] != a[0]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_samples_are_skipped_and_counted(bad_shards: Path, collate, num_workers: int) -> None:
    errors = SampleErrors()
    batches = read_all(pipeline(bad_shards, collate, errors, num_workers=num_workers), num_workers)
    assert len(keys_of(batches)) == 8  # 2 shards x (6 - 1 corrupt - 1 without caption)
    assert errors.counts == {"corrupt_image": 2, "missing_caption": 2}  # counted in the workers, read here
    report = errors.report()
    assert "skipped 4" in report and "00000" in report and ".tar" in report


def test_truncated_tar_is_counted(shapes_shards: Path, tmp_path: Path, collate) -> None:
    shutil.copytree(shapes_shards, tmp_path / "s")
    tar = tmp_path / "s" / "000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2 + 100])
    errors = SampleErrors()
    keys = keys_of(read_all(pipeline(tmp_path / "s", collate, errors, batch_size=5), 0))
    ahead = [k for k in keys if 10 <= int(k) < 20]  # shard 1: the samples before the cut arrive, in order
    assert 2 <= len(ahead) < 10 and ahead == [f"{i:09d}" for i in range(10, 10 + len(ahead))]
    assert sorted(set(keys) - set(ahead)) == [f"{i:09d}" for i in (*range(10), *range(20, 40))]
    assert errors.counts == {"bad_tar": 1}  # once: not again as the half-read sample's missing caption


def test_too_few_shards_for_workers(shapes_shards: Path, collate) -> None:
    urls = expand_urls(shapes_shards)[:2]
    with pytest.raises(
        ValueError, match=r"2 shard\(s\) for world_size=2 x num_workers=2 = 4.*resampled=True"
    ):
        pipeline(urls, collate, SampleErrors(), num_workers=2, world_size=2)
    pipeline(urls, collate, SampleErrors(), num_workers=2, world_size=2, resampled=True)  # fine: resampled


def test_resampled_epoch_length(shapes_shards: Path, collate) -> None:
    pipe = pipeline(
        expand_urls(shapes_shards)[:1], collate, SampleErrors(), resampled=True, samples_per_epoch=24
    )
    batches = read_all(pipe)
    assert len(batches) == 6 and all(len(b["keys"]) == 4 for b in batches)


def test_image_transform() -> None:
    from PIL import Image

    out = image_transform(8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(
        Image.new("RGB", (32, 32), (255, 0, 0))
    )
    assert out.shape == (3, 8, 8)
    assert torch.allclose(out[0], torch.ones(8, 8)) and torch.allclose(out[1], -torch.ones(8, 8))


def test_shard_datamodule(shapes_shards: Path, bad_shards: Path, collate) -> None:
    dm = ShardDataModule(train=str(shapes_shards), test=str(bad_shards), batch_size=8, num_workers=2)
    with pytest.raises(RuntimeError, match="attach"):
        dm.train_dataloader()
    dm.attach(TRANSFORM, TRANSFORM, collate)
    assert dm.num_train_samples == 40
    train = dm.train_dataloader()
    assert len(train) == 4 and len(list(train)) == 4
    test = dm.test_dataloader()  # no manifest: unknown length, still streams
    assert len(keys_of(list(test))) == 8 and dm.errors.total == 4


def test_persistent_training_workers_reshuffle_each_epoch_as_fresh_ones_do(shapes_shards: Path, collate) -> None:
    """Training's workers live across epochs (no fork and refill per epoch): each pass still
    reads the epoch number, so the stream is the one fresh workers per epoch would give."""

    def two_epochs(persistent: bool) -> list[list[str]]:
        dm = ShardDataModule(train=str(shapes_shards), test=str(shapes_shards), batch_size=4, num_workers=2,
                             shuffle_buffer=8)  # fmt: skip
        dm.attach(TRANSFORM, TRANSFORM, collate)
        loader = dm.train_dataloader()
        assert loader.pipeline[0].persistent_workers  # the DataLoader inside webdataset's WebLoader
        if not persistent:
            loader = ShardLoader(loader.pipeline[0].dataset, num_workers=2, persistent_workers=False)
        return [keys_of(list(loader)) for _ in range(2)]

    persisted = two_epochs(True)
    assert persisted == two_epochs(False)
    assert persisted[0] != persisted[1] and sorted(persisted[0]) == sorted(persisted[1]) == [f"{i:09d}" for i in range(40)]


def test_shapes_datamodule_without_prepare_data(collate) -> None:
    dm = ShapesDataModule(train_size=30, test_size=10, image_size=16, samples_per_shard=10, batch_size=4)
    dm.attach(TRANSFORM, TRANSFORM, collate)
    test = dm.test_dataloader()  # prepare_data was never called
    assert len(test) == 3 and len(keys_of(list(test))) == 10
    assert dm.num_train_samples == 30


def test_shapes_datamodule_fits_with_lightning(collate) -> None:
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3 * 16 * 16, 6)

        def training_step(self, batch: dict, _: int) -> torch.Tensor:
            labels = torch.tensor([m["labels"]["colour"] for m in batch["meta"]])
            return torch.nn.functional.cross_entropy(self.head(batch["pixel_values"].flatten(1)), labels)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = ShapesDataModule(
        train_size=40,
        test_size=10,
        image_size=16,
        samples_per_shard=20,
        batch_size=8,
        num_workers=2,
        shuffle_buffer=16,
    )
    dm.attach(TRANSFORM, TRANSFORM, collate)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(Probe(), datamodule=dm)
    # 2 shards x 20 samples, one per worker, full batches of 8 only: 2 x 2 batches per epoch
    assert trainer.num_training_batches == 4 and trainer.global_step == 8
    assert json.loads(json.dumps(dm.errors.counts)) == {}


def test_a_split_with_fewer_shards_than_ranks_is_dealt_by_sample(shapes_shards, collate, monkeypatch):
    """Two ranks, one shard: each rank keeps every other sample; together they see each once,
    and the announced batch counts match what each rank yields."""
    from mmzoo.data.sample_errors import SampleErrors
    from mmzoo.data.webdata import image_transform, make_pipeline, num_batches, shard_counts

    first_shard = sorted(shapes_shards.glob("*.tar"))[:1]
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        pipeline = make_pipeline([str(p) for p in first_shard], transform=image_transform(32), collate=collate,
                                 batch_size=3, shuffle_buffer=0, errors=SampleErrors(), world_size=2, split="samples")
        batches = list(pipeline)
        assert len(batches) == num_batches(shard_counts([str(p) for p in first_shard]), 3, rank=rank, world_size=2,
                                           split="samples")
        seen.append([k for b in batches for k in b["keys"]])
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == 10
