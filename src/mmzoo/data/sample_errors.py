"""Counting what the data path skipped or changed, across DataLoader worker processes.

Why shared memory: samples are read in worker processes, but the run reports (log and
``metrics.json``) from the main one. Counters created in the parent as
``multiprocessing.Array`` are inherited by forked (or spawned) workers, which increment
the same cells the parent reads, with no queue to drain. Every skipped sample is counted
once, under the first reason that rules it out; samples kept after a change (an image
converted to RGB) are counted apart, so "skipped" is always "lost".
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from multiprocessing.context import BaseContext
from typing import Any

log = logging.getLogger(__name__)

# why a sample (or a whole shard) was skipped; each sample is counted under one reason
SKIP_REASONS = {
    "missing_shard": "a listed local shard file does not exist (counted per shard read)",
    "open_failed": "a shard could not be opened (permissions, a failed pipe: or remote url)",
    "bad_tar": "a truncated or corrupt tar: the rest of the shard is lost (counted once per shard)",
    "missing_image": "no jpg/jpeg/png/webp member",
    "missing_caption": "no txt member",
    "empty_caption": "a txt member that is empty or only whitespace",
    "bad_caption": "a caption that is not UTF-8",
    "bad_json": "a json sidecar that is not a JSON object",
    "corrupt_image": "image bytes no decoder reads",
    "too_large": "more pixels than the decompression-bomb guard allows, or a member too big to read",
    "too_small": "an image below the minimum side (1x1 placeholders, spacers)",
    "transform_failed": "the model's image transform raised",
    "other": "anything else a pipeline stage raised",
}
# how a kept sample was changed on the way; its image is always RGB after decoding
CONVERSIONS = {
    "grayscale": "1/L/LA images to RGB (alpha composited onto white)",
    "palette": "P/PA images to RGB (transparency composited onto white)",
    "rgba": "RGBA images composited onto white",
    "cmyk": "CMYK images to RGB",
    "high_bit_depth": "16-bit or 32-bit images scaled to 8-bit RGB",
    "other_mode": "other modes (YCbCr, LAB, HSV, RGBX...) to RGB",
    "duplicate_member": "a sample with two members of one name keeps the first",
}


class SampleError(ValueError):
    """A sample that cannot be used; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, key: str, url: str, detail: str = "") -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; one of {list(SKIP_REASONS)}")
        super().__init__(f"{reason}: key={key} url={url}" + (f" ({detail})" if detail else ""))
        self.reason = reason


class SampleErrors:
    """Skips by reason and conversions by kind, shared by the parent and its DataLoader workers.

    Use an instance as a webdataset ``handler``: it counts the exception (a ``SampleError``
    under its reason, anything else as ``other``) and returns True (skip, go on). The first
    ``max_logged`` skips are logged with their key and url and kept for ``report()``.
    ``context`` must match the DataLoader's ``multiprocessing_context`` (default: both the
    interpreter's default start method).
    """

    REASONS = tuple(SKIP_REASONS)
    CONVERSIONS = tuple(CONVERSIONS)
    _EXAMPLE_BYTES = 300

    def __init__(self, max_logged: int = 5, context: BaseContext | None = None) -> None:
        ctx = context or mp.get_context()
        self.max_logged = max_logged
        # cells: skips by reason, then conversions by kind, then the number of stored examples
        self._counts = ctx.Array("q", len(self.REASONS) + len(self.CONVERSIONS) + 1)
        self._examples = ctx.Array("c", max(1, max_logged) * self._EXAMPLE_BYTES, lock=False)

    @classmethod
    def classify(cls, exn: BaseException) -> str:
        return exn.reason if isinstance(exn, SampleError) else "other"

    def __call__(self, exn: BaseException) -> bool:
        reason = self.classify(exn)
        self._record(reason, str(exn) if isinstance(exn, SampleError) else f"{reason}: {exn!r}")
        return True

    def skip(self, reason: str, key: str = "", url: str = "", detail: str = "") -> None:
        """Count one skipped sample (or shard) as ``reason``."""
        self._record(reason, str(SampleError(reason, key, url, detail)))

    def convert(self, kind: str) -> None:
        """Count one sample kept after a change of kind ``kind`` (one of ``CONVERSIONS``)."""
        cell = len(self.REASONS) + self.CONVERSIONS.index(kind)
        with self._counts.get_lock():
            self._counts[cell] += 1

    def _record(self, reason: str, message: str) -> None:
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

    def _nonzero(self, names: tuple[str, ...], offset: int) -> dict[str, int]:
        with self._counts.get_lock():
            return {n: int(self._counts[offset + i]) for i, n in enumerate(names) if self._counts[offset + i]}

    @property
    def counts(self) -> dict[str, int]:
        """Skipped samples by reason (reasons never met are left out)."""
        return self._nonzero(self.REASONS, 0)

    @property
    def converted(self) -> dict[str, int]:
        """Kept samples by the change they went through (kinds never met are left out)."""
        return self._nonzero(self.CONVERSIONS, len(self.REASONS))

    @property
    def total(self) -> int:
        """Skipped samples (and shards), all reasons."""
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records under ``data``: skips (samples, and shards for the
        shard-level reasons ``missing_shard``/``open_failed``/``bad_tar``), by reason, and conversions."""
        return {"skipped_samples": self.total, "skipped_by_reason": self.counts, "converted": self.converted}

    def examples(self) -> list[str]:
        with self._counts.get_lock():
            n = self._counts[-1]
            raw = bytes(self._examples[: n * self._EXAMPLE_BYTES])
        chunks = [raw[i * self._EXAMPLE_BYTES : (i + 1) * self._EXAMPLE_BYTES] for i in range(n)]
        return [c.rstrip(b"\0").decode("utf-8", "replace") for c in chunks]

    def state_dict(self) -> dict[str, dict[str, int]]:
        """The counts, for a checkpoint: a resumed run reports what was skipped before it stopped."""
        return {"skipped": self.counts, "converted": self.converted}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        with self._counts.get_lock():
            for reason, n in state.get("skipped", {}).items():
                self._counts[self.REASONS.index(reason)] = n
            for kind, n in state.get("converted", {}).items():
                self._counts[len(self.REASONS) + self.CONVERSIONS.index(kind)] = n

    def reset(self) -> None:
        with self._counts.get_lock():
            for i in range(len(self._counts)):
                self._counts[i] = 0

    def report(self) -> str:
        """One line for the end of a run: skips by reason, conversions by kind, the first skips."""
        converted = self.converted
        kept = (
            f"converted {sum(converted.values())} ({', '.join(f'{k}={n}' for k, n in converted.items())})"
            if converted
            else ""
        )
        if not self.total:
            return "no samples skipped" + (f"; {kept}" if kept else "")
        counts = ", ".join(f"{r}={n}" for r, n in self.counts.items())
        return (
            f"skipped {self.total} samples ({counts})"
            + (f"; {kept}" if kept else "")
            + "; first: "
            + " | ".join(self.examples())
        )
