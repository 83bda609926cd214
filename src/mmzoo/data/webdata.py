"""The streaming pipeline: img2dataset-layout shards to batches, skipping bad samples.

Shaped like open_clip's ``open_clip_train/data.py``: shard list -> split_by_node ->
split_by_worker -> read shards -> shuffle -> decode -> map -> batched.
Why not a map-style dataset: web-scale shards cannot be indexed, and the same code must
stream the embedded ``shapes`` shards and a LAION download. Bad shards and samples
(``mmzoo.data.reader``) are skipped or converted and counted once by ``SampleErrors``
across DataLoader workers, never fatal and never silent. Shard order and the shuffle
buffer are seeded from (seed, epoch, rank, worker), so runs are reproducible.
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import multiprocessing as mp
import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial as bind
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset
from torchvision import transforms
from webdataset.shardlists import expand_urls as _braceexpand

from mmzoo.data.length_groups import length_grouped_batches
from mmzoo.data.reader import MAX_MEMBER_BYTES, MAX_PIXELS, MIN_SIDE, decode_sample, read_shards
from mmzoo.data.sample_errors import SampleError, SampleErrors

__all__ = [
    "SampleError",
    "SampleErrors",
    "ShardLoader",
    "SharedEpoch",
    "dataset_size",
    "decode_sample",
    "expand_urls",
    "image_transform",
    "make_pipeline",
    "num_batches",
    "shard_counts",
]

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def expand_urls(spec: str | Sequence[str]) -> list[str]:
    """Shard urls from a directory (its ``*.tar``, sorted), brace pattern, glob, or a list of those.

    Remote urls (``pipe:``, ``http(s)://``, ``s3://``...) are passed through unchecked.
    A local file named explicitly (in a list or a brace range) that does not exist stays
    in the list with a warning: img2dataset leaves such gaps where a shard failed, and the
    reader counts each as ``missing_shard`` where it meets it, instead of failing the run.
    Raises ``FileNotFoundError`` naming ``spec`` when no local shard exists at all (a typo)
    or a directory or glob matches nothing.
    """
    parts = [spec] if isinstance(spec, (str, Path)) else list(spec)
    urls: list[str] = []
    missing: list[str] = []
    for part in parts:
        part = str(part)
        if "://" in part or part.startswith("pipe:"):
            urls.extend(_braceexpand(part))
        elif Path(part).is_dir():
            found = sorted(str(p) for p in Path(part).glob("*.tar"))
            if not found:
                raise FileNotFoundError(f"no shards (*.tar) in {part!r} for spec {spec!r}")
            urls.extend(found)
        else:
            for url in _braceexpand(part):
                matches = sorted(glob.glob(url)) if glob.has_magic(url) else [url]
                if not matches:
                    raise FileNotFoundError(f"no shard file matches {url!r} for spec {spec!r}")
                missing.extend(m for m in matches if not Path(m).is_file())
                urls.extend(matches)
    if not urls or len(missing) == len(urls):
        raise FileNotFoundError(f"no shard file {(missing[0] if missing else spec)!r} for spec {spec!r}")
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        log.warning("%d of %d listed shards do not exist (each read counts missing_shard): %s",
                    len(missing), len(urls), shown)  # fmt: skip
    return urls


def shard_counts(urls: Sequence[str]) -> list[int] | None:
    """Samples per shard from ``manifest.json`` or img2dataset ``*_stats.json``; None if unknown."""
    manifests: dict[Path, dict[str, int]] = {}
    counts = []
    for url in urls:
        path = Path(url)
        folder = path.parent
        if folder not in manifests:
            manifest = folder / "manifest.json"
            entries = json.loads(manifest.read_text())["shards"] if manifest.is_file() else []
            manifests[folder] = {e["url"]: int(e["count"]) for e in entries}
        if path.name in manifests[folder]:
            counts.append(manifests[folder][path.name])
            continue
        stats = folder / f"{path.name.removesuffix('.tar')}_stats.json"
        if not stats.is_file():
            return None
        counts.append(int(json.loads(stats.read_text())["successes"]))
    return counts


def dataset_size(urls: Sequence[str]) -> int | None:
    """Total samples in ``urls`` without reading the tars; None when some shard is undocumented."""
    counts = shard_counts(urls)
    return None if counts is None else sum(counts)


class SharedEpoch:
    """An epoch number the parent sets and every worker reads (shared memory)."""

    def __init__(self, epoch: int = -1, context: BaseContext | None = None) -> None:
        self._value = (context or mp.get_context()).Value("i", epoch)

    def get(self) -> int:
        return self._value.value

    def increment(self) -> int:
        with self._value.get_lock():
            self._value.value += 1
            return self._value.value

    def set(self, epoch: int) -> None:
        with self._value.get_lock():
            self._value.value = epoch


class StreamPosition:
    """Where a resumed run's training stream continues: ``batches`` of epoch ``epoch`` were
    already trained on, and the pass over that epoch skips them (other epochs skip nothing).
    Set before the pass starts (its readers, forked or pickled then, read it once)."""

    def __init__(self, epoch: int = -1, batches: int = 0) -> None:
        self.epoch, self.batches = epoch, batches


def _skip_trained(
    samples: Iterator[dict], position: StreamPosition, epoch: SharedEpoch, batch_size: int
) -> Iterator[dict]:
    """Drop this reader's share of the batches already trained on, after the shuffle, before decoding.

    The DataLoader takes batches from its workers in turn, so worker ``w`` of ``W`` made batches
    ``w, w + W, ...``. Exact when no sample of the skipped stretch was bad (a bad one makes the
    batches after it start a sample later: those few samples are then seen twice).
    """
    if epoch.get() != position.epoch or position.batches <= 0:
        return samples
    _, _, worker, workers = wds.utils.pytorch_worker_info()
    mine = len(range(worker, position.batches, workers))
    return itertools.islice(samples, mine * batch_size, None)


def _stream_rng(seed: int | str, epoch: SharedEpoch, per_worker: bool) -> random.Random:
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    who = f"-{rank}-{worker}" if per_worker else ""
    return random.Random(f"{seed}-{max(epoch.get(), 0)}{who}")  # str seeds are hashed with sha512


class ShardList(IterableDataset):
    """The shard urls of one epoch, in the same (seeded) order on every rank and worker."""

    def __init__(self, urls: Sequence[str], seed: int, epoch: SharedEpoch, shuffle: bool) -> None:
        self.urls, self.seed, self.epoch, self.shuffle = list(urls), seed, epoch, shuffle

    def __iter__(self) -> Iterator[dict[str, str]]:
        urls = list(self.urls)
        if self.shuffle:
            _stream_rng(self.seed, self.epoch, per_worker=False).shuffle(urls)
        yield from ({"url": url} for url in urls)


class ResampledShardList(ShardList):
    """An endless stream of shards drawn with replacement, independently per rank and worker."""

    def __iter__(self) -> Iterator[dict[str, str]]:
        rng = _stream_rng(self.seed, self.epoch, per_worker=True)
        while True:
            yield {"url": rng.choice(self.urls)}


def _shuffle(samples: Iterator[dict], bufsize: int, seed: int, epoch: SharedEpoch) -> Iterator[dict]:
    """webdataset's shuffle buffer, its rng seeded here: at iteration time, in the worker."""
    rng = _stream_rng(seed, epoch, per_worker=True)
    return wds.shuffle(bufsize, initial=bufsize, rng=rng)(samples)


def _grouped(samples: Iterator[dict], *, batch_size: int, window: int, length: Callable[[dict], int],
             collate: Callable[[list[dict]], Any], partial: bool, seed: int, epoch: SharedEpoch) -> Iterator[Any]:
    """Length-grouped batches, collated; the batch order is seeded like the shuffle (per reader)."""
    rng = _stream_rng(f"{seed}-length-groups", epoch, per_worker=True)
    for batch in length_grouped_batches(samples, batch_size=batch_size, window=window, length=length, rng=rng,
                                        partial=partial):
        yield collate(batch)


def _apply_transform(
    transform: Callable[[Image.Image], torch.Tensor], sample: dict[str, Any]
) -> dict[str, Any]:
    try:
        return {**sample, "image": transform(sample["image"])}
    except Exception as exn:
        raise SampleError(
            "transform_failed", sample["key"], sample["meta"].get("url", "?"), repr(exn)
        ) from exn


def image_transform(
    image_size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> transforms.Compose:
    """PIL -> (3, image_size, image_size) normalised float tensor; deterministic (positions matter)."""
    return transforms.Compose(
        [
            transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.CenterCrop(image_size),  # a no-op on square images such as shapes
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


class _Uncounted:
    """Drops shard-level problems: when every reader reads every shard (``split="samples"``),
    only the first reader counts them, so each problem is counted once."""

    def skip(self, *args: Any, **kwargs: Any) -> None:
        pass

    def convert(self, *args: Any, **kwargs: Any) -> None:
        pass

    def report(self) -> str:
        return "(counted by the first reader)"


def _my_samples(urls: Iterator[dict[str, str]], errors: SampleErrors, max_member_bytes: int) -> Iterator[dict]:
    """Every shard's samples, keeping every ``consumers``-th one from this reader's offset.

    For splits with fewer shards than readers (an evaluation split of one shard under DDP):
    each sample is still read by exactly one rank and worker.
    """
    rank, world, worker, workers = wds.utils.pytorch_worker_info()
    me, consumers = rank * workers + worker, world * workers
    counted = errors if me == 0 else _Uncounted()
    for i, sample in enumerate(read_shards(urls, errors=counted, max_member_bytes=max_member_bytes)):
        if i % consumers == me:
            yield sample


def make_pipeline(
    urls: str | Sequence[str],
    *,
    transform: Callable[[Image.Image], torch.Tensor] | None,
    collate: Callable[[list[dict[str, Any]]], Any],
    batch_size: int,
    shuffle_buffer: int = 1000,
    resampled: bool = False,
    seed: int = 0,
    errors: SampleErrors,
    num_workers: int = 0,
    world_size: int = 1,
    partial: bool = True,
    epoch: SharedEpoch | None = None,
    samples_per_epoch: int | None = None,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    split: str = "shards",
    decode: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    position: StreamPosition | None = None,
    group_length: Callable[[dict[str, Any]], int] | None = None,
    group_window: int = 16,
) -> wds.DataPipeline:
    """Batches ``collate([{"key", "image": (3, H, W), "caption", "meta"}, ...])`` from shards.

    Bad shards and samples are skipped or converted and counted in ``errors`` (see
    ``mmzoo.data.reader``); ``max_pixels``, ``min_side`` and ``max_member_bytes`` bound
    the images and tar members that are decoded.

    ``shuffle_buffer=0`` keeps shard and sample order (evaluation). With ``resampled``,
    shards are drawn with replacement forever and an epoch is cut at ``samples_per_epoch``
    (default: the dataset size) samples per rank. ``epoch`` (shared) reseeds the shuffles;
    ``ShardLoader`` advances it. The returned pipeline has ``.epoch``.

    ``split="shards"`` deals shards to ranks and workers (web-scale data); ``"samples"``
    lets every reader read every shard and keep its share of the samples, for splits with
    fewer shards than readers (evaluation under DDP), where dealing shards would starve a rank.

    ``transform=None``: the model reads no pixels (text-only LM pretraining); images are not
    decoded and samples carry ``image=None``.

    ``decode`` replaces decoding and the transform (raw members in, a sample out): the feature
    cache (``mmzoo.data.feature_cache``) reads its shards through this same pipeline.

    ``position`` (training): the batches of this epoch already trained on are skipped, after
    the shuffle and before decoding (a resumed run continues where it stopped).

    ``group_length`` (a sample's token length, ``mmzoo.data.length_groups``) batches samples of
    similar length: windows of ``group_window`` batches of the shuffled stream are sorted by it.
    """
    if split not in ("shards", "samples"):
        raise ValueError(f"split must be 'shards' or 'samples', got {split!r}")
    urls = expand_urls(urls)
    epoch = epoch or SharedEpoch()
    consumers = world_size * max(1, num_workers)
    reader = bind(read_shards, errors=errors, max_member_bytes=max_member_bytes,
                  give_up_after=max(100, 10 * len(urls)) if resampled else None)  # fmt: skip
    if resampled:
        source: list[Any] = [ResampledShardList(urls, seed, epoch, shuffle=True)]
    elif split == "samples":
        source = [ShardList(urls, seed, epoch, shuffle=False)]
        reader = bind(_my_samples, errors=errors, max_member_bytes=max_member_bytes)
    else:
        if len(urls) < consumers:
            raise ValueError(
                f"{len(urls)} shard(s) for world_size={world_size} x num_workers={max(1, num_workers)} = "
                f"{consumers} readers: some would get no shard and ranks would hang. Use fewer workers "
                f"(num_workers <= {max(1, len(urls) // world_size)}), write more shards (smaller "
                "samples_per_shard), or set resampled=True."
            )
        source = [
            ShardList(urls, seed, epoch, shuffle=shuffle_buffer > 0),
            wds.split_by_node,
            wds.split_by_worker,
        ]
    stages = [
        *source,
        reader,  # (an endless draw from shards that all fail gives up, loudly)
        bind(_shuffle, bufsize=shuffle_buffer, seed=seed, epoch=epoch) if shuffle_buffer > 0 else None,
        bind(_skip_trained, position=position, epoch=epoch, batch_size=batch_size) if position is not None else None,
        wds.map(decode or bind(decode_sample, errors=errors, max_pixels=max_pixels, min_side=min_side,
                               images=transform is not None), handler=errors),
        wds.map(bind(_apply_transform, transform), handler=errors) if decode is None and transform is not None else None,
        wds.batched(batch_size, collation_fn=collate, partial=partial) if group_length is None else
        bind(_grouped, batch_size=batch_size, window=group_window, length=group_length, collate=collate,
             partial=partial, seed=seed, epoch=epoch),
    ]
    pipeline = wds.DataPipeline(*stages)
    if resampled:
        total = samples_per_epoch or dataset_size(urls)
        if total is None:
            raise ValueError(
                "resampled=True needs samples_per_epoch: the shards have no manifest or _stats.json"
            )
        pipeline = pipeline.with_epoch(nbatches=max(1, total // (consumers * batch_size)))
    pipeline.epoch = epoch
    return pipeline


def num_batches(
    counts: Sequence[int],
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    partial: bool = True,
    split: str = "shards",
) -> int:
    """Batches one rank yields per epoch when shards are dealt round-robin to ranks, then workers.

    With ``split="samples"`` every reader keeps every ``world * workers``-th sample instead."""
    if split == "samples":
        total, consumers = sum(counts), world_size * max(1, num_workers)
        per_worker = [len(range(rank * max(1, num_workers) + w, total, consumers)) for w in range(max(1, num_workers))]
        return sum(-(-n // batch_size) if partial else n // batch_size for n in per_worker)
    mine = list(counts)[rank::world_size]
    workers = max(1, num_workers)
    per_worker = [sum(mine[w::workers]) for w in range(workers)]
    return sum(-(-n // batch_size) if partial else n // batch_size for n in per_worker)


def already_collated(batch: Any) -> Any:
    """The DataLoader's ``collate_fn`` for batches the pipeline collated: hands them on as they are.

    The default (``default_convert``, for ``batch_size=None``) walks every batch recursively,
    per-sample records included; that walk cost a quarter of the loader's time."""
    return batch


class ShardLoader(wds.WebLoader):
    """A ``WebLoader`` (batching already done in the pipeline) that advances the epoch and knows its length."""

    def __init__(
        self, pipeline: wds.DataPipeline, *, num_workers: int = 0, length: int | None = None, **kw: Any
    ) -> None:
        kw.setdefault("collate_fn", already_collated)
        super().__init__(pipeline, batch_size=None, shuffle=False, num_workers=num_workers, **kw)
        self.epoch: SharedEpoch = pipeline.epoch
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        """A pass that takes its epoch number when it starts: an ``iter()`` never consumed (Lightning
        probes loaders so) is not an epoch, so a resumed run's passes are numbered as the original's."""
        self_iter = super().__iter__  # lazy: the DataLoader starts its workers at the first batch

        def one_pass() -> Iterator[Any]:
            self.epoch.increment()  # before the DataLoader starts its workers
            yield from self_iter()

        return one_pass()

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("the number of batches is unknown (no manifest.json or *_stats.json)")
        return self.length
