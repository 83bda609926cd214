"""Write image-text shards in the img2dataset layout.

Why this layout: real CC3M/LAION/SBU shards made by img2dataset then stream through
``mmzoo.data.webdata`` without conversion, and ours can be read by any webdataset tool.
A shard folder holds::

    000000.tar          key.jpg, key.txt, key.json per sample (key = "000000012")
    000000_stats.json   {"count", "successes", "failed_to_download", ...} like img2dataset
    manifest.json       {"shards": [{"url": "000000.tar", "count": n}], "total": N, "skipped": {...}}

Sources: a folder of images with sidecar ``.txt`` captions, a TSV/CSV/parquet table of
(image, caption), or the embedded ``shapes`` generator (``ensure_shapes``, cached). Bad inputs are skipped and counted
by reason, never fatal. A user's folder or table can be split as it is written
(``--test-out DIR --test-fraction 0.1``): each image goes to the test split by a hash of its
name, so the split is stable when images are added. Command line: ``python -m mmzoo.data.shards --help``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import webdataset as wds

from PIL import Image

from mmzoo.data import shapes
from mmzoo.data.images import to_rgb

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
JPEG_QUALITY = 95
_JPEG_MAGIC = b"\xff\xd8\xff"


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """RGB JPEG bytes of a PIL image: transparency onto white, 16-bit scaled (``images.to_rgb``)."""
    buf = io.BytesIO()
    to_rgb(image)[0].save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def to_jpeg_bytes(image: Image.Image | bytes | str | os.PathLike, verify: bool = False) -> bytes:
    """JPEG bytes of ``image``; JPEG input is copied as is (after a full decode if ``verify``).

    Raises ``OSError``/``ValueError`` (e.g. ``PIL.UnidentifiedImageError``) when the input
    is not a readable image.
    """
    if isinstance(image, Image.Image):
        return encode_jpeg(image)
    data = Path(image).read_bytes() if isinstance(image, (str, os.PathLike)) else bytes(image)
    if data.startswith(_JPEG_MAGIC):
        if verify:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        return data
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return encode_jpeg(im)


class ShardWriter:
    """Writes samples into ``{out}/000000.tar, 000001.tar, ...`` with stats and a manifest.

    Use as a context manager; ``close`` writes ``manifest.json``. ``skip(reason)`` counts
    an input that was not written so the manifest says what was lost and why.
    """

    def __init__(self, out: str | os.PathLike, samples_per_shard: int = 1000) -> None:
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard = samples_per_shard
        self.shards: list[dict[str, Any]] = []
        self.skipped: Counter[str] = Counter()
        self.total = 0
        self._tar: wds.TarWriter | None = None
        self._shard_count = 0
        self._shard_skipped = 0
        self._shard_start = 0.0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_shard(self) -> None:
        import webdataset as wds  # here, not at the top: it imports torch (~3 s) and --help should not wait

        name = f"{len(self.shards):06d}.tar"
        self._tar = wds.TarWriter(str(self.out / name))
        self.shards.append({"url": name, "count": 0})
        self._shard_count = self._shard_skipped = 0
        self._shard_start = time.time()

    def _close_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._tar = None
        end = time.time()
        stats = {  # the fields img2dataset writes that readers rely on
            "count": self._shard_count + self._shard_skipped,
            "successes": self._shard_count,
            "failed_to_download": self._shard_skipped,
            "failed_to_resize": 0,
            "duration": round(end - self._shard_start, 3),
            "start_time": self._shard_start,
            "end_time": end,
        }
        stem = self.shards[-1]["url"].removesuffix(".tar")
        (self.out / f"{stem}_stats.json").write_text(json.dumps(stats, indent=1))

    def write(
        self,
        image: Image.Image | bytes | str | os.PathLike,
        caption: str,
        record: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> str:
        """Write one sample and return its key (the running index, zero-padded to 9 digits)."""
        jpg = to_jpeg_bytes(image)  # before opening a shard: a bad image writes nothing
        if self._tar is None:
            self._open_shard()
        key = key if key is not None else f"{self.total:09d}"
        meta = {"key": key, "caption": caption, **(record or {})}
        assert self._tar is not None
        self._tar.write({"__key__": key, "jpg": jpg, "txt": caption, "json": json.dumps(meta).encode()})
        self.total += 1
        self._shard_count += 1
        self.shards[-1]["count"] += 1
        if self._shard_count >= self.samples_per_shard:
            self._close_shard()
        return key

    def skip(self, reason: str) -> None:
        """Count an input that was not written."""
        self.skipped[reason] += 1
        self._shard_skipped += 1

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "written": self.total,
            "shards": len(self.shards),
            "skipped": dict(self.skipped),
        }

    def close(self) -> None:
        self._close_shard()
        manifest = {"shards": self.shards, "total": self.total, "skipped": dict(self.skipped)}
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _write_checked(writer: ShardWriter, image: Path, caption: str | None, record: dict[str, Any]) -> None:
    """Write one (image, caption) from user data, or count why not."""
    if caption is None or not caption.strip():
        writer.skip("missing_caption")
        return
    if not image.is_file():
        writer.skip("missing_image")
        return
    try:
        jpg = to_jpeg_bytes(image, verify=True)
    except Exception as exn:  # PIL raises several types for bad files
        log.warning("skipping unreadable image %s: %s", image, exn)
        writer.skip("unreadable_image")
        return
    writer.write(jpg, caption.strip(), record)


class HeldOutSplit:
    """Two writers: a sample goes to ``test`` when a hash of its name falls under ``fraction``.

    By name, not by position or a random draw: the same image lands in the same split on
    every run and when the folder grows, so a test image is never trained on later.
    """

    def __init__(self, train: ShardWriter, test: ShardWriter | None, fraction: float) -> None:
        self.train, self.test, self.fraction = train, test, fraction

    def writer(self, name: str) -> ShardWriter:
        if self.test is None or zlib.crc32(name.encode()) / 2**32 >= self.fraction:
            return self.train
        return self.test

    def __enter__(self) -> HeldOutSplit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.train.close()
        if self.test is not None:
            self.test.close()

    def summary(self) -> dict[str, Any]:
        summary = self.train.summary()
        return summary if self.test is None else {**summary, "test": self.test.summary()}


def _split(
    out: str | os.PathLike, samples_per_shard: int, test_out: str | os.PathLike | None, test_fraction: float
) -> HeldOutSplit:
    if test_out is not None and not 0.0 < test_fraction < 1.0:  # before any folder is made
        raise ValueError(f"test_fraction must be in (0, 1) with a test folder, got {test_fraction}")
    test = ShardWriter(test_out, samples_per_shard) if test_out is not None else None
    return HeldOutSplit(ShardWriter(out, samples_per_shard), test, test_fraction)


def write_from_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    samples_per_shard: int = 1000,
    test_out: str | os.PathLike | None = None,
    test_fraction: float = 0.1,
) -> dict[str, Any]:
    """Shard every image under ``folder`` that has a sidecar ``.txt`` caption (same stem).

    An optional sidecar ``.json`` is merged into the sample's record. With ``test_out``, a
    ``test_fraction`` of the images (by a hash of their path) go there instead. Returns
    ``{"out", "written", "shards", "skipped": {reason: count}}`` (and ``"test"``: the same
    for the test split).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    with _split(out, samples_per_shard, test_out, test_fraction) as split:
        for path in images:
            writer = split.writer(str(path.relative_to(folder)))
            txt, meta = path.with_suffix(".txt"), path.with_suffix(".json")
            caption = txt.read_text(encoding="utf-8") if txt.is_file() else None
            record: dict[str, Any] = {"source": str(path.relative_to(folder))}
            if meta.is_file():
                try:
                    record.update(json.loads(meta.read_text(encoding="utf-8")))
                except json.JSONDecodeError:
                    log.warning("ignoring invalid json sidecar %s", meta)
            _write_checked(writer, path, caption, record)
    return split.summary()


def _read_table(path: Path) -> Any:
    import pandas as pd  # optional dependency: mmzoo[tables]

    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    sep = "\t" if ".tsv" in name else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def write_from_table(
    path: str | os.PathLike,
    out: str | os.PathLike,
    image_col: str = "image",
    caption_col: str = "caption",
    samples_per_shard: int = 1000,
    test_out: str | os.PathLike | None = None,
    test_fraction: float = 0.1,
) -> dict[str, Any]:
    """Shard the rows of a TSV/CSV/parquet table of (image path, caption).

    Relative image paths are resolved against the table's folder. Other columns go into
    the sample's record. ``test_out``/``test_fraction`` split as ``write_from_folder`` does
    (by the image path). Returns the same summary as ``write_from_folder``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    table = _read_table(path)
    missing = [c for c in (image_col, caption_col) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {list(table.columns)}")
    if len(table) == 0:
        raise ValueError(f"{path}: the table has no rows")
    with _split(out, samples_per_shard, test_out, test_fraction) as split:
        for row in table.to_dict(orient="records"):
            image = str(row.pop(image_col) or "")
            caption = row.pop(caption_col)
            caption = caption if isinstance(caption, str) else None
            writer = split.writer(image)
            if not image:
                writer.skip("missing_image")
                continue
            image_path = Path(image) if Path(image).is_absolute() else path.parent / image
            record = {
                "source": image,
                **{k: v for k, v in row.items() if isinstance(v, (str, int, float, bool))},
            }
            _write_checked(writer, image_path, caption, record)
    return split.summary()


def default_root() -> Path:
    """``$MMZOO_CACHE/shapes``, else ``~/.cache/mmzoo/shapes``."""
    cache = os.environ.get("MMZOO_CACHE")
    return (Path(cache) if cache else Path.home() / ".cache" / "mmzoo") / "shapes"


def _split_urls(folder: Path) -> list[str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return [str(folder / shard["url"]) for shard in manifest["shards"]]


def ensure_shapes(
    root: str | os.PathLike | None = None,
    train_size: int = 20000,
    test_size: int = 1000,
    seed: int = 0,
    image_size: int = 64,
    samples_per_shard: int = 1000,
) -> dict[str, list[str]]:
    """Generate the train/test shards once and return ``{"train": [tar paths], "test": [...]}``.

    Shards go to ``{root}/{name}`` where the name spells the parameters, so several sizes
    coexist. Generation writes into a temporary folder renamed at the end: an interrupted
    run never looks complete, and a later call just reads the manifests.
    """
    root = Path(root) if root is not None else default_root()
    name = f"v{shapes.GENERATOR_VERSION}_train{train_size}_test{test_size}_seed{seed}_px{image_size}_sps{samples_per_shard}"
    final = root / name
    sizes = {"train": train_size, "test": test_size}
    if not (final / "train" / "manifest.json").is_file():
        tmp = root / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "generating shapes dataset (train=%d, test=%d, %dpx) in %s",
            train_size,
            test_size,
            image_size,
            final,
        )
        try:
            for split, size in sizes.items():
                start = time.perf_counter()
                with ShardWriter(tmp / split, samples_per_shard) as writer:
                    for index in range(size):
                        image, cap, record = shapes.make_sample(index, split, seed, image_size)
                        writer.write(image, cap, record, key=record["key"])
                log.info("wrote %d %s samples in %.1fs", size, split, time.perf_counter() - start)
        except BaseException:  # interrupted or failed: leave nothing that could look complete
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: theirs is as good as ours
            if not (final / "train" / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        log.info("using cached shapes dataset %s", final)
    return {split: _split_urls(final / split) for split in sizes}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmzoo.data.shards",
        description="Write image-text shards in the img2dataset layout (NNNNNN.tar with key.jpg/.txt/.json, "
        "NNNNNN_stats.json, manifest.json). Bad inputs are skipped and counted.",
    )
    sub = parser.add_subparsers(dest="source", required=True)
    folder = sub.add_parser("folder", help="images with a sidecar .txt caption of the same stem")
    folder.add_argument("folder", help="folder searched recursively for images")
    folder.add_argument("out", help="output shard folder")
    table = sub.add_parser("table", help="a TSV/CSV/parquet table of (image path, caption)")
    table.add_argument("table", help="table file; relative image paths are read from its folder")
    table.add_argument("out", help="output shard folder")
    table.add_argument("--image-col", default="image", help="column with the image path (default: image)")
    table.add_argument("--caption-col", default="caption", help="column with the caption (default: caption)")
    generated = sub.add_parser("shapes", help="the embedded, generated shapes dataset (train and test splits)")
    generated.add_argument("out", help="cache root; the shards go to a sub-folder named from the parameters")
    generated.add_argument("--train-size", type=int, default=20000)
    generated.add_argument("--test-size", type=int, default=1000)
    generated.add_argument("--seed", type=int, default=0)
    generated.add_argument("--image-size", type=int, default=64)
    for p in (folder, table, generated):
        p.add_argument("--samples-per-shard", type=int, default=1000, help="samples per tar (default: 1000)")
    for p in (folder, table):
        p.add_argument("--test-out", default=None, help="also write a held-out test split into this folder")
        p.add_argument("--test-fraction", type=float, default=0.1,
                       help="share of the images (by a hash of their path) for --test-out (default: 0.1)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.source == "folder":
            summary = write_from_folder(args.folder, args.out, args.samples_per_shard, args.test_out, args.test_fraction)
        elif args.source == "table":
            summary = write_from_table(
                args.table, args.out, args.image_col, args.caption_col, args.samples_per_shard, args.test_out,
                args.test_fraction,
            )
        else:
            splits = ensure_shapes(
                args.out, args.train_size, args.test_size, args.seed, args.image_size, args.samples_per_shard
            )
            summary = {
                split: {"shards": len(urls), "folder": str(Path(urls[0]).parent)}
                for split, urls in splits.items()
            }
    except (FileNotFoundError, ValueError, ImportError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    if summary.get("written") == 0:
        print("error: no sample was written (see 'skipped' for why)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
