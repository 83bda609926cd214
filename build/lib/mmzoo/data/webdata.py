"""The streaming pipeline: img2dataset-layout shards to batches, skipping bad samples.

Shaped like open_clip's ``open_clip_train/data.py``: shard list -> split_by_node ->
split_by_worker -> tarfile_to_samples(handler) -> shuffle -> decode -> map -> batched.
Why not a map-style dataset: web-scale shards cannot be indexed, and the same code must
stream the embedded ``shapes`` shards and a LAION download. Bad samples (corrupt
images, missing captions, truncated tars) are skipped and counted by ``SampleErrors``
across DataLoader workers, never fatal and never silent. Shard order and the shuffle
buffer are seeded from (seed, epoch, rank, worker), so runs are reproducible.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import multiprocessing as mp
import random
import tarfile
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

log = logging.getLogger(__name__)

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def expand_urls(spec: str | Sequence[str]) -> list[str]:
    """Shard urls from a directory (its ``*.tar``, sorted), brace pattern, glob, or a list of those.

    Remote urls (``pipe:``, ``http(s)://``, ``s3://``...) are passed through unchecked.
    Raises ``FileNotFoundError`` naming ``spec`` when nothing matches or a local file is missing.
    """
    parts = [spec] if isinstance(spec, (str, Path)) else list(spec)
    urls: list[str] = []
    for part in parts:
        part = str(part)
        if "://" in part or part.startswith("pipe:"):
            urls.extend(_braceexpand(part))
        elif Path(part).is_dir():
            urls.extend(sorted(str(p) for p in Path(part).glob("*.tar")))
        else:
            for url in _braceexpand(part):
                matches = sorted(glob.glob(url)) if glob.has_magic(url) else [url]
                missing = [m for m in matches if not Path(m).is_file()]
                if missing or not matches:
                    raise FileNotFoundError(
                        f"no shard file {missing[0] if missing else url!r} for spec {spec!r}"
                    )
                urls.extend(matches)
    if not urls:
        raise FileNotFoundError(f"no shards (*.tar) found for spec {spec!r}")
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


class SampleError(ValueError):
    """A sample that cannot be used; ``reason`` is one of ``SampleErrors.REASONS``."""

    def __init__(self, reason: str, key: str, url: str, detail: str = "") -> None:
        super().__init__(f"{reason}: key={key} url={url}" + (f" ({detail})" if detail else ""))
        self.reason = reason


class SampleErrors:
    """Counts skipped samples by reason across DataLoader worker processes.

    The counters live in shared memory (``multiprocessing.Array``) created in the parent,
    so forked (or spawned) workers increment the same cells the parent reads. The first
    ``max_logged`` problems are logged with their key/url and kept for ``report()``.
    Use an instance as the webdataset ``handler``: it records and returns True (skip).
    ``context`` must match the DataLoader's ``multiprocessing_context`` (default: both the
    interpreter's default start method).
    """

    REASONS = (
        "missing_image",
        "missing_caption",
        "corrupt_image",
        "bad_json",
        "transform_failed",
        "tar_read",
        "open_failed",
        "other",
    )
    _EXAMPLE_BYTES = 300

    def __init__(self, max_logged: int = 5, context: BaseContext | None = None) -> None:
        ctx = context or mp.get_context()
        self.max_logged = max_logged
        self._counts = ctx.Array("q", len(self.REASONS) + 1)  # last cell: examples stored
        self._examples = ctx.Array("c", max(1, max_logged) * self._EXAMPLE_BYTES, lock=False)

    @classmethod
    def classify(cls, exn: BaseException) -> str:
        if isinstance(exn, SampleError):
            return exn.reason
        if isinstance(exn, FileNotFoundError | PermissionError):
            return "open_failed"
        if isinstance(exn, tarfile.TarError | EOFError | OSError):
            return "tar_read"
        return "other"

    def __call__(self, exn: BaseException) -> bool:
        reason = self.classify(exn)
        message = f"{reason}: {exn}" if not isinstance(exn, SampleError) else str(exn)
        with self._counts.get_lock():
            self._counts[self.REASONS.index(reason)] += 1
            slot = self._counts[-1]
            if slot < self.max_logged:
                self._counts[-1] += 1
                start = slot * self._EXAMPLE_BYTES
                data = message.encode("utf-8", "replace")[: self._EXAMPLE_BYTES - 1]
                self._examples[start : start + len(data)] = data
        if slot < self.max_logged:
            log.warning("skipping bad sample (%s)", message)
        return True

    @property
    def counts(self) -> dict[str, int]:
        with self._counts.get_lock():
            return {r: int(self._counts[i]) for i, r in enumerate(self.REASONS) if self._counts[i]}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def examples(self) -> list[str]:
        with self._counts.get_lock():
            n = self._counts[-1]
            raw = bytes(self._examples[: n * self._EXAMPLE_BYTES])
        chunks = [raw[i * self._EXAMPLE_BYTES : (i + 1) * self._EXAMPLE_BYTES] for i in range(n)]
        return [c.rstrip(b"\0").decode("utf-8", "replace") for c in chunks]

    def reset(self) -> None:
        with self._counts.get_lock():
            for i in range(len(self._counts)):
                self._counts[i] = 0

    def report(self) -> str:
        if not self.total:
            return "no samples skipped"
        counts = ", ".join(f"{r}={n}" for r, n in self.counts.items())
        return f"skipped {self.total} samples ({counts}); first: " + " | ".join(self.examples())


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


def _stream_rng(seed: int, epoch: SharedEpoch, per_worker: bool) -> random.Random:
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
    rng = _stream_rng(seed, epoch, per_worker=True)
    return wds.filters._shuffle(samples, bufsize=bufsize, initial=bufsize, rng=rng)


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Raw tar members to ``{"key", "image": PIL RGB, "caption", "meta"}``; raises ``SampleError``."""
    key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
    data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    if data is None:
        raise SampleError(
            "missing_image", key, url, f"members: {sorted(k for k in sample if not k.startswith('__'))}"
        )
    caption = sample.get("txt", b"").decode("utf-8", "replace").strip()
    if not caption:
        raise SampleError("missing_caption", key, url)
    try:
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
    except Exception as exn:
        raise SampleError("corrupt_image", key, url, repr(exn)) from exn
    try:
        meta = json.loads(sample["json"]) if "json" in sample else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exn:
        raise SampleError("bad_json", key, url, repr(exn)) from exn
    return {"key": key, "image": image, "caption": caption, "meta": meta}


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


def make_pipeline(
    urls: str | Sequence[str],
    *,
    transform: Callable[[Image.Image], torch.Tensor],
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
) -> wds.DataPipeline:
    """Batches ``collate([{"key", "image": (3, H, W), "caption", "meta"}, ...])`` from shards.

    ``shuffle_buffer=0`` keeps shard and sample order (evaluation). With ``resampled``,
    shards are drawn with replacement forever and an epoch is cut at ``samples_per_epoch``
    (default: the dataset size) samples per rank. ``epoch`` (shared) reseeds the shuffles;
    ``ShardLoader`` advances it. The returned pipeline has ``.epoch``.
    """
    urls = expand_urls(urls)
    epoch = epoch or SharedEpoch()
    consumers = world_size * max(1, num_workers)
    if resampled:
        source: list[Any] = [ResampledShardList(urls, seed, epoch, shuffle=True)]
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
        wds.tarfile_to_samples(handler=errors),
        bind(_shuffle, bufsize=shuffle_buffer, seed=seed, epoch=epoch) if shuffle_buffer > 0 else None,
        wds.map(decode_sample, handler=errors),
        wds.map(bind(_apply_transform, transform), handler=errors),
        wds.batched(batch_size, collation_fn=collate, partial=partial),
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
) -> int:
    """Batches one rank yields per epoch when shards are dealt round-robin to ranks, then workers."""
    mine = list(counts)[rank::world_size]
    workers = max(1, num_workers)
    per_worker = [sum(mine[w::workers]) for w in range(workers)]
    return sum(-(-n // batch_size) if partial else n // batch_size for n in per_worker)


class ShardLoader(wds.WebLoader):
    """A ``WebLoader`` (batching already done in the pipeline) that advances the epoch and knows its length."""

    def __init__(
        self, pipeline: wds.DataPipeline, *, num_workers: int = 0, length: int | None = None, **kw: Any
    ) -> None:
        super().__init__(pipeline, batch_size=None, shuffle=False, num_workers=num_workers, **kw)
        self.epoch: SharedEpoch = pipeline.epoch
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        self.epoch.increment()  # before the DataLoader starts its workers
        return super().__iter__()

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("the number of batches is unknown (no manifest.json or *_stats.json)")
        return self.length
