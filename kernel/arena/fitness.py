"""Fitness, ranking and the out-of-sample funding verdict of the arena.

Three pure functions over return streams (one return per period, fractions: 0.01 is +1%), all built on
:mod:`allele.kernel.arena.stats` rather than re-deriving any statistic:

* :func:`fitness` scores one organism's in-sample returns:
  ``value = sortino - drawdown_penalty * max_drawdown`` (annualized Sortino, drawdown as a fraction).
  Organisms that traded fewer than ``min_trades`` times are *protected*: they are not ranked and not killed
  until they have acted enough, because a handful of trades is no evidence either way.
* :func:`rank` orders the unprotected organisms by fitness, then charges each one a diversity penalty for
  correlating with a better-ranked organism (:func:`stats.correlation_penalty`), and re-orders.
* :func:`oos_verdict` decides funding: the Deflated Sharpe Ratio of the out-of-sample returns, given how
  many trials were tried on that window, must reach ``dsr_threshold``.

Everything fails closed: non-finite input never earns fitness or funding, it earns ``-inf`` / ``DSR 0``
and a reason saying why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from allele.kernel.arena.stats import (
    correlation_penalty,
    deflated_sharpe_ratio,
    max_drawdown,
    moments,
    sharpe_ratio,
    sortino_ratio,
)

__all__ = [
    "DEFAULT_CONFIG",
    "Candidate",
    "Fitness",
    "FitnessConfig",
    "Ranked",
    "Verdict",
    "fitness",
    "oos_verdict",
    "rank",
]

FloatArray = npt.NDArray[np.float64]


def _finite(value: float, name: str) -> float:
    numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _vector(values: npt.ArrayLike, name: str) -> FloatArray:
    """``values`` as a 1-D float64 array (possibly non-finite: callers decide how to fail closed)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


@dataclass(frozen=True)
class FitnessConfig:
    """The arena's knobs for fitness, ranking and funding.

    ``periods_per_year`` annualizes the Sortino ratio (252 trading days by default). ``drawdown_penalty``
    is how many units of Sortino one unit (100%) of maximum drawdown costs. ``min_trades``: organisms with
    fewer trades are protected (not ranked, not killed). ``correlation_threshold`` in [0, 1): correlations
    above it cost fitness in :func:`rank`. ``dsr_threshold`` in [0, 1]: the Deflated Sharpe Ratio an
    out-of-sample verdict needs for funding.
    """

    periods_per_year: float = 252.0
    drawdown_penalty: float = 2.0
    min_trades: int = 5
    correlation_threshold: float = 0.7
    dsr_threshold: float = 0.95
    trial_variance: Literal["null", "empirical", "max"] = "null"

    def __post_init__(self) -> None:
        if _finite(self.periods_per_year, "periods_per_year") <= 0:
            raise ValueError(f"periods_per_year must be > 0, got {self.periods_per_year!r}")
        if _finite(self.drawdown_penalty, "drawdown_penalty") < 0:
            raise ValueError(f"drawdown_penalty must be >= 0, got {self.drawdown_penalty!r}")
        _count(self.min_trades, "min_trades", 0)
        if not 0.0 <= _finite(self.correlation_threshold, "correlation_threshold") < 1.0:
            raise ValueError(f"correlation_threshold must be in [0, 1), got {self.correlation_threshold!r}")
        if not 0.0 <= _finite(self.dsr_threshold, "dsr_threshold") <= 1.0:
            raise ValueError(f"dsr_threshold must be in [0, 1], got {self.dsr_threshold!r}")


DEFAULT_CONFIG = FitnessConfig()


# ------------------------------------------------------------------------------------------- fitness


@dataclass(frozen=True)
class Fitness:
    """One organism's score. ``value`` is what the arena ranks by (``-inf`` when the input was unusable).

    ``sortino`` is annualized, ``max_drawdown`` a fraction in [0, 1], ``protected`` True while the organism
    has traded fewer than ``min_trades`` times, ``reason`` a human-readable account of the number.
    """

    value: float
    sortino: float
    max_drawdown: float
    protected: bool
    reason: str

    def __post_init__(self) -> None:
        if math.isnan(self.value):
            raise ValueError("fitness value must not be NaN (use -inf to fail closed)")


def fitness(returns: npt.ArrayLike, trades: int, config: FitnessConfig = DEFAULT_CONFIG) -> Fitness:
    """Score a return stream: ``value = sortino - config.drawdown_penalty * max_drawdown``.

    ``sortino`` is :func:`stats.sortino_ratio` annualized with ``config.periods_per_year``, ``max_drawdown``
    is :func:`stats.max_drawdown` of the compounded equity curve. A subtraction and not a product
    (``sortino * (1 - drawdown)`` or ``sortino / drawdown``): multiplying a *negative* Sortino by a factor
    that shrinks with drawdown would move it toward zero, so a losing organism would be rescued by losing
    deeper. With a subtraction the drawdown always costs, whatever the sign of the Sortino.

    ``protected`` is ``trades < config.min_trades``; the value is still computed so the caller can show it.
    Fails closed: non-finite returns, or a return below -1 (losing more than everything), give
    ``value = -inf`` with the reason, ``sortino = 0.0`` and ``max_drawdown = 1.0``. Raises ValueError for a
    negative or non-integer ``trades`` or non-1-D returns (programming errors, not market data).
    """
    n_trades = _count(trades, "trades", 0)
    protected = n_trades < config.min_trades
    shield = f"; protected: {n_trades} trades < {config.min_trades}" if protected else ""
    r = _vector(returns, "returns")
    if not np.all(np.isfinite(r)):
        return Fitness(-math.inf, 0.0, 1.0, protected, "non-finite returns: fail closed" + shield)
    if np.any(r < -1.0):
        return Fitness(-math.inf, 0.0, 1.0, protected, "a return below -100%: fail closed" + shield)
    sortino = sortino_ratio(r, config.periods_per_year)
    drawdown = max_drawdown(r)
    value = sortino - config.drawdown_penalty * drawdown
    if not math.isfinite(value):
        return Fitness(-math.inf, sortino, drawdown, protected, "non-finite fitness: fail closed" + shield)
    reason = f"sortino {sortino:.4g} - {config.drawdown_penalty:g} x drawdown {drawdown:.4g} = {value:.4g}"
    return Fitness(value, sortino, drawdown, protected, reason + shield)


# ------------------------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Candidate:
    """An organism entering :func:`rank`: its fingerprint, the returns its fitness was computed on, the fitness.

    ``returns`` is stored as a tuple of floats (arrays are copied), so a candidate is immutable and hashable.
    All ranked candidates must share one evaluation window (equal-length returns) for correlations to mean
    anything.
    """

    fingerprint: str
    returns: FloatArray | tuple[float, ...]
    fitness: Fitness

    def __post_init__(self) -> None:
        if not self.fingerprint:
            raise ValueError("fingerprint must not be empty")
        object.__setattr__(self, "returns", tuple(float(x) for x in _vector(self.returns, "returns")))


@dataclass(frozen=True)
class Ranked:
    """A candidate's place in the ranking.

    ``adjusted = fitness.value - |fitness.value| * penalty``; ``penalty`` in [0, 1] is the diversity penalty;
    ``rank`` is 1 for the best, ``None`` for protected candidates (which are not ranked, and carry
    ``adjusted = fitness.value``, ``penalty = 0.0``).
    """

    fingerprint: str
    fitness: Fitness
    adjusted: float
    penalty: float
    rank: int | None
    protected: bool


def rank(candidates: Sequence[Candidate], config: FitnessConfig = DEFAULT_CONFIG) -> list[Ranked]:
    """Rank unprotected candidates by diversity-adjusted fitness; list protected ones after them, unranked.

    1. Unprotected candidates are sorted by ``fitness.value`` descending, ties by fingerprint ascending.
    2. In that order each gets ``penalty = stats.correlation_penalty(its returns, returns of every better-ranked
       kept candidate, config.correlation_threshold)`` and ``adjusted = value - |value| * penalty`` (a copy of
       a better organism loses up to all of its fitness; a negative value only gets more negative). A
       candidate is *kept* (counts as "better-ranked" for those after it) when its value and returns are
       finite; candidates with ``value = -inf`` get no penalty and are not compared against.
    3. The list is re-sorted by ``adjusted`` descending, ties by fingerprint ascending, and numbered from 1.

    Protected candidates follow, sorted by fingerprint, with ``rank=None``. The result depends only on the
    candidates' contents, not their input order. Raises ValueError for duplicate fingerprints or kept
    candidates whose returns differ in length.
    """
    seen: set[str] = set()
    for c in candidates:
        if c.fingerprint in seen:
            raise ValueError(f"duplicate fingerprint in ranking: {c.fingerprint}")
        seen.add(c.fingerprint)

    active = sorted((c for c in candidates if not c.fitness.protected), key=lambda c: (-c.fitness.value, c.fingerprint))
    sheltered = sorted((c for c in candidates if c.fitness.protected), key=lambda c: c.fingerprint)

    kept: list[FloatArray] = []
    kept_length: tuple[str, int] | None = None
    scored: list[tuple[float, str, Candidate, float]] = []
    for c in active:
        value = c.fitness.value
        r = np.asarray(c.returns, dtype=np.float64)
        if not (math.isfinite(value) and np.all(np.isfinite(r))):
            scored.append((value, c.fingerprint, c, 0.0))
            continue
        if kept_length is not None and r.size != kept_length[1]:
            raise ValueError(
                f"candidate {c.fingerprint} has {r.size} returns but {kept_length[0]} has {kept_length[1]}: "
                "ranked candidates must share one evaluation window"
            )
        kept_length = kept_length or (c.fingerprint, r.size)
        penalty = correlation_penalty(r, kept, config.correlation_threshold)
        scored.append((value - abs(value) * penalty, c.fingerprint, c, penalty))
        kept.append(r)

    scored.sort(key=lambda s: (-s[0], s[1]))
    out = [
        Ranked(c.fingerprint, c.fitness, adjusted, penalty, i, False)
        for i, (adjusted, _, c, penalty) in enumerate(scored, start=1)
    ]
    out.extend(Ranked(c.fingerprint, c.fitness, c.fitness.value, 0.0, None, True) for c in sheltered)
    return out


# ------------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    """The out-of-sample funding decision.

    ``dsr``: Deflated Sharpe Ratio in [0, 1]; ``sharpe``: per-period Sharpe ratio of the out-of-sample
    returns; ``n_trials``: how many trials the DSR was deflated for; ``funded``: ``dsr >= dsr_threshold``;
    ``reason``: e.g. ``"DSR 0.41 < 0.95 over 312 trials ..."``.
    """

    dsr: float
    sharpe: float
    n_trials: int
    funded: bool
    reason: str


def oos_verdict(
    oos_returns: npt.ArrayLike,
    trial_sharpes: Sequence[float],
    n_trials: int,
    config: FitnessConfig = DEFAULT_CONFIG,
) -> Verdict:
    """Fund an organism only if its out-of-sample Deflated Sharpe Ratio reaches ``config.dsr_threshold``.

    ``sharpe = stats.sharpe_ratio(oos_returns)`` (per period). ``sharpe_variance``, by
    ``config.trial_variance``:

    - "null" (default): 1 / (n_obs - 1), the variance of an estimated Sharpe ratio when the true one is
      zero. The deflated Sharpe ratio asks whether the best of N trials beats the best of N trials of
      pure noise, and under that null every trial's estimate has this variance. The empirical spread of
      the trials' Sharpe ratios estimates the same number only when the trials really are noise: when
      some carry a real edge (and others its mirror image) it is inflated by the signal itself and the
      deflation refuses exactly the organisms that work; when trials are near-copies it is too small.
    - "empirical": the sample variance (ddof=1) of ``trial_sharpes``, the per-period Sharpe ratios of all
      trials evaluated on the same window (0.0 for fewer than 2), as in Bailey & López de Prado (2014);
    - "max": the larger of the two (the most conservative).

    Skewness and kurtosis come from ``stats.moments``; ``n_obs`` is the
    number of returns; ``dsr = stats.deflated_sharpe_ratio(sharpe, sharpe_variance, n_trials, n_obs, skew,
    kurtosis)`` and ``funded = dsr >= config.dsr_threshold``.

    Fails closed with ``dsr = 0.0``, not funded, and a reason: fewer than 2 returns, zero-variance returns,
    non-finite returns or non-finite trial Sharpe ratios. Raises ValueError unless ``n_trials`` is an
    integer >= 1 and >= ``len(trial_sharpes)`` (claiming fewer trials than were measured would under-deflate),
    or if ``oos_returns`` is not 1-D.
    """
    n = _count(n_trials, "n_trials", 1)
    if len(trial_sharpes) > n:
        raise ValueError(f"n_trials={n} is smaller than the {len(trial_sharpes)} trial Sharpe ratios given")
    r = _vector(oos_returns, "oos_returns")
    trials = _vector(list(trial_sharpes), "trial_sharpes")

    def refuse(why: str, sharpe: float = 0.0) -> Verdict:
        return Verdict(0.0, sharpe, n, False, f"not funded: {why}")

    if not np.all(np.isfinite(r)):
        return refuse("non-finite out-of-sample returns")
    if r.size < 2:
        return refuse(f"{r.size} out-of-sample returns, need at least 2")
    if r.min() == r.max():
        return refuse("out-of-sample returns have zero variance")
    if not np.all(np.isfinite(trials)):
        return refuse("non-finite trial Sharpe ratios", sharpe_ratio(r))

    sharpe = sharpe_ratio(r)
    empirical = float(np.var(trials, ddof=1)) if trials.size >= 2 else 0.0
    null = 1.0 / (r.size - 1)
    variance = {"null": null, "empirical": empirical, "max": max(null, empirical)}[config.trial_variance]
    skew, kurtosis = moments(r)
    dsr = deflated_sharpe_ratio(sharpe, variance, n, int(r.size), skew, kurtosis)
    funded = dsr >= config.dsr_threshold
    sign = ">=" if funded else "<"
    reason = (
        f"DSR {dsr:.4g} {sign} {config.dsr_threshold:g} over {n} trials "
        f"(per-period Sharpe {sharpe:.4g}, {r.size} obs, {config.trial_variance} Sharpe variance {variance:.4g})"
    )
    return Verdict(dsr, sharpe, n, funded, reason)
