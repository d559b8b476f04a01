"""Instruments and a price-time-priority limit order book, in integer ticks and lots.

Prices and quantities cross the venue boundary as floats (`FinalizedOrder`,
`OrderUpdate`); inside the book they are integers: price in ticks of the
instrument's `tick_size`, quantity in lots of its `lot_size`. A float that is not
on the grid is refused at the door (`Instrument.to_ticks` / `to_lots` return
None), so matching, level totals and fee notionals are exact and deterministic.

The book keeps one `SortedDict` per side (bids iterate best-first by descending
price, asks by ascending price). Each level is an insertion-ordered dict of
resting orders keyed by venue order id: iteration order is arrival order (time
priority), and cancelling from the middle of a queue is O(1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from sortedcontainers import SortedDict

from allele.kernel.domain import Side

# A float within this many grid units of a grid point is that grid point: it absorbs
# binary representation error (0.1 + 0.2) without letting a real off-grid value through.
_GRID_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the venue trades under `symbol`, and on which grid.

    Fees are rates on the fill notional (price × quantity), charged in
    `quote_currency`; a negative maker fee is a rebate.
    """

    symbol: str
    tick_size: float
    lot_size: float
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    quote_currency: str = "USD"

    def __post_init__(self) -> None:
        if not (self.tick_size > 0 and math.isfinite(self.tick_size)):
            raise ValueError(f"instrument {self.symbol}: tick_size must be positive, got {self.tick_size}")
        if not (self.lot_size > 0 and math.isfinite(self.lot_size)):
            raise ValueError(f"instrument {self.symbol}: lot_size must be positive, got {self.lot_size}")

    def to_ticks(self, price: float) -> int | None:
        """The price in ticks, or None if it is not a finite multiple of `tick_size`."""
        return _on_grid(price, self.tick_size)

    def to_lots(self, quantity: float) -> int | None:
        """The quantity in lots, or None if it is not a finite multiple of `lot_size`."""
        return _on_grid(quantity, self.lot_size)

    def price(self, ticks: int) -> float:
        # Through Decimal so that 3 ticks of 0.1 reads back as 0.3, not 0.30000000000000004.
        return float(Decimal(ticks) * Decimal(repr(self.tick_size)))

    def quantity(self, lots: int) -> float:
        return float(Decimal(lots) * Decimal(repr(self.lot_size)))

    def fee(self, ticks: int, lots: int, *, maker: bool) -> float:
        """Fee on a fill of `lots` at `ticks`: notional × rate, computed exactly and rounded once."""
        rate = self.maker_fee if maker else self.taker_fee
        notional = Decimal(ticks) * Decimal(repr(self.tick_size)) * Decimal(lots) * Decimal(repr(self.lot_size))
        return float(notional * Decimal(repr(rate)))


def _on_grid(value: float, step: float) -> int | None:
    units = value / step
    if not math.isfinite(units):  # also catches a finite value so large that it overflows in ticks
        return None
    nearest = round(units)
    if abs(units - nearest) > _GRID_TOLERANCE:
        return None
    return int(nearest)


@dataclass(slots=True)
class RestingOrder:
    """An order (or the unfilled part of one) waiting in the book. Mutable: fills reduce it."""

    venue_order_id: str
    client_order_id: str
    owner: str
    side: Side
    price_ticks: int
    remaining_lots: int
    post_only: bool = False


@dataclass(frozen=True, slots=True)
class TopOfBook:
    """Best bid and ask in ticks and lots; None prices for an empty side."""

    bid_ticks: int | None
    bid_lots: int
    ask_ticks: int | None
    ask_lots: int


class OrderBook:
    """Resting orders of one instrument, best price first, then arrival order."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        # Bids sort by negated price so that both sides iterate best-first.
        self._bids: SortedDict = SortedDict(lambda ticks: -ticks)
        self._asks: SortedDict = SortedDict()
        self._orders: dict[str, RestingOrder] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, venue_order_id: object) -> bool:
        return venue_order_id in self._orders

    def get(self, venue_order_id: str) -> RestingOrder | None:
        return self._orders.get(venue_order_id)

    def orders(self) -> Iterator[RestingOrder]:
        """Every resting order, in no particular order."""
        return iter(list(self._orders.values()))

    def _side(self, side: Side) -> SortedDict:
        return self._bids if side == "buy" else self._asks

    def add(self, order: RestingOrder) -> None:
        """Rest `order` at the back of its price level's queue."""
        if order.remaining_lots <= 0:
            raise ValueError(f"cannot rest {order.venue_order_id} with {order.remaining_lots} lots")
        if order.venue_order_id in self._orders:
            raise ValueError(f"order {order.venue_order_id} already rests in the book")
        levels = self._side(order.side)
        level = levels.get(order.price_ticks)
        if level is None:
            level = levels[order.price_ticks] = {}
        level[order.venue_order_id] = order
        self._orders[order.venue_order_id] = order

    def remove(self, venue_order_id: str) -> RestingOrder | None:
        """Take an order out of the book; None if it is not resting."""
        order = self._orders.pop(venue_order_id, None)
        if order is None:
            return None
        levels = self._side(order.side)
        level = levels[order.price_ticks]
        del level[venue_order_id]
        if not level:
            del levels[order.price_ticks]
        return order

    def best(self, side: Side) -> int | None:
        """Best price in ticks on `side` (highest bid, lowest ask), or None when empty."""
        levels = self._side(side)
        if not levels:
            return None
        ticks: int = levels.peekitem(0)[0]
        return ticks

    def level_orders(self, side: Side, price_ticks: int) -> list[RestingOrder]:
        """Orders resting at one price, in time priority."""
        return list(self._side(side).get(price_ticks, {}).values())

    def levels(self, side: Side) -> Iterator[tuple[int, int]]:
        """(price ticks, total lots) per level, best first."""
        for ticks, level in self._side(side).items():
            yield ticks, sum(order.remaining_lots for order in level.values())

    def top(self) -> TopOfBook:
        bid = self.best("buy")
        ask = self.best("sell")
        bid_lots = sum(o.remaining_lots for o in self._bids[bid].values()) if bid is not None else 0
        ask_lots = sum(o.remaining_lots for o in self._asks[ask].values()) if ask is not None else 0
        return TopOfBook(bid, bid_lots, ask, ask_lots)

    def is_crossed(self) -> bool:
        bid, ask = self.best("buy"), self.best("sell")
        return bid is not None and ask is not None and bid >= ask

    def fillable_lots(self, taker_side: Side, limit_ticks: int | None, wanted: int) -> int:
        """Lots a taker on `taker_side` could fill right now within `limit_ticks` (None: any price), up to `wanted`."""
        available = 0
        for ticks, lots in self.levels("sell" if taker_side == "buy" else "buy"):
            if limit_ticks is not None and not crosses(taker_side, limit_ticks, ticks):
                break
            available += lots
            if available >= wanted:
                return wanted
        return available

    def front(self, side: Side) -> RestingOrder | None:
        """The order with the highest priority on `side`: first in the queue at the best price."""
        levels = self._side(side)
        if not levels:
            return None
        level: dict[str, RestingOrder] = levels.peekitem(0)[1]
        return next(iter(level.values()))


def crosses(taker_side: Side, limit_ticks: int, resting_ticks: int) -> bool:
    """Whether a taker limit at `limit_ticks` trades against a resting order at `resting_ticks`."""
    return limit_ticks >= resting_ticks if taker_side == "buy" else limit_ticks <= resting_ticks
