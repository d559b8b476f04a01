"""Domain objects that cross the plugin boundary, as the host sees them.

Frozen dataclasses: a plugin's output is data, checked once at the boundary
(`allele.kernel.plugin.checks`) and never mutated afterwards. Field meanings
are those of the WIT records of the same names (wit/types.wit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["trade", "quote", "bar"]
Sizing = Literal["exposure", "units"]
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["gtc", "ioc", "fok", "post-only"]
OrderStatus = Literal["accepted", "partially-filled", "filled", "cancelled", "rejected", "expired"]


@dataclass(frozen=True, slots=True)
class MarketEvent:
    kind: EventKind
    venue: str
    symbol: str
    ts_ns: int
    price: float
    size: float = 0.0
    bid: float = 0.0
    ask: float = 0.0
    bid_size: float = 0.0
    ask_size: float = 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    sensor: str
    name: str
    symbol: str
    ts_ns: int
    value: float


Event = MarketEvent | Reading


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's intent: exposure = target fraction of allocation, units = signed quantity."""

    symbol: str
    sizing: Sizing
    amount: float
    limit_price: float | None = None
    group: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class BatchSignal:
    """A signal from a batch call, with the input row that produced it."""

    row: int
    signal: Signal


@dataclass(frozen=True, slots=True)
class FinalizedOrder:
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    limit_price: float | None
    time_in_force: TimeInForce
    ts_ns: int
    deadline_ns: int


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    client_order_id: str
    venue_order_id: str
    symbol: str
    status: OrderStatus
    fill_quantity: float = 0.0
    fill_price: float = 0.0
    fee: float = 0.0
    fee_currency: str = ""
    ts_ns: int = 0
    reason: str = ""


VenueEvent = MarketEvent | OrderUpdate


@dataclass(frozen=True, slots=True)
class VenueRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str
