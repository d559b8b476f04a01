"""The embedded default venue behind the `Venue` port: matching engine + latency + background liquidity.

The synthetic market's quotes rest as another participant's orders in the book
(`BackgroundLiquidity`), so our orders trade against the market as it is quoted, through the
matching engine's price-time priority, after the seeded network latency. Only our own order
updates are returned: the market feed itself is the event source, so the venue's public
prints would repeat it.

Quotes are rested lazily: a quote replaces the background orders of its symbol at once only if
we have an order resting on that symbol (the quote may trade with it); otherwise it waits, and
the latest waiting quote of every symbol is rested just before any of our requests reaches the
matching engine. Between two of our requests nothing else can observe the book, so this gives
the same fills as resting every quote, at a fraction of the cost (most quotes are never rested).
Only the venue's internal order ids differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderUpdate, VenueEvent
from allele.kernel.market import BackgroundLiquidity
from allele.kernel.market.generator import BINARY_TICK
from allele.kernel.venue import Emitted, Instrument, LatencyModel, MatchingEngine, SimulatedVenue

OWNER = "self"


@dataclass(frozen=True, slots=True)
class SimVenueSpec:
    """Everything that determines the simulated venue; recorded in a session's header."""

    symbols: tuple[str, ...]
    binary_symbols: tuple[str, ...]
    seed: int
    latency_ns: int = 200_000
    jitter_ns: int = 50_000
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    tick_size: float = 0.01
    lot_size: float = 0.001

    def to_json(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "binary_symbols": list(self.binary_symbols), "seed": self.seed,
                "latency_ns": self.latency_ns, "jitter_ns": self.jitter_ns, "maker_fee": self.maker_fee,
                "taker_fee": self.taker_fee, "tick_size": self.tick_size, "lot_size": self.lot_size}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SimVenueSpec:
        return cls(tuple(d["symbols"]), tuple(d["binary_symbols"]), int(d["seed"]), int(d["latency_ns"]),
                   int(d["jitter_ns"]), float(d["maker_fee"]), float(d["taker_fee"]), float(d["tick_size"]),
                   float(d["lot_size"]))

    def instruments(self) -> list[Instrument]:
        continuous = [Instrument(s, self.tick_size, self.lot_size, self.maker_fee, self.taker_fee)
                      for s in self.symbols]
        # A binary outcome pays 1.0: priced in BINARY_TICK steps, traded in whole contracts.
        binary = [Instrument(s, BINARY_TICK, 1.0, self.maker_fee, self.taker_fee) for s in self.binary_symbols]
        return continuous + binary


def _ours(emitted: Iterable[Emitted]) -> list[VenueEvent]:
    return [e.event for e in emitted if e.owner == OWNER and isinstance(e.event, OrderUpdate)]


class SimVenue:
    """`Venue` port over the in-process matching engine."""

    name = "sim"

    def __init__(self, spec: SimVenueSpec) -> None:
        self.spec = spec
        self.engine = MatchingEngine(spec.instruments(), venue=self.name)
        self.latency = SimulatedVenue(self.engine, LatencyModel(spec.latency_ns, spec.jitter_ns), seed=spec.seed)
        self.liquidity = BackgroundLiquidity(self.engine)
        self._waiting: dict[str, MarketEvent] = {}

    def instrument(self, symbol: str) -> Instrument:
        instrument: Instrument = self.engine.instrument(symbol)
        return instrument

    def symbols(self) -> tuple[str, ...]:
        symbols: tuple[str, ...] = self.engine.symbols
        return symbols

    def submit(self, order: FinalizedOrder, sent_ns: int) -> None:
        self.latency.submit(order, OWNER, sent_ns)

    def amend(self, client_order_id: str, sent_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> None:
        self.latency.amend(OWNER, client_order_id, sent_ns, quantity=quantity, limit_price=limit_price)

    def cancel(self, client_order_id: str, sent_ns: int) -> None:
        self.latency.cancel(OWNER, client_order_id, sent_ns)

    def _rest_waiting(self) -> list[VenueEvent]:
        out: list[VenueEvent] = []
        for quote in self._waiting.values():
            out.extend(_ours(self.liquidity.on_quote(quote)))
        self._waiting.clear()
        return out

    def advance(self, ts_ns: int, event: MarketEvent | None = None) -> list[VenueEvent]:
        due = self.latency.next_arrival_ns()
        out = self._rest_waiting() if due is not None and due <= ts_ns else []
        out.extend(_ours(self.latency.advance_to(ts_ns)))
        if event is not None and event.kind == "quote" and event.symbol in self.engine.symbols:
            if event.symbol in self.engine.resting_symbols(OWNER):
                self._waiting.pop(event.symbol, None)
                out.extend(_ours(self.liquidity.on_quote(event)))
            else:
                self._waiting[event.symbol] = event
        return out

    def drain(self) -> list[VenueEvent]:
        out = self._rest_waiting() if self.latency.pending() else []
        out.extend(_ours(self.latency.drain()))
        return out
