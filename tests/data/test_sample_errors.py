"""Skip and conversion counters shared across processes, and what a run reports from them."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from mmzoo.data.sample_errors import SampleError, SampleErrors


def _work(errors: SampleErrors) -> None:
    errors.skip("corrupt_image", "k", "u")
    errors.convert("cmyk")
    errors(SampleError("bad_json", "k2", "u"))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_counts_from_child_processes_reach_the_parent(method: str) -> None:
    ctx = mp.get_context(method)
    errors = SampleErrors(context=ctx)
    children = [ctx.Process(target=_work, args=(errors,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [c.exitcode for c in children] == [0, 0]
    assert errors.counts == {"bad_json": 2, "corrupt_image": 2} and errors.converted == {"cmyk": 2}
    assert errors.total == 4 and len(errors.examples()) == 4


def test_handler_counts_and_skips() -> None:
    errors = SampleErrors(max_logged=1)
    assert errors(SampleError("too_small", "k", "u", "1x1")) is True
    assert errors(RuntimeError("boom")) is True  # an unexpected error is still counted, as other
    assert errors.counts == {"too_small": 1, "other": 1}
    assert errors.examples() == ["too_small: key=k url=u (1x1)"]  # only the first is kept
    with pytest.raises(ValueError, match="unknown skip reason"):
        SampleError("mystery", "k", "u")


def test_summary_and_report() -> None:
    errors = SampleErrors()
    assert errors.report() == "no samples skipped"
    errors.convert("grayscale")
    assert errors.report() == "no samples skipped; converted 1 (grayscale=1)"
    errors.skip("bad_tar", url="x.tar", detail="truncated")
    assert errors.summary() == {
        "skipped_samples": 1,
        "skipped_by_reason": {"bad_tar": 1},
        "converted": {"grayscale": 1},
    }
    assert errors.report().startswith("skipped 1 samples (bad_tar=1); converted 1 (grayscale=1); first: bad_tar")
    errors.reset()
    assert errors.summary() == {"skipped_samples": 0, "skipped_by_reason": {}, "converted": {}}
