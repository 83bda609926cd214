"""Seed statistics: mean ± std and Welch's t-test against closed forms and an independent integral."""

from __future__ import annotations

import math

import pytest

from mmzoo.compare.significance import betainc, summarize, t_two_sided_p, welch


def test_summarize_uses_the_sample_standard_deviation():
    s = summarize([0.5, 0.6, 0.7])
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1) and s.n == 3
    assert s.text(2) == "0.60 ± 0.10"
    one = summarize([0.25])
    assert one.std is None and one.text(2) == "0.25"
    with pytest.raises(ValueError):
        summarize([])


@pytest.mark.parametrize(
    ("t", "df", "expected"),
    [
        (1.0, 1.0, 0.5),  # Cauchy: P(|T| > 1) = 1/2
        (2.0, 2.0, 1 - 2 / math.sqrt(6)),  # df=2: P(|T| > t) = 1 - t / sqrt(t^2 + 2)
        (0.0, 5.0, 1.0),
        (2.2281388519649385, 10.0, 0.05),  # the 97.5% quantile of t(10)
        (1.959963984540054, 1e7, 0.05),  # large df: the normal's 97.5% quantile
    ],
)
def test_t_p_value_matches_closed_forms_and_tables(t, df, expected):
    assert t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert t_two_sided_p(-t, df) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def _t_tail_by_integration(t: float, df: float, steps: int = 20000) -> float:
    """2 * integral of the t density from |t| to infinity, via x = |t| + u/(1-u), Simpson's rule."""
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def f(u: float) -> float:
        if u >= 1.0:
            return 0.0
        x = abs(t) + u / (1 - u)
        return math.exp(logc - (df + 1) / 2 * math.log1p(x * x / df)) / (1 - u) ** 2

    h = 1.0 / steps
    total = f(0) + f(1) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    return 2 * total * h / 3


@pytest.mark.parametrize(("t", "df"), [(0.7, 3.7), (2.5, 2.3), (4.0, 5.5), (1.3, 17.2)])
def test_t_p_value_matches_direct_integration_for_fractional_df(t, df):
    assert t_two_sided_p(t, df) == pytest.approx(_t_tail_by_integration(t, df), rel=1e-5)


def test_betainc_symmetry_and_ends():
    assert betainc(2.0, 3.0, 0.0) == 0.0 and betainc(2.0, 3.0, 1.0) == 1.0
    assert betainc(2.5, 0.5, 0.3) == pytest.approx(1 - betainc(0.5, 2.5, 0.7), rel=1e-10)
    assert betainc(1.0, 1.0, 0.37) == pytest.approx(0.37)  # uniform


def test_welch_separates_clear_differences_from_seed_noise():
    tight_low, tight_high = [0.50, 0.51, 0.49], [0.70, 0.71, 0.69]
    assert welch(tight_high, tight_low).differs is True
    noisy = [0.40, 0.70, 0.55]
    within = welch(noisy, [0.50, 0.52, 0.51])
    assert within.differs is False and within.p > 0.5
    assert "within noise" in within.text()


def test_welch_matches_a_hand_computed_case():
    # means 3 and 6, variances 1 and 4, n=3 each: t = -3/sqrt(5/3), df = (5/3)^2 / ((1/9 + 16/9)/2)
    a, b = [2.0, 3.0, 4.0], [4.0, 6.0, 8.0]
    t, df = -3 / math.sqrt(5 / 3), (5 / 3) ** 2 / ((1 / 9 + 16 / 9) / 2)
    assert welch(a, b).p == pytest.approx(t_two_sided_p(t, df))
    assert welch(a, b).p == pytest.approx(_t_tail_by_integration(t, df), rel=1e-5)


def test_welch_needs_two_seeds_a_side_and_handles_zero_spread():
    assert welch([0.5], [0.6, 0.7]).p is None and welch([0.5], [0.6, 0.7]).text() == "n/a (n<2)"
    assert welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert welch([1.0, 1.0], [2.0, 2.0]).differs is True


def test_scipy_agrees_when_installed():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed: the own implementation is used")
    a, b = [0.52, 0.55, 0.50], [0.58, 0.61, 0.66]
    assert welch(a, b).p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-8)
