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

Client order ids are `<session>-<n>` and live session names start with `CLIENT_ID_PREFIX` ("al-"), which
is how a later session tells our orders on the venue from anyone else's.

Recording: with `[engine] record = true` (the default) the session writes a firehose like a paper
session's: a header, every market event and every order update the engine handled, in the order it
handled them. A real venue cannot be rebuilt from a header, so the header's venue is `{"kind":
"recorded", ...}` (the instruments): `allele replay` then answers the replayed orders with the recorded
venue updates (`session.RecordedVenue`) and so reproduces the session's decisions and ledger.

Reconciliation at start (`reconcile_with_venue`), before any trading: the venue's open orders on the
traded symbols are compared with the ledger's open orders:
- an order both know is adopted: what it did on the venue meanwhile (acceptance, fills) is written to the
  ledger first, then the engine takes it over (its order kernel, portfolio and the venue poller follow it;
  its deadline, strategy cancels and amends apply as to the session's own orders);
- an order the ledger holds open but the venue does not is resolved by looking it up: its fills and its end
  (filled, cancelled, expired) are recorded; one the venue never heard of is closed as cancelled;
- an open order on the venue with our prefix that the ledger does not know is cancelled, and recorded in the
  ledger's audit log; orders without our prefix are someone else's and left alone.
Each decision is logged and written to the audit log (actor "reconcile") with its reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

from allele.kernel.domain import FinalizedOrder, OrderUpdate, TimeInForce
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
from .firehose import HEADER, Firehose, recover
from .order_path import OrderPath
from .session import (
    RECORDED_VENUE,
    RECORDING_VERSION,
    SessionError,
    historical_dir,
    ledger_path,
    organism_symbols,
    organisms_to_trade,
    resolve_strategy,
    start_strategy,
)

log = logging.getLogger("allele.live")
T = TypeVar("T")

CLIENT_ID_PREFIX = "al-"


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
    firehose: Firehose | None = None

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
            if self.firehose is not None:
                self.firehose.close()
            await self.engine.ledger.close()


@dataclass
class Reconciled:
    """What `reconcile_with_venue` decided, by client order id."""

    adopted: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)  # cid -> final status
    cancelled_orphans: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # open on the venue, not ours: left alone
    unchecked: list[str] = field(default_factory=list)  # ledger orders on symbols the venue does not list

    @property
    def closed(self) -> list[str]:
        """Ledger orders that reconciliation closed."""
        return list(self.resolved)


async def _on_io(io: IoLoop, coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
    return await asyncio.to_thread(io.run, coro, timeout_s)


async def reconcile_with_venue(ledger: Ledger, exchange: CcxtExchange, io: IoLoop) -> Reconciled:
    """Bring the ledger's open orders and the venue's open orders into agreement (see the module docstring).

    Runs before the engine opens its books, so every fill found is in the ledger (and so in the positions
    the engine starts from) before anything acts on it. Adopted orders are handed to the engine afterwards
    by `adopt_into_engine`. A VenueError (credentials, network) is the caller's: trading must not start
    on a ledger that disagrees with the venue."""
    done = Reconciled()
    listed = set(exchange.symbols())
    stale = await ledger.open_orders()
    done.unchecked = [o.client_order_id for o in stale if o.symbol not in listed]
    mine = [o for o in stale if o.symbol in listed]
    symbols = sorted(set(exchange.settings.symbols) | {o.symbol for o in mine})
    on_venue = await _on_io(io, exchange.venue_open_orders(symbols))
    by_cid = {str(raw.get("clientOrderId") or ""): raw for raw in on_venue}

    async def record(updates: list[OrderUpdate], why: str) -> None:
        for update in updates:
            await ledger.record_order_update(dataclasses.replace(
                update, reason=f"reconcile: {why}" + (f" ({update.reason})" if update.reason else "")))

    for order in mine:
        cid = order.client_order_id
        fills = await ledger.fills(client_order_id=cid)
        exchange.orders.adopt(cid, order.symbol, order.venue_order_id, accepted=order.status != "new",
                              filled=float(order.filled_quantity),
                              cost=float(sum((f.quantity * f.price for f in fills), Decimal(0))),
                              fee=float(sum((f.fee for f in fills), Decimal(0))))
        raw = by_cid.pop(cid, None)
        if raw is not None:
            why = "still open on the venue: adopted"
            await record(exchange.orders.updates(cid, raw, exchange.now_ns()), why)
            done.adopted.append(cid)
        else:
            found = await _on_io(io, exchange.find_order(cid, order.symbol))
            if found is None:
                exchange.orders.close(cid)
                updates = [OrderUpdate(cid, order.venue_order_id, order.symbol, "cancelled",
                                       ts_ns=exchange.now_ns(), reason="")]
                why = "the venue has no order under this client id (it never got there); closed as cancelled"
            else:
                updates = exchange.orders.updates(cid, found, exchange.now_ns())
                why = "no longer open on the venue; its fills and end recorded from the venue's order"
            await record(updates, why)
            final = await ledger.order(cid)
            done.resolved[cid] = final.status if final is not None else "unknown"
        log.warning("reconcile: order %s (%s %s %s): %s", cid, order.side, order.quantity, order.symbol, why)
        await ledger.audit("reconcile", "adopted" if raw is not None else "resolved",
                           {"client_order_id": cid, "reason": why,
                            "status": done.resolved.get(cid, "open")})

    for cid, raw in by_cid.items():
        symbol = exchange.symbols_map.to_allele.get(str(raw.get("symbol")), str(raw.get("symbol")))
        details = {"client_order_id": cid, "venue_order_id": str(raw.get("id")), "symbol": symbol,
                   "side": raw.get("side"), "amount": raw.get("amount"), "price": raw.get("price"),
                   "filled": raw.get("filled")}
        if not cid.startswith(CLIENT_ID_PREFIX):
            done.foreign.append(cid)
            log.info("reconcile: open order %s on %s is not ours (no %r prefix); left alone", cid, symbol,
                     CLIENT_ID_PREFIX)
            continue
        try:
            await _on_io(io, exchange.cancel_venue_order(str(raw.get("id")), symbol))
        except VenueError:
            raise
        except Exception as exc:  # it filled or went away meanwhile: nothing of ours rests there any more
            why = f"ours (client id prefix) but unknown to the ledger; the venue refused to cancel it: {exc}"
            log.warning("reconcile: open order %s on %s: %s", cid, symbol, why)
            await ledger.audit("reconcile", "unknown order not cancelled", {**details, "reason": why})
            continue
        done.cancelled_orphans.append(cid)
        why = "ours (client id prefix) but unknown to the ledger: cancelled on the venue"
        log.warning("reconcile: open order %s on %s: %s (it had filled %s)", cid, symbol, why, raw.get("filled"))
        await ledger.audit("reconcile", "cancelled unknown order", {**details, "reason": why})
    if done.unchecked:
        log.warning("reconcile: %d open ledger order(s) on symbols %s does not list were left as they are: %s",
                    len(done.unchecked), exchange.where, ", ".join(done.unchecked[:20]))
    return done


async def adopt_into_engine(engine: Engine, adopted: list[str]) -> list[str]:
    """Hand orders an earlier session left open (and reconciliation adopted) to `engine`: its order kernel
    holds them as acknowledged with their fills so far, its portfolio counts them, and their updates move it.
    Nothing is sent to the venue. Returns the ids the engine took over (an order whose organism is not in
    this session, or that the order kernel refuses, stays in the ledger and is followed by the venue poller)."""
    taken = []
    for cid in adopted:
        order = await engine.ledger.order(cid)
        if order is None or order.status not in ("accepted", "partially-filled", "new") \
                or order.organism not in engine.organisms:
            continue
        final = FinalizedOrder(cid, order.symbol, "buy" if order.side == "buy" else "sell",
                               "market" if order.order_type == "market" else "limit", float(order.quantity),
                               float(order.limit_price) if order.limit_price is not None else None,
                               cast(TimeInForce, order.time_in_force), order.ts_ns, order.deadline_ns)
        fills = await engine.ledger.fills(client_order_id=cid)
        last_price = float(fills[-1].price) if fills else None
        if not engine.take_over(final, order.organism, order.venue_order_id, float(order.filled_quantity),
                                last_price, order.ts_ns):
            continue
        taken.append(cid)
    return taken


def recorded_venue_header(exchange: CcxtExchange, symbols: tuple[str, ...]) -> dict[str, Any]:
    """The header's venue of a live session: what a replay needs to stand in for it (`session.RecordedVenue`)."""
    return {"kind": RECORDED_VENUE, "name": exchange.name,
            "instruments": [dataclasses.asdict(exchange.instrument(s)) for s in symbols]}


async def open_live_session(home: Path, *, credentials: CredentialSource,
                            settings: ExchangeSettings | None = None, config: EngineConfig | None = None,
                            organisms: tuple[OrganismSpec, ...] | None = None, host: PluginHost | None = None,
                            session: str | None = None, bus: Bus | None = None,
                            max_events: int = 0, idle_timeout_s: float = 60.0) -> LiveSession:
    """A live session configured from `<home>/config.toml` unless given; SessionError says what to change.

    `session` is prefixed with `CLIENT_ID_PREFIX` unless it starts with it (its orders' ids must)."""
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
    session = session or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if not session.startswith(CLIENT_ID_PREFIX):
        session = CLIENT_ID_PREFIX + session

    io = IoLoop()
    exchange = CcxtExchange(xs, credentials)
    try:
        await asyncio.to_thread(io.run, exchange.open(), 120.0)
    except VenueError as exc:
        io.stop()
        raise SessionError(str(exc)) from None

    firehose: Firehose | None = None
    ledger: Ledger | None = None
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
        ledger = await Ledger.open(ledger_path(home), synchronous=cfg.ledger_sync)
        try:
            reconciled = await reconcile_with_venue(ledger, exchange, io)
        except VenueError as exc:
            raise SessionError(f"no trading before the ledger's open orders are reconciled with the venue: {exc}") \
                from None
        venue = CcxtVenue(exchange, io)
        source = LiveSource(exchange, io, xs.symbols, max_events=max_events, idle_timeout_s=idle_timeout_s)
        ttl_ns = int(cfg.order_ttl_s * 1e9)
        header = {"k": HEADER, "version": RECORDING_VERSION, "session": session,
                  "mode": "live" if xs.live else "sandbox", "exchange": xs.describe(), "source": source.describe(),
                  "venue": recorded_venue_header(exchange, xs.symbols), "risk": risk.model_dump(mode="json"),
                  "order_kernel": {"kind": "software", "slots": cfg.order_kernel_slots}, "ttl_ns": ttl_ns,
                  "batch_events": 1, "sensors": [],
                  "organisms": [{**o.spec.model_dump(mode="json"), "allocation": o.allocation,
                                 "plugin_sha256": o.plugin_sha256} for o in orgs]}
        if cfg.record:
            recover(historical_dir(home))
            firehose = Firehose(historical_dir(home), session, max_bytes=cfg.firehose_max_mb * 2**20)
            firehose.append(header)
    except BaseException:
        if firehose is not None:
            firehose.close()
        if ledger is not None:
            await ledger.close()
        await asyncio.to_thread(io.run, exchange.close(), 30.0)
        io.stop()
        raise
    engine = Engine(session=session, venue=venue, organisms=orgs, ledger=ledger, gate=RiskGate(risk),
                    order_path=OrderPath(SoftwareOrderKernel(cfg.order_kernel_slots), instruments),
                    ttl_ns=ttl_ns, firehose=firehose, bus=bus, home=home, batch_events=1)
    await engine.open_books()
    taken = await adopt_into_engine(engine, reconciled.adopted)
    if taken:
        log.warning("took over %d order(s) an earlier session left open on %s: %s", len(taken), exchange.where,
                    ", ".join(taken[:20]))
    source.start()
    return LiveSession(engine, venue, source, io, host, header, reconciled.closed, firehose)
