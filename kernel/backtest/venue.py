"""BarVenue: the backtest's venue, filling orders against the NEXT bar, never the one they were sent on.

    venue = BarVenue(bars, commission=0.001)
    venue.advance(bars.ts_ns[0])              # the engine sees bar 0 (its close) ...
    venue.submit(order, sent_ns=bars.ts_ns[0])  # ... and sends an order
    venue.advance(bars.ts_ns[1])              # -> [accepted, filled at bars.open[1]]

Time. The venue keeps a cursor over the bars. `advance(ts_ns)` opens, in order, every bar with
`ts_i <= ts_ns` it has not opened yet. When bar i opens, first every request sent strictly
before `ts_i` (and not yet processed) is processed in sending order, stamped `ts_i`; then the
working orders trade against bar i. A request sent at `ts_i` itself (after the engine saw bar i)
therefore waits for bar i + 1: no order trades on a price known when it was sent.

Fills, against the bar an order trades on (all fills are complete; a bar has no depth):
- market: at the bar's open;
- limit buy: if low <= limit, at min(open, limit); limit sell: if high >= limit, at max(open, limit);
- gtc limits that do not fill stay working on later bars; ioc and fok limits that do not fill on
  the first bar they see are "cancelled"; a post-only limit that would trade at the open of its
  first bar (it would take liquidity) is "cancelled" instead; otherwise it rests like gtc;
- an order whose `deadline_ns` (0 = none) is before the bar's timestamp is "expired" instead.

Each valid order gets "accepted" (with its venue order id "bt-<n>") and then exactly one of
"filled" (fill_quantity = the whole quantity, fee = commission × price × quantity in USD),
"cancelled" or "expired". An invalid one gets only "rejected" with the reason. `cancel` and
`amend` of an order that is not working answer "rejected" ("unknown order"). The venue
publishes no market events of its own: `advance` returns only `OrderUpdate`s.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderStatus, OrderUpdate, VenueEvent
from allele.kernel.venue.book import Instrument

from .data import Bars

FEE_CURRENCY = "USD"
_GRID_TOLERANCE = 1e-6
_GRID_RELATIVE = 1e-13


def _on_grid(value: float, step: float) -> int | None:
    """`value` in whole `step`s, or None if it is not (near enough) a multiple of `step`.

    Like `Instrument.to_ticks`, plus a tolerance relative to the number of steps: with the default
    tick of 1e-8 a price such as 12345.67 is 1.2e12 ticks, and its binary representation error alone is
    about 1e-4 of a tick, so an absolute tolerance would refuse a sixth of ordinary two-decimal prices.
    """
    units = value / step
    if not math.isfinite(units):
        return None
    nearest = round(units)
    if abs(units - nearest) > max(_GRID_TOLERANCE, abs(units) * _GRID_RELATIVE):
        return None
    return int(nearest)


@dataclass(frozen=True, slots=True)
class _Submit:
    order: FinalizedOrder


@dataclass(frozen=True, slots=True)
class _Cancel:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class _Amend:
    client_order_id: str
    quantity: float | None
    limit_price: float | None


@dataclass(slots=True)
class _Working:
    order: FinalizedOrder
    venue_order_id: str
    fresh: bool = True
    """Not yet traded against a bar (ioc/fok/post-only look at their first bar only)."""


class BarVenue:
    """The `Venue` of `allele backtest`: orders fill on the bar after the one they were sent on."""

    name = "backtest"

    def __init__(self, bars: Bars, commission: float, lot_size: float = 1.0, tick_size: float = 1e-8) -> None:
        if not 0.0 <= commission < 1.0:
            raise ValueError(f"commission is a fraction of the notional in [0, 1), got {commission}")
        self.bars = bars
        self.commission = commission
        self._instrument = Instrument(bars.symbol, tick_size, lot_size, maker_fee=commission, taker_fee=commission,
                                      quote_currency=FEE_CURRENCY)
        self._next_bar = 0
        self._next_id = 1
        self._inbox: list[tuple[int, _Submit | _Cancel | _Amend]] = []
        self._working: dict[str, _Working] = {}

    # --- Venue protocol --------------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument:
        if symbol != self.bars.symbol:
            raise KeyError(f"the backtest venue lists only {self.bars.symbol!r}, not {symbol!r}")
        return self._instrument

    def symbols(self) -> tuple[str, ...]:
        return (self.bars.symbol,)

    def submit(self, order: FinalizedOrder, sent_ns: int) -> None:
        self._inbox.append((sent_ns, _Submit(order)))

    def amend(self, client_order_id: str, sent_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> None:
        self._inbox.append((sent_ns, _Amend(client_order_id, quantity, limit_price)))

    def cancel(self, client_order_id: str, sent_ns: int) -> None:
        self._inbox.append((sent_ns, _Cancel(client_order_id)))

    def advance(self, ts_ns: int, event: MarketEvent | None = None) -> list[VenueEvent]:
        """Open every bar with timestamp <= `ts_ns` not opened yet (see the module docstring).

        `event` is ignored: the venue trades against its own bars, which are the engine's events.
        """
        out: list[VenueEvent] = []
        bars = self.bars
        if not self._inbox and not self._working:  # nothing to trade: skip the bars (the arena's sparse runs)
            self._next_bar = bisect.bisect_right(bars.ts_ns, ts_ns, lo=self._next_bar)
            return out
        while self._next_bar < len(bars) and bars.ts_ns[self._next_bar] <= ts_ns:
            i = self._next_bar
            self._next_bar += 1
            self._process_inbox(bars.ts_ns[i], out)
            self._trade(i, out)
        return out

    def drain(self) -> list[VenueEvent]:
        """End of data: process the requests still in flight (no bar left to trade on), then cancel every
        working order with reason "end of data"."""
        out: list[VenueEvent] = []
        now = max([self.bars.ts_ns[-1], *(sent for sent, _ in self._inbox)])
        self._process_inbox(now, out, everything=True)
        for cid, w in list(self._working.items()):
            del self._working[cid]
            out.append(self._update(w, "cancelled", now, reason="end of data"))
        return out

    # --- inspection ------------------------------------------------------------------------------

    def working(self) -> tuple[FinalizedOrder, ...]:
        """Orders accepted and still working (as last amended), in acceptance order."""
        return tuple(w.order for w in self._working.values())

    # --- internals -------------------------------------------------------------------------------

    def _process_inbox(self, now: int, out: list[VenueEvent], everything: bool = False) -> None:
        """Process, in sending order, every request sent before `now` (or every one, at the end)."""
        keep: list[tuple[int, _Submit | _Cancel | _Amend]] = []
        ready: list[tuple[int, _Submit | _Cancel | _Amend]] = []
        for item in self._inbox:
            (ready if everything or item[0] < now else keep).append(item)
        self._inbox = keep
        # Stable: requests sent at the same nanosecond keep the order they were sent in.
        for _, request in sorted(ready, key=lambda item: item[0]):
            if isinstance(request, _Submit):
                self._accept(request.order, now, out)
            elif isinstance(request, _Cancel):
                w = self._working.pop(request.client_order_id, None)
                if w is None:
                    out.append(OrderUpdate(request.client_order_id, "", "", "rejected", ts_ns=now,
                                           reason="unknown order"))
                else:
                    out.append(self._update(w, "cancelled", now, reason="cancelled by owner"))
            else:
                self._amend(request, now, out)

    def _check(self, order: FinalizedOrder, quantity: float, limit_price: float | None) -> str | None:
        """Why `order` with this quantity and limit price cannot be accepted, or None."""
        inst = self._instrument
        lots = _on_grid(quantity, inst.lot_size)
        if lots is None or lots <= 0:
            return f"quantity {quantity} is not a positive multiple of lot size {inst.lot_size}"
        if order.order_type == "limit":
            if limit_price is None:
                return "limit order without a limit price"
            ticks = _on_grid(limit_price, inst.tick_size)
            if ticks is None:
                return f"limit price {limit_price} is off the tick grid (tick size {inst.tick_size})"
            if ticks <= 0:
                return f"limit price {limit_price} is not positive"
        elif order.time_in_force == "post-only":
            return "a market order cannot be post-only"
        return None

    def _accept(self, order: FinalizedOrder, now: int, out: list[VenueEvent]) -> None:
        def reject(reason: str) -> None:
            out.append(OrderUpdate(order.client_order_id, "", order.symbol, "rejected", ts_ns=now, reason=reason))

        if order.symbol != self.bars.symbol:
            return reject(f"unknown symbol {order.symbol!r}: this backtest trades only {self.bars.symbol!r}")
        if order.client_order_id in self._working:
            return reject(f"duplicate client order id {order.client_order_id!r}: one is still working")
        problem = self._check(order, order.quantity, order.limit_price)
        if problem is not None:
            return reject(problem)
        lots = _on_grid(order.quantity, self._instrument.lot_size)
        assert lots is not None
        order = replace(order, quantity=self._instrument.quantity(lots))
        w = _Working(order, f"bt-{self._next_id}")
        self._next_id += 1
        self._working[order.client_order_id] = w
        out.append(self._update(w, "accepted", now))
        return None

    def _amend(self, request: _Amend, now: int, out: list[VenueEvent]) -> None:
        cid = request.client_order_id
        w = self._working.get(cid)

        def reject(reason: str) -> None:
            out.append(OrderUpdate(cid, w.venue_order_id if w else "", w.order.symbol if w else "", "rejected",
                                   ts_ns=now, reason=f"amend: {reason}"))

        if w is None:
            return reject("unknown order")
        if w.order.order_type != "limit":
            return reject("only a working limit order can be amended")
        quantity = w.order.quantity if request.quantity is None else request.quantity
        price = w.order.limit_price if request.limit_price is None else request.limit_price
        problem = self._check(w.order, quantity, price)
        if problem is not None:
            return reject(problem)
        lots = _on_grid(quantity, self._instrument.lot_size)
        assert lots is not None
        w.order = replace(w.order, quantity=self._instrument.quantity(lots), limit_price=price)
        out.append(self._update(w, "accepted", now, reason="amended"))
        return None

    def _trade(self, i: int, out: list[VenueEvent]) -> None:
        """Trade every working order against bar i, in acceptance order."""
        bars = self.bars
        ts, o, h, lo = bars.ts_ns[i], bars.open[i], bars.high[i], bars.low[i]
        for cid, w in list(self._working.items()):
            order = w.order
            fresh, w.fresh = w.fresh, False
            if order.deadline_ns and ts > order.deadline_ns:
                del self._working[cid]
                out.append(self._update(w, "expired", ts, reason=f"deadline {order.deadline_ns} passed before the "
                                                                 f"bar at {ts}"))
                continue
            price: float | None
            if order.order_type == "market":
                price = o
            else:
                limit = order.limit_price
                assert limit is not None
                if fresh and order.time_in_force == "post-only" and (o <= limit if order.side == "buy"
                                                                     else o >= limit):
                    del self._working[cid]
                    out.append(self._update(w, "cancelled", ts, reason=f"post-only would trade: limit {limit} "
                                                                       f"against the open {o}"))
                    continue
                if order.side == "buy":
                    price = min(o, limit) if lo <= limit else None
                else:
                    price = max(o, limit) if h >= limit else None
            if price is not None:
                del self._working[cid]
                fee = self.commission * price * order.quantity
                out.append(OrderUpdate(cid, w.venue_order_id, order.symbol, "filled", fill_quantity=order.quantity,
                                       fill_price=price, fee=fee, fee_currency=FEE_CURRENCY, ts_ns=ts))
            elif order.time_in_force in ("ioc", "fok"):
                del self._working[cid]
                out.append(self._update(w, "cancelled", ts, reason=f"{order.time_in_force}: limit {order.limit_price} "
                                                                   "not reached on the next bar"))

    @staticmethod
    def _update(w: _Working, status: OrderStatus, ts_ns: int, reason: str = "") -> OrderUpdate:
        return OrderUpdate(w.order.client_order_id, w.venue_order_id, w.order.symbol, status, ts_ns=ts_ns,
                           reason=reason)
