"""Length-grouped batches: samples of similar token length batched together, so batches of
conversations carry little padding.

Why: a batch is padded to its longest sequence, and the LLM computes on the padding. On the
embedded data a LLaVA stage-2 mix (a one-line answer next to a five-turn conversation) drawn
at random is about half padding. transformers' ``LengthGroupedSampler`` (the HF Trainer's
``group_by_length``, which LLaVA's training uses) sorts megabatches of 50 batches of an
indexed dataset by length. A stream has no index, so here a window of ``window`` batches of
the already shuffled stream is sorted by length, cut into batches, and the batches leave in
random order: which samples meet in a window is the shuffle buffer's choice, only the
composition of the batches inside it is by length.

A sample's length is what its batch will hold: the collator's ``sample_length(sample)`` when
it offers one, else the tokens of the sample collated alone (``CollatedLength``), which
works with any collator that returns an ``attention_mask``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mmzoo.types import ATTENTION_MASK

Sample = dict[str, Any]


class CollatedLength:
    """The real tokens of ``sample`` as ``collate`` makes them (its attention mask, collated alone).

    A class, not a closure, so that loader workers started by ``spawn`` can take it."""

    def __init__(self, collate: Callable[[list[Sample]], Any]) -> None:
        self.collate = collate

    def __call__(self, sample: Sample) -> int:
        batch = self.collate([sample])
        mask = batch.get(ATTENTION_MASK) if isinstance(batch, Mapping) else None
        if mask is None:
            raise ValueError(
                f"group_by_length needs token lengths, and {type(self.collate).__name__} makes batches without an "
                f"{ATTENTION_MASK!r}: give the collator a sample_length(sample) method or set data.group_by_length=false"
            )
        return int(mask.sum())


def sample_length_of(collate: Callable[[list[Sample]], Any]) -> Callable[[Sample], int]:
    """The collator's own ``sample_length`` if it has one, else ``CollatedLength(collate)``."""
    own = getattr(collate, "sample_length", None)
    return own if callable(own) else CollatedLength(collate)


def length_grouped_batches(
    samples: Iterable[Sample],
    *,
    batch_size: int,
    window: int,
    length: Callable[[Sample], int],
    rng: random.Random,
    partial: bool,
) -> Iterator[list[Sample]]:
    """Lists of ``batch_size`` samples of similar length, from windows of ``window`` batches.

    Every sample of the stream lands in exactly one batch, except, without ``partial``, the
    remainder of the last window that does not fill a batch (drawn at random, so that the
    longest samples are not the ones always left out).
    """
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, got {batch_size} and {window}")
    buffer: list[Sample] = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) == window * batch_size:
            yield from _sorted_batches(buffer, batch_size, length, rng)
            buffer = []
    if buffer:
        if not partial:
            rng.shuffle(buffer)
            buffer = buffer[: len(buffer) - len(buffer) % batch_size]
        yield from _sorted_batches(buffer, batch_size, length, rng)


def _sorted_batches(
    buffer: list[Sample], batch_size: int, length: Callable[[Sample], int], rng: random.Random
) -> list[list[Sample]]:
    ordered = sorted(buffer, key=length)  # stable: equal lengths keep the shuffle's order
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    rng.shuffle(batches)
    return batches


def padding_efficiency(batches: Iterable[Mapping[str, Any]]) -> float:
    """Real tokens / padded tokens over collated batches (their ``attention_mask``): 1.0 pads nothing."""
    real = padded = 0
    for batch in batches:
        mask = batch[ATTENTION_MASK]  # (B, L)
        real += int(mask.sum())
        padded += mask.numel()
    return real / padded if padded else 1.0
