"""`run_backtest` through the real engine and wasm strategy, against an independent model of the same rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from allele.kernel.backtest import parse_data_spec
from allele.kernel.backtest.run import run_backtest
from allele.kernel.engine.session import SessionError


def write_csv(path: Path, n: int = 260) -> list[tuple[float, float]]:
    """A made-up daily series with trends both ways; returns (open, close) per bar."""
    rows, bars = ["Date,Open,High,Low,Close,Volume"], []
    price = 100.0
    for i in range(n):
        drift = 0.8 * math.sin(i / 17.0) + 0.3 * math.cos(i / 5.0)
        open_ = round(price + 0.1 * math.sin(i), 2)
        close = round(open_ + drift, 2)
        high, low = max(open_, close) + 0.5, min(open_, close) - 0.5
        day = f"2021-{1 + i // 28:02d}-{1 + i % 28:02d}"
        rows.append(f"{day},{open_},{high},{low},{close},{1000 + i}")
        bars.append((open_, close))
        price = close
    path.write_text("\n".join(rows) + "\n")
    return bars


def model(bars: list[tuple[float, float]], fast: int, slow: int, cash: float, commission: float) -> tuple[float, int,
                                                                                                         float]:
    """sma_cross by hand: side of the fast SMA vs the slow one, signalled on change; the engine's sizing rule
    (whole units of equity / (close * (1 + fee))), a flip as close-then-open, market fills at the next open."""
    closes = [c for _, c in bars]
    position, fees, fills = 0, 0.0, 0
    side, pending = 0, 0
    for i, (open_, close) in enumerate(bars):
        if pending:  # yesterday's orders fill at today's open
            for qty in ([-position, pending + position] if position and (pending > 0) != (position > 0)
                        else [pending]):
                if qty:
                    cash -= qty * open_ + abs(qty) * open_ * commission
                    fees += abs(qty) * open_ * commission
                    position += qty
                    fills += 1
            pending = 0
        if i + 1 >= slow:
            f = sum(closes[i + 1 - fast:i + 1]) * (slow / fast)
            s = sum(closes[i + 1 - slow:i + 1])
            new = 1 if f > s else -1 if f < s else side
            if new != side:
                side = new
                equity = cash + position * close
                target = side * math.floor(equity / (close * (1 + commission)) + 1e-9)
                pending = target - position
    return cash + position * bars[-1][1], fills, fees


async def test_sma_cross_backtest_matches_an_independent_model(built, tmp_path: Path) -> None:
    bars = write_csv(tmp_path / "series.csv")
    result = await run_backtest(tmp_path, "sma_cross", {"fast": 5, "slow": 20},
                                parse_data_spec(str(tmp_path / "series.csv")), cash=10_000.0, commission=0.001)
    final, fills, fees = model(bars, 5, 20, 10_000.0, 0.001)
    assert fills > 4
    assert result.metrics.final_equity == pytest.approx(final, rel=1e-9)
    assert result.metrics.fees == pytest.approx(fees, rel=1e-9)
    assert result.orders == fills
    assert result.metrics.return_pct == pytest.approx((final / 10_000.0 - 1) * 100, rel=1e-9)
    assert result.refused == 0
    assert result.to_json()["trades"] == result.metrics.trades > 0


async def test_no_look_ahead_a_signal_on_the_last_bar_never_fills(built, tmp_path: Path) -> None:
    bars = write_csv(tmp_path / "s.csv", 60)
    short = await run_backtest(tmp_path, "sma_cross", {"fast": 3, "slow": 10}, parse_data_spec(str(tmp_path / "s.csv")))
    # Truncating the data after the last fill changes nothing that happened before it.
    final, fills, _ = model(bars, 3, 10, 10_000.0, 0.0)
    assert short.metrics.final_equity == pytest.approx(final, rel=1e-9)
    assert short.orders >= fills  # an order sent on the last bar is cancelled at the end of data, never filled


async def test_backtest_refuses_bad_arguments_by_name(built, tmp_path: Path) -> None:
    spec = parse_data_spec("synthetic:bars=100")
    with pytest.raises(SessionError, match="cash"):
        await run_backtest(tmp_path, "sma_cross", {}, spec, cash=-1)
    with pytest.raises(SessionError, match="commission"):
        await run_backtest(tmp_path, "sma_cross", {}, spec, commission=2)
    with pytest.raises(SessionError, match="fast"):
        await run_backtest(tmp_path, "sma_cross", {"fast": 0}, spec)
    with pytest.raises(SessionError, match="no strategy named"):
        await run_backtest(tmp_path, "nope", {}, spec)


async def test_configured_risk_rules_apply_in_a_backtest_but_not_the_capital_cap(built, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[risk]\nglobal_capital_cap = 1.0\nmax_order_notional = 500.0\n")
    result = await run_backtest(tmp_path, "sma_cross", {"fast": 5, "slow": 20},
                                parse_data_spec("synthetic:bars=300,seed=5"), cash=10_000.0)
    # The 1 USD cap would refuse everything; the 500 USD fat-finger limit refuses all-in orders of 10,000.
    assert result.orders == 0 and result.refused > 0
