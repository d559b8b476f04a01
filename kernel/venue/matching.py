"""MatchingEngine: the embedded default venue's order matching, deterministic and exact.

    engine = MatchingEngine([Instrument("BTC-USD", tick_size=0.5, lot_size=0.001, maker_fee=0.0001, taker_fee=0.0005)])
    out = engine.submit(order, owner="me")                  # list[Emitted]; arrives at order.ts_ns
    out = engine.amend("me", "c1", ts_ns=t, quantity=0.5)   # size decrease: keeps time priority
    out = engine.cancel("me", "c1", ts_ns=t)

Every call returns `Emitted` records in the order things happened: `OrderUpdate`s
addressed to the participant concerned (`owner`), interleaved with public market data
(`owner == PUBLIC`): after each fill's two updates (maker, then taker) one "trade"
`MarketEvent`, and at the end one "quote" `MarketEvent` if the top of book (best prices
or their sizes) changed. Everything is stamped with the time passed in. Background
liquidity is ordinary orders under another owner; there is no self-trade prevention.

Order updates (`fill_quantity` is the size of that fill, not a running total):
- a valid order is first "accepted", then gets one "partially-filled"/"filled" update
  per fill; a remainder rests (gtc, post-only) or is "cancelled" (ioc, market) with a reason;
- "rejected" with a reason, before anything happens: unknown symbol, quantity not a
  positive multiple of the lot size, limit price missing/non-positive/off the tick grid,
  duplicate live client order id, post-only that would cross, fok not fully fillable;
- "expired" when the order arrives after its `deadline_ns` (0 means no deadline).

Market orders take any price (a `limit_price` on one is ignored) and never rest: gtc
and ioc both cancel the unfilled rest, fok is all-or-nothing, post-only is rejected. Each fill trades at the resting
order's price; the maker pays `maker_fee`, the taker `taker_fee`, both as a rate on the
fill notional in the instrument's quote currency.

Amend (`amend`) changes a resting order's price and/or open quantity. A pure size
decrease at the same price keeps the order's place in its queue; a price change or a
size increase sends it to the back of the queue at its (new) price, as if newly
arrived, and a new price that crosses trades at once, as a taker. A post-only order
amended to a crossing price is refused and left as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderStatus, OrderUpdate, Side, VenueEvent

from .book import Instrument, OrderBook, RestingOrder, TopOfBook, crosses

PUBLIC = ""
"""Owner of public market data in `Emitted`: everyone sees it."""


@dataclass(frozen=True, slots=True)
class Emitted:
    """One output of the engine and who it is for (`PUBLIC` for trades and quotes)."""

    owner: str
    event: VenueEvent


@dataclass(slots=True)
class _Live:
    """What the engine remembers of a resting order beyond the book entry."""

    symbol: str
    resting: RestingOrder


class MatchingEngine:
    """Price-time-priority matching for a set of instruments. Not thread-safe; no clock: time is passed in."""

    def __init__(self, instruments: Iterable[Instrument], venue: str = "sim") -> None:
        self.venue = venue
        self._books: dict[str, OrderBook] = {}
        for instrument in instruments:
            if instrument.symbol in self._books:
                raise ValueError(f"instrument {instrument.symbol} listed twice")
            self._books[instrument.symbol] = OrderBook(instrument)
        self._live: dict[tuple[str, str], _Live] = {}
        self._next_id = 1
        self._published: dict[str, TopOfBook] = {s: b.top() for s, b in self._books.items()}

    # --- queries -------------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook:
        return self._books[symbol]

    def instrument(self, symbol: str) -> Instrument:
        return self._books[symbol].instrument

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._books)

    def resting_symbols(self, owner: str) -> set[str]:
        """Symbols on which `owner` has an order resting in the book."""
        return {live.symbol for (who, _), live in self._live.items() if who == owner}

    def open_quantity(self, owner: str, client_order_id: str) -> float:
        """Unfilled quantity of a resting order; 0.0 if it is not resting."""
        live = self._live.get((owner, client_order_id))
        if live is None:
            return 0.0
        return self._books[live.symbol].instrument.quantity(live.resting.remaining_lots)

    # --- order entry ---------------------------------------------------------------------------

    def submit(self, order: FinalizedOrder, owner: str = "self", ts_ns: int | None = None) -> list[Emitted]:
        """Match `order` from `owner`, arriving at `ts_ns` (default `order.ts_ns`)."""
        now = order.ts_ns if ts_ns is None else ts_ns
        out: list[Emitted] = []

        def refuse(status: OrderStatus, reason: str) -> list[Emitted]:
            out.append(Emitted(owner, OrderUpdate(order.client_order_id, "", order.symbol, status, ts_ns=now,
                                                  reason=reason)))
            return out

        book = self._books.get(order.symbol)
        if book is None:
            return refuse("rejected", f"unknown symbol {order.symbol!r}")
        inst = book.instrument
        if order.deadline_ns and now > order.deadline_ns:
            return refuse("expired", f"arrived at {now} after its deadline {order.deadline_ns}")
        if (owner, order.client_order_id) in self._live:
            return refuse("rejected", f"duplicate client order id {order.client_order_id!r}: one is still resting")
        lots = inst.to_lots(order.quantity)
        if lots is None or lots <= 0:
            return refuse("rejected", f"quantity {order.quantity} is not a positive multiple of lot size "
                                      f"{inst.lot_size}")
        limit: int | None = None
        if order.order_type == "limit":
            if order.limit_price is None:
                return refuse("rejected", "limit order without a limit price")
            limit = inst.to_ticks(order.limit_price)
            if limit is None:
                return refuse("rejected", f"limit price {order.limit_price} is off the tick grid "
                                          f"(tick size {inst.tick_size})")
            if limit <= 0:
                return refuse("rejected", f"limit price {order.limit_price} is not positive")
        elif order.time_in_force == "post-only":
            return refuse("rejected", "a market order cannot be post-only")

        opposite: Side = "sell" if order.side == "buy" else "buy"
        if order.time_in_force == "post-only":
            best = book.best(opposite)
            if limit is not None and best is not None and crosses(order.side, limit, best):
                return refuse("rejected", f"post-only would cross: limit {order.limit_price} against best "
                                          f"{inst.price(best)}")
        if order.time_in_force == "fok":
            available = book.fillable_lots(order.side, limit, lots)
            if available < lots:
                return refuse("rejected", f"fok not fully fillable: {inst.quantity(available)} of "
                                          f"{order.quantity} available")

        taker = RestingOrder(self._new_id(), order.client_order_id, owner, order.side, limit or 0, lots,
                             post_only=order.time_in_force == "post-only")
        out.append(Emitted(owner, OrderUpdate(order.client_order_id, taker.venue_order_id, order.symbol, "accepted",
                                              ts_ns=now)))
        self._match(book, taker, limit, now, out)
        if taker.remaining_lots:
            rests = order.order_type == "limit" and order.time_in_force in ("gtc", "post-only")
            if rests:
                book.add(taker)
                self._live[(owner, order.client_order_id)] = _Live(order.symbol, taker)
            else:
                why = "ioc remainder" if order.order_type == "limit" else "market order: no more liquidity"
                out.append(Emitted(owner, OrderUpdate(order.client_order_id, taker.venue_order_id, order.symbol,
                                                      "cancelled", ts_ns=now, reason=why)))
        self._publish_quote(book, now, out)
        return out

    def cancel(self, owner: str, client_order_id: str, ts_ns: int) -> list[Emitted]:
        """Cancel a resting order; "rejected" (reason "unknown order") if it is not resting."""
        live = self._live.pop((owner, client_order_id), None)
        if live is None:
            return [Emitted(owner, OrderUpdate(client_order_id, "", "", "rejected", ts_ns=ts_ns,
                                               reason=f"cancel: unknown order {client_order_id!r}"))]
        book = self._books[live.symbol]
        book.remove(live.resting.venue_order_id)
        out = [Emitted(owner, OrderUpdate(client_order_id, live.resting.venue_order_id, live.symbol, "cancelled",
                                          ts_ns=ts_ns, reason="cancelled by owner"))]
        self._publish_quote(book, ts_ns, out)
        return out

    def amend(self, owner: str, client_order_id: str, ts_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> list[Emitted]:
        """Change a resting order's open `quantity` and/or `limit_price` (see the module docstring for priority).

        The answer is an "accepted" update whose reason says whether priority was kept, followed by
        any fills; or "rejected" with the reason, leaving the order untouched.
        """
        live = self._live.get((owner, client_order_id))

        def refuse(reason: str) -> list[Emitted]:
            symbol = live.symbol if live else ""
            vid = live.resting.venue_order_id if live else ""
            return [Emitted(owner, OrderUpdate(client_order_id, vid, symbol, "rejected", ts_ns=ts_ns,
                                               reason=f"amend: {reason}"))]

        if live is None:
            return refuse(f"unknown order {client_order_id!r}")
        book = self._books[live.symbol]
        inst = book.instrument
        resting = live.resting
        lots = resting.remaining_lots
        if quantity is not None:
            new_lots = inst.to_lots(quantity)
            if new_lots is None or new_lots <= 0:
                return refuse(f"quantity {quantity} is not a positive multiple of lot size {inst.lot_size}")
            lots = new_lots
        ticks = resting.price_ticks
        if limit_price is not None:
            new_ticks = inst.to_ticks(limit_price)
            if new_ticks is None:
                return refuse(f"limit price {limit_price} is off the tick grid (tick size {inst.tick_size})")
            if new_ticks <= 0:
                return refuse(f"limit price {limit_price} is not positive")
            ticks = new_ticks
        opposite: Side = "sell" if resting.side == "buy" else "buy"
        best = book.best(opposite)
        if resting.post_only and ticks != resting.price_ticks and best is not None \
                and crosses(resting.side, ticks, best):
            return refuse(f"post-only would cross: limit {inst.price(ticks)} against best {inst.price(best)}")

        out: list[Emitted] = []
        if ticks == resting.price_ticks and lots <= resting.remaining_lots:
            # Shrinking in place: nobody behind it in the queue is worse off, so it keeps its place.
            resting.remaining_lots = lots
            out.append(Emitted(owner, OrderUpdate(client_order_id, resting.venue_order_id, live.symbol, "accepted",
                                                  ts_ns=ts_ns, reason="amended: priority kept")))
        else:
            book.remove(resting.venue_order_id)
            resting.price_ticks = ticks
            resting.remaining_lots = lots
            out.append(Emitted(owner, OrderUpdate(client_order_id, resting.venue_order_id, live.symbol, "accepted",
                                                  ts_ns=ts_ns, reason="amended: priority lost")))
            self._match(book, resting, ticks, ts_ns, out)
            if resting.remaining_lots:
                book.add(resting)
            else:
                del self._live[(owner, client_order_id)]
        self._publish_quote(book, ts_ns, out)
        return out

    # --- internals -----------------------------------------------------------------------------

    def _new_id(self) -> str:
        # A counter, not a uuid: the same inputs must give the same ids.
        vid = f"{self.venue}-{self._next_id}"
        self._next_id += 1
        return vid

    def _match(self, book: OrderBook, taker: RestingOrder, limit: int | None, now: int, out: list[Emitted]) -> None:
        """Fill `taker` against the opposite side, best price then arrival order, while it crosses `limit`."""
        inst = book.instrument
        opposite: Side = "sell" if taker.side == "buy" else "buy"
        while taker.remaining_lots:
            maker = book.front(opposite)
            if maker is None or (limit is not None and not crosses(taker.side, limit, maker.price_ticks)):
                return
            lots = min(taker.remaining_lots, maker.remaining_lots)
            ticks = maker.price_ticks
            price, qty = inst.price(ticks), inst.quantity(lots)
            maker.remaining_lots -= lots
            taker.remaining_lots -= lots
            if not maker.remaining_lots:
                book.remove(maker.venue_order_id)
                del self._live[(maker.owner, maker.client_order_id)]
            for party, is_maker in ((maker, True), (taker, False)):
                status: OrderStatus = "partially-filled" if party.remaining_lots else "filled"
                out.append(Emitted(party.owner, OrderUpdate(
                    party.client_order_id, party.venue_order_id, inst.symbol, status, fill_quantity=qty,
                    fill_price=price, fee=inst.fee(ticks, lots, maker=is_maker), fee_currency=inst.quote_currency,
                    ts_ns=now, reason="maker" if is_maker else "taker")))
            out.append(Emitted(PUBLIC, MarketEvent("trade", self.venue, inst.symbol, now, price, qty)))

    def _publish_quote(self, book: OrderBook, now: int, out: list[Emitted]) -> None:
        top = book.top()
        symbol = book.instrument.symbol
        if top == self._published[symbol]:
            return
        self._published[symbol] = top
        out.append(Emitted(PUBLIC, quote_event(book.instrument, top, self.venue, now)))


def quote_event(instrument: Instrument, top: TopOfBook, venue: str, ts_ns: int) -> MarketEvent:
    """Top of book as a "quote" event: price is the mid, or the one side present, or 0.0 for an empty book."""
    bid = instrument.price(top.bid_ticks) if top.bid_ticks is not None else 0.0
    ask = instrument.price(top.ask_ticks) if top.ask_ticks is not None else 0.0
    if top.bid_ticks is not None and top.ask_ticks is not None:
        mid = instrument.price(top.bid_ticks + top.ask_ticks) / 2
    else:
        mid = bid or ask
    return MarketEvent("quote", venue, instrument.symbol, ts_ns, mid, 0.0, bid, ask,
                       instrument.quantity(top.bid_lots), instrument.quantity(top.ask_lots))


def updates_for(emitted: Iterable[Emitted], owner: str) -> list[OrderUpdate]:
    """The order updates addressed to `owner`, in order."""
    return [e.event for e in emitted if e.owner == owner and isinstance(e.event, OrderUpdate)]


def market_data(emitted: Iterable[Emitted]) -> list[MarketEvent]:
    """The public trades and quotes, in order."""
    return [e.event for e in emitted if e.owner == PUBLIC and isinstance(e.event, MarketEvent)]
