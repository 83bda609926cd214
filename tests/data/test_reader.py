"""The reader's parts (``reader``, ``images``): tar ends, image modes to RGB, captions, limits, shards."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmzoo.data.images import decode_image, to_rgb
from mmzoo.data.reader import OversizedMember, decode_caption, decode_sample, shard_samples, tar_members
from mmzoo.data.sample_errors import SampleError, SampleErrors
from tests.data.bad_data import bomb_png, encode, good_jpeg, member_offsets, rgb16_png, tar_bytes

MEMBERS = [("a.jpg", b"1" * 600), ("a.txt", b"cap a"), ("b.jpg", b"2" * 10), ("b.txt", b"cap b")]


def reason(call) -> str:  # noqa: ANN001
    with pytest.raises(SampleError) as info:
        call()
    return info.value.reason


def test_tar_members_reads_a_whole_tar() -> None:
    got = [(m["fname"], m["data"]) for m in tar_members(io.BytesIO(tar_bytes(MEMBERS)))]
    assert got == MEMBERS


@pytest.mark.parametrize("where", ["at_header", "in_header", "in_data", "before_end_block"])
def test_tar_members_raises_on_any_truncation(where: str) -> None:
    """tarfile alone ends silently when a cut falls on or in a header (the baseline below)."""
    import tarfile

    data = tar_bytes(MEMBERS)
    header, start = member_offsets(data)["b.txt"]
    end = start + 512  # b.txt's data block, then the end-of-archive blocks
    cut = {"at_header": header, "in_header": header + 100, "in_data": start + 2, "before_end_block": end}[where]
    if where != "in_data":
        with tarfile.open(fileobj=io.BytesIO(data[:cut]), mode="r|") as tar:  # the silent baseline
            assert len([m for m in tar]) >= 3
    names = []
    with pytest.raises(tarfile.ReadError):
        names.extend(m["fname"] for m in tar_members(io.BytesIO(data[:cut])))
    assert names[:3] == ["a.jpg", "a.txt", "b.jpg"][: len(names[:3])]


def test_tar_members_does_not_read_oversized_members() -> None:
    got = {m["fname"]: m["data"] for m in tar_members(io.BytesIO(tar_bytes(MEMBERS)), max_member_bytes=100)}
    assert got["a.jpg"] == OversizedMember(600) and got["b.jpg"] == b"2" * 10


def test_shard_samples_groups_and_counts_open_failures(tmp_path: Path) -> None:
    path = tmp_path / "s.tar"
    path.write_bytes(tar_bytes(MEMBERS))
    errors = SampleErrors()
    samples = list(shard_samples(str(path), errors))
    assert [(s["__key__"], s["txt"]) for s in samples] == [("a", b"cap a"), ("b", b"cap b")]
    assert all(s["__url__"] == str(path) for s in samples) and errors.total == 0
    assert list(shard_samples(f"file://{path}", errors)) and errors.total == 0
    assert list(shard_samples(str(tmp_path / "nope.tar"), errors)) == []
    assert list(shard_samples("nosuchscheme://host/x.tar", errors)) == []
    fifo = tmp_path / "fifo.tar"
    __import__("os").mkfifo(fifo)
    assert list(shard_samples(str(fifo), errors)) == []  # not opened: opening a FIFO would block
    assert errors.counts == {"missing_shard": 2, "open_failed": 1}


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("RGB", None), ("L", "grayscale"), ("1", "grayscale"), ("LA", "grayscale"), ("P", "palette"),
     ("PA", "palette"), ("RGBA", "rgba"), ("CMYK", "cmyk"), ("I;16", "high_bit_depth"), ("I", "high_bit_depth"),
     ("F", "high_bit_depth"), ("YCbCr", "other_mode"), ("HSV", "other_mode")],
)  # fmt: skip
def test_to_rgb_every_mode(mode: str, kind: str | None) -> None:
    image, got = to_rgb(Image.new(mode, (4, 3)))
    assert image.mode == "RGB" and image.size == (4, 3) and got == kind


def test_transparency_goes_onto_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 128))
    image, _ = to_rgb(rgba)
    assert image.getpixel((0, 0)) == (255, 255, 255)  # a plain convert("RGB") gives black here
    assert image.getpixel((1, 0)) == (255, 127, 127)  # half red over white
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0])
    palette.info["transparency"] = 0
    assert to_rgb(palette)[0].getpixel((0, 0)) == (255, 255, 255)


def test_deep_images_are_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 16).astype(np.uint16).reshape(4, 4)
    image, kind = to_rgb(Image.fromarray(ramp))
    assert Image.fromarray(ramp).convert("RGB").getpixel((3, 0)) == (255, 255, 255)  # PIL clips: the baseline
    values = np.asarray(image)[..., 0].ravel()
    assert kind == "high_bit_depth" and values[0] == 0 and values[-1] == 255
    assert np.all(np.diff(values.astype(int)) > 0)  # the ramp survives
    floats = Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32))
    assert to_rgb(floats)[0].getpixel((0, 0)) == (128, 128, 128)
    assert np.asarray(decode_image(rgb16_png(value=0x4000), "k", "u")[0]).mean() == pytest.approx(64, abs=1)


def test_decode_caption() -> None:
    assert decode_caption("\ufeff  un café \n".encode(), "k", "u") == "un café"  # BOM dropped, UTF-8 kept
    assert reason(lambda: decode_caption("café".encode("latin-1"), "k", "u")) == "bad_caption"
    assert reason(lambda: decode_caption(b" \t\n", "k", "u")) == "empty_caption"


def test_decode_image_limits() -> None:
    jpg = good_jpeg(0, 32)
    assert decode_image(jpg, "k", "u")[0].size == (32, 32)
    assert reason(lambda: decode_image(jpg, "k", "u", max_pixels=32 * 32 - 1)) == "too_large"
    assert reason(lambda: decode_image(jpg, "k", "u", min_side=33)) == "too_small"
    assert reason(lambda: decode_image(bomb_png(), "k", "u")) == "too_large"  # PIL's own guard
    assert reason(lambda: decode_image(bomb_png(9000), "k", "u")) == "too_large"  # over ours, under PIL's
    assert reason(lambda: decode_image(jpg[: len(jpg) // 2], "k", "u")) == "corrupt_image"
    assert reason(lambda: decode_image(b"", "k", "u")) == "corrupt_image"


def test_decode_sample_first_reason_wins_and_conversions_count_when_kept() -> None:
    errors = SampleErrors()
    gray = encode(Image.new("L", (16, 16)))
    base = {"__key__": "k", "__url__": "u", "jpg": gray, "txt": b"cap", "json": b'{"a": 1}'}
    out = decode_sample(base, errors)
    assert out["caption"] == "cap" and out["meta"] == {"a": 1} and out["image"].mode == "RGB"
    assert errors.converted == {"grayscale": 1}
    assert reason(lambda: decode_sample({**base, "json": b"[]"}, errors)) == "bad_json"
    assert reason(lambda: decode_sample({**base, "json": b"[" * 100_000}, errors)) == "bad_json"
    assert reason(lambda: decode_sample({**base, "txt": b""}, errors)) == "empty_caption"
    assert reason(lambda: decode_sample({**base, "png": OversizedMember(10**9)}, errors)) == "too_large"
    assert errors.converted == {"grayscale": 1}  # skipped samples are not also counted as converted
    no_image = {k: v for k, v in base.items() if k != "jpg"}
    assert reason(lambda: decode_sample({**no_image, "txt": b""}, errors)) == "missing_image"
