"""The live path behind the engine's synchronous ports: `CcxtVenue` (Venue) and `LiveSource` (EventSource).

The engine is event-time driven and calls its ports synchronously; a real venue is asynchronous network
I/O. The two meet through `IoLoop`, an asyncio loop in a daemon thread where everything network runs:

    io = IoLoop()
    exchange = CcxtExchange(settings, credentials)
    io.run(exchange.open())
    venue = CcxtVenue(exchange, io)          # submit/cancel enqueue; advance returns what came back since
    source = LiveSource(exchange, io, ["BTC-USDT"])
    ... Engine(venue=venue, ...).run(source.events(stop=...))
    source.close(); venue.close(); io.stop()

`CcxtVenue.submit`/`cancel` schedule the request on the I/O loop and return at once; the request runs
with credentials attached for that call only (`CcxtExchange.execute`). Its `OrderUpdate`s, and those a
poller finds for resting orders every `poll_s`, wait in a thread-safe outbox that `advance` empties, so
the engine handles them in its own order, between market events. `amend` goes through ccxt's `edit_order`
(`CcxtExchange.amend`: on Binance spot a cancel-replace) and is answered as the simulated venue answers
one: "accepted" with reason "amended: priority lost", then any fills; "rejected" if the venue refused it
(the order stands). A request that fails as a whole
(bad credentials, unknown account) is answered with a "rejected" update carrying the `VenueError`'s
message, and the error is kept in `errors` for the session to report.

`LiveSource.events` (and `aevents`, its asyncio form, which the engine prefers) yields the watchers'
market events in arrival order with non-decreasing `ts_ns` (a venue timestamp older than the last one is
raised to it), until `stop()` returns true, `max_events` have been yielded, or nothing arrived for
`idle_timeout_s`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderUpdate, VenueEvent
from allele.kernel.venue.book import Instrument

from .ccxt_adapter import CcxtExchange, VenueError

log = logging.getLogger("allele.exchange")
T = TypeVar("T")


class IoLoop:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self, name: str = "allele-venue-io") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = 60.0) -> T:
        """Run `coro` on the I/O loop and wait for its result (from any thread but the I/O thread)."""
        return self.spawn(coro).result(timeout_s)

    def call(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if not self.loop.is_running():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout_s=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


class CcxtVenue:
    """The `Venue` port over a `CcxtExchange`; see the module docstring."""

    def __init__(self, exchange: CcxtExchange, io: IoLoop, *, poll_s: float | None = None,
                 drain_timeout_s: float = 30.0) -> None:
        self.exchange = exchange
        self.io = io
        self.name = exchange.name
        self.poll_s = poll_s if poll_s is not None else exchange.settings.poll_s
        self.drain_timeout_s = drain_timeout_s
        self.errors: list[VenueError] = []
        self._outbox: deque[OrderUpdate] = deque()
        self._inflight: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._poller = io.spawn(self._poll_forever())
        # Our orders' updates as the venue pushes them (its user data stream, where it has one); the poller
        # above is then the safety net (the adapter slows it down while the stream is up).
        self._stream_stop = asyncio.Event()
        self._streamer = io.spawn(exchange.stream_orders(self._outbox.append, self._stream_stop))

    # --- markets -------------------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument:
        return self.exchange.instrument(symbol)

    def symbols(self) -> tuple[str, ...]:
        return self.exchange.symbols()

    # --- requests ------------------------------------------------------------------------------

    def _send(self, client_order_id: str, symbol: str, coro: Coroutine[Any, Any, list[OrderUpdate]]) -> None:
        async def run() -> None:
            try:
                updates = await coro
            except VenueError as exc:
                self.errors.append(exc)
                log.error("%s", exc)
                updates = [OrderUpdate(client_order_id, "", symbol, "rejected", ts_ns=self.exchange.now_ns(),
                                       reason=str(exc))]
            except Exception as exc:  # anything else is this request's failure, not the session's
                log.exception("%s: request for order %s failed", self.exchange.where, client_order_id)
                updates = [OrderUpdate(client_order_id, "", symbol, "rejected", ts_ns=self.exchange.now_ns(),
                                       reason=f"{self.exchange.where}: request failed: {type(exc).__name__}: {exc}")]
            self._outbox.extend(updates)

        future = self.io.spawn(run())
        with self._lock:
            self._inflight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._inflight.discard(future)

    def submit(self, order: FinalizedOrder, sent_ns: int) -> None:
        self._send(order.client_order_id, order.symbol, self.exchange.execute(order))

    def amend(self, client_order_id: str, sent_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> None:
        self._send(client_order_id, self.exchange.orders.symbol(client_order_id) or "",
                   self.exchange.amend(client_order_id, quantity=quantity, price=limit_price))

    def cancel(self, client_order_id: str, sent_ns: int) -> None:
        self._send(client_order_id, "", self.exchange.cancel(client_order_id))

    # --- results -------------------------------------------------------------------------------

    def _take(self) -> list[VenueEvent]:
        out: list[VenueEvent] = []
        while self._outbox:
            out.append(self._outbox.popleft())
        return out

    def advance(self, ts_ns: int, event: MarketEvent | None = None) -> list[VenueEvent]:
        """What came back since the last call; a live venue's market is the source's business, not ours."""
        return self._take()

    def pending(self) -> int:
        with self._lock:
            return len(self._inflight)

    def drain(self) -> list[VenueEvent]:
        """Wait (up to `drain_timeout_s`) for the requests in flight, poll resting orders once, return it all."""
        deadline = time.monotonic() + self.drain_timeout_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            self._outbox.extend(self.io.run(self._poll_once(), timeout_s=self.drain_timeout_s))
        except Exception as exc:  # a failed last poll leaves the orders open in the ledger, to reconcile later
            log.warning("%s: could not poll resting orders at the end: %s", self.exchange.where, exc)
        return self._take()

    async def _poll_once(self) -> list[OrderUpdate]:
        try:
            return await self.exchange.poll_orders()
        except VenueError as exc:
            self.errors.append(exc)
            log.error("%s", exc)
            return []

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                self._outbox.extend(await self._poll_once())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poller keeps going; the next round may succeed
                log.warning("%s: polling open orders failed: %s", self.exchange.where, str(exc)[:300])

    def close(self) -> None:
        self._poller.cancel()
        self.io.call(self._stream_stop.set)


@dataclasses.dataclass
class _Stream:
    """The one routine behind `LiveSource.events` and `aevents` (they differ only in how they wait): the stream
    runs until `stop()` is true, `max_events` were admitted or nothing arrived for `idle_timeout_s`; timestamps
    never go backwards (an older venue timestamp is raised to the last one)."""

    source: LiveSource
    stop: Callable[[], bool] | None
    last_ts: int = 0
    n: int = 0
    idle_since: float = dataclasses.field(default_factory=time.monotonic)
    idle: bool = False

    def running(self) -> bool:
        limit = self.source.max_events
        return not self.idle and not (self.stop is not None and self.stop()) and not (limit and self.n >= limit)

    def admit(self, event: MarketEvent | None) -> MarketEvent | None:
        """The event to hand on, or None when the wait came back empty (which may end the stream as idle)."""
        if event is None:
            if time.monotonic() - self.idle_since > self.source.idle_timeout_s:
                log.error("%s: no market data for %.0fs; ending the live stream", self.source.exchange.where,
                          self.source.idle_timeout_s)
                self.idle = True
            return None
        self.idle_since = time.monotonic()
        if event.ts_ns < self.last_ts:
            event = dataclasses.replace(event, ts_ns=self.last_ts)
        self.last_ts = event.ts_ns
        self.n += 1
        return event


class LiveSource:
    """Market events from the exchange's watchers, as the engine's synchronous event stream."""

    def __init__(self, exchange: CcxtExchange, io: IoLoop, symbols: tuple[str, ...], *, max_events: int = 0,
                 idle_timeout_s: float = 60.0) -> None:
        self.exchange = exchange
        self.io = io
        self.symbols = symbols
        self.max_events = max_events
        self.idle_timeout_s = idle_timeout_s
        self._queue: queue.Queue[MarketEvent] = queue.Queue(maxsize=100_000)
        self._stop = asyncio.Event()  # binds to the I/O loop when the watchers first wait on it
        self._watch: Future[None] | None = None
        self.overflow = 0

    def _sink(self, event: MarketEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.overflow += 1  # the engine is far behind: the oldest news is the least worth having

    def start(self) -> None:
        async def watch() -> None:
            await self.exchange.watch(self.symbols, self._sink, self._stop)

        self._watch = self.io.spawn(watch())

    def events(self, stop: Callable[[], bool] | None = None) -> Iterator[MarketEvent]:
        if self._watch is None:
            self.start()
        stream = _Stream(self, stop)
        while stream.running():
            event = stream.admit(self._next(0.1))
            if event is not None:
                yield event

    def _next(self, timeout_s: float) -> MarketEvent | None:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    async def aevents(self, stop: Callable[[], bool] | None = None) -> AsyncIterator[MarketEvent]:
        """`events`, for an asyncio consumer: the wait for the next event runs in a worker thread, so the
        consumer's loop stays free (the engine's API, its signal handlers, the `stop` event)."""
        if self._watch is None:
            self.start()
        stream = _Stream(self, stop)
        while stream.running():
            event = stream.admit(self._next(0) or await asyncio.to_thread(self._next, 0.2))
            if event is not None:
                yield event

    def describe(self) -> dict[str, object]:
        return {"kind": "live", "exchange": self.exchange.settings.describe(), "symbols": list(self.symbols)}

    def close(self) -> None:
        self.io.call(self._stop.set)
        if self._watch is not None:
            try:
                self._watch.result(timeout=10)
            except Exception as exc:  # closing: a watcher's last error is only worth a log line
                log.debug("watchers ended with %s", exc)
