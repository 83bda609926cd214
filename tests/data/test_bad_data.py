"""Bad data never crashes, never hangs, never silently loses (issue 11).

The matrix: one shard per kind of damage, read through the real pipeline with 0 and 2
workers; every good sample arrives and each bad one is counted once under its reason.
The fuzz test: random tar members, random member names, random and truncated tar bytes;
the reader never raises, finishes in bounded time, and accounts for every sample.
"""

from __future__ import annotations

import contextlib
import io
import signal
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from webdataset.tariterators import base_plus_ext

from mmzoo.data.webdata import SampleErrors, ShardLoader, image_transform, make_pipeline
from tests.conftest import collate_list
from tests.data.bad_data import Matrix, bomb_png, encode, good_jpeg, gray16_png

TRANSFORM = image_transform(8)
PER_SAMPLE = {  # the reasons that stand for exactly one sample (the others for a shard)
    "missing_image", "missing_caption", "empty_caption", "bad_caption", "bad_json", "corrupt_image",
    "too_large", "too_small", "transform_failed", "other",
}  # fmt: skip


def read(urls: list[str], errors: SampleErrors, num_workers: int = 0) -> list[str]:
    pipe = make_pipeline(
        urls, transform=TRANSFORM, collate=collate_list, batch_size=3, shuffle_buffer=0, errors=errors,
        num_workers=num_workers,
    )  # fmt: skip
    return [key for batch in ShardLoader(pipe, num_workers=num_workers) for key in batch["keys"]]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_data_matrix(bad_data: Matrix, num_workers: int) -> None:
    errors = SampleErrors()
    keys = read(bad_data.urls, errors, num_workers)
    assert sorted(keys) == sorted(bad_data.good)  # every good and every converted sample, once
    assert errors.counts == dict(bad_data.skipped)  # each bad one once, under its reason
    assert errors.converted == dict(bad_data.converted)
    summary = errors.summary()  # what metrics.json records
    assert summary["skipped_samples"] == sum(bad_data.skipped.values()) == errors.total
    assert summary["converted"]["palette"] == 3 and summary["skipped_by_reason"]["bad_tar"] == 5


def test_matrix_report_names_reasons_and_conversions(bad_data: Matrix) -> None:
    errors = SampleErrors(max_logged=2)
    read(bad_data.urls, errors)
    report = errors.report()
    assert report.startswith(f"skipped {sum(bad_data.skipped.values())} samples (")
    assert "missing_shard=1" in report and "bad_tar=5" in report and "corrupt_image=3" in report
    assert f"converted {sum(bad_data.converted.values())} (" in report and "cmyk=1" in report
    assert report.count("key=") == 2  # the first two skips, with their keys and shards


def test_converted_images_are_rgb_and_right(bad_data: Matrix) -> None:
    """Conversions keep the picture: transparency onto white, 16-bit scaled rather than clipped."""
    identity = image_transform(32, mean=(0, 0, 0), std=(1, 1, 1))
    pipe = make_pipeline(
        [u for u in bad_data.urls if "rgba" in u or "16" in u], transform=identity, collate=collate_list,
        batch_size=16, shuffle_buffer=0, errors=SampleErrors(),
    )  # fmt: skip
    batch = next(iter(ShardLoader(pipe)))
    pixels = dict(zip(batch["keys"], batch["pixel_values"], strict=True))  # (3, 32, 32) in [0, 1]
    assert pixels["rgba"].min() == 1.0  # fully transparent black: white, not black
    assert abs(float(pixels["gray16"].mean()) - 0x4000 / 65535) < 0.01  # not clipped to white
    assert abs(float(pixels["rgbsixteen"].mean()) - 0x8000 / 65535) < 0.01


def test_missing_shard_mid_run_with_workers(shapes_shards: Path, tmp_path: Path) -> None:
    """A shard that vanishes after the list was made: counted where a worker meets it, no hang."""
    urls = [str(p) for p in sorted(shapes_shards.glob("*.tar"))]
    gone = tmp_path / "gone.tar"
    gone.write_bytes((shapes_shards / "000000.tar").read_bytes())
    errors = SampleErrors()
    pipe = make_pipeline(
        [*urls, str(gone)], transform=TRANSFORM, collate=collate_list, batch_size=4, shuffle_buffer=0,
        errors=errors, num_workers=2,
    )  # fmt: skip
    gone.unlink()
    keys = [k for b in ShardLoader(pipe, num_workers=2) for k in b["keys"]]
    assert sorted(keys) == [f"{i:09d}" for i in range(40)] and errors.counts == {"missing_shard": 1}


# ---- fuzz -------------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Turn a hang into a failure (SIGALRM; pytest runs tests in the main thread)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"the reader took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


VALID = [good_jpeg(0, 16), encode(Image.new("LA", (9, 9)), "PNG"), encode(Image.new("RGB", (2, 2)), "PNG"),
         gray16_png(8), bomb_png(), b"a caption", b"{}", "caf\xe9".encode("latin-1")]  # fmt: skip
KEYS = ["a", "b", "0001", "dir/c", "x.y"]
SUFFIXES = ["jpg", "JPG", "png", "webp", "txt", "json", "cls", ""]

names = st.one_of(
    st.builds(lambda k, s: f"{k}.{s}" if s else k, st.sampled_from(KEYS), st.sampled_from(SUFFIXES)),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), min_size=1, max_size=40),
)
payloads = st.one_of(st.binary(max_size=200), st.sampled_from(VALID))
members = st.lists(st.tuples(names, payloads), max_size=12)


def tar_of(items: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sample_keys(data: bytes) -> list[str]:
    """Keys of the samples a whole tar holds, by webdataset's rule: consecutive members of one prefix."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = [m.name for m in tar.getmembers() if m.isreg()]
    keys: list[str] = []
    for name in names:
        prefix, _ = base_plus_ext(name)
        if prefix is not None and (not keys or keys[-1] != prefix):
            keys.append(prefix)
    return keys


def read_one(path: Path) -> tuple[list[str], SampleErrors]:
    errors = SampleErrors(max_logged=0)
    with time_limit(20):
        keys = read([str(path)], errors)
    return keys, errors


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(items=members, cut=st.one_of(st.none(), st.floats(0, 1)))
def test_fuzzed_tars_every_sample_arrives_or_is_counted(tmp_path: Path, items: list, cut: float | None) -> None:
    data = tar_of(items)
    expected = sample_keys(data)
    if cut is not None:
        data = data[: int(len(data) * cut)]
    path = tmp_path / "fuzz.tar"
    path.write_bytes(data)
    keys, errors = read_one(path)  # never raises, never hangs
    counts = errors.counts
    per_sample = sum(n for reason, n in counts.items() if reason in PER_SAMPLE)
    assert "other" not in counts and "transform_failed" not in counts  # every failure has its reason
    assert not Counter(keys) - Counter(expected)  # nothing arrives that was not written
    assert counts.get("bad_tar", 0) <= 1  # a broken shard counts once
    if counts.get("bad_tar", 0) == 0:  # the whole shard was read: each sample arrived or was counted
        assert len(keys) + per_sample == len(expected)
    else:  # only a cut tar is bad; the samples from the damage on are lost together, as one bad_tar
        assert cut is not None and (len(keys) + per_sample < len(expected) or not expected)


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), st.builds(lambda b: b"\x1f\x8b" + b, st.binary(max_size=500))))
def test_random_bytes_as_a_shard(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.tar"
    path.write_bytes(data)
    keys, errors = read_one(path)
    assert "other" not in errors.counts and errors.counts.get("bad_tar", 0) <= 1
    if errors.total == 0:  # read cleanly: only an empty archive (a zero block) can be, from random bytes
        assert keys == [] and len(data) >= 512 and not any(data[:512])


def test_resampling_only_broken_shards_fails_instead_of_hanging(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar" * 100)
    errors = SampleErrors()
    pipe = make_pipeline(
        [str(broken)], transform=TRANSFORM, collate=collate_list, batch_size=2, errors=errors, resampled=True,
        samples_per_epoch=10,
    )  # fmt: skip
    with time_limit(60), pytest.raises(RuntimeError, match="100 shards in a row gave no sample.*bad_tar=100"):
        next(iter(ShardLoader(pipe)))


def test_resampling_with_some_broken_shards_goes_on(shapes_shards: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar" * 100)
    errors = SampleErrors()
    pipe = make_pipeline(
        [str(shapes_shards / "000000.tar"), str(broken)], transform=TRANSFORM, collate=collate_list,
        batch_size=2, errors=errors, resampled=True, samples_per_epoch=200, shuffle_buffer=0,
    )  # fmt: skip
    with time_limit(60):
        keys = [k for b in ShardLoader(pipe) for k in b["keys"]]
    assert len(keys) == 200 and set(keys) == {f"{i:09d}" for i in range(10)} and errors.counts["bad_tar"] > 0
