"""The engine: one asyncio loop from market event to ledger, the same for every mode.

Per market event, in this order (the order is part of the contract: replay depends on it):

1. the venue advances to the event's time (requests in flight arrive, match) and sees the event
   (the simulated venue rests the quote as background liquidity); our order updates are handled
   (below) before anything else;
2. the event marks the portfolio, sets the order kernel's reference price, and lets the order
   kernel expire orders whose deadline passed;
3. the event is appended to the firehose, published on the bus, and handed to every organism that
   trades its symbol; each signal goes through `_act`.

`_act`: the strategy kernel plans (cancels first, then intents); every intent passes the risk gate
(no other way to an order exists: `_send_order` is only reached from an accepted decision), the
decision is written to the ledger, the accepted order is written to the ledger, then becomes a
NEW_ORDER frame for the order kernel, and only a SUBMIT_TO_VENUE frame coming back sends it.

An order update from the venue is written to the ledger first (a fill moves the ledger's
position in the same transaction), then moves the in-memory portfolio, then becomes a frame for
the order kernel. Nothing reaches the venue or the portfolio before the ledger has it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeAlias

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderUpdate, Reading, Signal, VenueEvent
from allele.kernel.ledger import Ledger
from allele.kernel.ledger.ledger import UnknownOrderError
from allele.kernel.orders import frames as f
from allele.kernel.plugin.errors import PluginCallError
from allele.kernel.plugin.host import EncodedBatch, SensorPlugin, StrategyPlugin
from allele.kernel.risk import OrderIntent, RiskDecision, RiskGate, killswitch

from . import strategy_kernel
from .bus import Bus
from .config import OrganismSpec
from .firehose import Firehose, event_record, update_record
from .order_path import OrderPath
from .portfolio import Portfolio
from .ports import Venue

log = logging.getLogger("allele.engine")

_KIND_CODE = {"trade": 0, "quote": 1, "bar": 2}

_TERMINAL = frozenset({"filled", "cancelled", "rejected", "expired"})


@dataclass(slots=True)
class Organism:
    """A running organism: its spec, its strategy instance, what it trades and its capital."""

    spec: OrganismSpec
    strategy: StrategyPlugin
    symbols: frozenset[str]
    allocation: float
    plugin_sha256: str
    signals: int = 0
    active: bool = True
    retired: list[StrategyPlugin] = field(default_factory=list)
    retiring: str = ""  # why it was taken out of trading (see `Retire`); "" while it trades

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def live(self) -> bool:
        """Called per event, not in batches: a reading changes its state between market events, so its
        answers are no longer a function of the market stream alone."""
        return bool(self.spec.sensors)


@dataclass(slots=True)
class SensorFeed:
    """A running sensor: polled every `poll_ns` of event time; its readings go to the organisms that list it."""

    id: str
    sensor: SensorPlugin
    poll_ns: int
    next_poll_ns: int = 0
    readings: int = 0
    active: bool = True


@dataclass(frozen=True, slots=True)
class SensorReading:
    """A reading in the event stream (a replay feeds the recorded ones instead of polling)."""

    sensor_id: str
    reading: Reading


@dataclass(frozen=True, slots=True)
class Control:
    """An operator action in the event stream (a replay re-applies it where it was recorded)."""

    kill_switch: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Swap:
    """A hot swap in the event stream: from here on, `organism` runs the strategy plugin `sha256`, configured
    with `params` (None in recordings made before parameters were recorded: the organism's own)."""

    organism: str
    sha256: str
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Retire:
    """An organism taken out of trading in the event stream (the arena defunded or hibernated it): its working
    orders are cancelled and its positions closed, through the risk gate like any order, and from here on it
    acts on no signal. A replay re-applies it where it was recorded."""

    organism: str
    reason: str


StreamItem: TypeAlias = MarketEvent | Control | SensorReading | Swap | Retire
SwapResolver = Callable[[Organism, str, dict[str, Any] | None], StrategyPlugin]


def reading_record(sensor_id: str, r: Reading) -> dict[str, Any]:
    return {"k": "reading", "sensor_id": sensor_id, "sensor": r.sensor, "name": r.name, "symbol": r.symbol,
            "ts_ns": r.ts_ns, "value": r.value}


def reading_from_record(d: dict[str, Any]) -> SensorReading:
    return SensorReading(str(d["sensor_id"]), Reading(str(d["sensor"]), str(d["name"]), str(d["symbol"]),
                                                       int(d["ts_ns"]), float(d["value"])))


@dataclass(slots=True)
class Counters:
    events: int = 0
    signals: int = 0
    intents: int = 0
    refused: int = 0
    orders: int = 0
    kernel_rejects: int = 0
    fills: int = 0
    plugin_errors: int = 0
    unknown_updates: int = 0
    readings: int = 0

    def to_json(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


def batch_columns(events: list[MarketEvent]) -> dict[str, Any]:
    """The columnar batch of wit/worlds.wit `on-batch` for these events, rows in order, in its compact form.

    A guest parses every number it is given, and the parse is most of a Python guest's batch time, so
    what the contract lets us leave out is left out: `sym` with one symbol, `kind` when every row is a
    bar, a float column that is all 0.0 (bars carry no quotes), and `ts` as {"start", "step"} when the
    rows are evenly spaced (bars usually are).
    """
    symbols: dict[str, int] = {}
    sym = [symbols.setdefault(e.symbol, len(symbols)) for e in events]
    columns: dict[str, Any] = {"symbols": list(symbols)}
    if len(symbols) > 1:
        columns["sym"] = sym
    ts = [e.ts_ns for e in events]
    step = ts[1] - ts[0] if len(ts) > 1 else 0
    evenly_spaced = ts != [] and step >= 0 and all(b - a == step for a, b in pairwise(ts))
    columns["ts"] = {"start": ts[0], "step": step} if evenly_spaced else ts
    columns["price"] = [e.price for e in events]
    kinds = [_KIND_CODE[e.kind] for e in events]
    if any(k != _KIND_CODE["bar"] for k in kinds):
        columns["kind"] = kinds
    for name in ("size", "bid", "ask", "bid_size", "ask_size"):
        values = [getattr(e, name) for e in events]
        if any(values):
            columns[name] = values
    return columns


def _chunks(items: Iterator[StreamItem], size: int) -> Iterator[list[StreamItem]]:
    """Chunks of `size` market events; controls ride along without counting, so a recording with
    operator actions in it is chunked exactly as the live session that recorded it."""
    chunk: list[StreamItem] = []
    count = 0
    for item in items:
        chunk.append(item)
        if isinstance(item, MarketEvent):
            count += 1
            if count >= size:
                yield chunk
                chunk, count = [], 0
    if chunk:
        yield chunk


class Engine:
    """Source events in, orders out through gate, kernel and venue; everything into the ledger."""

    def __init__(self, *, session: str, venue: Venue, organisms: Iterable[Organism], ledger: Ledger,
                 gate: RiskGate, order_path: OrderPath, ttl_ns: int, firehose: Firehose | None = None,
                 bus: Bus | None = None, home: Path | None = None, batch_events: int = 256,
                 sensors: Iterable[SensorFeed] = (), equity_interval_ns: int | None = 60_000_000_000) -> None:
        self.session = session
        self.venue = venue
        self.organisms = {o.id: o for o in organisms}
        self.ledger = ledger
        self.gate = gate
        self.orders = order_path
        self.ttl_ns = ttl_ns
        self.firehose = firehose
        self.bus = bus or Bus()
        self.home = home
        self.batch_events = max(batch_events, 1)
        self.sensors = list(sensors)
        self._queued_swaps: list[tuple[str, StrategyPlugin]] = []
        self._queued_retires: list[Retire] = []
        self.resolve_swap: SwapResolver | None = None  # a replay's way to get the recorded plugin
        self.portfolio = Portfolio()
        self.counters = Counters()
        self.now_ns = 0
        self.kill_switch = False
        self.kill_reason = ""
        self._organism_of: dict[str, str] = {}
        self._venue_acked: set[str] = set()
        self._seq = 0
        self._next_deadline: int | None = None
        self._kill_checked = 0.0
        self._checkpointed = time.monotonic()
        self.started_wall = time.time()
        # Equity is sampled in event time and written between chunks: the arena's live fitness and the
        # operator's P&L history read it back from the ledger. None: no samples (backtests, the arena's
        # evaluations: they compute their own return streams).
        self.equity_interval_ns = equity_interval_ns
        self._equity_due_ns = 0 if equity_interval_ns else 2**63
        self._equity_samples: list[tuple[int, dict[str, float]]] = []

    # --- set-up ----------------------------------------------------------------------------

    @property
    def allocations(self) -> dict[str, float]:
        return {o.id: o.allocation for o in self.organisms.values()}

    async def open_books(self) -> None:
        """Load cash and positions from the ledger; fund organisms the ledger has never seen."""
        cash = await self.ledger.cash()
        positions = await self.ledger.positions()
        funded = {organism for organism, _ in cash}
        for (organism, _currency), amount in cash.items():
            if organism in self.organisms:
                self.portfolio.cash[organism] = self.portfolio.cash.get(organism, 0.0) + float(amount)
        for p in positions:
            if p.organism in self.organisms and p.quantity:
                self.portfolio.positions.setdefault(p.organism, {})[p.symbol] = float(p.quantity)
        for feed in self.sensors:
            plugin = feed.sensor.loaded
            await self.ledger.record_plugin(plugin.sha256, plugin.name, plugin.kind, plugin.manifest.version,
                                            plugin.source)
        for org in self.organisms.values():
            plugin = org.strategy.loaded
            await self.ledger.record_plugin(plugin.sha256, plugin.name, plugin.kind, plugin.manifest.version,
                                            plugin.source)
            await self.ledger.record_organism(org.id, {**org.spec.model_dump(mode="json"),
                                                       "plugin_sha256": org.plugin_sha256}, "paper")
            if org.id not in funded:
                await self.ledger.deposit(org.id, "USD", org.allocation)
                self.portfolio.deposit(org.id, org.allocation)
            self.portfolio.positions.setdefault(org.id, {})
        self.portfolio.mark_high_water()
        self.orders.configure(self.gate.config, len(self.organisms))

    async def reconcile(self) -> list[str]:
        """Orders the ledger holds open from an earlier run. The simulated venue does not survive a
        restart, so its orders are closed as cancelled (and said so); returns their ids. (A live session
        reconciles with its venue instead: `live.reconcile_with_venue`.)"""
        stale = await self.ledger.open_orders()
        closed = []
        for order in stale:
            await self.ledger.record_order_update(OrderUpdate(
                order.client_order_id, "", order.symbol, "cancelled", ts_ns=self.now_ns,
                reason="engine restarted: the simulated venue's book did not survive; order closed unfilled"))
            closed.append(order.client_order_id)
        if closed:
            log.warning("closed %d order(s) left open by the previous run: %s", len(closed), ", ".join(closed))
            await self.ledger.audit("engine", "reconcile", {"closed": closed})
        return closed

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, events: Iterator[StreamItem] | AsyncIterator[StreamItem], *, speed: float = 0.0,
                  stop: asyncio.Event | None = None, on_progress: Callable[[int], None] | None = None,
                  drain: bool = True) -> None:
        """Feed `events` through the pipeline until they end or `stop` is set.

        speed: event-time seconds per wall second (0 = as fast as possible). Pacing never changes
        results: everything runs on event time. Strategies are asked in chunks of `batch_events`
        (see `strategy_signals`), which changes when they are called, never what is done.
        `events` may be an async iterator (a live venue's stream, `allele.kernel.engine.live`): waiting
        for the network then leaves the loop free for the API, signals and `stop`."""
        first_ts: int | None = None
        wall0 = time.monotonic()
        n = 0

        async def chunks() -> AsyncIterator[list[StreamItem]]:
            if not isinstance(events, AsyncIterator):
                for sync_chunk in _chunks(events, self.batch_events):
                    yield sync_chunk
                return
            pending: list[StreamItem] = []
            count = 0
            async for item in events:
                pending.append(item)
                if isinstance(item, MarketEvent):
                    count += 1
                    if count >= self.batch_events:
                        yield pending
                        pending, count = [], 0
            if pending:
                yield pending

        async for chunk in chunks():
            # Swaps happen here only, between chunks and before the strategies are asked: queued ones (a
            # deploy) now, recorded ones (a replay) where they were recorded, which is the same place.
            await self._apply_queued()
            while chunk and isinstance(chunk[0], Swap | Retire):
                await self._apply_recorded(chunk.pop(0))  # type: ignore[arg-type]
            market = [e for e in chunk if isinstance(e, MarketEvent)]
            signals = await self.strategy_signals(market)
            row = 0
            for item in chunk:
                if stop is not None and stop.is_set():
                    break
                if isinstance(item, Control):
                    await self.set_kill_switch(item.kill_switch, item.reason, self.now_ns)
                    continue
                if isinstance(item, SensorReading):
                    await self.on_reading(item.sensor_id, item.reading)
                    continue
                if isinstance(item, Swap | Retire):  # not recorded mid-chunk by this engine; honoured all the same
                    await self._apply_recorded(item)
                    continue
                if speed > 0:
                    first_ts = item.ts_ns if first_ts is None else first_ts
                    delay = wall0 + (item.ts_ns - first_ts) / 1e9 / speed - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self.on_event(item, signals.get(row, ()))
                row += 1
                n += 1
                if on_progress is not None:
                    on_progress(n)
            if stop is not None and stop.is_set():
                break
            if self._equity_samples:
                await self._write_equity()
            if time.monotonic() - self._checkpointed > 1.0:
                self._checkpointed = time.monotonic()
                await self.ledger.checkpoint()  # between chunks: never inside an order's path
            await asyncio.sleep(0)  # let the API, the status writer and signal handlers in
        if drain:
            await self.finish()
        elif self.firehose is not None:
            self.firehose.flush()

    async def finish(self) -> None:
        """End of a finite run: the venue processes what is still in flight; the firehose is flushed."""
        await self._venue_updates(self.venue.drain())
        if self.equity_interval_ns:
            self._snapshot(self.now_ns)
            await self._write_equity()
        if self.firehose is not None:
            self.firehose.flush()

    def queue_swap(self, organism: str, instance: StrategyPlugin) -> None:
        """Hand over a new, configured strategy instance for `organism`; it takes over at the next chunk."""
        self._queued_swaps.append((organism, instance))

    def queue_retire(self, organism: str, reason: str) -> None:
        """Take `organism` out of trading at the next chunk (see `Retire`); `reason` goes to the ledger."""
        self._queued_retires.append(Retire(organism, reason))

    async def _apply_queued(self) -> None:
        """The swaps and retirements queued since the last chunk (a deploy, the arena), in that order."""
        queued, self._queued_swaps = self._queued_swaps, []
        for organism, instance in queued:
            await self._swap(organism, instance)
        retires, self._queued_retires = self._queued_retires, []
        for retire in retires:
            await self._retire(retire)
        for org in self.organisms.values():
            if org.retiring:  # a close the gate refused (its rate limit, say) is asked again, chunk by chunk
                await self._wind_down(org, include_working=False)

    async def _retire(self, retire: Retire) -> None:
        org = self.organisms.get(retire.organism)
        if org is None or org.retiring:
            return
        if self.firehose is not None:
            self.firehose.append({"k": "control", "retire": org.id, "reason": retire.reason, "ts": self.now_ns})
        await self.ledger.audit("engine", "retire", {"organism": org.id, "reason": retire.reason})
        log.warning("organism %s stops trading: %s; its orders are cancelled and its positions closed",
                    org.id, retire.reason)
        org.retiring, org.active = retire.reason, False
        await self._wind_down(org, include_working=True)
        self.bus.publish("organism", {"id": org.id, "status": "retired", "reason": retire.reason})

    async def _wind_down(self, org: Organism, *, include_working: bool) -> None:
        """Ask to close what a retired organism holds: a flat exposure, the strategy kernel's own way to cancel
        what works and close what is held, through the gate. `include_working`: also on symbols where an order
        still works (the first time); later only where nothing works, so a close in flight is left alone."""
        held = {s for s, q in self.portfolio.positions.get(org.id, {}).items() if q}
        working = {o.symbol for o in self.portfolio.open_orders.values() if o.organism == org.id}
        for symbol in sorted(held | working if include_working else held - working):
            await self._act(org, Signal(symbol, "exposure", 0.0, note=f"retired: {org.retiring}"), self.now_ns)

    async def _apply_recorded(self, item: Swap | Retire) -> None:
        """A swap or a retirement read from a recording, applied where it was recorded."""
        if isinstance(item, Retire):
            await self._retire(item)
            return
        swap = item
        org = self.organisms.get(swap.organism)
        if org is None or self.resolve_swap is None:
            log.error("recorded swap of %s to %s cannot be applied here", swap.organism, swap.sha256[:12])
            return
        await self._swap(swap.organism, self.resolve_swap(org, swap.sha256, swap.params))

    async def _swap(self, organism: str, instance: StrategyPlugin) -> None:
        org = self.organisms[organism]
        old = org.strategy
        org.retired.append(old)
        org.strategy, org.plugin_sha256 = instance, instance.loaded.sha256
        org.active = not org.retiring  # a new instance revives a quarantined organism, never a retired one
        params = dict(instance.params)
        org.spec = org.spec.model_copy(update={"params": params})  # a later deploy swaps in with these
        if self.firehose is not None:  # with the parameters: a replay configures the same instance
            self.firehose.append({"k": "control", "swap": organism, "sha256": instance.loaded.sha256,
                                  "params": params, "ts": self.now_ns})
        await self.ledger.audit("engine", "hot swap", {"organism": organism, "plugin": instance.loaded.source,
                                                       "sha256": instance.loaded.sha256,
                                                       "previous": old.loaded.sha256, "params": params})
        self.bus.publish("organism", {"id": organism, "status": "swapped", "sha256": instance.loaded.sha256})
        log.warning("organism %s now runs %s %s (%s)", organism, instance.name, instance.loaded.manifest.version,
                    instance.loaded.sha256[:12])

    async def strategy_signals(self, events: list[MarketEvent]) -> dict[int, list[tuple[Organism, Signal]]]:
        """Every organism's signals for `events`, keyed by the event's index, organisms in order.

        A strategy sees market events only (never fills or positions), so its signals are a pure
        function of the event stream: asking it about the next events before the engine acts on
        them changes nothing but cost. One batch call per organism per chunk instead of one call per
        event is what makes a Python strategy affordable (a component call costs ~0.3 ms). A plugin
        error costs that organism the chunk's signals; a quarantine retires the organism."""
        out: dict[int, list[tuple[Organism, Signal]]] = {}
        active = [o for o in self.organisms.values() if o.active and not o.live]
        if not events or not active:
            return out
        if self.batch_events == 1:
            calls = [self._call_on_event(o, events[0]) for o in active]
        else:
            encoded: dict[frozenset[str], tuple[list[int], EncodedBatch]] = {}  # organisms on the same symbols
            calls = [self._call_on_batch(o, events, encoded) for o in active]
        results = await asyncio.gather(*calls)
        for org, rows in zip(active, results, strict=True):
            for row, sig in rows:
                out.setdefault(row, []).append((org, sig))
        # gather returns per organism; restore the organism order within each event
        order = {o.id: i for i, o in enumerate(active)}
        for row in out:
            out[row].sort(key=lambda pair: order[pair[0].id])
        return out

    async def _call_on_event(self, org: Organism, event: MarketEvent) -> list[tuple[int, Signal]]:
        if event.symbol not in org.symbols:
            return []
        try:
            return [(0, sig) for sig in org.strategy.on_event(event)]
        except PluginCallError as exc:
            self._plugin_failed(org, exc, f"{event.kind} {event.symbol}")
            return []

    async def _call_on_batch(self, org: Organism, events: list[MarketEvent],
                             encoded: dict[frozenset[str], tuple[list[int], EncodedBatch]]) -> list[tuple[int, Signal]]:
        if org.symbols not in encoded:
            picked = [i for i, e in enumerate(events) if e.symbol in org.symbols]
            encoded[org.symbols] = (picked, EncodedBatch.of(batch_columns([events[i] for i in picked])) if picked
                                    else EncodedBatch("", (), 0, 0))
        rows, columns = encoded[org.symbols]
        if not rows:
            return []
        try:
            batch = await asyncio.to_thread(org.strategy.on_batch, columns)
        except PluginCallError as exc:
            self._plugin_failed(org, exc, f"a batch of {len(rows)} events")
            return []
        return [(rows[b.row], b.signal) for b in batch]

    def _plugin_failed(self, org: Organism, exc: PluginCallError, what: str) -> None:
        self.counters.plugin_errors += 1
        log.error("organism %s: strategy %s failed on %s: %s", org.id, org.strategy.name, what, exc)
        if org.strategy.quarantine_reason is not None:
            org.active = False
            self.bus.publish("organism", {"id": org.id, "status": "quarantined", "reason": str(exc)})

    async def on_event(self, event: MarketEvent, signals: Iterable[tuple[Organism, Signal]] = ()) -> None:
        """One market event through the pipeline; `signals` are the organisms' answers to it."""
        # First: an operator's switch is recorded before this event, so a replay applies it at the same place.
        await self._check_kill_switch(event.ts_ns)
        self.counters.events += 1
        self.now_ns = max(self.now_ns, event.ts_ns)
        await self._venue_updates(self.venue.advance(event.ts_ns, event))
        self.portfolio.mark(event.symbol, event.price)
        self.orders.reference_price(event.symbol, event.price)
        if self._next_deadline is not None and event.ts_ns >= self._next_deadline:
            await self._kernel_out(self.orders.tick(event.ts_ns), event.ts_ns)
            self._next_deadline = self._earliest_deadline()
        if self.firehose is not None:
            self.firehose.append(event_record(event))
        self.bus.publish("tick", {"symbol": event.symbol, "kind": event.kind, "ts_ns": event.ts_ns,
                                  "price": event.price, "bid": event.bid, "ask": event.ask})
        for org, sig in signals:
            if org.active:
                await self._act(org, sig, event.ts_ns)
        for org in list(self.organisms.values()):
            if org.live and org.active:
                for _row, sig in await self._call_on_event(org, event):
                    await self._act(org, sig, event.ts_ns)
        if event.ts_ns >= self._equity_due_ns:
            self._snapshot(event.ts_ns)
        for feed in self.sensors:
            if feed.active and event.ts_ns >= feed.next_poll_ns:
                await self._poll(feed, event.ts_ns)

    async def _poll(self, feed: SensorFeed, ts_ns: int) -> None:
        feed.next_poll_ns = ts_ns + feed.poll_ns
        try:
            readings = await feed.sensor.poll_async()
        except PluginCallError as exc:
            self.counters.plugin_errors += 1
            log.error("sensor %s (%s) failed to poll: %s", feed.id, feed.sensor.name, exc)
            if feed.sensor.quarantine_reason is not None:
                feed.active = False
            return
        for reading in readings:
            await self.on_reading(feed.id, reading)

    async def on_reading(self, sensor_id: str, reading: Reading) -> None:
        """A sensor's reading: recorded, published, and handed to every organism that lists the sensor."""
        self.counters.readings += 1
        if self.firehose is not None:
            self.firehose.append(reading_record(sensor_id, reading))
        self.bus.publish("tick", {"sensor": sensor_id, "name": reading.name, "symbol": reading.symbol,
                                  "ts_ns": reading.ts_ns, "value": reading.value})
        for org in list(self.organisms.values()):
            if not org.active or sensor_id not in org.spec.sensors:
                continue
            try:
                signals = org.strategy.on_event(reading)
            except PluginCallError as exc:
                self._plugin_failed(org, exc, f"reading {reading.sensor}/{reading.name}")
                continue
            for sig in signals:
                await self._act(org, sig, self.now_ns)

    def _snapshot(self, ts_ns: int) -> None:
        self.portfolio.mark_high_water()
        sample = {o: self.portfolio.equity(o) for o in self.organisms}
        sample["*"] = self.portfolio.total_equity()
        self._equity_samples.append((ts_ns, sample))
        interval = self.equity_interval_ns
        self._equity_due_ns = ts_ns - ts_ns % interval + interval if interval else 2**63

    async def _write_equity(self) -> None:
        samples, self._equity_samples = self._equity_samples, []
        for ts_ns, sample in samples:
            await self.ledger.record_equity(self.session, ts_ns, sample)

    # --- signals to orders ---------------------------------------------------------------------

    async def _act(self, org: Organism, sig: Signal, ts_ns: int) -> None:
        self.counters.signals += 1
        org.signals += 1
        self.bus.publish("signal", {"organism": org.id, "symbol": sig.symbol, "sizing": sig.sizing,
                                    "amount": sig.amount, "limit_price": sig.limit_price, "note": sig.note,
                                    "ts_ns": ts_ns})
        if sig.symbol not in org.symbols:
            await self._refuse(org.id, sig.symbol, ts_ns, "invalid_signal",
                               f"{org.id} signalled {sig.symbol}, which it does not trade")
            return
        try:
            instrument = self.venue.instrument(sig.symbol)
        except KeyError:
            await self._refuse(org.id, sig.symbol, ts_ns, "invalid_signal", f"venue does not list {sig.symbol}")
            return
        reference = self.portfolio.last_price.get(sig.symbol) or sig.limit_price
        if not reference:
            await self._refuse(org.id, sig.symbol, ts_ns, "invalid_signal", f"no price yet for {sig.symbol}")
            return
        capital = max(min(self.portfolio.equity(org.id), org.allocation), 0.0) / max(len(org.symbols), 1)
        try:
            plan = strategy_kernel.plan(org.id, sig, ts_ns, self.portfolio, instrument, capital, reference)
        except ValueError as exc:  # OrderIntent refuses non-positive or non-finite numbers
            await self._refuse(org.id, sig.symbol, ts_ns, "invalid_signal", f"signal cannot be sized: {exc}")
            return
        for cid in plan.cancels:
            await self.cancel(cid, ts_ns)
        for intent in plan.intents:
            self.counters.intents += 1
            state = self.portfolio.risk_state(self.allocations, kill_switch=self.kill_switch,
                                              kill_reason=self.kill_reason, now_ns=ts_ns, excluding=plan.amend_of)
            decision = self.gate.decide(intent, state)
            if not decision.accepted:
                self.counters.refused += 1
                await self._refuse(org.id, intent.symbol, ts_ns, decision.rule, decision.reason)
                continue
            if plan.amend_of is not None:
                await self._amend(plan.amend_of, intent, decision, ts_ns)
            else:
                await self._send_order(org, intent, decision, instrument)

    async def _refuse(self, organism: str, symbol: str, ts_ns: int, rule: str, reason: str) -> None:
        await self.ledger.record_risk_decision(organism, symbol, False, rule, reason, ts_ns)
        self.bus.publish("risk", {"organism": organism, "symbol": symbol, "accepted": False, "rule": rule,
                                  "reason": reason, "ts_ns": ts_ns})

    def _next_client_order_id(self) -> str:
        self._seq += 1
        return f"{self.session}-{self._seq}"

    async def _send_order(self, org: Organism, intent: OrderIntent, decision: RiskDecision,
                          instrument: Any) -> None:
        cid = self._next_client_order_id()
        order = strategy_kernel.finalize(intent, decision, cid, instrument, self.ttl_ns)
        if order is None:
            await self._refuse(org.id, intent.symbol, intent.ts_ns, decision.rule,
                               f"{decision.reason}; but under one lot after rounding, nothing sent")
            return
        await self.ledger.record_risk_decision(org.id, intent.symbol, True, decision.rule, decision.reason,
                                               intent.ts_ns, cid)
        await self.ledger.record_order(order, org.id, instrument.quote_currency)
        self._organism_of[cid] = org.id
        self.portfolio.order_sent(strategy_kernel.open_order(order, org.id), intent.ts_ns)
        self.counters.orders += 1
        self.bus.publish("order", {"organism": org.id, "client_order_id": cid, "symbol": order.symbol,
                                   "side": order.side, "type": order.order_type, "quantity": order.quantity,
                                   "limit_price": order.limit_price, "ts_ns": order.ts_ns, "status": "new"})
        await self._kernel_out(self.orders.new_order(order), intent.ts_ns, order)
        if order.deadline_ns and (self._next_deadline is None or order.deadline_ns < self._next_deadline):
            self._next_deadline = order.deadline_ns

    def take_over(self, order: FinalizedOrder, organism: str, venue_order_id: str, filled: float,
                  last_fill_price: float | None, sent_ns: int) -> bool:
        """Hold `order`, which an earlier session left working on the venue (already in the ledger), as one of
        this engine's: the order kernel holds it as acknowledged with its fills so far, the portfolio counts it,
        and its updates move both. Nothing is sent to the venue. False if the order kernel refuses it."""
        cid = order.client_order_id
        if order.limit_price is not None and self.now_ns == 0:
            # No market event yet: band-check the order against its own price (it rests on the venue already);
            # the first event sets the real reference.
            self.orders.reference_price(order.symbol, order.limit_price)
        out = self.orders.new_order(order)  # its SUBMIT_TO_VENUE is dropped: the order is on the venue already
        if not self.orders.is_open(cid):
            log.warning("order %s: the order kernel refused to take it over (%s); the venue poller still follows it",
                        cid, "; ".join(str(m) for m in out))
            return False
        self.orders.venue_update(OrderUpdate(cid, venue_order_id, order.symbol, "accepted"))
        if filled > 0 and last_fill_price is not None:
            self.orders.venue_update(OrderUpdate(cid, venue_order_id, order.symbol, "partially-filled", filled,
                                                 last_fill_price))
        working = strategy_kernel.open_order(order, organism)
        self.portfolio.order_sent(dataclasses.replace(working, filled=filled), sent_ns)
        self._organism_of[cid] = organism
        self._venue_acked.add(cid)
        return True

    async def _amend(self, cid: str, intent: OrderIntent, decision: RiskDecision, ts_ns: int) -> None:
        working = self.portfolio.open_orders.get(cid)
        if working is None:
            return
        instrument = self.venue.instrument(working.symbol)
        order = strategy_kernel.finalize(intent, decision, cid, instrument, self.ttl_ns)
        if order is None:
            await self.cancel(cid, ts_ns)
            return
        total = instrument.quantity(round((working.filled + order.quantity) / instrument.lot_size))
        await self.ledger.audit("engine", "amend", {"client_order_id": cid, "quantity": total,
                                                    "limit_price": order.limit_price, "ts_ns": ts_ns,
                                                    "rule": decision.rule})
        self.portfolio.order_amended(cid, total, order.limit_price, ts_ns)
        await self._kernel_out(self.orders.amend(cid, working.symbol, ts_ns, total, order.limit_price), ts_ns)

    async def cancel(self, client_order_id: str, ts_ns: int) -> None:
        """Ask the order kernel to cancel; it sends CANCEL_TO_VENUE if it still holds the order."""
        if self.orders.is_open(client_order_id):
            await self._kernel_out(self.orders.cancel(client_order_id, ts_ns), ts_ns)

    # --- order kernel output -------------------------------------------------------------------

    async def _kernel_out(self, out: list[f.OutboundMessage], ts_ns: int, order: FinalizedOrder | None = None) -> None:
        for msg in out:
            match msg:
                case f.SubmitToVenue():
                    if order is not None:
                        self.venue.submit(order, ts_ns)
                case f.AmendToVenue():
                    cid = self.orders.client_order_id(msg.client_order_id)
                    working = self.portfolio.open_orders.get(cid)
                    if working is not None:
                        self.venue.amend(cid, ts_ns, quantity=working.remaining, limit_price=working.limit_price)
                case f.CancelToVenue():
                    self.venue.cancel(self.orders.client_order_id(msg.client_order_id), ts_ns)
                case f.Rejected():
                    self.counters.kernel_rejects += 1
                    cid = self.orders.client_order_id(msg.client_order_id)
                    reason = f"order kernel refused {msg.request.name}: {msg.reason.name}"
                    log.warning("order %s: %s", cid, reason)
                    if msg.request == f.MsgType.NEW_ORDER:
                        await self._record_update(OrderUpdate(cid, "", order.symbol if order else "", "rejected",
                                                              ts_ns=ts_ns, reason=reason))
                case f.Expired():
                    cid = self.orders.client_order_id(msg.client_order_id)
                    await self._record_update(OrderUpdate(cid, "", self.orders.symbol(msg.symbol), "expired",
                                                          ts_ns=msg.ts_ns, reason="deadline passed (order kernel)"))
                case _:
                    pass

    def _earliest_deadline(self) -> int | None:
        """When the next TICK is due: the earliest deadline of an order the kernel still holds. Sending
        TICK only then (not on every event) keeps the kernel off the hot path of quiet books."""
        deadlines = [o.deadline_ns for o in self.portfolio.open_orders.values()
                     if o.deadline_ns and self.orders.is_open(o.client_order_id)]
        return min(deadlines, default=None)

    # --- venue output ---------------------------------------------------------------------

    async def _venue_updates(self, events: list[VenueEvent]) -> None:
        for event in events:
            if isinstance(event, OrderUpdate):
                await self._on_update(event)

    async def _on_update(self, update: OrderUpdate) -> None:
        if self.firehose is not None:
            self.firehose.append(update_record(update))
        cid = update.client_order_id
        if update.status == "rejected" and cid in self._venue_acked:
            # The venue refused a cancel or an amend of a live order: the order itself stands.
            await self.ledger.audit("venue", "request refused", {"client_order_id": cid, "reason": update.reason})
            return
        if update.status == "accepted":
            self._venue_acked.add(cid)
        await self._record_update(update)
        await self._kernel_out(self.orders.venue_update(update), self.now_ns)

    async def _record_update(self, update: OrderUpdate) -> None:
        cid = update.client_order_id
        organism = self._organism_of.get(cid)
        try:
            recorded = await self.ledger.record_order_update(update)
        except UnknownOrderError:
            self.counters.unknown_updates += 1
            log.warning("venue reported on order %s, which this engine never sent; ignored", cid)
            return
        if organism is None:
            return
        fill = recorded.fill
        if fill is not None:
            self.counters.fills += 1
            self.portfolio.fill(organism, cid, update.symbol, fill.side, float(fill.quantity), float(fill.price),
                                float(fill.fee))
            self.bus.publish("fill", {"organism": organism, "client_order_id": cid, "symbol": update.symbol,
                                      "side": fill.side, "quantity": float(fill.quantity),
                                      "price": float(fill.price), "fee": float(fill.fee), "ts_ns": update.ts_ns})
        if update.status in _TERMINAL:
            self.portfolio.order_closed(cid)
        self.bus.publish("order", {"organism": organism, "client_order_id": cid, "symbol": update.symbol,
                                   "status": update.status, "reason": update.reason, "ts_ns": update.ts_ns})

    # --- kill switch -------------------------------------------------------------------------

    async def _check_kill_switch(self, ts_ns: int) -> None:
        if self.home is None:
            return
        now = time.monotonic()
        if now - self._kill_checked < 0.2:
            return
        self._kill_checked = now
        reason = killswitch.reason(self.home)
        engaged = reason is not None
        if engaged != self.kill_switch:
            await self.set_kill_switch(engaged, reason or "", ts_ns)

    async def set_kill_switch(self, engaged: bool, reason: str, ts_ns: int) -> None:
        """Engage: the kernel cancels every open order, the gate refuses new ones. Recorded in the firehose."""
        self.kill_switch, self.kill_reason = engaged, reason
        if self.firehose is not None:
            self.firehose.append({"k": "control", "kill_switch": engaged, "reason": reason, "ts": ts_ns})
        await self.ledger.audit("engine", "kill switch " + ("engaged" if engaged else "cleared"), {"reason": reason})
        log.warning("kill switch %s%s", "ENGAGED" if engaged else "cleared", f": {reason}" if reason else "")
        self.bus.publish("risk", {"kill_switch": engaged, "reason": reason, "ts_ns": ts_ns})
        await self._kernel_out(self.orders.kill_switch(engaged), ts_ns)

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        p = self.portfolio
        return {
            "session": self.session,
            "event_time_ns": self.now_ns,
            "uptime_s": round(time.time() - self.started_wall, 1),
            "counters": self.counters.to_json(),
            "kill_switch": {"engaged": self.kill_switch, "reason": self.kill_reason},
            "equity": p.total_equity(),
            "high_water": p.high_water,
            "organisms": [{
                "id": o.id, "strategy": o.strategy.name, "plugin_sha256": o.plugin_sha256,
                "active": o.active, "quarantined": o.strategy.quarantine_reason is not None, "allocation": o.allocation,
                "equity": p.equity(o.id), "cash": p.cash.get(o.id, 0.0), "fees": p.fees.get(o.id, 0.0),
                "positions": {s: q for s, q in p.positions.get(o.id, {}).items() if q},
                "open_orders": len([x for x in p.open_orders.values() if x.organism == o.id]),
                "signals": o.signals,
            } for o in self.organisms.values()],
        }
