"""Frozen-feature cache: a frozen encoder's output computed once, read by every later run.

Why: most of the zoo's recipes train a bridge between frozen parts (LLaVA stage 1, MiniGPT-4,
BLIP-2 stage 2), yet a step from pixels decodes JPEGs and runs the frozen encoder (and
MiniGPT-4's frozen Q-Former) again on every image, every epoch, every run of a sweep. With
``data.feature_cache=true`` the training (and validation) split is run once through the
model's frozen front (``FeatureSource``, given by the LightningModule) and stored as
webdataset shards beside a manifest; training then streams those features in place of
pixels through the same pipeline (same shard order, shuffle and batching).

A cache is keyed by what its features depend on: the frozen parts' weight hashes and
options (layer, token selection...), the image transform, the shard files (path, size,
mtime) and the numeric precision. Anything else gets a new cache; nothing is ever reused
for other weights or other data. Two refusals, with the reason: a part that would be
cached trains (its features change every step), or the image transform is random
(augmentation: one stored view per image would silently replace fresh ones).

Layout: ``<root>/<split>-<level>-<key>/000000.tar`` (one per source shard, same order) with
``<sample key>.safetensors`` (``features``: (N, D), the dtype the part computes in),
``.txt`` and ``.json`` (the caption and record the collator needs), and ``manifest.json``
(counts per shard, the key's ingredients, skipped samples). Evaluation keeps reading pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from mmzoo.data.reader import decode_sample, read_shards
from mmzoo.data.sample_errors import SampleError, SampleErrors

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FEATURES_MEMBER = "safetensors"  # the tar member extension holding one sample's features
# transforms whose output is random by design (torchvision names; anything "Random*" too)
AUGMENTATIONS = frozenset({
    "ColorJitter", "GaussianBlur", "AutoAugment", "RandAugment", "TrivialAugmentWide", "AugMix", "ElasticTransform",
    "RandomErasing", "ScaleJitter",
})  # fmt: skip


class FeatureCacheError(ValueError):
    """``data.feature_cache=true`` cannot be honoured; the message says why and what to change."""


@dataclass(frozen=True)
class FeatureSource:
    """The frozen front of a model, as the cache needs it.

    ``level`` names where it ends (``"encoder"``, ``"qformer"``); ``compute`` maps pixels
    (B, 3, H, W) to features (B, N, D) of ``shape`` (N, D); ``parts`` are the frozen modules
    it runs, by their path in the model; ``weights`` their weight hashes.
    """

    level: str
    parts: Mapping[str, nn.Module]
    compute: Callable[[torch.Tensor], torch.Tensor]
    shape: tuple[int, int]
    weights: Mapping[str, str] = field(default_factory=dict)


# ---- what a cache depends on ---------------------------------------------------------------
def _augmentations(transform: Any) -> list[str]:
    """Names of random transforms inside ``transform`` (torchvision Compose/RandomApply, Sequential)."""
    name = type(transform).__name__
    found = [name] if name.startswith("Random") or name in AUGMENTATIONS else []
    children = list(getattr(transform, "transforms", None) or [])
    if isinstance(transform, nn.Module):
        children += list(transform.children())
    for child in children:
        found += _augmentations(child)
    return found


def _probe_image(size: int = 53) -> Image.Image:
    """A fixed, non-square, textured RGB image (so crops, flips and jitter all show)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size + 17, 3), dtype=np.uint8))


def check_deterministic(transform: Callable[[Image.Image], torch.Tensor], tries: int = 4) -> None:
    """Raise ``FeatureCacheError`` when ``transform`` is an augmentation: one of its parts is a
    random transform by name, or it gives different tensors for the same image."""
    random_parts = _augmentations(transform)
    if not random_parts:
        image = _probe_image()
        first = transform(image)
        if not all(torch.equal(first, transform(image)) for _ in range(tries - 1)):
            random_parts = [f"{type(transform).__name__} (different outputs for one image)"]
    if random_parts:
        raise FeatureCacheError(
            f"data.feature_cache=true needs a deterministic image transform, and this one augments "
            f"({', '.join(random_parts)}): cached features would freeze one random view per image. "
            "Train from pixels (data.feature_cache=false) or drop the augmentation"
        )


def part_options(module: nn.Module) -> dict[str, Any]:
    """A module's plain public attributes (an encoder's ``layer``, ``tokens``, ``norm``...):
    what changes its output besides its weights."""
    plain = (bool, int, float, str, type(None))
    options = {}
    for name, value in sorted(vars(module).items()):
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, plain) or (isinstance(value, (tuple, list)) and all(isinstance(v, plain) for v in value)):
            options[name] = list(value) if isinstance(value, tuple) else value
    return options


def data_fingerprint(urls: Sequence[str]) -> list[dict[str, Any]]:
    """Each shard's absolute path, size and modification time (remote urls as they are)."""
    out = []
    for url in urls:
        path = Path(url)
        if "://" in url or url.startswith("pipe:") or not path.is_file():
            out.append({"url": url})
        else:
            stat = path.stat()
            out.append({"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return out


def cache_ingredients(
    source: FeatureSource, transform: Callable, urls: Sequence[str], precision: str
) -> dict[str, Any]:
    """Everything the cached features depend on (its hash is the cache key)."""
    parts = {
        name: {"class": type(m).__qualname__, "weights": source.weights.get(name), "options": part_options(m)}
        for name, m in source.parts.items()
    }
    return {
        "format": FORMAT_VERSION,
        "level": source.level,
        "parts": parts,
        "transform": repr(transform),
        "precision": precision,
        "data": data_fingerprint(urls),
    }


def cache_key(ingredients: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ingredients, sort_keys=True).encode()).hexdigest()[:16]


def default_root() -> Path:
    """``$MMZOO_CACHE/features``, else ``~/.cache/mmzoo/features``."""
    cache = os.environ.get("MMZOO_CACHE")
    return (Path(cache) if cache else Path.home() / ".cache" / "mmzoo") / "features"


# ---- writing --------------------------------------------------------------------------------
def _batches(url: str, transform: Callable, errors: SampleErrors, batch_size: int) -> Iterator[list[dict]]:
    """Decoded, transformed samples of one shard in order, bad ones skipped and counted."""
    batch: list[dict] = []
    for raw in read_shards([{"url": url}], errors=errors):
        try:
            sample = decode_sample(raw, errors)
        except SampleError as exn:
            errors(exn)
            continue
        try:
            sample["image"] = transform(sample["image"])
        except Exception as exn:
            errors.skip("transform_failed", sample["key"], url, repr(exn))
            continue
        batch.append(sample)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_feature_cache(
    urls: Sequence[str],
    out: str | os.PathLike,
    source: FeatureSource,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int = 128,
    errors: SampleErrors | None = None,
    device: torch.device | str | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ingredients: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``source`` over every sample of ``urls`` into ``out`` (one shard per source shard);
    return the manifest. Written to a temporary folder renamed at the end, so an interrupted
    build never looks complete and concurrent builders cannot mix their shards."""
    import webdataset as wds

    out = Path(out)
    errors = errors or SampleErrors()
    if device is None:  # where the frozen parts are
        device = next(p.device for part in source.parts.values() for p in part.parameters())
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started, shards, total = time.perf_counter(), [], 0
    try:
        for index, url in enumerate(urls):
            name = f"{index:06d}.tar"
            count = 0
            with wds.TarWriter(str(tmp / name)) as sink:
                for batch in _batches(url, transform, errors, batch_size):
                    pixels = torch.stack([s["image"] for s in batch]).to(device)  # (B, 3, H, W)
                    with torch.no_grad(), autocast():
                        features = source.compute(pixels).cpu()  # (B, N, D)
                    for sample, row in zip(batch, features, strict=True):
                        sink.write({
                            "__key__": sample["key"],
                            FEATURES_MEMBER: save_safetensors({"features": row.contiguous()}),
                            "txt": sample["caption"],
                            "json": json.dumps(sample["meta"]).encode(),
                        })  # fmt: skip
                    count += len(batch)
            shards.append({"url": name, "count": count, "source": url})
            total += count
        manifest = {
            "shards": shards,
            "total": total,
            "skipped": errors.counts,
            "seconds": round(time.perf_counter() - started, 1),
            "ingredients": dict(ingredients or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            tmp.rename(out)
        except OSError:  # another process finished first: its cache is the same one
            if not (out / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return json.loads((out / "manifest.json").read_text())


# ---- reading --------------------------------------------------------------------------------
def decode_cached(sample: dict[str, Any]) -> dict[str, Any]:
    """A cache shard's raw members -> ``{"key", "features": (N, D), "caption", "meta"}``."""
    key, url = str(sample.get("__key__", "?")), str(sample.get("__url__", "?"))
    if FEATURES_MEMBER not in sample:
        raise SampleError("other", key, url, "a feature-cache sample without features: delete the cache folder")
    return {
        "key": key,
        "features": load_safetensors(sample[FEATURES_MEMBER])["features"],
        "caption": sample["txt"].decode("utf-8"),
        "meta": json.loads(sample["json"]),
    }


def cached_split(
    urls: Sequence[str],
    split: str,
    *,
    module: Any,
    transform: Callable[[Image.Image], torch.Tensor],
    errors: SampleErrors,
    batch_size: int,
    trainer: Any = None,
    root: str | os.PathLike | None = None,
) -> list[str]:
    """The cache shards standing for ``urls`` (built first when missing), for a data module.

    ``module`` gives the ``FeatureSource`` (``feature_source()``; vision-to-LLM modules do);
    under a ``trainer`` the features are computed in its precision, by rank 0 while the
    others wait.
    """
    if module is None:
        raise FeatureCacheError("data.feature_cache=true needs the model that computes the features: "
                                "fit through a Trainer, or give the data module one (feature_module=...)")
    if not callable(getattr(module, "feature_source", None)):
        raise FeatureCacheError(
            f"data.feature_cache=true: {type(module).__name__} has no frozen visual front to cache (the feature "
            "cache is for vision-to-LLM models: llava, minigpt4, blip2, instructblip); set data.feature_cache=false"
        )
    source = module.feature_source()
    check_deterministic(transform)
    precision = str(getattr(trainer, "precision", "32-true")) if trainer is not None else "32-true"
    ingredients = cache_ingredients(source, transform, urls, precision)
    folder = Path(root) if root is not None else default_root()
    folder = folder / f"{split}-{source.level}-{cache_key(ingredients)}"
    rank = getattr(trainer, "global_rank", 0) if trainer is not None else 0
    if not (folder / "manifest.json").is_file() and rank == 0:
        log.info("feature cache: computing %s features of the %s split (%d shards) into %s", source.level, split,
                 len(urls), folder)  # fmt: skip
        plugin = getattr(trainer, "precision_plugin", None)
        autocast = plugin.forward_context if plugin is not None else contextlib.nullcontext
        manifest = write_feature_cache(urls, folder, source, transform, batch_size=batch_size, errors=errors,
                                       autocast=autocast, ingredients=ingredients)  # fmt: skip
        log.info("feature cache: %d samples in %.1fs", manifest["total"], manifest["seconds"])
    if trainer is not None and getattr(trainer, "world_size", 1) > 1:
        trainer.strategy.barrier("mmzoo_feature_cache")
    manifest = json.loads((folder / "manifest.json").read_text())
    log.info("feature cache: reading %s features of %d %s samples from %s%s", source.level, manifest["total"],
             split, folder, f" (skipped when built: {manifest['skipped']})" if manifest["skipped"] else "")  # fmt: skip
    return [str(folder / shard["url"]) for shard in manifest["shards"]]
