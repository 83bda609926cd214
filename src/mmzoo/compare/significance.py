"""Is a difference between two configurations bigger than the noise between their seeds?

The rule: **Welch's t-test, two-sided, at p < 0.05, when both configurations have at
least two seeds**; with a single seed on either side there is no spread to compare with,
and the leaderboard says so instead of guessing. Why Welch rather than Student's t:
configurations differ in how much they vary from seed to seed (a frozen Q-Former varies
less than a trained one), and Welch does not assume equal variances. Why a t-test at all:
with three seeds per configuration, the t distribution's heavy tails are what keep a
lucky pair of runs from looking decisive; a fixed "k standard deviations" rule would not.
Caveats a reader should keep: with n=3 the test has little power ("not shown to differ"
is not "equal"), and a row compared with the best of many rows is not corrected for
multiple comparisons.

The p-value needs the regularised incomplete beta function. SciPy's is used when SciPy is
installed; otherwise (as in mmzoo's own environment) a continued-fraction evaluation
written here, checked against closed forms in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
MIN_SEEDS = 2


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (``None`` for n=1) and count of one metric over seeds."""

    mean: float
    std: float | None
    n: int

    def text(self, digits: int = 4) -> str:
        """``"0.5123 ± 0.0100"``, or ``"0.5123"`` when there is a single value."""
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (ddof=1, the estimate of the seed-to-seed spread)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Summary(mean, std, n)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-14
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # odd step
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    try:
        from scipy.special import betainc as scipy_betainc
    except ImportError:
        pass
    else:
        return float(scipy_betainc(a, b, x))
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing configuration ``a`` with ``b`` on one metric."""

    p: float | None  # None when either side has fewer than MIN_SEEDS values
    differs: bool | None  # p < ALPHA; None when untestable

    def text(self) -> str:
        if self.p is None:
            return "n/a (n<2)"
        return f"{'differs' if self.differs else 'within noise'} (p={self.p:.2g})"


def welch(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """Welch's two-sided t-test of equal means; untestable below ``MIN_SEEDS`` values a side.

    Two sets without any spread are equal or different outright (p = 1 or 0).
    """
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return Comparison(None, None)
    sa, sb = summarize(a), summarize(b)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n  # squared standard errors
    diff = sa.mean - sb.mean
    if va + vb == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
    else:
        t = diff / math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))  # Welch-Satterthwaite
        p = t_two_sided_p(t, df)
    return Comparison(p, p < alpha)
