"""Assembling a live session: the same engine, fed by a real venue's streams, ordering through ccxt.

    session = await open_live_session(home, credentials=vault)     # [engine], [exchange], [risk], organisms
    await session.run(stop=stop_event)
    await session.close()

What differs from paper trading is only the two ports: `LiveSource` (the venue's WebSocket streams,
REST fallback) and `CcxtVenue` (orders placed with credentials attached for each call). Everything
between them — strategies, the risk gate with the global capital cap, the strategy and order kernels,
the ledger — is the engine's, unchanged. The sandbox/testnet is the default; real money needs
`sandbox = false` and `allow_live = true` in `[exchange]` and `mode = "live"` in `[engine]`.

Strategies are asked per event (`batch_events = 1`): a live stream has no "next 256 events" to batch.
A live session writes no firehose recording (a replay needs a venue it can rebuild, which a real one is
not); the ledger holds every order, fill and decision as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allele.kernel.exchange.ccxt_adapter import CcxtExchange, VenueError
from allele.kernel.exchange.settings import ExchangeSettings, load_exchange_settings
from allele.kernel.exchange.venue import CcxtVenue, IoLoop, LiveSource
from allele.kernel.ledger import Ledger
from allele.kernel.orders.port import SoftwareOrderKernel
from allele.kernel.plugin.errors import PluginError
from allele.kernel.plugin.host import PluginHost
from allele.kernel.risk import RiskGate, load_risk_config
from allele.vault.signing import CredentialSource

from .bus import Bus
from .config import EngineConfig, OrganismSpec, load_engine_config
from .engine import Engine, Organism
from .order_path import OrderPath
from .session import SessionError, ledger_path, organism_symbols, organisms_to_trade, resolve_strategy, start_strategy

log = logging.getLogger("allele.live")


@dataclass
class LiveSession:
    """A running engine on a real (or emulated) venue, and the I/O thread that talks to it."""

    engine: Engine
    venue: CcxtVenue
    source: LiveSource
    io: IoLoop
    host: PluginHost
    header: dict[str, Any]
    closed: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Trade until `stop` is set, the source's `max_events` are consumed, or the stream goes idle."""
        def stopped() -> bool:
            return stop is not None and stop.is_set()

        await self.engine.run(self.source.aevents(stop=stopped), speed=0.0, stop=stop)

    @property
    def errors(self) -> list[VenueError]:
        """Requests that failed as a whole (credentials, account), in order."""
        return list(self.venue.errors)

    async def close(self) -> None:
        self.source.close()
        self.venue.close()
        try:
            await asyncio.to_thread(self.io.run, self.venue.exchange.close(), 30.0)
        finally:
            self.io.stop()
            await self.engine.ledger.close()


async def open_live_session(home: Path, *, credentials: CredentialSource,
                            settings: ExchangeSettings | None = None, config: EngineConfig | None = None,
                            organisms: tuple[OrganismSpec, ...] | None = None, host: PluginHost | None = None,
                            session: str | None = None, bus: Bus | None = None,
                            max_events: int = 0, idle_timeout_s: float = 60.0) -> LiveSession:
    """A live session configured from `<home>/config.toml` unless given; SessionError says what to change."""
    cfg = config or load_engine_config(home)
    xs = settings or load_exchange_settings(home)
    if xs.live and cfg.mode != "live":
        raise SessionError("[exchange] trades real money (sandbox = false, allow_live = true) but [engine] mode is "
                           f"'{cfg.mode}': set mode = \"live\" as well to confirm")
    if not xs.symbols:
        raise SessionError("[exchange] symbols is empty: list what to trade, e.g. symbols = [\"BTC-USDT\"]")
    risk = load_risk_config(home)
    specs = organisms if organisms is not None else organisms_to_trade(home)
    host = host or PluginHost(home)
    session = session or time.strftime("l%Y%m%d-%H%M%S", time.gmtime())

    io = IoLoop()
    exchange = CcxtExchange(xs, credentials)
    try:
        await asyncio.to_thread(io.run, exchange.open(), 120.0)
    except VenueError as exc:
        io.stop()
        raise SessionError(str(exc)) from None

    try:
        share = risk.global_capital_cap / max(len(specs), 1)
        orgs = []
        for spec in specs:
            try:
                loaded = host.load(resolve_strategy(home, spec.strategy))
            except PluginError as exc:
                raise SessionError(f"organism {spec.id}: {exc}") from None
            orgs.append(Organism(spec, start_strategy(host, loaded, spec),
                                 organism_symbols(spec, loaded, xs.symbols, ()), spec.allocation or share,
                                 loaded.sha256))
        instruments = {s: exchange.instrument(s) for s in xs.symbols}
        venue = CcxtVenue(exchange, io)
        source = LiveSource(exchange, io, xs.symbols, max_events=max_events, idle_timeout_s=idle_timeout_s)
        ledger = await Ledger.open(ledger_path(home), synchronous=cfg.ledger_sync)
    except BaseException:
        await asyncio.to_thread(io.run, exchange.close(), 30.0)
        io.stop()
        raise
    engine = Engine(session=session, venue=venue, organisms=orgs, ledger=ledger, gate=RiskGate(risk),
                    order_path=OrderPath(SoftwareOrderKernel(cfg.order_kernel_slots), instruments),
                    ttl_ns=int(cfg.order_ttl_s * 1e9), firehose=None, bus=bus, home=home, batch_events=1)
    # The venue remembers what rests there: orders the ledger holds open from an earlier run stay open.
    closed = await engine.reconcile(venue_remembers=True)
    stale = await ledger.open_orders()
    if stale:
        log.warning("%d order(s) from an earlier session are still open in the ledger; check them on %s: %s",
                    len(stale), exchange.where, ", ".join(o.client_order_id for o in stale[:20]))
    await engine.open_books()
    header = {"session": session, "mode": "live" if xs.live else "sandbox", "exchange": xs.describe(),
              "risk": risk.model_dump(mode="json"),
              "organisms": [{**o.spec.model_dump(mode="json"), "allocation": o.allocation,
                             "plugin_sha256": o.plugin_sha256} for o in orgs]}
    source.start()
    return LiveSession(engine, venue, source, io, host, header, closed)
