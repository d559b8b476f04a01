"""Backtest metrics against hand-computed values on tiny series, plus properties that must hold for any input."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allele.kernel.backtest.metrics import (
    FillRow,
    Metrics,
    compute_metrics,
    max_drawdown_pct,
    periods_per_year,
    round_trips,
)

NS = 1_000_000_000
DAY = 86_400 * NS
HOUR = 3_600 * NS


def day(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


def days_from(start: str, n: int, *, weekdays_only: bool = False) -> list[int]:
    d = datetime.fromisoformat(start).replace(tzinfo=UTC)
    out: list[int] = []
    while len(out) < n:
        if not weekdays_only or d.weekday() < 5:
            out.append(int(d.timestamp()) * NS)
        d += timedelta(days=1)
    return out


# --- hand-computed ---------------------------------------------------------------------------------


def test_metrics_of_a_tiny_calendar_day_curve() -> None:
    # Thu 2020-01-02 .. Sun 2020-01-05: a weekend day is present, so 365.25 periods a year.
    ts = days_from("2020-01-02", 4)
    values = [100.0, 110.0, 99.0, 108.9]
    m = compute_metrics(list(zip(ts, values, strict=True)), [], bars_in_market=3, total_bars=4, initial_cash=100.0)

    returns = [0.1, -0.1, 0.1]
    periods = 365.25
    assert m.periods_per_year == periods
    assert m.final_equity == 108.9
    assert m.return_pct == pytest.approx(8.9)
    assert m.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(periods))
    downside = math.sqrt((0.0 + 0.01 + 0.0) / 3)
    assert m.sortino == pytest.approx(statistics.mean(returns) / downside * math.sqrt(periods))
    assert m.max_drawdown_pct == pytest.approx(10.0)  # 110 -> 99
    years = 3 / 365.25
    assert m.cagr_pct == pytest.approx((1.089 ** (1 / years) - 1) * 100)
    assert m.exposure_pct == 75.0
    assert (m.trades, m.win_rate_pct, m.fees) == (0, 0.0, 0.0)
    # Sanity of the reference numbers themselves (mean 1/30, sample stdev of ±0.1 pattern).
    assert statistics.mean(returns) == pytest.approx(1 / 30)
    assert m.sharpe == pytest.approx((1 / 30) / math.sqrt(((0.2 / 3) ** 2 * 2 + (0.4 / 3) ** 2) / 2)
                                     * math.sqrt(365.25))


def test_weekday_daily_bars_use_252_periods() -> None:
    ts = days_from("2020-01-02", 10, weekdays_only=True)
    assert all(datetime.fromtimestamp(t / NS, tz=UTC).weekday() < 5 for t in ts)
    assert periods_per_year(ts) == 252.0
    values = [100.0, 101.0, 100.5, 102.0, 101.0, 103.0, 104.0, 103.5, 105.0, 106.0]
    m = compute_metrics(list(zip(ts, values, strict=True)), [], 10, 10, 100.0)
    returns = [b / a - 1 for a, b in pairwise(values)]
    assert m.sharpe == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    assert m.sortino == pytest.approx(statistics.mean(returns) / downside * math.sqrt(252))
    # peak 102 -> 101 and peak 104 -> 103.5: the first is deeper.
    assert m.max_drawdown_pct == pytest.approx((102 - 101) / 102 * 100)
    years = (ts[-1] - ts[0]) / (365.25 * DAY)
    assert m.cagr_pct == pytest.approx((1.06 ** (1 / years) - 1) * 100)


def test_periods_per_year_from_the_median_spacing() -> None:
    assert periods_per_year(days_from("2020-01-01", 30)) == 365.25  # includes weekends
    assert periods_per_year([i * HOUR for i in range(50)]) == pytest.approx(365.25 * 24)
    assert periods_per_year([i * 60 * NS for i in range(50)]) == pytest.approx(365.25 * 24 * 60)
    # One odd gap does not move the median.
    assert periods_per_year([0, HOUR, 2 * HOUR, 3 * HOUR, 50 * HOUR]) == pytest.approx(365.25 * 24)
    weekly = [day("2020-01-06") + 7 * DAY * i for i in range(20)]  # Mondays
    assert periods_per_year(weekly) == pytest.approx(365.25 / 7)
    assert periods_per_year([5]) == 0.0
    assert periods_per_year([]) == 0.0


def test_zero_variance_and_degenerate_curves_give_zero_not_nan() -> None:
    ts = days_from("2020-01-01", 5)
    flat = compute_metrics([(t, 100.0) for t in ts], [], 0, 5, 100.0)
    assert (flat.sharpe, flat.sortino, flat.max_drawdown_pct, flat.return_pct, flat.cagr_pct) == (0, 0, 0, 0, 0)
    doubling = compute_metrics(list(zip(ts, [1.0, 2.0, 4.0, 8.0, 16.0], strict=True)), [], 5, 5, 1.0)
    assert doubling.sharpe == 0.0  # every return is exactly 1.0: no variance
    assert doubling.sortino == 0.0  # no downside
    single = compute_metrics([(ts[0], 90.0)], [], 1, 1, 100.0)
    assert (single.sharpe, single.sortino, single.cagr_pct, single.periods_per_year) == (0.0, 0.0, 0.0, 0.0)
    assert single.return_pct == pytest.approx(-10.0)
    empty = compute_metrics([], [], 0, 0, 100.0)
    assert (empty.final_equity, empty.return_pct, empty.exposure_pct) == (100.0, 0.0, 0.0)
    wiped = compute_metrics(list(zip(ts[:3], [100.0, 50.0, 0.0], strict=True)), [], 3, 3, 100.0)
    assert wiped.cagr_pct == -100.0
    assert wiped.max_drawdown_pct == 100.0
    for m in (flat, doubling, single, empty, wiped):
        assert all(math.isfinite(v) for v in (m.sharpe, m.sortino, m.max_drawdown_pct))


def test_round_trips_with_a_flip_and_an_open_trade_marked_at_the_end() -> None:
    fills = [
        FillRow(1, "X", "buy", 10, 100.0, 1.0),
        FillRow(2, "X", "sell", 10, 110.0, 1.1),   # trade 1: 10 × 10 − 2.1 = 97.9
        FillRow(3, "X", "buy", 5, 50.0, 0.5),
        FillRow(4, "X", "sell", 8, 48.0, 0.8),     # closes 5 (fee 0.5), opens short 3 (fee 0.3)
        FillRow(5, "X", "buy", 3, 40.0, 0.12),     # trade 3: 3 × 8 − 0.3 − 0.12 = 23.58
        FillRow(6, "X", "buy", 2, 45.0, 0.09),     # trade 4, still open; marked at 50: 2 × 5 − 0.09 = 9.91
    ]
    expected = [97.9, 5 * (48 - 50) - 0.5 - 0.5, 23.58, 9.91]   # trade 2: −11
    log = round_trips(fills, final_equity=0.0, initial_cash=1000.0, final_prices={"X": 50.0})
    assert [t.pnl for t in log] == pytest.approx(expected)
    assert [t.direction for t in log] == ["long", "long", "short", "long"]
    assert [(t.open_ts_ns, t.close_ts_ns) for t in log] == [(1, 2), (3, 4), (4, 5), (6, None)]
    assert [t.fees for t in log] == pytest.approx([2.1, 1.0, 0.42, 0.09])

    # Without final_prices the open position is valued at the price the final equity implies.
    cash = 1000.0 - 1000 - 1.0 + 1100 - 1.1 - 250 - 0.5 + 384 - 0.8 - 120 - 0.12 - 90 - 0.09
    final_equity = cash + 2 * 50.0
    ts = [day("2020-01-01") + i * DAY for i in range(7)]
    curve = [(ts[0], 1000.0), (ts[-1], final_equity)]
    m = compute_metrics(curve, fills, bars_in_market=5, total_bars=7, initial_cash=1000.0)
    assert m.trades == 4
    assert m.win_rate_pct == 75.0
    assert [t.pnl for t in m.trade_log] == pytest.approx(expected)
    assert m.fees == pytest.approx(1.0 + 1.1 + 0.5 + 0.8 + 0.12 + 0.09)
    assert m.exposure_pct == pytest.approx(5 / 7 * 100)
    assert sum(t.pnl for t in m.trade_log) == pytest.approx(final_equity - 1000.0)


def test_a_trade_that_wins_before_fees_but_loses_after_is_a_loss() -> None:
    fills = [FillRow(1, "X", "buy", 1, 100.0, 0.6), FillRow(2, "X", "sell", 1, 101.0, 0.6)]
    m = compute_metrics([(0, 100.0), (DAY, 100.0 - 0.2)], fills, 1, 2, 100.0)
    assert m.trades == 1
    assert m.trade_log[0].pnl == pytest.approx(-0.2)
    assert m.win_rate_pct == 0.0


def test_symbols_are_tracked_separately_and_several_open_need_prices() -> None:
    fills = [FillRow(1, "A", "buy", 1, 10.0), FillRow(2, "B", "sell", 2, 5.0), FillRow(3, "A", "sell", 1, 12.0)]
    log = round_trips(fills, final_equity=0.0, initial_cash=100.0, final_prices={"B": 4.0})
    assert [(t.symbol, t.pnl) for t in log] == [("A", 2.0), ("B", 2.0)]
    with pytest.raises(ValueError, match="final_prices"):
        round_trips([*fills, FillRow(4, "A", "buy", 1, 12.0)], final_equity=0.0, initial_cash=100.0)


def test_to_json_has_the_summary_keys_and_is_json() -> None:
    ts = days_from("2020-01-01", 3)
    m = compute_metrics(list(zip(ts, [100.0, 102.0, 101.0], strict=True)), [FillRow(ts[0], "X", "buy", 1, 1.0, 0.1)],
                        2, 3, 100.0, final_prices={"X": 1.0})
    out = m.to_json()
    for key in ("return_pct", "final_equity", "trades", "sharpe", "sortino", "max_drawdown_pct", "win_rate_pct",
                "fees", "cagr_pct", "exposure_pct"):
        assert key in out
    assert out["fees"] == 0.1 and out["trades"] == 1 and out["final_equity"] == 101.0
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    # A CAGR that overflows is infinite in Metrics and null in JSON.
    short = compute_metrics([(0, 100.0), (1, 1e6)], [], 1, 2, 100.0)
    assert short.cagr_pct == math.inf
    assert short.to_json()["cagr_pct"] is None
    json.dumps(short.to_json(), allow_nan=False)


def test_metrics_is_frozen() -> None:
    m = compute_metrics([(0, 1.0), (DAY, 2.0)], [], 1, 2, 1.0)
    assert isinstance(m, Metrics)
    with pytest.raises(FrozenInstanceError):
        m.__setattr__("sharpe", 1.0)


# --- properties ------------------------------------------------------------------------------------

positive = st.floats(1.0, 1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(positive, min_size=1, max_size=60))
def test_max_drawdown_matches_a_brute_force_definition(values: list[float]) -> None:
    brute = max(((max(values[: k + 1]) - values[k]) / max(values[: k + 1]) * 100 for k in range(len(values))),
                default=0.0)
    assert max_drawdown_pct(values) == pytest.approx(brute)
    assert 0.0 <= max_drawdown_pct(values) < 100.0
    assert max_drawdown_pct(sorted(values)) == 0.0


@given(st.lists(positive, min_size=3, max_size=60), st.floats(0.01, 1000.0))
def test_scaling_the_curve_and_the_cash_changes_no_ratio(values: list[float], scale: float) -> None:
    ts = [i * DAY for i in range(len(values))]
    a = compute_metrics(list(zip(ts, values, strict=True)), [], 1, len(values), values[0])
    b = compute_metrics(list(zip(ts, [v * scale for v in values], strict=True)), [], 1, len(values),
                        values[0] * scale)
    assert b.sharpe == pytest.approx(a.sharpe, rel=1e-6, abs=1e-9)
    assert b.sortino == pytest.approx(a.sortino, rel=1e-6, abs=1e-9)
    assert b.max_drawdown_pct == pytest.approx(a.max_drawdown_pct, rel=1e-9, abs=1e-9)
    assert b.return_pct == pytest.approx(a.return_pct, rel=1e-9, abs=1e-9)
    assert math.isfinite(a.sharpe) and math.isfinite(a.sortino)
    if a.sortino != 0.0 and a.sharpe != 0.0:
        assert math.copysign(1, a.sortino) == math.copysign(1, a.sharpe)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 5), st.integers(1, 200),
                          st.integers(0, 50)), max_size=30),
       st.integers(1, 200))
def test_trade_pnls_add_up_to_the_total_pnl(steps: list[tuple[str, int, int, int]], last_price: int) -> None:
    """However fills open, close and flip positions, the trades' P&L (fees included, the open one marked at the
    end) sums to the change in equity, and every fill's fee is charged to exactly one or two trades."""
    fills = [FillRow(i, "X", "buy" if side == "buy" else "sell", float(q), float(p), fee / 100)
             for i, (side, q, p, fee) in enumerate(steps)]
    cash = 10_000.0
    position = 0.0
    for f in fills:
        sign = 1 if f.side == "buy" else -1
        cash -= sign * f.quantity * f.price + f.fee
        position += sign * f.quantity
    final_equity = cash + position * last_price
    curve = [(0, 10_000.0), (DAY, final_equity)]
    for prices in ({"X": float(last_price)}, None):
        m = compute_metrics(curve, fills, 1, 2, 10_000.0, final_prices=prices)
        assert sum(t.pnl for t in m.trade_log) == pytest.approx(final_equity - 10_000.0, abs=1e-6)
        assert sum(t.fees for t in m.trade_log) == pytest.approx(m.fees, abs=1e-9)
        assert 0.0 <= m.win_rate_pct <= 100.0
    # Trades = number of times the position leaves zero (a flip leaves it again at once).
    opens, pos = 0, 0
    for side, q, _, _ in steps:
        new = pos + (q if side == "buy" else -q)
        if new != 0 and (pos == 0 or (pos > 0) != (new > 0)):
            opens += 1
        pos = new
    assert m.trades == opens
