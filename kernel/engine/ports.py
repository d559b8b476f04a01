"""The engine's ports: where market events come from and where orders go.

Backtest, replay, paper and live run the same `Engine`; they differ only in the
`EventSource` that feeds it and the `Venue` at the end:

    mode      source                          venue
    paper     SyntheticSource (generator)     SimVenue (matching engine + latency + background liquidity)
    replay    RecordingSource (firehose)      SimVenue rebuilt from the recording's header
    backtest  BarSource (CSV / synthetic)     BarVenue (fills at the next bar's open)
    live      an exchange adapter             an exchange adapter

All time is event time (`ts_ns` of the events): no port reads a wall clock, so a run is
a pure function of its inputs and seeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from allele.kernel.domain import FinalizedOrder, MarketEvent, VenueEvent
from allele.kernel.venue.book import Instrument

if TYPE_CHECKING:  # the engine imports this module
    from allele.kernel.plugin.host import PluginHost

    from .engine import Engine


@runtime_checkable
class EventSource(Protocol):
    """A finite or endless stream of normalized market events, in non-decreasing `ts_ns` order."""

    def events(self) -> Iterator[MarketEvent]:
        ...

    def describe(self) -> dict[str, object]:
        """JSON-able description written into the recording header (enough to rebuild the venue)."""
        ...


@runtime_checkable
class Venue(Protocol):
    """Where finalized orders go. Our orders are identified by their `client_order_id`.

    `submit`, `amend` and `cancel` only send; what happens is reported by `advance`, as
    `OrderUpdate`s for our orders and public `MarketEvent`s (trades, quotes) the venue
    produced, in the order they happened. Sending a request for an unknown or closed order
    is not an error here: the venue answers with a rejected/cancelled update, as a real one does.
    """

    name: str

    def instrument(self, symbol: str) -> Instrument:
        """Tick size, lot size and fees of `symbol`; KeyError if the venue does not list it."""
        ...

    def symbols(self) -> tuple[str, ...]:
        ...

    def submit(self, order: FinalizedOrder, sent_ns: int) -> None:
        ...

    def amend(self, client_order_id: str, sent_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> None:
        ...

    def cancel(self, client_order_id: str, sent_ns: int) -> None:
        ...

    def advance(self, ts_ns: int, event: MarketEvent | None = None) -> list[VenueEvent]:
        """Process everything that reached the venue by `ts_ns`, then let it see the market `event`
        (a simulated venue rests or trades against it); return what it emitted, in order."""
        ...

    def drain(self) -> list[VenueEvent]:
        """At the end of a finite run: process every request still in flight."""
        ...


class TradingSession(Protocol):
    """A running engine with what feeds it, as `allele start`, the runner and the API see it: a paper session
    (`session.Session`) or a live one (`live.LiveSession`)."""

    engine: Engine
    host: PluginHost
    header: dict[str, Any]
    closed: list[str]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Trade until the events end or `stop` is set."""
        ...

    async def close(self) -> None:
        """Close what the session opened (ledger, recording, venue connections)."""
        ...
