"""Fitness, ranking and the out-of-sample verdict against hand-computed values and planted edges.

Expected numbers are computed here in plain Python (math, statistics) or from the stats module's own
functions, never by calling the code under test twice.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import FrozenInstanceError
from typing import Any

import numpy as np
import pytest

from allele.kernel.arena.fitness import (
    Candidate,
    Fitness,
    FitnessConfig,
    Verdict,
    fitness,
    oos_verdict,
    rank,
)
from allele.kernel.arena.stats import deflated_sharpe_ratio, moments, sharpe_ratio

SERIES = [0.01, -0.02, 0.03, -0.01, 0.02]


def plain_sortino(r: list[float], ppy: float) -> float:
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    return statistics.fmean(r) / downside * math.sqrt(ppy)


def plain_drawdown(r: list[float]) -> float:
    equity, peak, worst = 1.0, 1.0, 0.0
    for x in r:
        equity *= 1.0 + x
        peak = max(peak, equity)
        worst = max(worst, (peak - equity) / peak)
    return worst


# ------------------------------------------------------------------------------------------- config


def test_config_defaults_and_validation() -> None:
    c = FitnessConfig()
    assert (c.periods_per_year, c.drawdown_penalty, c.min_trades) == (252.0, 2.0, 5)
    assert (c.correlation_threshold, c.dsr_threshold) == (0.7, 0.95)
    with pytest.raises(FrozenInstanceError):
        setattr(c, "min_trades", 1)  # noqa: B010 - assignment the type checker would refuse
    bad: dict[str, Any]
    for bad in ({"periods_per_year": 0.0}, {"drawdown_penalty": -1.0}, {"min_trades": -1},
                {"correlation_threshold": 1.0}, {"dsr_threshold": 1.5}, {"periods_per_year": math.nan}):
        with pytest.raises(ValueError):
            FitnessConfig(**bad)


# ------------------------------------------------------------------------------------------- fitness


def test_fitness_hand_computed() -> None:
    # mean 0.006, downside sqrt((0.0004 + 0.0001) / 5) = 0.01, sortino per period 0.6
    f = fitness(SERIES, trades=10)
    sortino = 0.006 / 0.01 * math.sqrt(252.0)
    # equity 1.01, 0.9898, 1.019494, 1.00929906, 1.0294850412: worst fall 1.01 -> 0.9898 = 0.02
    assert f.sortino == pytest.approx(sortino, rel=1e-12)
    assert f.sortino == pytest.approx(plain_sortino(SERIES, 252.0), rel=1e-12)
    assert f.max_drawdown == pytest.approx(0.02, rel=1e-12)
    assert f.max_drawdown == pytest.approx(plain_drawdown(SERIES), rel=1e-12)
    assert f.value == pytest.approx(sortino - 2.0 * 0.02, rel=1e-12)
    assert not f.protected
    assert "sortino" in f.reason


def test_fitness_custom_config() -> None:
    config = FitnessConfig(periods_per_year=12.0, drawdown_penalty=10.0)
    f = fitness(SERIES, trades=5, config=config)
    assert f.value == pytest.approx(0.6 * math.sqrt(12.0) - 10.0 * 0.02, rel=1e-12)
    assert not f.protected  # exactly min_trades is enough


def test_negative_sortino_is_not_rescued_by_drawdown() -> None:
    shallow = [-0.01, 0.005] * 10
    deep = [-0.05, 0.025] * 10
    assert fitness(shallow, 10).sortino < 0 and fitness(deep, 10).sortino < 0
    # Equal Sortino (scaled copies); the deeper drawdown must only cost.
    assert fitness(deep, 10).sortino == pytest.approx(fitness(shallow, 10).sortino)
    assert fitness(deep, 10).value < fitness(shallow, 10).value


def test_protection_by_min_trades() -> None:
    f = fitness(SERIES, trades=4)
    assert f.protected
    assert "protected: 4 trades < 5" in f.reason
    assert math.isfinite(f.value)  # still computed, for display
    assert not fitness(SERIES, trades=4, config=FitnessConfig(min_trades=4)).protected
    with pytest.raises(ValueError):
        fitness(SERIES, trades=-1)


@pytest.mark.parametrize("bad", [[0.01, math.nan, 0.02], [0.01, math.inf], [0.01, -1.5]])
def test_non_finite_fails_closed(bad: list[float]) -> None:
    f = fitness(bad, trades=10)
    assert f.value == -math.inf
    assert "fail closed" in f.reason


def test_empty_and_all_gains() -> None:
    assert fitness([], 0).value == 0.0
    # stats.sortino_ratio gives 0.0 without any losing period; no drawdown either
    assert fitness([0.01, 0.02], 10).value == 0.0


def test_fitness_rejects_nan_value() -> None:
    with pytest.raises(ValueError):
        Fitness(math.nan, 0.0, 0.0, False, "")


# ------------------------------------------------------------------------------------------- ranking


def make(fp: str, returns: np.ndarray, trades: int = 20, config: FitnessConfig | None = None) -> Candidate:
    return Candidate(fp, returns, fitness(returns, trades, config or FitnessConfig()))


def fixed(fp: str, returns: np.ndarray, value: float, protected: bool = False) -> Candidate:
    return Candidate(fp, returns, Fitness(value, value, 0.0, protected, "fixed"))


def test_rank_orders_by_value_and_sets_protected_aside() -> None:
    rng = np.random.default_rng(1)
    r = [rng.normal(0, 0.01, 100) for _ in range(4)]
    out = rank([fixed("a", r[0], 1.0), fixed("b", r[1], 3.0), fixed("c", r[2], 9.0, protected=True),
                fixed("d", r[3], 2.0)])
    assert [x.fingerprint for x in out] == ["b", "d", "a", "c"]
    assert [x.rank for x in out] == [1, 2, 3, None]
    assert out[-1].protected and out[-1].adjusted == 9.0 and out[-1].penalty == 0.0
    assert all(not x.protected for x in out[:3])


def test_near_copy_drops_below_distinct_organism() -> None:
    rng = np.random.default_rng(7)
    best = rng.normal(0.001, 0.01, 250)
    copy = best + rng.normal(0.0, 0.0005, 250)  # correlation ~0.999
    distinct = rng.normal(0.0008, 0.01, 250)
    out = rank([fixed("best", best, 3.0), fixed("copy", copy, 2.9), fixed("distinct", distinct, 2.0)])
    assert [x.fingerprint for x in out] == ["best", "distinct", "copy"]
    by = {x.fingerprint: x for x in out}
    # copy (2.9) is ranked before distinct (2.0), so only best is better-ranked than it
    expected_penalty = (statistics.correlation(list(copy), list(best)) - 0.7) / 0.3
    assert by["copy"].penalty == pytest.approx(expected_penalty, rel=1e-9)
    assert by["copy"].adjusted == pytest.approx(2.9 - 2.9 * expected_penalty, rel=1e-9)
    assert by["best"].penalty == 0.0 and by["best"].adjusted == 3.0
    assert by["distinct"].penalty == 0.0  # uncorrelated with best


def test_penalty_makes_negative_values_more_negative() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0, 0.01, 100)
    out = rank([fixed("a", base, 1.0), fixed("b", base * 2.0, -1.0)])  # perfect copy, penalty 1
    assert out[1].penalty == pytest.approx(1.0)
    assert out[1].adjusted == pytest.approx(-2.0)


def test_rank_is_deterministic_and_order_free() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(0, 0.01, 120)
    cands = [fixed(f"f{i}", base + rng.normal(0, 0.004 * (i + 1), 120), 1.0 + (i % 3) * 0.5) for i in range(9)]
    first = rank(cands)
    assert rank(list(reversed(cands))) == first
    assert rank(cands[3:] + cands[:3]) == first
    # ties in value are broken by fingerprint
    flat = rank([fixed("z", rng.normal(0, 0.01, 50), 1.0), fixed("a", rng.normal(0, 0.01, 50), 1.0)])
    assert [x.fingerprint for x in flat] == ["a", "z"]


def test_rank_minus_inf_sinks_without_penalty() -> None:
    r = np.linspace(-0.01, 0.01, 20)
    bad = Candidate("bad", (0.01, math.nan) * 10, fitness((0.01, math.nan) * 10, 20))
    out = rank([bad, fixed("ok", r, 0.5)])
    assert [x.fingerprint for x in out] == ["ok", "bad"]
    assert out[1].adjusted == -math.inf and out[1].penalty == 0.0


def test_rank_refuses_duplicates_and_mismatched_windows() -> None:
    r = np.linspace(-0.01, 0.01, 20)
    with pytest.raises(ValueError, match="duplicate"):
        rank([fixed("a", r, 1.0), fixed("a", r, 2.0)])
    with pytest.raises(ValueError, match="evaluation window"):
        rank([fixed("a", r, 1.0), fixed("b", r[:10], 2.0)])


def test_candidate_is_immutable_copy() -> None:
    r = np.array([0.01, -0.01, 0.02])
    c = Candidate("a", r, fitness(r, 10))
    r[0] = 9.0
    assert c.returns == (0.01, -0.01, 0.02)
    assert hash(c) == hash(Candidate("a", (0.01, -0.01, 0.02), fitness([0.01, -0.01, 0.02], 10)))


def test_rank_with_real_fitness() -> None:
    rng = np.random.default_rng(5)
    good = rng.normal(0.002, 0.01, 252)
    poor = rng.normal(-0.001, 0.01, 252)
    young = rng.normal(0.01, 0.01, 252)
    out = rank([make("poor", poor), make("good", good), make("young", young, trades=2)])
    assert [x.fingerprint for x in out] == ["good", "poor", "young"]
    assert out[2].rank is None and out[2].protected


# ------------------------------------------------------------------------------------------- verdict


def test_verdict_hand_computed() -> None:
    r = [0.01, -0.005, 0.02, 0.003, -0.002, 0.015, 0.001, -0.01]
    trials = [0.1, 0.3, -0.2, 0.25]
    v = oos_verdict(r, trials, n_trials=40, config=FitnessConfig(trial_variance="empirical"))
    sr = statistics.fmean(r) / statistics.stdev(r)
    skew, kurt = moments(r)
    expected = deflated_sharpe_ratio(sr, statistics.variance(trials), 40, len(r), skew, kurt)
    assert v.sharpe == pytest.approx(sr, rel=1e-12)
    assert v.sharpe == pytest.approx(sharpe_ratio(r), rel=1e-12)
    assert v.dsr == pytest.approx(expected, rel=1e-12)
    assert v.n_trials == 40
    assert v.funded is (v.dsr >= 0.95)
    assert v.reason.startswith("DSR ") and "over 40 trials" in v.reason
    # The default deflates against the null: the variance of a Sharpe estimate over len(r) observations.
    null = oos_verdict(r, trials, n_trials=40)
    assert null.dsr == pytest.approx(deflated_sharpe_ratio(sr, 1 / (len(r) - 1), 40, len(r), skew, kurt), rel=1e-12)
    most = oos_verdict(r, trials, n_trials=40, config=FitnessConfig(trial_variance="max"))
    assert most.dsr == pytest.approx(min(v.dsr, null.dsr), rel=1e-12)


def test_verdict_single_trial_is_psr_against_zero() -> None:
    r = [0.01, -0.005, 0.02, 0.003]
    v = oos_verdict(r, [0.2], n_trials=1)  # fewer than 2 trial Sharpes: variance 0
    skew, kurt = moments(r)
    assert v.dsr == pytest.approx(deflated_sharpe_ratio(sharpe_ratio(r), 0.0, 1, 4, skew, kurt), rel=1e-12)


def test_noise_is_not_funded_with_many_trials() -> None:
    rng = np.random.default_rng(42)
    window = rng.normal(0.0, 0.01, (500, 1000))
    trial_sharpes = [sharpe_ratio(window[:, j]) for j in range(window.shape[1])]
    best = int(np.argmax(trial_sharpes))
    v = oos_verdict(window[:, best], trial_sharpes, n_trials=1000)
    assert not v.funded
    assert v.dsr < 0.95
    assert "< 0.95 over 1000 trials" in v.reason


def test_planted_edge_is_funded() -> None:
    rng = np.random.default_rng(42)
    window = rng.normal(0.0, 0.01, (500, 999))
    edge = rng.normal(0.05, 0.01, 500)
    trial_sharpes = [sharpe_ratio(window[:, j]) for j in range(window.shape[1])] + [sharpe_ratio(edge)]
    v = oos_verdict(edge, trial_sharpes, n_trials=1000)
    assert v.funded
    assert v.dsr >= 0.95
    assert ">= 0.95 over 1000 trials" in v.reason


def test_verdict_custom_threshold() -> None:
    r = [0.01, -0.005, 0.02, 0.003, -0.002, 0.015]
    v = oos_verdict(r, [], n_trials=1, config=FitnessConfig(dsr_threshold=0.0))
    assert v.funded


@pytest.mark.parametrize(
    ("returns", "why"),
    [([0.01], "need at least 2"), ([], "need at least 2"), ([0.01, 0.01, 0.01], "zero variance"),
     ([0.01, math.nan], "non-finite")],
)
def test_verdict_fails_closed(returns: list[float], why: str) -> None:
    v = oos_verdict(returns, [0.1, 0.2], n_trials=5)
    assert v == Verdict(0.0, 0.0, 5, False, v.reason)
    assert why in v.reason


def test_verdict_non_finite_trials_and_bad_counts() -> None:
    assert not oos_verdict([0.01, -0.01, 0.02], [0.1, math.inf], n_trials=5).funded
    with pytest.raises(ValueError):
        oos_verdict([0.01, -0.01], [0.1], n_trials=0)
    with pytest.raises(ValueError, match="smaller than"):
        oos_verdict([0.01, -0.01], [0.1, 0.2, 0.3], n_trials=2)
