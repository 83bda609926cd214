"""Fixture shards for the bad-data matrix: one shard per kind of damage, each with good samples.

Every case declares what the reader must do with it (skip under a reason, or keep after a
conversion), independently of the reader's code, so a test can compare the counts and
the keys that arrive with what was written.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mmzoo.data.shapes import make_sample


def encode(image: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def good_jpeg(index: int, size: int = 32) -> bytes:
    return encode(make_sample(index, "train", 0, size)[0])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: PIL cannot write 16-bit RGB or a header that lies about its size."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def bomb_png(side: int = 50_000) -> bytes:
    """A tiny file whose header claims ``side`` x ``side`` RGB pixels (a decompression bomb)."""
    return png_bytes(side, side, 8, 2, b"\0" * 64)


def rgb16_png(width: int = 16, height: int = 16, value: int = 0x8000) -> bytes:
    """16-bit-per-channel RGB, every channel ``value`` (0x8000 is mid-grey, not white)."""
    row = b"\0" + struct.pack(">H", value) * 3 * width
    return png_bytes(width, height, 16, 2, row * height)


def gray16_png(size: int = 16, value: int = 0x4000) -> bytes:
    return encode(Image.fromarray(np.full((size, size), value, dtype=np.uint16)), "PNG")


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            add_member(tar, name, data)
    return buf.getvalue()


def member_offsets(data: bytes) -> dict[str, tuple[int, int]]:
    """``{name: (header offset, data offset)}`` of a tar's members."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (m.offset, m.offset_data) for m in tar.getmembers()}


@dataclass
class Matrix:
    """What was written and what the reader must report."""

    urls: list[str] = field(default_factory=list)  # the shard list, missing files included
    good: set[str] = field(default_factory=set)  # keys that must arrive
    skipped: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)


class MatrixWriter:
    """Writes shard ``NNNNNN.tar`` per case; each case adds its own samples and expectations."""

    def __init__(self, out: Path) -> None:
        self.out, self.matrix, self._index = out, Matrix(), 0

    def _sample(self, key: str, image: bytes | None, caption: bytes | None, meta: bytes | None = b"{}",
                ext: str = "jpg") -> list[tuple[str, bytes]]:  # fmt: skip
        members = [(f"{key}.{ext}", image)] if image is not None else []
        members += [(f"{key}.txt", caption)] if caption is not None else []
        members += [(f"{key}.json", meta)] if meta is not None else []
        return members

    def good(self, key: str, n: int = 0) -> list[tuple[str, bytes]]:
        self.matrix.good.add(key)
        return self._sample(key, good_jpeg(n), f"a good caption {key}".encode())

    def shard(self, name: str, members: list[tuple[str, bytes]], transform: Callable[[bytes], bytes] | None = None) -> None:  # fmt: skip
        data = tar_bytes(members)
        path = self.out / f"{self._index:06d}-{name}.tar"
        self._index += 1
        path.write_bytes(transform(data) if transform else data)
        self.matrix.urls.append(str(path))

    def case(self, name: str, members: list[tuple[str, bytes]], skipped: str | None = None,
             converted: str | None = None, kept: bool = False) -> None:  # fmt: skip
        """A shard: a good sample, the case's sample(s), another good sample."""
        key = members[0][0].split(".")[0]
        if skipped:
            self.matrix.skipped[skipped] += 1
        if converted:
            self.matrix.converted[converted] += 1
        if kept:
            self.matrix.good.add(key)
        self.shard(name, [*self.good(f"{name}-a", 1), *members, *self.good(f"{name}-z", 2)])


def write_matrix(out: Path) -> Matrix:
    """The bad-data matrix of issue 11 as shards under ``out``; returns the expectations."""
    out.mkdir(parents=True, exist_ok=True)
    w = MatrixWriter(out)
    cap = b"a caption"
    jpg = good_jpeg(3)

    # skipped, one sample each
    w.case("corrupt_jpeg", w._sample("cj", jpg[:20] + b"\0garbage" * 40, cap), skipped="corrupt_image")
    w.case("corrupt_png", w._sample("cp", encode(Image.new("RGB", (32, 32)), "PNG")[:60], cap, ext="png"),
           skipped="corrupt_image")  # fmt: skip
    w.case("random_image_bytes", w._sample("rb", bytes(range(256)) * 4, cap), skipped="corrupt_image")
    w.case("no_image", w._sample("ni", None, cap), skipped="missing_image")
    w.case("no_caption", w._sample("nc", jpg, None), skipped="missing_caption")
    w.case("empty_caption", w._sample("ec", jpg, b" \n\t "), skipped="empty_caption")
    w.case("latin1_caption", w._sample("lc", jpg, "un caf\xe9".encode("latin-1")), skipped="bad_caption")
    w.case("bad_json", w._sample("bj", jpg, cap, b"{not json"), skipped="bad_json")
    w.case("json_not_object", w._sample("jl", jpg, cap, b"[1, 2]"), skipped="bad_json")
    w.case("one_pixel", w._sample("op", encode(Image.new("RGB", (1, 1)), "PNG"), cap, ext="png"),
           skipped="too_small")  # fmt: skip
    w.case("bomb", w._sample("bo", bomb_png(), cap, ext="png"), skipped="too_large")

    # kept after a conversion
    gray = Image.new("L", (32, 32), 90)
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    palette = Image.new("RGB", (32, 32), "red").convert("P", palette=Image.Palette.ADAPTIVE)
    palette_alpha = palette.copy()
    palette_alpha.info["transparency"] = 0
    cases = [
        ("grayscale", encode(gray), "jpg", "grayscale"),
        ("grayscale_alpha", encode(Image.merge("LA", [gray, gray]), "PNG"), "png", "grayscale"),
        ("rgba", encode(rgba, "PNG"), "png", "rgba"),
        ("cmyk", encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0))), "jpg", "cmyk"),
        ("gray16", gray16_png(), "png", "high_bit_depth"),
        ("palette", encode(palette, "PNG"), "png", "palette"),
        ("palette_transparent", encode(palette_alpha, "PNG", transparency=0), "png", "palette"),
        ("gif", encode(palette, "GIF"), "jpg", "palette"),  # a GIF in a .jpg member: decoded by content
    ]
    for name, data, ext, kind in cases:
        w.case(name, w._sample(name.replace("_", ""), data, cap, ext=ext), converted=kind, kept=True)
    w.case("rgb16", w._sample("rgbsixteen", rgb16_png(), cap, ext="png"), kept=True)  # PIL reads it as RGB
    w.case("duplicate_member", [*w._sample("dup", jpg, cap), ("dup.txt", b"second caption")],
           converted="duplicate_member", kept=True)  # fmt: skip

    # damaged shards: one bad_tar each. The samples before the damage arrive, except the one
    # being grouped when it is met (its completeness cannot be known): it is lost with the rest
    def truncated(cut: Callable[[dict[str, tuple[int, int]]], int]) -> Callable[[bytes], bytes]:
        return lambda data: data[: cut(member_offsets(data))]

    def lost(key: str) -> list[tuple[str, bytes]]:
        return w._sample(key, jpg, cap)

    body = [*w.good("mid-a"), *lost("mid-b"), *lost("mid-c"), *lost("mid-d")]
    w.shard("truncated_in_data", body, truncated(lambda off: off["mid-c.jpg"][1] + 100))
    body = [*w.good("hdr-a"), *w.good("hdr-b"), *lost("hdr-c"), *lost("hdr-d")]
    # cut exactly at a header: tarfile alone ends here silently, and "hdr-c" would look captionless
    w.shard("truncated_at_header", body, truncated(lambda off: off["hdr-c.txt"][0]))
    body = [*w.good("bad-a"), *lost("bad-b"), *lost("bad-c")]
    # an invalid header mid-shard (then a proper end): tarfile alone ends here silently too
    w.shard(
        "corrupt_header", body, lambda d: d[: member_offsets(d)["bad-c.jpg"][0]] + b"\x07" * 512 + b"\0" * 1024
    )
    w.matrix.skipped["bad_tar"] += 3
    (out / "not_a_tar.tar").write_bytes(b"this is not a tar file at all" * 40)
    w.matrix.urls.append(str(out / "not_a_tar.tar"))
    (out / "empty.tar").write_bytes(b"")
    w.matrix.urls.append(str(out / "empty.tar"))
    w.matrix.skipped["bad_tar"] += 2

    w.matrix.urls.append(str(out / "999999-missing.tar"))  # named in the list, never written
    w.matrix.skipped["missing_shard"] += 1
    return w.matrix
