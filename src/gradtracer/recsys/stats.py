"""Significance tests and confidence intervals for comparing recommenders.

Every test is *paired*: ``a[i]`` and ``b[i]`` are two systems' scores on the same unit
(the same user, or the same seed). Results are frozen dataclasses that print as tables
and carry a verdict string such as ``"significant at alpha=0.05"``.

Length: the module runs past 400 lines because the paired tests, effect size, bootstrap
intervals and seed aggregation share the pairing checks and the verdict wording; it is the
one place to look for any comparison statistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from gradtracer._random import RandomState, check_random_state
from gradtracer.recsys.metrics._table import format_table

__all__ = [
    "BootstrapCI",
    "EffectSize",
    "PairedTestResult",
    "SeedAggregate",
    "SeedSummary",
    "aggregate_seeds",
    "bootstrap_ci",
    "cohens_d_paired",
    "paired_ttest",
    "verdict",
    "wilcoxon",
]

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")


def verdict(p_value: float, alpha: float) -> str:
    """Return ``"significant at alpha=0.05"`` or ``"not significant at alpha=0.05"``."""
    word = "significant" if p_value < alpha else "not significant"
    return f"{word} at alpha={alpha:g}"


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of a paired significance test.

    Attributes:
        test: name of the test.
        statistic: t statistic (t-test) or the signed-rank sum ``W`` (Wilcoxon).
        p_value: probability, under the null hypothesis, of a statistic at least as extreme.
        n: number of pairs used (Wilcoxon drops zero differences).
        mean_diff: mean of ``a - b`` over all pairs.
        alternative: ``"two-sided"``, ``"greater"`` (``a > b``) or ``"less"``.
        alpha: significance level of the verdict.
        verdict: ``"significant at alpha=..."`` or ``"not significant at alpha=..."``.
        effect_size: Cohen's d_z (t-test) or matched-pairs rank-biserial r (Wilcoxon).
    """

    test: str
    statistic: float
    p_value: float
    n: int
    mean_diff: float
    alternative: str
    alpha: float
    verdict: str
    effect_size: float

    @property
    def significant(self) -> bool:
        """True when ``p_value < alpha``."""
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rows: list[list[object]] = [
            ["statistic", self.statistic],
            ["p_value", self.p_value],
            ["n", self.n],
            ["mean_diff (a - b)", self.mean_diff],
            ["effect_size", self.effect_size],
            ["alternative", self.alternative],
            ["verdict", self.verdict],
        ]
        return format_table([self.test, "value"], rows)


def _paired(a: Any, b: Any) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples need equal lengths, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired samples contain NaN or infinite values")
    return x - y


def _check(alternative: str, alpha: float) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def paired_ttest(
    a: Any, b: Any, *, alternative: Alternative = "two-sided", alpha: float = 0.05
) -> PairedTestResult:
    """Return the paired t-test of ``a`` against ``b``.

    Null hypothesis: the mean of the differences ``a - b`` is zero. ``t = mean(d) /
    (sd(d) / sqrt(n))`` with ``n - 1`` degrees of freedom. When every difference is equal
    the test is degenerate: ``t = 0, p = 1`` if they are all zero, else ``t = +-inf, p = 0``.
    """
    from scipy import stats as sps

    _check(alternative, alpha)
    d = _paired(a, b)
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    dist = sps.t(df=n - 1)
    if alternative == "two-sided":
        p = float(2 * dist.sf(abs(t)))
    elif alternative == "greater":
        p = float(dist.sf(t))
    else:
        p = float(dist.cdf(t))
    p = min(p, 1.0)
    return PairedTestResult(
        "paired t-test",
        float(t),
        p,
        n,
        mean,
        alternative,
        alpha,
        verdict(p, alpha),
        cohens_d_paired(a, b).d,
    )


def wilcoxon(
    a: Any, b: Any, *, alternative: Alternative = "two-sided", alpha: float = 0.05
) -> PairedTestResult:
    """Return the Wilcoxon signed-rank test of ``a`` against ``b``.

    Null hypothesis: the differences ``a - b`` are symmetric about zero. Zero differences
    are dropped (Wilcox); the p-value is exact for small samples without ties and uses the
    tie-corrected normal approximation otherwise (scipy's ``method="auto"``). ``statistic``
    is ``W+``, the sum of ranks of positive differences; ``effect_size`` is the
    matched-pairs rank-biserial correlation ``(W+ - W-) / (W+ + W-)`` in ``[-1, 1]``.
    """
    from scipy import stats as sps

    _check(alternative, alpha)
    d = _paired(a, b)
    nz = d[d != 0.0]
    if nz.size == 0:
        return PairedTestResult(
            "Wilcoxon signed-rank", 0.0, 1.0, 0, 0.0, alternative, alpha, verdict(1.0, alpha), 0.0
        )
    ranks = sps.rankdata(np.abs(nz))
    w_plus = float(ranks[nz > 0].sum())
    w_minus = float(ranks[nz < 0].sum())
    res = sps.wilcoxon(nz, alternative=alternative, zero_method="wilcox")
    p = float(res.pvalue)
    return PairedTestResult(
        "Wilcoxon signed-rank",
        w_plus,
        p,
        int(nz.size),
        float(d.mean()),
        alternative,
        alpha,
        verdict(p, alpha),
        (w_plus - w_minus) / (w_plus + w_minus),
    )


@dataclass(frozen=True)
class EffectSize:
    """Cohen's d_z for paired samples: ``mean(a - b) / sd(a - b)`` (ddof 1).

    ``magnitude`` follows Cohen's thresholds on ``|d|``: negligible < 0.2 <= small < 0.5
    <= medium < 0.8 <= large.
    """

    d: float
    n: int
    magnitude: str

    def __str__(self) -> str:
        return format_table(
            ["Cohen's d_z", "value"], [["d", self.d], ["n", self.n], ["magnitude", self.magnitude]]
        )


def cohens_d_paired(a: Any, b: Any) -> EffectSize:
    """Return Cohen's d_z of paired samples (0 when all differences are 0, +-inf when constant)."""
    d = _paired(a, b)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        value = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        value = mean / sd
    size = abs(value)
    magnitude = (
        "negligible"
        if size < 0.2
        else "small"
        if size < 0.5
        else "medium"
        if size < 0.8
        else "large"
    )
    return EffectSize(value, int(d.size), magnitude)


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap confidence interval ``[low, high]`` around ``estimate``."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int
    n_resamples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rows = [
            ["estimate", self.estimate],
            [f"{self.confidence:.0%} CI low", self.low],
            [f"{self.confidence:.0%} CI high", self.high],
            ["n", self.n],
            ["resamples", self.n_resamples],
        ]
        return format_table([f"bootstrap ({self.method})", "value"], rows)


Statistic = Callable[..., Any]


def bootstrap_ci(
    x: Any,
    *,
    statistic: Statistic = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: Literal["percentile", "bca"] = "bca",
    random_state: RandomState = 0,
) -> BootstrapCI:
    """Return a bootstrap CI of ``statistic(x)`` (for paired data pass ``a - b``).

    Args:
        x: 1-D sample.
        statistic: reduces an array along ``axis=-1`` (``np.mean``, ``np.median``, ...).
        confidence: coverage of the interval (default 0.95).
        n_resamples: bootstrap resamples (default 10 000), drawn in chunks of ~8M values.
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated, Efron 1987;
            default). BCa uses a jackknife, i.e. ``n`` extra evaluations of the statistic.
        random_state: seed (default 0).
    """
    from scipy.special import ndtr, ndtri

    data = np.asarray(x, dtype=np.float64).ravel()
    if data.size < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 values, got {data.size}")
    if not np.isfinite(data).all():
        raise ValueError("bootstrap_ci got NaN or infinite values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be >= 100, got {n_resamples}")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    rng = check_random_state(random_state)
    n = data.size
    estimate = float(statistic(data, axis=-1))
    chunk = max(1, 8_000_000 // n)
    boot = np.concatenate(
        [
            np.asarray(
                statistic(data[rng.integers(0, n, size=(min(chunk, n_resamples - s), n))], axis=-1),
                dtype=np.float64,
            )
            for s in range(0, n_resamples, chunk)
        ]
    )
    tail = (1.0 - confidence) / 2.0
    if method == "percentile":
        q_low, q_high = tail, 1.0 - tail
    else:
        below = np.mean(boot < estimate) + 0.5 * np.mean(boot == estimate)
        z0 = float(ndtri(np.clip(below, 1.0 / n_resamples, 1.0 - 1.0 / n_resamples)))
        jack = _jackknife(data, statistic)
        dev = jack.mean() - jack
        denom = 6.0 * float((dev**2).sum()) ** 1.5
        accel = float((dev**3).sum()) / denom if denom > 0 else 0.0
        q = []
        for z_alpha in (ndtri(tail), ndtri(1.0 - tail)):
            shifted = z0 + z_alpha
            q.append(float(ndtr(z0 + shifted / (1.0 - accel * shifted))))
        q_low, q_high = q
    low, high = np.quantile(boot, [q_low, q_high])
    return BootstrapCI(estimate, float(low), float(high), confidence, method, n, n_resamples)


def _jackknife(data: np.ndarray, statistic: Statistic) -> np.ndarray:
    """``(n,)`` leave-one-out values of the statistic (closed form for the mean)."""
    n = data.size
    if statistic is np.mean:
        return (data.sum() - data) / (n - 1)
    out = np.empty(n)
    step = max(1, 4_000_000 // n)
    for s in range(0, n, step):
        rows = np.arange(s, min(s + step, n))
        keep = np.ones((rows.size, n), dtype=bool)
        keep[np.arange(rows.size), rows] = False
        out[rows] = statistic(
            data[None, :].repeat(rows.size, 0)[keep].reshape(rows.size, n - 1), axis=-1
        )
    return out


@dataclass(frozen=True)
class SeedSummary:
    """Mean, standard deviation (ddof 1) and t-based CI of one quantity over seeds."""

    name: str
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n_seeds: int
    confidence: float


def _summarize(name: str, values: np.ndarray, confidence: float) -> SeedSummary:
    from scipy import stats as sps

    n = values.size
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    if n > 1 and std > 0:
        half = float(sps.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * std / math.sqrt(n)
    else:
        half = math.nan if n == 1 else 0.0
    return SeedSummary(name, mean, std, mean - half, mean + half, n, confidence)


@dataclass(frozen=True)
class SeedAggregate:
    """Per-seed results of a treatment (and optionally a baseline) summarised.

    ``test`` is a paired t-test of treatment against baseline across seeds (paired by
    seed), present only when a baseline is given and there are at least 2 seeds.
    """

    treatment: SeedSummary
    baseline: SeedSummary | None
    difference: SeedSummary | None
    test: PairedTestResult | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rows = []
        for s in (self.treatment, self.baseline, self.difference):
            if s is not None:
                rows.append([s.name, s.mean, s.std, s.ci_low, s.ci_high, s.n_seeds])
        conf = f"{self.treatment.confidence:.0%}"
        text = format_table(["", "mean", "std", f"{conf} CI low", f"{conf} CI high", "seeds"], rows)
        if self.test is not None:
            text += (
                f"\n{self.test.test} across seeds: t={self.test.statistic:.4f}, "
                f"p={self.test.p_value:.4g} -> {self.test.verdict}"
            )
        return text


def aggregate_seeds(
    treatment: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray | None = None,
    *,
    names: tuple[str, str] = ("treatment", "baseline"),
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> SeedAggregate:
    """Return mean, std and a t-based CI over seeds, and a paired t-test against ``baseline``.

    Args:
        treatment: one value per seed (for example each seed's mean NDCG@10).
        baseline: one value per seed, same seed order, or None.
        names: labels of the two rows in the table.
        confidence: CI coverage (default 0.95).
        alpha: significance level of the seed-paired t-test (null: mean difference 0).
    """
    t = np.asarray(treatment, dtype=np.float64).ravel()
    if t.size == 0:
        raise ValueError("aggregate_seeds needs at least one seed value")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    base = diff = None
    test = None
    if baseline is not None:
        b = np.asarray(baseline, dtype=np.float64).ravel()
        if b.shape != t.shape:
            raise ValueError(
                f"treatment has {t.size} seed values but baseline has {b.size}; pair them by seed"
            )
        base = _summarize(names[1], b, confidence)
        diff = _summarize(f"{names[0]} - {names[1]}", t - b, confidence)
        if t.size >= 2:
            test = paired_ttest(t, b, alpha=alpha)
    return SeedAggregate(_summarize(names[0], t, confidence), base, diff, test)
