"""Evaluating an organism: its strategy over the arena's data, through the engine's own path.

    evaluator = Evaluator(home, bars, commission=0.001)
    result = evaluator.evaluate(spec)        # Evaluation: per-bar returns, trades, behaviour

One strategy batch call over all the bars (the strategy sees market events only, so its signals are
a function of the data alone), then the engine acts on them exactly as in a backtest: the strategy
kernel sizes each signal, the risk gate decides, the order kernel takes the frames, and the
`BarVenue` fills at the next bar's open with fees; the ledger is an in-memory SQLite one. The engine
is only woken on the bars where something happens (a signal, or the fill of the bar after it); on
the others nothing can happen, and the equity curve is computed from the fills with numpy.

A worker process holds one `Evaluator`: plugins are loaded once (compiled code from the cache),
and each strategy plugin has one pooled instance, reconfigured (which resets it) per organism.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from allele.kernel.backtest import Bars, BarVenue
from allele.kernel.backtest.run import BACKTEST_RISK, UNLIMITED
from allele.kernel.domain import MarketEvent, Signal
from allele.kernel.engine.config import OrganismSpec as EngineOrganismSpec
from allele.kernel.engine.engine import Engine, Organism, batch_columns
from allele.kernel.engine.order_path import OrderPath
from allele.kernel.engine.session import find_plugin_by_hash
from allele.kernel.ledger import Ledger
from allele.kernel.orders.port import SoftwareOrderKernel
from allele.kernel.plugin.errors import PluginError
from allele.kernel.plugin.host import EncodedBatch, PluginHost, StrategyPlugin
from allele.kernel.risk import RiskConfig, RiskGate

from .organism import OrganismSpec, data_fingerprint

ORGANISM = "candidate"


@dataclass(frozen=True)
class Evaluation:
    """What one organism did on one data set. `returns[i]` is the simple return of equity from bar i to i+1."""

    fingerprint: str
    data_fingerprint: str
    ok: bool
    error: str = ""
    returns: tuple[float, ...] = ()
    fills: int = 0
    trades: int = 0
    fees: float = 0.0
    final_equity: float = 0.0
    refused: int = 0
    behaviour: Mapping[str, float] = field(default_factory=dict)
    trade_bars: tuple[int, ...] = ()  # bars at which a trade opened (the position left zero or flipped)

    def trades_between(self, start: int, end: int) -> int:
        """Trades opened in bars [start, end)."""
        return sum(1 for b in self.trade_bars if start <= b < end)

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "data_fingerprint": self.data_fingerprint, "ok": self.ok,
                "error": self.error, "fills": self.fills, "trades": self.trades, "fees": self.fees,
                "final_equity": self.final_equity, "refused": self.refused, "behaviour": dict(self.behaviour)}


def bars_fingerprint(bars: Bars) -> str:
    return data_fingerprint(bars.symbol, bars.ts_ns, {"open": bars.open, "high": bars.high, "low": bars.low,
                                                      "close": bars.close})


class Evaluator:
    """Evaluates organisms on one data set, in one process."""

    def __init__(self, home: Path, bars: Bars, *, commission: float = 0.001, cash: float = 10_000.0,
                 risk: RiskConfig | None = None, host: PluginHost | None = None) -> None:
        self.home = home
        self.bars = bars
        self.commission = commission
        self.cash = cash
        self.risk = risk or RiskConfig.model_validate(BACKTEST_RISK)
        self.host = host or PluginHost(home)
        self.data_fingerprint = bars_fingerprint(bars)
        self._events = [MarketEvent("bar", "backtest", bars.symbol, t, c, v)
                        for t, c, v in zip(bars.ts_ns, bars.close, bars.volume, strict=True)]
        self._batch = EncodedBatch.of(batch_columns(self._events))
        self._close = np.asarray(bars.close, dtype=np.float64)
        self._pool: dict[str, StrategyPlugin] = {}
        self._index = {t: i for i, t in enumerate(bars.ts_ns)}
        # One loop for every evaluation: asyncio.run per call installs and removes a SIGINT handler, and
        # Python formats the replaced handler (with the task and its frame) each time: 15-35 ms per call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _instance(self, sha256: str) -> StrategyPlugin:
        instance = self._pool.get(sha256)
        if instance is None or instance.quarantine_reason is not None:
            path = find_plugin_by_hash(self.home, sha256)
            if path is None:
                raise PluginError(f"strategy plugin {sha256[:12]} is neither deployed nor bundled")
            instance = self.host.strategy(self.host.load(path))
            self._pool[sha256] = instance
        return instance

    def evaluate(self, spec: OrganismSpec) -> Evaluation:
        """Run `spec` over the data; a plugin or genome problem gives ok=False with the reason, never raises."""
        fp = spec.fingerprint
        try:
            instance = self._instance(spec.plugin_sha256)
            instance.configure(dict(spec.genome))
            signals = instance.on_batch(self._batch)
        except PluginError as exc:
            return Evaluation(fp, self.data_fingerprint, False, error=str(exc))
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._act(spec, instance, [(b.row, b.signal) for b in signals]))

    def close(self) -> None:
        """Release the evaluation loop; the evaluator makes a new one if it is used again."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()

    async def _act(self, spec: OrganismSpec, instance: StrategyPlugin,
                   signals: list[tuple[int, Signal]]) -> Evaluation:
        bars, n = self.bars, len(self.bars)
        ledger = await Ledger.open(":memory:", synchronous="off")
        try:
            venue = BarVenue(bars, self.commission)
            instruments = {bars.symbol: venue.instrument(bars.symbol)}
            engine_spec = EngineOrganismSpec(id=ORGANISM, strategy=spec.strategy, params=dict(spec.genome),
                                             allocation=UNLIMITED)
            org = Organism(engine_spec, instance, frozenset({bars.symbol}), UNLIMITED, spec.plugin_sha256)
            engine = Engine(session="a", venue=venue, organisms=[org], ledger=ledger, gate=RiskGate(self.risk),
                            order_path=OrderPath(SoftwareOrderKernel(64), instruments), ttl_ns=10**18,
                            equity_interval_ns=None)
            await ledger.deposit(ORGANISM, "USD", self.cash)
            engine.portfolio.deposit(ORGANISM, self.cash)
            engine.orders.configure(self.risk, 1)
            by_row: dict[int, list[tuple[Organism, Signal]]] = {}
            for row, sig in signals:
                by_row.setdefault(row, []).append((org, sig))
            # The bars where something can happen: a signal, the next bar (its fill), the last bar.
            wake = sorted({r for r in by_row} | {r + 1 for r in by_row if r + 1 < n} | {n - 1})
            for row in wake:
                await engine.on_event(self._events[row], by_row.get(row, ()))
            await engine.finish()
            fills = await ledger.fills()
            refused = sum(1 for d in await ledger.risk_decisions() if not d["accepted"])
        finally:
            await ledger.close()
        return self._measure(spec, fills, refused)

    def _measure(self, spec: OrganismSpec, fills: list[Any], refused: int) -> Evaluation:
        n = len(self.bars)
        delta_pos = np.zeros(n)
        delta_cash = np.zeros(n)
        traded = np.zeros(n)
        fees = 0.0
        for f in fills:
            i = self._index.get(f.ts_ns, n - 1)
            qty, price, fee = float(f.quantity), float(f.price), float(f.fee)
            signed = qty if f.side == "buy" else -qty
            delta_pos[i] += signed
            delta_cash[i] -= signed * price + fee
            traded[i] += qty * price
            fees += fee
        position = np.cumsum(delta_pos)
        equity = self.cash + np.cumsum(delta_cash) + position * self._close
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = np.where(equity[:-1] > 0, equity[1:] / equity[:-1] - 1.0, -1.0)
        returns = np.nan_to_num(returns, nan=0.0, posinf=0.0, neginf=-1.0)
        in_market = position != 0
        sign = np.sign(position)
        previous = np.concatenate(([0.0], sign[:-1]))
        # A trade opens where the position leaves zero, or flips through zero within one bar.
        opens = (sign != 0) & ((previous == 0) | (sign * previous < 0))
        trade_bars = tuple(int(i) for i in np.flatnonzero(opens))
        trades = len(trade_bars)
        market = np.diff(self._close) / self._close[:-1]
        beta = float(np.cov(returns, market)[0, 1] / np.var(market, ddof=1)) if np.var(market) > 0 else 0.0
        mean_equity = float(np.mean(equity)) if equity.size else self.cash
        behaviour = {
            "turnover": float(traded.sum() / (mean_equity * n)) if mean_equity > 0 else 0.0,
            "holding_bars": float(np.count_nonzero(in_market) / trades) if trades else 0.0,
            "beta": beta if math.isfinite(beta) else 0.0,
            "exposure": float(np.count_nonzero(in_market) / n),
        }
        return Evaluation(spec.fingerprint, self.data_fingerprint, True, returns=tuple(returns.tolist()),
                          fills=len(fills), trades=trades, fees=fees, final_equity=float(equity[-1]),
                          refused=refused, behaviour=behaviour, trade_bars=trade_bars)
