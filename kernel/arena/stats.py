"""The arena's statistics: honest fitness that refuses to fund overfit noise.

Pure functions over return streams (one return per period, as fractions: 0.01 is +1%). Nothing here
annualizes unless it says so: every Sharpe ratio is *per period* (mean / standard deviation of the
per-period returns), because that is the unit the Bailey & López de Prado formulas are stated in.

Formulas
--------
Sharpe ratio (per period)::

    SR = mean(r) / std(r, ddof=1)                      0.0 for fewer than 2 returns or a constant series

Sortino ratio (annualized by sqrt(periods_per_year))::

    DD = sqrt(mean(min(r, 0)^2))                      downside deviation over *all* periods, target 0
    Sortino = mean(r) / DD * sqrt(periods_per_year)   0.0 when no period lost money

Moments (population estimators, i.e. biased, divisor n, as in the papers below)::

    m_k = mean((r - mean(r))^k),  skew = m_3 / m_2^(3/2),  kurtosis = m_4 / m_2^2   (NOT excess: 3 for normal)

Probabilistic Sharpe Ratio, Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier",
Journal of Risk 15(2)::

    PSR(SR*) = Phi( (SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2) )

with SR the observed per-period Sharpe ratio over n observations, SR* the benchmark, skew and
(non-excess) kurtosis of the returns, Phi the standard normal CDF.

Deflated Sharpe Ratio, Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for
Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5)::

    SR0 = sqrt(V[SR_n]) * ( (1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)) )     (0 when N == 1)
    DSR = PSR(SR0)

with N the number of (independent) trials, V[SR_n] the variance of the trials' per-period Sharpe
ratios and g = 0.5772156649... the Euler-Mascheroni constant. SR0 approximates the expected maximum
Sharpe ratio of N skill-less trials, so DSR is the probability that the selected strategy's true
Sharpe ratio beats what the best of N pure-noise strategies would show. The paper's numerical example
(N = 100, T = 1250 daily observations, annualized SR 2.5, variance of annualized SRs 1/2, skew -3,
kurtosis 10, converted to daily values with sqrt(250)) gives SR0 ~ 0.1132 per day and DSR ~ 0.9004;
tests/test_arena_stats.py reproduces both.

Probability of Backtest Overfitting by Combinatorially Symmetric Cross-Validation (CSCV), Bailey,
Borwein, López de Prado & Zhu (2017), "The Probability of Backtest Overfitting", Journal of
Computational Finance 20(4) (working paper 2015): split the T x N matrix of trial returns into S
contiguous row blocks; for each way of choosing S/2 blocks as in-sample (the other S/2 are
out-of-sample), select the trial with the best in-sample metric, find its relative rank
w = rank / (N + 1) among all trials out-of-sample, and its logit l = ln(w / (1 - w)).
PBO = fraction of combinations with l <= 0, i.e. the selected trial did no better than the median
out-of-sample.

Correlation penalty (Allele's own rule, not from the papers): an organism whose returns correlate
more than ``threshold`` with a better-ranked organism's loses the fraction
``max(0, max_corr - threshold) / (1 - threshold)`` of its fitness, so a near-copy of a better
organism earns nearly nothing for being a copy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "EULER_MASCHERONI",
    "PBOResult",
    "column_sharpe_ratios",
    "correlation_penalty",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "max_drawdown",
    "moments",
    "pbo_cscv",
    "probabilistic_sharpe_ratio",
    "return_correlation",
    "sharpe_ratio",
    "sortino_ratio",
]

FloatArray = npt.NDArray[np.float64]
Metric = Callable[[FloatArray], FloatArray]

EULER_MASCHERONI = 0.5772156649015329
_NORMAL = NormalDist()


# --------------------------------------------------------------------------------------------- helpers


def _returns(values: npt.ArrayLike, name: str = "returns") -> FloatArray:
    """``values`` as a 1-D float64 array of finite numbers, or ValueError naming ``name``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must contain only finite numbers")
    return array


def _finite(value: float, name: str) -> float:
    numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _is_constant(array: FloatArray) -> bool:
    """True when every element is exactly equal (so any nonzero computed variance is rounding noise)."""
    return bool(array.size == 0 or array.min() == array.max())


# ------------------------------------------------------------------------------------- single stream


def sharpe_ratio(returns: npt.ArrayLike) -> float:
    """Per-period Sharpe ratio ``mean / std(ddof=1)`` of a return stream (no risk-free rate, not annualized).

    Returns 0.0 for fewer than 2 returns or a constant series (zero variance). Raises ValueError for
    non-finite or non-1-D input.
    """
    r = _returns(returns)
    if r.size < 2 or _is_constant(r):
        return 0.0
    return float(r.mean() / r.std(ddof=1))


def column_sharpe_ratios(matrix: npt.ArrayLike) -> FloatArray:
    """:func:`sharpe_ratio` of every column of a T x N matrix, as an array of N floats.

    The default metric of :func:`pbo_cscv`.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be two-dimensional, got shape {m.shape}")
    return np.array([sharpe_ratio(m[:, j]) for j in range(m.shape[1])], dtype=np.float64)


def sortino_ratio(returns: npt.ArrayLike, periods_per_year: float = 1.0) -> float:
    """Sortino ratio ``mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year)`` (target return 0).

    The downside deviation averages over *all* periods (gains count as zero downside). Returns 0.0 for
    an empty series or when no period lost money (no downside to divide by). ``periods_per_year`` must be
    > 0; the default 1.0 leaves the ratio per period.
    """
    ppy = _finite(periods_per_year, "periods_per_year")
    if ppy <= 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year!r}")
    r = _returns(returns)
    if r.size == 0:
        return 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside == 0.0:
        return 0.0
    return float(r.mean() / downside * math.sqrt(ppy))


def max_drawdown(returns: npt.ArrayLike) -> float:
    """Largest peak-to-trough fall of the compounded equity curve ``prod(1 + r)``, as a positive fraction.

    The curve starts at 1.0 (the initial capital counts as a peak), so a first-period loss of 10% is a
    drawdown of 0.1. 0.0 for an empty or never-falling series; 1.0 means everything was lost. Returns
    below -1 (losing more than everything) raise ValueError.
    """
    r = _returns(returns)
    if r.size == 0:
        return 0.0
    if np.any(r < -1.0):
        raise ValueError("returns must be >= -1 (a period cannot lose more than 100%)")
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    peaks = np.maximum.accumulate(equity)
    return float(np.max((peaks - equity) / peaks))


def moments(returns: npt.ArrayLike) -> tuple[float, float]:
    """``(skewness, kurtosis)`` of a return stream with the population (biased, divisor n) estimators.

    ``skew = m3 / m2^1.5`` and ``kurtosis = m4 / m2^2`` where ``m_k`` is the k-th central moment with
    divisor n. Kurtosis is NOT excess: 3.0 for a normal distribution (what PSR/DSR expect). For fewer
    than 2 returns or a constant series the moments are undefined and the normal values ``(0.0, 3.0)``
    are returned.
    """
    r = _returns(returns)
    if r.size < 2 or _is_constant(r):
        return 0.0, 3.0
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    m3 = float(np.mean(d**3))
    m4 = float(np.mean(d**4))
    return m3 / m2**1.5, m4 / m2**2


# ------------------------------------------------------------------------------------ PSR and DSR


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """PSR: probability that the true Sharpe ratio exceeds ``benchmark`` (Bailey & López de Prado 2012).

    ``Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2))`` with per-period
    ``sharpe`` and ``benchmark``, ``n_obs`` returns behind ``sharpe``, and NON-excess ``kurtosis`` (3 for
    normal). Fails closed: returns 0.0 when ``n_obs < 2`` or when the radicand
    ``1 - skew * SR + (kurtosis - 1) / 4 * SR^2`` is <= 0 (impossible for moments of a real distribution,
    since kurtosis >= 1 + skew^2, so such input is taken as evidence of nothing). Non-finite numbers
    raise ValueError naming the argument. The result is in [0, 1].
    """
    sr = _finite(sharpe, "sharpe")
    bench = _finite(benchmark, "benchmark")
    g3 = _finite(skew, "skew")
    g4 = _finite(kurtosis, "kurtosis")
    if isinstance(n_obs, bool) or not isinstance(n_obs, int | np.integer):
        raise ValueError(f"n_obs must be an integer, got {n_obs!r}")
    if n_obs < 2:
        return 0.0
    radicand = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if not radicand > 0.0:
        return 0.0
    z = (sr - bench) * math.sqrt(int(n_obs) - 1) / math.sqrt(radicand)
    return min(1.0, max(0.0, _NORMAL.cdf(z)))


def expected_max_sharpe(sharpe_variance: float, n_trials: int) -> float:
    """SR0: approximate expected maximum of ``n_trials`` skill-less Sharpe ratios (Bailey & López de Prado 2014).

    ``sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))`` with ``g`` the Euler-Mascheroni
    constant, ``V = sharpe_variance`` the variance of the trials' Sharpe ratios (in the same units as the
    result: per period in, per period out). 0.0 for ``n_trials == 1`` (nothing was selected). Raises
    ValueError for ``n_trials < 1`` or a negative / non-finite variance.
    """
    variance = _finite(sharpe_variance, "sharpe_variance")
    if variance < 0:
        raise ValueError(f"sharpe_variance must be >= 0, got {sharpe_variance!r}")
    n = _integer(n_trials, "n_trials", 1)
    if n == 1:
        return 0.0
    # Phi^-1(1 - p) == -Phi^-1(p), which stays accurate when 1 - p rounds to 1.0 for huge N.
    z_n = -_NORMAL.inv_cdf(1.0 / n)
    z_ne = -_NORMAL.inv_cdf(1.0 / (n * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_MASCHERONI) * z_n + EULER_MASCHERONI * z_ne)


def deflated_sharpe_ratio(
    sharpe: float, sharpe_variance: float, n_trials: int, n_obs: int, skew: float, kurtosis: float
) -> float:
    """DSR: probability that the selected strategy's true Sharpe ratio beats the best of ``n_trials`` noise trials.

    ``PSR(benchmark = expected_max_sharpe(sharpe_variance, n_trials))`` (Bailey & López de Prado 2014).
    ``sharpe`` is the selected trial's *per-period* (not annualized) Sharpe ratio over ``n_obs`` returns,
    ``sharpe_variance`` the variance of all trials' per-period Sharpe ratios, ``skew`` and ``kurtosis``
    the selected returns' skewness and NON-excess kurtosis (3 for a normal distribution). To use
    annualized figures divide the Sharpe ratio by ``sqrt(periods_per_year)`` and the variance by
    ``periods_per_year``.

    Returns a probability in [0, 1]; with ``n_trials == 1`` it equals ``PSR`` against 0. Fails closed
    (0.0) when the PSR radicand is <= 0, see :func:`probabilistic_sharpe_ratio`. It never increases with
    ``n_trials``; it increases with ``sharpe`` wherever
    ``2 - skew * SR0 + SR * ((kurtosis - 1) / 2 * SR0 - skew) > 0`` (the derivative's sign), which covers
    every realistic per-period Sharpe ratio (|SR| well below 1).

    Raises ValueError naming the argument unless ``n_trials >= 1``, ``n_obs >= 2``,
    ``sharpe_variance >= 0`` and all numbers are finite.
    """
    sr = _finite(sharpe, "sharpe")
    variance = _finite(sharpe_variance, "sharpe_variance")
    if variance < 0:
        raise ValueError(f"sharpe_variance must be >= 0, got {sharpe_variance!r}")
    n = _integer(n_trials, "n_trials", 1)
    t = _integer(n_obs, "n_obs", 2)
    g3 = _finite(skew, "skew")
    g4 = _finite(kurtosis, "kurtosis")
    return probabilistic_sharpe_ratio(sr, expected_max_sharpe(variance, n), t, g3, g4)


# --------------------------------------------------------------------------------------------- CSCV


@dataclass(frozen=True)
class PBOResult:
    """Outcome of :func:`pbo_cscv`.

    ``pbo``: fraction of combinations whose in-sample winner ranked at or below the out-of-sample median
    (logit <= 0). ``logits``: one logit per combination, in combination order. ``n_combinations``: how
    many in-sample/out-of-sample splits were evaluated. ``performance_degradation``: OLS slope of the
    winner's out-of-sample metric on its in-sample metric across combinations (negative or near zero
    means in-sample excellence does not carry over; 0.0 if the in-sample metric never varies).
    ``probability_of_loss``: fraction of combinations whose winner's out-of-sample metric is < 0.
    """

    pbo: float
    logits: tuple[float, ...]
    n_combinations: int
    performance_degradation: float
    probability_of_loss: float


def _combinations(n_splits: int, max_combinations: int, seed: int) -> list[tuple[int, ...]]:
    """In-sample block sets: all C(S, S/2) of them, or a deterministic seeded subset of complementary pairs."""
    half = n_splits // 2
    total = math.comb(n_splits, half)
    if total <= max_combinations:
        return list(itertools.combinations(range(n_splits), half))
    # Sample sets containing block 0 (each stands for one complementary pair) and add both halves of each
    # pair, so the subset stays symmetric: every in-sample set is also evaluated as out-of-sample.
    n_pairs = max(1, max_combinations // 2)
    rng = np.random.default_rng(seed)
    others = np.arange(1, n_splits)
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < n_pairs:
        pick = rng.choice(others, size=half - 1, replace=False)
        chosen.add((0, *sorted(int(b) for b in pick)))
    everything = set(range(n_splits))
    out: list[tuple[int, ...]] = []
    for combo in sorted(chosen):
        out.append(combo)
        out.append(tuple(sorted(everything - set(combo))))
    return out


def _fast_sharpe(
    masks: npt.NDArray[np.bool_],
    counts: FloatArray,
    means: FloatArray,
    m2s: FloatArray,
    mins: FloatArray,
    maxs: FloatArray,
) -> FloatArray:
    """Per-column Sharpe ratios of the union of the blocks selected by each row of ``masks``.

    Combines per-block count / mean / sum of squared deviations exactly as Chan et al.'s parallel
    variance; equals :func:`column_sharpe_ratios` on the concatenated rows up to rounding.
    """
    w = masks.astype(np.float64)  # (c, S)
    n = w @ counts  # (c,)
    mean = (w @ (counts[:, None] * means)) / n[:, None]  # (c, N)
    dev = means[None, :, :] - mean[:, None, :]  # (c, S, N)
    m2 = w @ m2s + np.einsum("cs,s,csn->cn", w, counts, dev * dev)
    sel = masks[:, :, None]
    lo = np.where(sel, mins[None, :, :], np.inf).min(axis=1)
    hi = np.where(sel, maxs[None, :, :], -np.inf).max(axis=1)
    degenerate = (lo == hi) | (n[:, None] < 2)
    denom = np.where(degenerate, 1.0, n[:, None] - 1.0)
    std = np.sqrt(m2 / denom)
    std = np.where(degenerate | (std == 0.0), 1.0, std)
    return np.where(degenerate, 0.0, mean / std)


def pbo_cscv(
    returns_matrix: npt.ArrayLike,
    n_splits: int = 16,
    metric: Metric = column_sharpe_ratios,
    *,
    max_combinations: int = 5000,
    seed: int = 0,
) -> PBOResult:
    """Probability of Backtest Overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu 2015/2017).

    ``returns_matrix`` is T x N: T periods (rows, in time order) of N trial configurations (columns).
    The rows are split into ``n_splits`` (S, even, >= 2) contiguous blocks of near-equal size
    (``numpy.array_split``: the first ``T % S`` blocks get one extra row; no row is dropped). For every
    choice of S/2 blocks as in-sample, the rest out-of-sample, the column with the best in-sample
    ``metric`` is selected (lowest index on ties); its out-of-sample rank among the N columns (1 = worst,
    N = best, ties averaged) gives ``w = rank / (N + 1)`` and the logit ``ln(w / (1 - w))``. PBO is the
    fraction of combinations with logit <= 0.

    ``metric`` maps a (rows x N) matrix to N scores, higher is better; the default, per-column per-period
    Sharpe ratio, is evaluated with a vectorized block-statistics fast path. If C(S, S/2) exceeds
    ``max_combinations`` (it does for the default S = 16: 12870 > 5000), a deterministic subset is used:
    ``max_combinations // 2`` distinct complementary pairs drawn with ``numpy.random.default_rng(seed)``,
    both halves of each pair evaluated, ordered lexicographically by pair. The same input, ``seed`` and
    ``max_combinations`` always give the same result.

    Raises ValueError unless the matrix is 2-D and finite with N >= 2 columns and T >= S rows, S is an
    even integer >= 2, and ``max_combinations >= 2``; or if ``metric`` returns anything but N finite
    numbers.
    """
    m = np.asarray(returns_matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"returns_matrix must be two-dimensional (T x N), got shape {m.shape}")
    s = _integer(n_splits, "n_splits", 2)
    if s % 2:
        raise ValueError(f"n_splits must be even, got {n_splits!r}")
    t_rows, n_cols = m.shape
    if n_cols < 2:
        raise ValueError(f"returns_matrix must have at least 2 columns (trials), got {n_cols}")
    if t_rows < s:
        raise ValueError(f"returns_matrix must have at least n_splits={s} rows, got {t_rows}")
    if not np.all(np.isfinite(m)):
        raise ValueError("returns_matrix must contain only finite numbers")
    cap = _integer(max_combinations, "max_combinations", 2)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    blocks = np.array_split(np.arange(t_rows), s)
    combos = _combinations(s, cap, int(seed))
    masks = np.zeros((len(combos), s), dtype=bool)
    for i, combo in enumerate(combos):
        masks[i, list(combo)] = True

    if metric is column_sharpe_ratios:
        counts = np.array([len(b) for b in blocks], dtype=np.float64)
        means = np.stack([m[b].mean(axis=0) for b in blocks])
        m2s = np.stack([((m[b] - m[b].mean(axis=0)) ** 2).sum(axis=0) for b in blocks])
        mins = np.stack([m[b].min(axis=0) for b in blocks])
        maxs = np.stack([m[b].max(axis=0) for b in blocks])
        is_parts: list[FloatArray] = []
        oos_parts: list[FloatArray] = []
        chunk = max(1, 2_000_000 // (s * n_cols))
        for start in range(0, len(combos), chunk):
            sub = masks[start : start + chunk]
            is_parts.append(_fast_sharpe(sub, counts, means, m2s, mins, maxs))
            oos_parts.append(_fast_sharpe(~sub, counts, means, m2s, mins, maxs))
        is_scores = np.concatenate(is_parts)
        oos_scores = np.concatenate(oos_parts)
    else:
        is_scores = np.empty((len(combos), n_cols))
        oos_scores = np.empty((len(combos), n_cols))
        for i, row in enumerate(masks):
            rows_in = np.concatenate([blocks[b] for b in range(s) if row[b]])
            rows_out = np.concatenate([blocks[b] for b in range(s) if not row[b]])
            for target, rows in ((is_scores, rows_in), (oos_scores, rows_out)):
                score = np.asarray(metric(m[rows]), dtype=np.float64)
                if score.shape != (n_cols,) or not np.all(np.isfinite(score)):
                    raise ValueError(f"metric must return {n_cols} finite numbers, got shape {score.shape}")
                target[i] = score

    best = np.argmax(is_scores, axis=1)
    picked = np.arange(len(combos))
    is_best = is_scores[picked, best]
    oos_best = oos_scores[picked, best]
    below = (oos_scores < oos_best[:, None]).sum(axis=1)
    equal = (oos_scores == oos_best[:, None]).sum(axis=1)  # includes the selected column itself
    rank = below + (equal + 1) / 2.0
    omega = rank / (n_cols + 1.0)
    logits = np.log(omega / (1.0 - omega))

    spread = is_best - is_best.mean()
    var_is = float(np.dot(spread, spread))
    slope = float(np.dot(spread, oos_best - oos_best.mean()) / var_is) if var_is > 0.0 else 0.0
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=tuple(float(x) for x in logits),
        n_combinations=len(combos),
        performance_degradation=slope,
        probability_of_loss=float(np.mean(oos_best < 0.0)),
    )


# -------------------------------------------------------------------------------------- correlation


def return_correlation(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Pearson correlation of two return streams of equal length, in [-1, 1].

    0.0 when either stream is constant or shorter than 2 (no co-movement can be measured). Raises
    ValueError for unequal lengths or non-finite values.
    """
    x = _returns(a, "a")
    y = _returns(b, "b")
    if x.size != y.size:
        raise ValueError(f"a and b must have equal length, got {x.size} and {y.size}")
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return 0.0
    dx = x - x.mean()
    dy = y - y.mean()
    denom = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if denom == 0.0:
        return 0.0
    return min(1.0, max(-1.0, float(np.dot(dx, dy)) / denom))


def correlation_penalty(returns: npt.ArrayLike, better: Sequence[npt.ArrayLike], threshold: float) -> float:
    """Fraction of fitness (in [0, 1]) to remove for being a copy of a better-ranked organism.

    ``max(0, max_corr - threshold) / (1 - threshold)`` where ``max_corr`` is the largest (signed)
    :func:`return_correlation` between ``returns`` and any stream in ``better``. Correlations at or below
    ``threshold`` cost nothing, a perfect copy (correlation 1) loses everything, linearly in between;
    anti-correlation is diversification, never a penalty. 0.0 when ``better`` is empty. ``threshold``
    must be in [0, 1); every stream must have the same length as ``returns``.
    """
    limit = _finite(threshold, "threshold")
    if not 0.0 <= limit < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if len(better) == 0:
        return 0.0
    max_corr = max(return_correlation(returns, other) for other in better)
    return min(1.0, max(0.0, max_corr - limit) / (1.0 - limit))
