"""Performance metrics of a backtest, from its equity curve and its fills.

Definitions (E_0 … E_n the equity curve, t_0 … t_n its timestamps, C the initial cash):

- return_pct      = (E_n / C − 1) × 100; final_equity = E_n.
- cagr_pct        = ((E_n / C) ** (1 / Y) − 1) × 100, Y = (t_n − t_0) / 365.25 days; 0 when Y = 0,
                    −100 when E_n <= 0, +inf when it overflows (serialized as null).
- per-bar returns r_k = E_k / E_{k−1} − 1, k = 1 … n (a step from E_{k−1} <= 0 has no return and is skipped).
- periods per year P: with Δ the median spacing t_k − t_{k−1}: if Δ is one day (± 2 h) and no
  timestamp falls on a Saturday or Sunday (UTC), P = 252 (trading days); else P = 365.25 days / Δ.
- sharpe          = mean(r) / stdev(r) × √P (risk-free rate 0; stdev is the sample standard deviation,
                    n − 1 in the denominator); 0.0 with fewer than 2 returns or zero variance (a stdev
                    at most 1e-9 × |mean| counts as zero: it is float noise around a constant return).
- sortino         = mean(r) / D × √P, D = √(mean(min(r_k, 0)²)) over ALL returns (downside deviation,
                    target 0); 0.0 when D = 0 (no losing bar) or with no returns.
- max_drawdown_pct = max_k (peak_k − E_k) / peak_k × 100, peak_k = max(E_0 … E_k): a positive number.
- trades: round trips per symbol, from the fills in execution order. A trade opens when the position
  leaves 0 and closes when it returns to 0; a fill that goes through 0 (long 2, sell 5) closes the
  trade with the part that reaches 0 and opens a new one with the rest (the fee is split pro rata).
  A trade still open at the end counts as closed at the final mark: its P&L includes the open
  position valued at `final_prices[symbol]` or, without it, at the price implied by the final
  equity (E_n − cash)/position, exact for a one-symbol backtest where equity = cash + position × price.
- trade P&L = Σ (sell proceeds − buy costs) − Σ fees of its fills (+ the mark of an open position);
  win_rate_pct = trades with P&L > 0 / trades × 100 (0 with no trades).
- exposure_pct = bars_in_market / total_bars × 100 (0 with no bars); fees = Σ fill fees.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Literal

DAY_NS = 86_400 * 1_000_000_000
YEAR_NS = 365.25 * DAY_NS
TRADING_DAYS = 252
_DAILY_TOLERANCE_NS = 2 * 3_600 * 1_000_000_000
_ZERO_VARIANCE = 1e-9
"""A standard deviation at most this fraction of |mean| is float noise around a constant, i.e. zero."""


@dataclass(frozen=True, slots=True)
class FillRow:
    """One fill: `quantity` > 0 of `symbol` bought or sold at `price`, paying `fee` (quote currency)."""

    ts_ns: int
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    price: float
    fee: float = 0.0


@dataclass(frozen=True, slots=True)
class TradeRow:
    """A round trip: opened at `open_ts_ns`, closed at `close_ts_ns` (None: still open, marked at the end)."""

    symbol: str
    direction: Literal["long", "short"]
    open_ts_ns: int
    close_ts_ns: int | None
    pnl: float
    fees: float


@dataclass(frozen=True, slots=True)
class Metrics:
    """The backtest's scorecard; see the module docstring for every formula."""

    return_pct: float
    final_equity: float
    cagr_pct: float
    sharpe: float
    sortino: float
    max_drawdown_pct: float
    trades: int
    win_rate_pct: float
    exposure_pct: float
    fees: float
    periods_per_year: float
    trade_log: tuple[TradeRow, ...] = ()

    def to_json(self) -> dict[str, object]:
        """JSON-able summary; non-finite numbers become None."""
        out: dict[str, object] = {}
        for key in ("return_pct", "final_equity", "cagr_pct", "sharpe", "sortino", "max_drawdown_pct", "trades",
                    "win_rate_pct", "exposure_pct", "fees", "periods_per_year"):
            value = getattr(self, key)
            out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        return out


def compute_metrics(equity: Sequence[tuple[int, float]], fills: Sequence[FillRow], bars_in_market: int,
                    total_bars: int, initial_cash: float, *,
                    final_prices: Mapping[str, float] | None = None) -> Metrics:
    """Metrics of a run: `equity` is the (ts_ns, equity) curve in time order (include the starting mark),
    `fills` every fill in execution order. Formulas in the module docstring."""
    if not initial_cash > 0:
        raise ValueError(f"initial_cash must be positive, got {initial_cash}")
    final = equity[-1][1] if equity else initial_cash
    returns = simple_returns([e for _, e in equity])
    periods = periods_per_year([t for t, _ in equity])
    trade_log = round_trips(fills, final_equity=final, initial_cash=initial_cash, final_prices=final_prices)
    wins = sum(1 for t in trade_log if t.pnl > 0)
    return Metrics(
        return_pct=(final / initial_cash - 1.0) * 100.0,
        final_equity=final,
        cagr_pct=cagr_pct(initial_cash, final, equity[0][0], equity[-1][0]) if equity else 0.0,
        sharpe=sharpe(returns, periods),
        sortino=sortino(returns, periods),
        max_drawdown_pct=max_drawdown_pct([e for _, e in equity]),
        trades=len(trade_log),
        win_rate_pct=wins / len(trade_log) * 100.0 if trade_log else 0.0,
        exposure_pct=bars_in_market / total_bars * 100.0 if total_bars > 0 else 0.0,
        fees=math.fsum(f.fee for f in fills),
        periods_per_year=periods,
        trade_log=tuple(trade_log),
    )


def simple_returns(values: Sequence[float]) -> list[float]:
    """r_k = v_k / v_{k−1} − 1, skipping steps from a non-positive value."""
    return [b / a - 1.0 for a, b in pairwise(values) if a > 0]


def periods_per_year(ts_ns: Sequence[int]) -> float:
    """252 for weekday-only daily bars, else 365.25 days / median spacing; 0.0 if it cannot be inferred."""
    gaps = [b - a for a, b in pairwise(ts_ns) if b > a]
    if not gaps:
        return 0.0
    median = statistics.median(gaps)
    if abs(median - DAY_NS) <= _DAILY_TOLERANCE_NS:
        weekend = any(datetime.fromtimestamp(t / 1e9, tz=UTC).weekday() >= 5 for t in ts_ns)
        if not weekend:
            return float(TRADING_DAYS)
    return YEAR_NS / median


def sharpe(returns: Sequence[float], periods: float) -> float:
    """mean / sample stdev × √periods; 0.0 with < 2 returns or (numerically) zero variance."""
    if len(returns) < 2 or periods <= 0:
        return 0.0
    mean = statistics.fmean(returns)
    sd = statistics.stdev(returns)
    if sd <= _ZERO_VARIANCE * abs(mean) or sd == 0.0:
        return 0.0
    return mean / sd * math.sqrt(periods)


def sortino(returns: Sequence[float], periods: float) -> float:
    """mean / √(mean(min(r, 0)²)) × √periods; 0.0 with no returns or no downside."""
    if not returns or periods <= 0:
        return 0.0
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside == 0.0:
        return 0.0
    return statistics.fmean(returns) / downside * math.sqrt(periods)


def max_drawdown_pct(values: Sequence[float]) -> float:
    """Largest fall from a running peak, in percent of that peak (positive; 0.0 for a curve that never falls)."""
    peak = -math.inf
    worst = 0.0
    for v in values:
        peak = max(peak, v)
        if peak > 0:
            worst = max(worst, (peak - v) / peak * 100.0)
    return worst


def cagr_pct(start_value: float, end_value: float, start_ns: int, end_ns: int) -> float:
    """Compound annual growth rate in percent over [start_ns, end_ns] (years of 365.25 days)."""
    years = (end_ns - start_ns) / YEAR_NS
    if years <= 0 or start_value <= 0:
        return 0.0
    if end_value <= 0:
        return -100.0
    try:
        return (math.exp(math.log(end_value / start_value) / years) - 1.0) * 100.0
    except OverflowError:
        return math.inf


@dataclass(slots=True)
class _Open:
    direction: Literal["long", "short"]
    open_ts_ns: int
    cash: Decimal
    fees: Decimal


def round_trips(fills: Sequence[FillRow], *, final_equity: float, initial_cash: float,
                final_prices: Mapping[str, float] | None = None) -> list[TradeRow]:
    """Closed trades in closing order, then the still-open ones marked at the end (see the module docstring)."""
    position: dict[str, Decimal] = {}
    current: dict[str, _Open] = {}
    closed: list[TradeRow] = []
    cash = Decimal(repr(float(initial_cash)))
    for f in fills:
        if not f.quantity > 0:
            raise ValueError(f"fill quantity must be positive, got {f.quantity}")
        qty = Decimal(repr(float(f.quantity)))
        price = Decimal(repr(float(f.price)))
        fee = Decimal(repr(float(f.fee)))
        signed = qty if f.side == "buy" else -qty
        cash += -signed * price - fee
        pos = position.get(f.symbol, Decimal(0))
        remaining = qty
        fee_left = fee
        if pos != 0 and (pos > 0) != (signed > 0):  # reducing: close up to |pos|
            part = min(qty, abs(pos))
            part_fee = fee * part / qty
            trade = current[f.symbol]
            trade.cash += -(part if signed > 0 else -part) * price
            trade.fees += part_fee
            pos += part if signed > 0 else -part
            remaining -= part
            fee_left -= part_fee
            if pos == 0:
                del current[f.symbol]
                closed.append(TradeRow(f.symbol, trade.direction, trade.open_ts_ns, f.ts_ns,
                                       float(trade.cash - trade.fees), float(trade.fees)))
        if remaining > 0:
            step = remaining if signed > 0 else -remaining
            if pos == 0:
                current[f.symbol] = _Open("long" if signed > 0 else "short", f.ts_ns, Decimal(0), Decimal(0))
            trade = current[f.symbol]
            trade.cash += -step * price
            trade.fees += fee_left
            pos += step
        position[f.symbol] = pos
    open_symbols = [s for s in current if position[s] != 0]
    prices = dict(final_prices or {})
    missing = [s for s in open_symbols if s not in prices]
    if missing:
        if len(open_symbols) > 1:
            raise ValueError(f"trades in {missing} are open at the end: pass final_prices to value them")
        symbol = missing[0]
        prices[symbol] = float((Decimal(repr(float(final_equity))) - cash) / position[symbol])
    for symbol in open_symbols:
        trade = current[symbol]
        mark = Decimal(repr(float(prices[symbol]))) * position[symbol]
        closed.append(TradeRow(symbol, trade.direction, trade.open_ts_ns, None,
                               float(trade.cash + mark - trade.fees), float(trade.fees)))
    return closed
