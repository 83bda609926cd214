"""From shard urls to decoded samples, with every bad shard, member and sample counted once.

Why not ``webdataset.tarfile_to_samples``: with a handler it counts a truncated tar and
then also the half-read sample it leaves behind (twice), and in stream mode ``tarfile``
ends a truncated or corrupted archive silently when the cut falls on a header, so the
loss is not seen at all. Here a shard is read member by member (``tarfile``), grouped into
samples by webdataset's own ``group_by_keys``, and ends in one of two ways: at its
end-of-archive block, or as one ``bad_tar`` that also stands for the sample being read.

``decode_sample`` then turns raw members into ``{"key", "image": PIL RGB, "caption",
"meta"}`` or raises a ``SampleError`` naming the first thing that rules the sample out.
Images of any mode become RGB (``mmzoo.data.images``) and are counted as converted;
pixels are bounded before decoding and member sizes before reading.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds
from webdataset.tariterators import group_by_keys

from mmzoo.data.images import MAX_PIXELS, MIN_SIDE, decode_image
from mmzoo.data.sample_errors import SampleError, SampleErrors

__all__ = ["IMAGE_KEYS", "MAX_MEMBER_BYTES", "MAX_PIXELS", "MIN_SIDE", "OversizedMember", "decode_caption",
           "decode_sample", "read_shards", "shard_samples", "tar_members"]  # fmt: skip

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
MAX_MEMBER_BYTES = 256 << 20  # read nothing bigger into memory (a member, not a shard)


@dataclass(frozen=True)
class OversizedMember:
    """Stands in a sample for a tar member not read because it is over ``MAX_MEMBER_BYTES``."""

    size: int


class _EndCheckingTarInfo(tarfile.TarInfo):
    """Marks the ``TarFile`` when the archive ends at its end-of-archive (zero) block.

    In stream mode ``TarFile`` stops without error at an empty, short or invalid header
    after the first member, which is what a truncated or corrupted archive looks like;
    only a zero block is a proper end, and only header parsing can tell them apart.
    """

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            tar.mmzoo_proper_end = True  # type: ignore[attr-defined]
            raise


def tar_members(fileobj: Any, max_member_bytes: int = MAX_MEMBER_BYTES) -> Iterator[dict[str, Any]]:
    """``{"fname", "data"}`` for each regular file of a tar stream (plain, gz, bz2 or xz).

    Raises ``tarfile.ReadError`` (after the members read so far) when the stream is not
    a tar or ends without its end-of-archive block.
    """
    with tarfile.open(fileobj=fileobj, mode="r|*", tarinfo=_EndCheckingTarInfo) as tar:
        for info in tar:
            if info.isreg():
                too_big = info.size > max_member_bytes
                data = OversizedMember(info.size) if too_big else tar.extractfile(info).read()
                yield {"fname": info.name, "data": data}
            tar.members = []  # stream mode would otherwise keep every header of the shard
        if not getattr(tar, "mmzoo_proper_end", False):
            raise tarfile.ReadError("the archive ends without its end-of-archive block (truncated or corrupt)")


def _local_path(url: str) -> Path | None:
    if url.startswith("file:"):
        return Path(url.removeprefix("file://") if url.startswith("file://") else url.removeprefix("file:"))
    return None if "://" in url or url.startswith("pipe:") else Path(url)


def shard_samples(url: str, errors: SampleErrors, max_member_bytes: int = MAX_MEMBER_BYTES) -> Iterator[dict]:
    """Raw samples ``{"__key__", "__url__", ext: bytes, ...}`` of one shard; never raises.

    A missing local file counts ``missing_shard`` (checked first: opening a path that is
    not a regular file, such as a FIFO, could block); a failed open counts ``open_failed``;
    a shard that stops early counts one ``bad_tar`` for the sample being read and the rest.
    """
    local = _local_path(url)
    if local is not None and not local.is_file():
        errors.skip("missing_shard", url=url)
        return
    try:
        stream = wds.gopen(url)
    except Exception as exn:
        errors.skip("open_failed", url=url, detail=repr(exn))
        return

    def duplicate(exn: BaseException) -> bool:  # group_by_keys' only error: a name seen twice
        errors.convert("duplicate_member")
        return True

    try:
        with stream:
            members = ({**m, "__url__": url} for m in tar_members(stream, max_member_bytes))
            yield from group_by_keys(members, handler=duplicate)
    except Exception as exn:
        errors.skip("bad_tar", url=url, detail=repr(exn))


def read_shards(
    sources: Iterable[dict[str, str]],
    errors: SampleErrors,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    give_up_after: int | None = None,
) -> Iterator[dict]:
    """The pipeline stage after the shard list: ``{"url"}`` dicts in, raw samples out.

    With ``give_up_after``, that many shards in a row without a single sample raise a
    ``RuntimeError`` (for endless, resampled shard lists: all shards gone or broken would
    otherwise be a silent hang).
    """
    barren = 0  # shards in a row without a sample
    for source in sources:
        barren += 1
        for sample in shard_samples(source["url"], errors, max_member_bytes):
            barren = 0
            yield sample
        if give_up_after is not None and barren >= give_up_after:
            raise RuntimeError(f"{barren} shards in a row gave no sample: {errors.report()}")


def decode_caption(data: bytes, key: str, url: str) -> str:
    """The stripped UTF-8 text of a ``txt`` member (a BOM is dropped).

    Not UTF-8 raises ``bad_caption`` rather than decoding with replacement characters:
    the caption is what the model learns from, a guessed or mangled one teaches noise, and
    a count tells the user to fix the encoding. Empty raises ``empty_caption``.
    """
    try:
        caption = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exn:
        raise SampleError("bad_caption", key, url, str(exn)) from exn
    if not caption:
        raise SampleError("empty_caption", key, url)
    return caption


def decode_sample(
    sample: dict[str, Any],
    errors: SampleErrors | None = None,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    images: bool = True,
) -> dict[str, Any]:
    """Raw tar members to ``{"key", "image": PIL RGB, "caption", "meta"}``; raises ``SampleError``.

    Cheap checks run first (members, caption, json), the image decode last. A conversion
    to RGB is counted in ``errors`` only for a sample that is kept. ``images=False`` (models
    that read only text, such as the LM pretraining) leaves ``image`` None: decoding and
    resizing the pictures was over half of such a loader's time.
    """
    key, url = str(sample.get("__key__", "?")), str(sample.get("__url__", "?"))
    oversized = {k: v.size for k, v in sample.items() if isinstance(v, OversizedMember)}
    if oversized:
        raise SampleError("too_large", key, url, f"member bytes {oversized} not read")
    data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    if data is None:
        members = sorted(k for k in sample if not k.startswith("__"))
        raise SampleError("missing_image", key, url, f"members: {members}")
    if "txt" not in sample:
        raise SampleError("missing_caption", key, url)
    caption = decode_caption(sample["txt"], key, url)
    try:
        meta = json.loads(sample["json"]) if "json" in sample else {}
    except (ValueError, RecursionError) as exn:  # JSONDecodeError, UnicodeDecodeError, deep nesting
        raise SampleError("bad_json", key, url, repr(exn)) from exn
    if not isinstance(meta, dict):
        raise SampleError("bad_json", key, url, f"a {type(meta).__name__}, not an object")
    if not images:
        return {"key": key, "image": None, "caption": caption, "meta": meta}
    image, conversion = decode_image(data, key, url, max_pixels, min_side)
    if conversion is not None and errors is not None:
        errors.convert(conversion)
    return {"key": key, "image": image, "caption": caption, "meta": meta}
