"""The arena's statistics against independently computed values and published numbers, plus properties.

Expected values come from a second, plain-Python implementation written here (math.erf for the
normal CDF, bisection for its inverse, the statistics module for means, deviations and correlation)
or from Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", section "A numerical example".
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.arena.stats import (
    EULER_MASCHERONI,
    PBOResult,
    column_sharpe_ratios,
    correlation_penalty,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    max_drawdown,
    moments,
    pbo_cscv,
    probabilistic_sharpe_ratio,
    return_correlation,
    sharpe_ratio,
    sortino_ratio,
)

# ------------------------------------------------------------------ a second, plain-Python implementation


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def phi_inv(p: float) -> float:
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if phi(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def plain_sharpe(xs: list[float]) -> float:
    return statistics.fmean(xs) / statistics.stdev(xs)


def plain_moments(xs: list[float]) -> tuple[float, float]:
    mu = statistics.fmean(xs)
    n = len(xs)
    m2 = sum((x - mu) ** 2 for x in xs) / n
    m3 = sum((x - mu) ** 3 for x in xs) / n
    m4 = sum((x - mu) ** 4 for x in xs) / n
    return m3 / m2**1.5, m4 / m2**2


def plain_psr(sr: float, bench: float, n: int, skew: float, kurt: float) -> float:
    return phi((sr - bench) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr * sr))


def plain_sr0(variance: float, n_trials: int) -> float:
    g = 0.5772156649015329
    return math.sqrt(variance) * ((1 - g) * phi_inv(1 - 1 / n_trials) + g * phi_inv(1 - 1 / (n_trials * math.e)))


def series(seed: int, n: int, mean: float = 0.0, sd: float = 0.01) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.normal(mean, sd, n)]


# ---------------------------------------------------------------------------------------- single stream


def test_sharpe_matches_plain_implementation() -> None:
    xs = series(1, 500, mean=0.001)
    assert sharpe_ratio(xs) == pytest.approx(plain_sharpe(xs), rel=1e-12)
    assert sharpe_ratio([0.01, 0.03]) == pytest.approx(0.02 / math.sqrt(2 * 0.01**2), rel=1e-12)


@pytest.mark.parametrize("xs", [[], [0.05], [0.1] * 7, [0.0, 0.0, 0.0]])
def test_sharpe_is_zero_without_two_returns_or_variance(xs: list[float]) -> None:
    assert sharpe_ratio(xs) == 0.0


def test_sortino_matches_plain_implementation() -> None:
    xs = series(2, 400, mean=0.0005)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in xs) / len(xs))
    assert sortino_ratio(xs) == pytest.approx(statistics.fmean(xs) / downside, rel=1e-12)
    assert sortino_ratio(xs, periods_per_year=252) == pytest.approx(
        statistics.fmean(xs) / downside * math.sqrt(252), rel=1e-12
    )
    # By hand: mean 0.0, downside sqrt((0.02^2) / 4) = 0.01.
    assert sortino_ratio([0.03, -0.02, 0.01, -0.02]) == pytest.approx(0.0)
    assert sortino_ratio([0.04, -0.02, 0.02, 0.0]) == pytest.approx(0.01 / 0.01)


def test_sortino_zero_without_downside_and_validates() -> None:
    assert sortino_ratio([0.01, 0.02, 0.0]) == 0.0
    assert sortino_ratio([]) == 0.0
    with pytest.raises(ValueError, match="periods_per_year"):
        sortino_ratio([0.01, -0.01], periods_per_year=0)


def test_max_drawdown_by_hand() -> None:
    # equity 1, 1.1, 0.55, 0.66: peak 1.1 to trough 0.55 is a 50% fall.
    assert max_drawdown([0.1, -0.5, 0.2]) == pytest.approx(0.5)
    # the initial capital counts as a peak
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(0.1)
    # two drawdowns, the second deeper: 1 -> 0.9 -> 1.08 -> 0.756 -> 30%
    assert max_drawdown([-0.1, 0.2, -0.3]) == pytest.approx(0.3)
    assert max_drawdown([0.01, 0.02]) == 0.0
    assert max_drawdown([]) == 0.0
    assert max_drawdown([0.5, -1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=">= -1"):
        max_drawdown([0.1, -1.5])


@given(st.lists(st.floats(-0.99, 1.0), max_size=60))
def test_max_drawdown_is_a_fraction_and_matches_a_loop(xs: list[float]) -> None:
    equity, peak, worst = 1.0, 1.0, 0.0
    for x in xs:
        equity *= 1 + x
        peak = max(peak, equity)
        worst = max(worst, (peak - equity) / peak)
    got = max_drawdown(xs)
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(worst, rel=1e-9, abs=1e-12)


def test_moments_match_plain_population_estimators() -> None:
    rng = np.random.default_rng(3)
    xs = [float(x) for x in rng.exponential(1.0, 300)]
    skew, kurt = moments(xs)
    want_skew, want_kurt = plain_moments(xs)
    assert skew == pytest.approx(want_skew, rel=1e-10)
    assert kurt == pytest.approx(want_kurt, rel=1e-10)
    # by hand: symmetric two-point distribution has skew 0 and kurtosis 1
    assert moments([-1.0, 1.0, -1.0, 1.0]) == pytest.approx((0.0, 1.0))


def test_moments_of_normal_sample_are_non_excess() -> None:
    skew, kurt = moments(series(4, 200_000))
    assert abs(skew) < 0.03
    assert kurt == pytest.approx(3.0, abs=0.05)


def test_moments_degenerate() -> None:
    assert moments([]) == (0.0, 3.0)
    assert moments([0.2] * 5) == (0.0, 3.0)


@pytest.mark.parametrize("fn", [sharpe_ratio, sortino_ratio, max_drawdown, moments])
def test_single_stream_functions_reject_bad_input(fn: object) -> None:
    assert callable(fn)
    with pytest.raises(ValueError, match="finite"):
        fn([0.01, float("nan")])
    with pytest.raises(ValueError, match="one-dimensional"):
        fn([[0.01, 0.02], [0.03, 0.04]])


# ------------------------------------------------------------------------------------------ PSR / DSR


@pytest.mark.parametrize(
    ("sr", "bench", "n", "skew", "kurt"),
    [(0.1, 0.0, 250, 0.0, 3.0), (0.05, 0.02, 1000, -1.0, 6.0), (-0.03, 0.0, 60, 0.5, 4.0), (0.2, 0.3, 30, 0.0, 3.0)],
)
def test_psr_matches_plain_implementation(sr: float, bench: float, n: int, skew: float, kurt: float) -> None:
    assert probabilistic_sharpe_ratio(sr, bench, n, skew, kurt) == pytest.approx(plain_psr(sr, bench, n, skew, kurt))


def test_psr_fails_closed() -> None:
    assert probabilistic_sharpe_ratio(0.5, 0.0, 1, 0.0, 3.0) == 0.0
    assert probabilistic_sharpe_ratio(0.5, 0.0, 0, 0.0, 3.0) == 0.0
    # radicand 1 - 4 * 0.5 + 0 = -1
    assert probabilistic_sharpe_ratio(0.5, 0.0, 100, 4.0, 1.0) == 0.0
    # radicand exactly 0
    assert probabilistic_sharpe_ratio(0.5, 0.0, 100, 2.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="benchmark"):
        probabilistic_sharpe_ratio(0.5, float("inf"), 100, 0.0, 3.0)


@pytest.mark.parametrize("n_trials", [2, 3, 10, 100, 1000, 10**6])
def test_expected_max_sharpe_matches_plain_implementation(n_trials: int) -> None:
    assert expected_max_sharpe(0.04, n_trials) == pytest.approx(plain_sr0(0.04, n_trials), rel=1e-9)


def test_expected_max_sharpe_edges() -> None:
    assert EULER_MASCHERONI == pytest.approx(0.5772156649015329, abs=1e-16)
    assert expected_max_sharpe(0.5, 1) == 0.0
    assert expected_max_sharpe(0.0, 100) == 0.0
    assert math.isfinite(expected_max_sharpe(1.0, 10**18))  # 1 - 1/N rounds to 1.0, must not blow up
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0.5, 0)
    with pytest.raises(ValueError, match="sharpe_variance"):
        expected_max_sharpe(-0.1, 10)


def test_dsr_reproduces_the_published_numerical_example() -> None:
    """Bailey & López de Prado (2014), "A numerical example": N = 100 trials, T = 1250 daily observations,
    best annualized SR 2.5, variance of the trials' annualized SRs 1/2, skewness -3, kurtosis 10, with
    250 observations a year. The paper converts to daily units (SR / sqrt(250), variance / 250) and
    reports E[max SR] ~ 0.1132 (daily) and DSR ~ 0.9004."""
    sr_daily = 2.5 / math.sqrt(250)
    variance_daily = 0.5 / 250
    sr0 = expected_max_sharpe(variance_daily, 100)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * math.sqrt(250) == pytest.approx(expected_max_sharpe(0.5, 100), rel=1e-12)  # units scale
    dsr = deflated_sharpe_ratio(sr_daily, variance_daily, 100, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    assert dsr == pytest.approx(plain_psr(sr_daily, plain_sr0(variance_daily, 100), 1250, -3.0, 10.0), rel=1e-9)


sharpes = st.floats(-0.5, 0.5)
skews = st.floats(-2.0, 2.0)


@st.composite
def moment_pairs(draw: st.DrawFn) -> tuple[float, float]:
    skew = draw(skews)
    kurt = draw(st.floats(1.0 + skew * skew, 12.0))  # Pearson: kurtosis >= 1 + skew^2
    return skew, kurt


@given(sharpes, st.floats(0.0, 0.01), st.integers(1, 5000), st.integers(2, 5000), moment_pairs())
def test_dsr_is_a_probability(sr: float, var: float, n: int, t: int, sk: tuple[float, float]) -> None:
    assert 0.0 <= deflated_sharpe_ratio(sr, var, n, t, *sk) <= 1.0


@given(sharpes, sharpes, st.floats(0.0, 0.01), st.integers(1, 1000), st.integers(2, 3000), moment_pairs())
def test_dsr_increases_with_sharpe(a: float, b: float, var: float, n: int, t: int, sk: tuple[float, float]) -> None:
    lo, hi = min(a, b), max(a, b)
    assert deflated_sharpe_ratio(lo, var, n, t, *sk) <= deflated_sharpe_ratio(hi, var, n, t, *sk) + 1e-12


@given(sharpes, st.floats(0.0, 0.01), st.integers(1, 1000), st.integers(1, 1000), st.integers(2, 3000), moment_pairs())
def test_dsr_decreases_with_trials(sr: float, var: float, n1: int, n2: int, t: int, sk: tuple[float, float]) -> None:
    few, many = min(n1, n2), max(n1, n2)
    assert deflated_sharpe_ratio(sr, var, many, t, *sk) <= deflated_sharpe_ratio(sr, var, few, t, *sk) + 1e-12


def test_dsr_strictly_decreases_with_trials_in_the_interior() -> None:
    values = [deflated_sharpe_ratio(0.1, 0.002, n, 250, 0.0, 3.0) for n in (1, 2, 10, 100, 1000)]
    assert all(later < earlier for earlier, later in itertools.pairwise(values))


@given(sharpes, st.floats(0.0, 1.0), st.integers(2, 5000), moment_pairs())
def test_dsr_with_one_trial_is_psr_against_zero(sr: float, var: float, t: int, sk: tuple[float, float]) -> None:
    assert deflated_sharpe_ratio(sr, var, 1, t, *sk) == probabilistic_sharpe_ratio(sr, 0.0, t, *sk)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 2.5}, "n_trials"),
        ({"n_trials": True}, "n_trials"),
        ({"n_obs": 1}, "n_obs"),
        ({"n_obs": 100.0}, "n_obs"),
        ({"sharpe_variance": -0.01}, "sharpe_variance"),
        ({"sharpe_variance": float("nan")}, "sharpe_variance"),
        ({"sharpe": float("inf")}, "sharpe"),
        ({"skew": float("nan")}, "skew"),
        ({"kurtosis": float("-inf")}, "kurtosis"),
    ],
)
def test_dsr_validates_inputs(kwargs: dict[str, object], name: str) -> None:
    args: dict[str, object] = {
        "sharpe": 0.1,
        "sharpe_variance": 0.001,
        "n_trials": 10,
        "n_obs": 250,
        "skew": 0.0,
        "kurtosis": 3.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        deflated_sharpe_ratio(**args)


# ----------------------------------------------------------------------------------------------- CSCV


def noise(seed: int, t: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, (t, n))


def plain_cscv(matrix: np.ndarray, s: int) -> tuple[float, list[float]]:
    """Brute force: every combination, plain-Python Sharpe ratios, ranks by counting."""
    t, n = matrix.shape
    size, extra = divmod(t, s)
    bounds, start = [], 0
    for i in range(s):
        stop = start + size + (1 if i < extra else 0)
        bounds.append(range(start, stop))
        start = stop
    logits = []
    for combo in itertools.combinations(range(s), s // 2):
        rows_in = [r for b in combo for r in bounds[b]]
        rows_out = [r for b in range(s) if b not in combo for r in bounds[b]]
        is_sr = [plain_sharpe([float(matrix[r, j]) for r in rows_in]) for j in range(n)]
        oos_sr = [plain_sharpe([float(matrix[r, j]) for r in rows_out]) for j in range(n)]
        best = max(range(n), key=lambda j: (is_sr[j], -j))
        rank = 1 + sum(1 for j in range(n) if oos_sr[j] < oos_sr[best])
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    return sum(1 for x in logits if x <= 0) / len(logits), logits


def test_pbo_matches_brute_force() -> None:
    matrix = noise(5, 63, 6)  # 63 rows into 6 blocks: uneven block sizes
    result = pbo_cscv(matrix, n_splits=6)
    want_pbo, want_logits = plain_cscv(matrix, 6)
    assert result.n_combinations == math.comb(6, 3) == len(want_logits)
    assert result.pbo == pytest.approx(want_pbo)
    assert result.logits == pytest.approx(want_logits)


def test_pbo_general_metric_path_equals_fast_path() -> None:
    matrix = noise(6, 240, 12)
    fast = pbo_cscv(matrix, n_splits=8)
    general = pbo_cscv(matrix, n_splits=8, metric=lambda m: column_sharpe_ratios(m))
    assert general.n_combinations == fast.n_combinations == 70
    assert general.pbo == fast.pbo
    assert general.logits == pytest.approx(fast.logits)
    assert general.performance_degradation == pytest.approx(fast.performance_degradation)
    assert general.probability_of_loss == fast.probability_of_loss


def test_pbo_on_pure_noise_is_near_one_half() -> None:
    result = pbo_cscv(noise(7, 2000, 50))
    assert result.n_combinations == 5000
    assert 0.3 <= result.pbo <= 0.7
    assert len(result.logits) == 5000


def test_pbo_on_pure_noise_averages_one_half() -> None:
    # One noise matrix's PBO varies widely (its 5000 splits share the same data; over 40 seeds roughly a quarter
    # fell outside [0.3, 0.7]), so the claim "noise gives PBO ~ 0.5" is checked on the mean over ten matrices.
    values = [pbo_cscv(noise(seed, 2000, 50)).pbo for seed in range(100, 110)]
    assert 0.4 <= statistics.fmean(values) <= 0.6


def test_pbo_with_a_planted_edge_is_near_zero() -> None:
    matrix = noise(8, 2000, 50)
    matrix[:, 17] += 0.002  # per-period Sharpe ~0.2 against noise
    result = pbo_cscv(matrix)
    assert result.pbo < 0.1
    assert result.probability_of_loss < 0.1
    # typically the planted column wins in-sample and ranks first of 50 out-of-sample: logit ln(50 / 1)
    assert statistics.median(result.logits) == pytest.approx(math.log(50))


def test_pbo_is_deterministic() -> None:
    matrix = noise(9, 800, 20)
    first = pbo_cscv(matrix, max_combinations=600, seed=3)
    assert first == pbo_cscv(matrix.copy(), max_combinations=600, seed=3)
    assert first.n_combinations == 600


def test_pbo_subset_is_symmetric() -> None:
    # One row per block, column 0 holds 2**row: the column sum of the rows a metric sees names the block set.
    # Every sampled in-sample set must also be evaluated with in- and out-of-sample swapped.
    matrix = np.column_stack([2.0 ** np.arange(16), np.zeros(16)])
    keys: list[float] = []

    def recording(m: np.ndarray) -> np.ndarray:
        keys.append(float(m[:, 0].sum()))
        return np.array([m[:, 0].sum(), -1.0])

    result = pbo_cscv(matrix, n_splits=16, metric=recording, max_combinations=40)
    assert result.n_combinations == 40
    pairs = list(zip(keys[0::2], keys[1::2], strict=True))  # (in-sample, out-of-sample) per combination
    assert len(set(pairs)) == 40
    for ins, out in pairs:
        assert ins + out == 2.0**16 - 1
        assert (out, ins) in pairs


def test_pbo_result_is_frozen_and_degradation_is_ols() -> None:
    result = pbo_cscv(noise(10, 300, 8), n_splits=6)
    assert isinstance(result, PBOResult)
    with pytest.raises(FrozenInstanceError):
        result.pbo = 0.0
    assert 0.0 <= result.pbo <= 1.0
    assert 0.0 <= result.probability_of_loss <= 1.0
    assert math.isfinite(result.performance_degradation)


def test_pbo_constant_columns_score_zero() -> None:
    matrix = np.full((40, 3), 0.1)
    matrix[:, 2] = noise(11, 40, 1)[:, 0] + 0.02  # the only column with a positive Sharpe ratio
    result = pbo_cscv(matrix, n_splits=4)
    assert result.pbo == 0.0
    assert result.probability_of_loss == 0.0


@pytest.mark.parametrize(
    ("matrix", "kwargs", "message"),
    [
        (np.zeros(50), {}, "two-dimensional"),
        (np.zeros((50, 1)), {}, "at least 2 columns"),
        (np.zeros((10, 4)), {}, "at least n_splits=16 rows"),
        (np.zeros((50, 4)), {"n_splits": 5}, "n_splits must be even"),
        (np.zeros((50, 4)), {"n_splits": 0}, "n_splits must be an integer >= 2"),
        (np.full((50, 4), np.nan), {}, "finite"),
        (np.zeros((50, 4)), {"max_combinations": 1}, "max_combinations"),
        (np.zeros((50, 4)), {"metric": lambda m: np.zeros(3)}, "metric must return 4"),
    ],
)
def test_pbo_validates(matrix: np.ndarray, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pbo_cscv(matrix, **kwargs)


# ---------------------------------------------------------------------------------------- correlation


def test_return_correlation_matches_statistics() -> None:
    a = series(12, 300)
    b = [x + y for x, y in zip(a, series(13, 300), strict=True)]
    assert return_correlation(a, b) == pytest.approx(statistics.correlation(a, b), rel=1e-12)
    assert return_correlation(a, a) == pytest.approx(1.0)
    assert return_correlation(a, [-x for x in a]) == pytest.approx(-1.0)


def test_return_correlation_degenerate_and_validation() -> None:
    assert return_correlation([0.1, 0.1, 0.1], [0.1, 0.2, 0.3]) == 0.0
    assert return_correlation([0.1], [0.2]) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        return_correlation([0.1, 0.2], [0.1, 0.2, 0.3])


def test_correlation_penalty() -> None:
    a = series(14, 500)
    b = series(15, 500)
    mixed = [0.8 * x + 0.6 * y for x, y in zip(a, b, strict=True)]
    rho = statistics.correlation(a, mixed)
    assert correlation_penalty(a, [a], 0.5) == pytest.approx(1.0)
    assert correlation_penalty(a, [], 0.5) == 0.0
    assert correlation_penalty(a, [[-x for x in a]], 0.0) == 0.0
    assert correlation_penalty(a, [b], 0.5) == 0.0
    assert correlation_penalty(a, [mixed], 0.5) == pytest.approx((rho - 0.5) / 0.5, rel=1e-9)
    assert correlation_penalty(a, [b, mixed, a], 0.9) == pytest.approx(1.0)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            correlation_penalty(a, [b], bad)


@given(st.lists(st.floats(-0.1, 0.1), min_size=3, max_size=30), st.floats(0.0, 0.99), st.integers(0, 2**31))
def test_correlation_penalty_is_a_fraction(xs: list[float], threshold: float, seed: int) -> None:
    other = [float(x) for x in np.random.default_rng(seed).normal(0.0, 0.05, len(xs))]
    assert 0.0 <= correlation_penalty(xs, [other, xs], threshold) <= 1.0
