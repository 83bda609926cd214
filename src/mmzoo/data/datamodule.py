"""Lightning data modules over img2dataset-layout shards.

Why ``attach``: the model owns its image transform and its collator (tokenisation and
prompt templates live in the data path, per model), so the training script builds the
model first and hands both to the data module before ``fit``. The data module only
knows shards, batch sizes, workers and seeds, which is what a Hydra ``data/`` preset sets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from PIL import Image

from mmzoo.data.length_groups import sample_length_of
from mmzoo.data.webdata import (
    SampleErrors,
    ShardLoader,
    SharedEpoch,
    StreamPosition,
    expand_urls,
    make_pipeline,
    num_batches,
    shard_counts,
)

log = logging.getLogger(__name__)


class ShardDataModule(L.LightningDataModule):
    """Streams ``train``/``val``/``test`` shard specs (directory, brace pattern, glob or list) as batches.

    ``val`` is optional: without it no validation runs; with it the trainer validates (the
    model's loss) every epoch or every ``trainer.val_check_interval`` steps. ``name`` is the
    preset's name (``shapes``, ``folder``...), recorded so the zoo can make its own parts on
    the same data. ``feature_cache``: train and validate on the model's frozen features,
    computed once (``mmzoo.data.feature_cache``); evaluation reads pixels. ``group_by_length``:
    training batches of samples of similar token length, from windows of ``group_window``
    batches of the shuffled stream (``mmzoo.data.length_groups``; less padding in
    conversation batches).
    """

    def __init__(
        self,
        train: str | list[str] | None = None,
        test: str | list[str] | None = None,
        val: str | list[str] | None = None,
        name: str = "custom",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        seed: int = 0,
        zero_shot: Mapping[str, Any] | None = None,
        feature_cache: bool = False,
        feature_cache_dir: str | None = None,
        group_by_length: bool = False,
        group_window: int = 16,
    ) -> None:
        super().__init__()
        self.train, self.val, self.test = train, val, test
        self.name = name
        # zero-shot classification tasks this data defines (read by dual-encoder models)
        self.zero_shot = dict(zero_shot or {})
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.resampled = resampled
        self.seed = seed
        self.errors = SampleErrors()
        self.train_transform: Callable[[Image.Image], torch.Tensor] | None = None
        self.eval_transform: Callable[[Image.Image], torch.Tensor] | None = None
        self.collate: Callable[[list[dict[str, Any]]], Any] | None = None
        self.eval_collate: Callable[[list[dict[str, Any]]], Any] | None = None
        self._train_epoch = SharedEpoch()  # survives dataloader rebuilds, so reshuffles keep advancing
        self._train_position = StreamPosition()  # where a resumed run's stream continues (load_state_dict)
        self.feature_cache, self.feature_cache_dir = feature_cache, feature_cache_dir
        self.feature_module: Any = None  # computes cached features; default: the trainer's module
        self.group_by_length, self.group_window = group_by_length, group_window

    def attach(
        self,
        train_transform: Callable[[Image.Image], torch.Tensor] | None,
        eval_transform: Callable[[Image.Image], torch.Tensor] | None,
        collate: Callable[[list[dict[str, Any]]], Any],
        eval_collate: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> ShardDataModule:
        """Give the model's image transforms and collators (the evaluation one may differ, e.g.
        generation prompts instead of teacher-forced targets); call before ``fit``/``test``.
        A transform of None: that model reads no pixels, and the loader decodes none."""
        self.train_transform, self.eval_transform, self.collate = train_transform, eval_transform, collate
        self.eval_collate = eval_collate or collate
        return self

    @property
    def num_train_samples(self) -> int | None:
        counts = shard_counts(expand_urls(self.train)) if self.train is not None else None
        return None if counts is None else sum(counts)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def _loader(self, spec: Any, split: str, *, train: bool) -> ShardLoader:
        if spec is None:
            raise ValueError(f"no {split} shards configured ({split}=null)")
        transform = self.train_transform if train else self.eval_transform
        if self.collate is None:
            raise RuntimeError(
                "call attach(train_transform, eval_transform, collate) before asking for loaders"
            )
        urls = expand_urls(spec)
        decode = None
        if self.feature_cache and split != "test":  # evaluation reads pixels (blind baselines replace them)
            from mmzoo.data.feature_cache import cached_split, decode_cached

            trainer = getattr(self, "trainer", None)
            module = self.feature_module if self.feature_module is not None else getattr(trainer, "lightning_module", None)
            urls = cached_split(urls, split, module=module,
                                transform=transform, errors=self.errors, batch_size=self.eval_batch_size,
                                trainer=trainer, root=self.feature_cache_dir)  # fmt: skip
            decode = decode_cached
        rank, world_size = self._world()
        batch_size = self.batch_size if train else self.eval_batch_size
        resampled = self.resampled and train
        workers = self.num_workers
        # an evaluation split with fewer shards than readers (one test shard, two ranks) is
        # split by sample: every sample is still seen exactly once, and no rank starves
        dealing = "samples" if not train and len(urls) < world_size * max(1, workers) else "shards"
        if dealing == "samples":
            log.info("%s: %d shard(s) for %d rank(s) x %d worker(s): splitting by sample", split, len(urls),
                     world_size, max(1, workers))
        pipeline = make_pipeline(
            urls,
            transform=transform,
            collate=self.collate if train or split == "val" else self.eval_collate,  # val: the loss, teacher-forced
            batch_size=batch_size,
            shuffle_buffer=self.shuffle_buffer if train else 0,
            resampled=resampled,
            seed=self.seed,
            errors=self.errors,
            num_workers=workers,
            world_size=world_size,
            partial=not train,
            epoch=self._train_epoch if train else SharedEpoch(),
            split=dealing,
            decode=decode,
            position=self._train_position if train else None,
            group_length=sample_length_of(self.collate) if train and self.group_by_length else None,
            group_window=self.group_window,
        )
        counts = shard_counts(urls)
        if counts is None:
            length = None
        elif resampled:
            length = max(1, sum(counts) // (world_size * max(1, workers) * batch_size)) * max(1, workers)
        else:
            length = num_batches(
                counts, batch_size, rank=rank, world_size=world_size, num_workers=workers, partial=not train,
                split=dealing,
            )
        # training's workers live across epochs (each pass re-reads the shared epoch number): no
        # re-fork per epoch. Measured, start-up was a small share of short epochs (benchmarks/RESULTS.md)
        persistent = train and workers > 0
        return ShardLoader(pipeline, num_workers=workers, length=length, persistent_workers=persistent)

    def train_dataloader(self) -> ShardLoader:
        return self._loader(self.train, "train", train=True)

    def val_dataloader(self) -> ShardLoader | list:
        if self.val is None:
            return []  # Lightning then skips validation
        return self._loader(self.val, "val", train=False)

    def test_dataloader(self) -> ShardLoader:
        return self._loader(self.test, "test", train=False)


    # ---- resuming: Lightning saves this in checkpoints and loads it before the loaders start ----
    def state_dict(self) -> dict[str, Any]:
        """The training stream's position (epoch, batches of it trained on) and the bad-sample counts."""
        trainer = getattr(self, "trainer", None)
        progress = trainer.fit_loop.epoch_loop.batch_progress if trainer is not None else None
        return {
            "epoch": self._train_epoch.get(),
            "batches": int(progress.current.processed) if progress is not None else 0,
            "epoch_done": bool(progress.is_last_batch) if progress is not None else False,
            "errors": self.errors.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream where the checkpoint left it: the same epoch (so the same shard order
        and shuffle), its trained batches skipped before decoding (``webdata.StreamPosition``)."""
        epoch, batches = int(state.get("epoch", -1)), int(state.get("batches", 0))
        if state.get("epoch_done"):
            epoch, batches = epoch + 1, 0
        if epoch >= 0:
            self._train_epoch.set(epoch - 1)  # the loader's next pass increments it to `epoch`
            self._train_position.epoch, self._train_position.batches = epoch, batches
        self.errors.load_state_dict(state.get("errors", {}))
        log.info("data: resuming the training stream at epoch %d, after %d batches", max(epoch, 0), batches)

    def teardown(self, stage: str) -> None:
        if self.errors.total or self.errors.converted:  # skips and conversions alike
            log.warning("data: %s", self.errors.report())


class ShapesDataModule(ShardDataModule):
    """The embedded ``shapes`` dataset, generated into the cache on first use."""

    def __init__(
        self,
        train_size: int = 20000,
        test_size: int = 1000,
        val: str | list[str] | None = None,
        name: str = "shapes",
        seed: int = 0,
        image_size: int = 64,
        samples_per_shard: int = 1000,
        root: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        zero_shot: Mapping[str, Any] | None = None,
        feature_cache: bool = False,
        feature_cache_dir: str | None = None,
        group_by_length: bool = False,
        group_window: int = 16,
    ) -> None:
        super().__init__(
            None, None, val, name, batch_size, eval_batch_size, num_workers, shuffle_buffer, resampled, seed,
            zero_shot, feature_cache, feature_cache_dir, group_by_length, group_window,
        )
        self.shapes_args = {
            "root": root,
            "train_size": train_size,
            "test_size": test_size,
            "seed": seed,
            "image_size": image_size,
            "samples_per_shard": samples_per_shard,
        }

    def prepare_data(self) -> None:
        from mmzoo.data.shards import ensure_shapes

        ensure_shapes(**self.shapes_args)

    def _ensure(self) -> None:
        """Resolve shard paths; generates if needed, so loaders work without ``prepare_data``."""
        if self.train is None:
            from mmzoo.data.shards import ensure_shapes

            splits = ensure_shapes(**self.shapes_args)
            self.train, self.test = splits["train"], splits["test"]

    @property
    def num_train_samples(self) -> int | None:
        self._ensure()
        return super().num_train_samples

    def train_dataloader(self) -> ShardLoader:
        self._ensure()
        return super().train_dataloader()

    def test_dataloader(self) -> ShardLoader:
        self._ensure()
        return super().test_dataloader()

