"""`allele backtest`: one strategy on historical or synthetic data, through the engine.

The same `Engine` as paper trading (strategy kernel, risk gate, order kernel, ledger), with a
`BarVenue` at the end for bar data (orders fill at the next bar's open: no look-ahead) or the
simulated venue rebuilt from a recording's header for a recording. The organism gets `cash` to
trade and sizes from all of its equity.

Risk in a backtest: the global capital cap guards paper and live capital, not a backtest of the
user's own cash, so it does not apply. The other rules apply as configured in `[risk]` (and
`ALLELE_RISK__*`); a rule the user did not configure is relaxed so it cannot block or scale an
ordinary backtest (`BACKTEST_RISK`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allele.kernel.config import ConfigError, config_path, describe_validation_error, env_overrides, read_config
from allele.kernel.engine.bus import Message
from allele.kernel.engine.config import OrganismSpec
from allele.kernel.engine.engine import Engine, Organism
from allele.kernel.engine.order_path import OrderPath
from allele.kernel.engine.ports import Venue
from allele.kernel.engine.session import (
    SessionError,
    organism_symbols,
    read_header,
    resolve_strategy,
    start_strategy,
)
from allele.kernel.engine.simvenue import SimVenue, SimVenueSpec
from allele.kernel.engine.sources import RecordingSource
from allele.kernel.ledger import Ledger
from allele.kernel.orders.port import SoftwareOrderKernel
from allele.kernel.plugin.errors import PluginError
from allele.kernel.plugin.host import PluginHost
from allele.kernel.risk import RiskConfig, RiskGate

from .data import BarSource, DataSpec, load_bars
from .metrics import FillRow, Metrics, compute_metrics
from .venue import BarVenue

UNLIMITED = 1e18
ORGANISM = "backtest"
# Rules the user did not configure, relaxed for a backtest: no cap, no fat-finger sizes, no rate limit,
# no drawdown scaling or halt. The asymmetric-risk ban and the price band stay at their defaults.
BACKTEST_RISK: dict[str, Any] = {
    "global_capital_cap": UNLIMITED, "max_order_quantity": UNLIMITED, "max_order_notional": UNLIMITED,
    "orders_per_minute": 10**9, "drawdown_stages": (), "halt_drawdown": 1.0,
}


def backtest_risk(home: Path) -> RiskConfig:
    """The backtest's risk settings: `BACKTEST_RISK` overlaid with what the user configured (no cap)."""
    configured = read_config(home).get("risk", {})
    explicit = {**(configured if isinstance(configured, dict) else {}), **env_overrides(("risk",))}
    explicit.pop("global_capital_cap", None)
    try:
        config: RiskConfig = RiskConfig.model_validate({**BACKTEST_RISK, **explicit})
    except ValueError as exc:
        detail = describe_validation_error(exc) if hasattr(exc, "errors") else str(exc)
        raise ConfigError(f"{config_path(home)}: [risk]: {detail}") from None
    return config


@dataclass(frozen=True)
class BacktestResult:
    strategy: str
    plugin_sha256: str
    params: dict[str, Any]
    data: dict[str, object]
    cash: float
    commission: float
    bars: int
    orders: int
    refused: int
    metrics: Metrics

    def to_json(self) -> dict[str, Any]:
        return {**self.metrics.to_json(), "strategy": self.strategy, "plugin_sha256": self.plugin_sha256,
                "params": self.params, "data": self.data, "cash": self.cash, "commission": self.commission,
                "bars": self.bars, "orders": self.orders, "risk_refusals": self.refused}


async def run_backtest(home: Path, strategy: str, params: dict[str, Any], data: DataSpec, *, cash: float = 10_000.0,
                       commission: float = 0.0, host: PluginHost | None = None,
                       on_progress: Callable[[int, int | None], None] | None = None) -> BacktestResult:
    """Run `strategy` (a name or a .wasm path) with `params` over `data`; SessionError/DataError/ConfigError
    name what is wrong. on_progress(done, total) is called as events are processed (total None if unknown)."""
    if not cash > 0:
        raise SessionError(f"--cash must be positive, got {cash}")
    if not 0 <= commission < 1:
        raise SessionError(f"--commission is a fraction of each fill's notional in [0, 1), got {commission}")
    risk = backtest_risk(home)
    host = host or PluginHost(home)
    try:
        loaded = host.load(resolve_strategy(home, strategy))
    except PluginError as exc:
        raise SessionError(str(exc)) from None
    spec = OrganismSpec(id=ORGANISM, strategy=strategy, params=params, allocation=UNLIMITED)
    instance = start_strategy(host, loaded, spec)

    venue: Venue
    total: int | None
    if data.kind == "recording":
        assert data.path is not None
        header = read_header(data.path)
        vspec = SimVenueSpec.from_json(header["venue"])
        venue = SimVenue(vspec)
        symbols = organism_symbols(spec, loaded, vspec.symbols, vspec.binary_symbols)
        events = RecordingSource(data.path).events()
        total = None
    else:
        bars = load_bars(data)
        venue = BarVenue(bars, commission)
        symbols = frozenset({bars.symbol})
        events = BarSource(bars, data.describe()).events()
        total = len(bars)

    organism = Organism(spec, instance, symbols, UNLIMITED, loaded.sha256)
    with tempfile.TemporaryDirectory(prefix="allele-backtest-") as tmp:
        ledger = await Ledger.open(Path(tmp) / "backtest.db", synchronous="off")
        try:
            instruments = {s: venue.instrument(s) for s in venue.symbols()}
            engine = Engine(session="bt", venue=venue, organisms=[organism], ledger=ledger, gate=RiskGate(risk),
                            order_path=OrderPath(SoftwareOrderKernel(4096), instruments), ttl_ns=10**18,
                            batch_events=4096, equity_interval_ns=None)
            await ledger.deposit(ORGANISM, "USD", cash)
            engine.portfolio.deposit(ORGANISM, cash)
            engine.orders.configure(risk, 1)
            curve: list[tuple[int, float]] = []
            in_market = 0

            def on_tick(msg: Message) -> None:
                nonlocal in_market
                p = engine.portfolio
                if curve and curve[-1][0] == msg.data["ts_ns"]:
                    curve.pop()
                curve.append((msg.data["ts_ns"], p.equity(ORGANISM)))
                if any(p.positions.get(ORGANISM, {}).values()):
                    in_market += 1

            engine.bus.subscribe(on_tick, ("tick",))
            progress = None if on_progress is None else (lambda n: on_progress(n, total))
            await engine.run(events, on_progress=progress)
            fills = [FillRow(f.ts_ns, f.symbol, "buy" if f.side == "buy" else "sell", float(f.quantity),
                             float(f.price), float(f.fee)) for f in await ledger.fills()]
            orders = len(await ledger.orders())
            refused = sum(1 for d in await ledger.risk_decisions() if not d["accepted"])
        finally:
            await ledger.close()
    if not curve:
        raise SessionError("the data produced no market events for this strategy's symbols")
    start = (curve[0][0] - 1, cash)
    metrics = compute_metrics([start, *curve], fills, in_market, len(curve), cash,
                              final_prices=dict(engine.portfolio.last_price))
    return BacktestResult(loaded.name, loaded.sha256, dict(instance.params), data.describe(), cash, commission,
                          total if total is not None else len(curve), orders, refused, metrics)

