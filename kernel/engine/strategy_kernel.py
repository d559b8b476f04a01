"""The strategy kernel: a strategy's signal -> order intents for the risk gate -> finalized orders.

Sizing (one rule for paper, live and backtest):

- `exposure` a in [-1, 1]: target position = a * capital / (price * (1 + taker fee)), rounded toward
  zero to whole lots, where capital = min(organism equity, its allocation) / the number of symbols it
  trades (each symbol gets an equal share, so +1 on every symbol is fully invested, not over-invested);
  the fee term leaves room for the fee, so an all-in buy never overdraws cash;
- `units` q: buy q (q > 0) or sell -q, rounded toward zero to whole lots.

The order to send is the target minus the position minus what open orders of the organism on that
symbol will still add. Crossing zero (long -> short) becomes two intents: one that reduces the
position to zero (judged as a reduction) and one that opens the rest.

Order form: a signal with a limit price becomes a gtc limit order with a deadline `ttl` after the
signal; without one, a market order (ioc: its unfilled rest is cancelled, never left resting).
If the organism already has a working limit order on the symbol on the same side and the new
signal has a limit price, that order is re-parameterized (amended: new price, new total size)
instead of being cancelled and sent anew; an open order on the other side is cancelled first,
and so is a resting limit when the new signal asks for a market order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from allele.kernel.domain import FinalizedOrder, Side, Signal
from allele.kernel.risk import InstrumentKind, OrderIntent, RiskDecision
from allele.kernel.venue.book import Instrument

from .portfolio import OpenOrder, Portfolio


def instrument_kind(symbol: str) -> InstrumentKind:
    """Binary outcomes are listed as EVENT:OUTCOME; everything else trades as spot here."""
    return "binary" if ":" in symbol else "spot"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do about one signal: cancels first, then intents for the gate (in order)."""

    cancels: tuple[str, ...]
    intents: tuple[OrderIntent, ...]
    amend_of: str | None = None  # the open order an (only) intent re-parameterizes


def _lots_toward_zero(quantity: float, lot: float) -> float:
    lots = math.floor(abs(quantity) / lot + 1e-9)
    return math.copysign(lots * lot, quantity) if lots else 0.0


def plan(organism: str, signal: Signal, ts_ns: int, book: Portfolio, instrument: Instrument, capital: float,
         reference_price: float) -> Plan:
    """The intents that bring the organism to what `signal` asks, given its position and open orders."""
    price = signal.limit_price or reference_price
    held = book.position(organism, signal.symbol)
    working = book.orders_of(organism, signal.symbol)
    if signal.sizing == "exposure":
        target = _lots_toward_zero(signal.amount * capital / (price * (1 + instrument.taker_fee)),
                                   instrument.lot_size)
        wanted = target - held
    else:
        wanted = _lots_toward_zero(signal.amount, instrument.lot_size)
    side: Side = "buy" if wanted > 0 else "sell"

    # Orders working the other way go; so do resting limits when the signal now wants a market order.
    # A market order of the same side still in flight stays, and counts toward the target.
    cancels = tuple(o.client_order_id for o in working
                    if o.side != side or (signal.limit_price is None and o.order_type == "limit"))
    keep = [o for o in working if o.client_order_id not in cancels]
    limits = [o for o in keep if o.order_type == "limit"]
    amend = limits[0] if signal.limit_price is not None and len(limits) == 1 == len(keep) else None
    if signal.sizing == "exposure":
        delta = wanted - sum(o.signed_remaining for o in keep)
    else:
        delta = wanted
    delta = _lots_toward_zero(delta, instrument.lot_size)
    kind = instrument_kind(signal.symbol)

    def intent(quantity: float, reduces: bool) -> OrderIntent:
        return OrderIntent(organism, signal.symbol, side, quantity, signal.limit_price, reference_price, kind,
                           reduces, ts_ns, signal.group)

    if amend is not None and signal.sizing == "exposure":
        new_remaining = _lots_toward_zero(abs(wanted), instrument.lot_size)
        if new_remaining == 0.0:
            return Plan((*cancels, amend.client_order_id), ())
        if new_remaining == amend.remaining and signal.limit_price == amend.limit_price:
            return Plan(cancels, ())
        return Plan(cancels, (intent(new_remaining, False),), amend.client_order_id)
    if delta == 0.0:
        return Plan(cancels, ())
    quantity = abs(delta)
    if held and (held > 0) != (delta > 0):
        reduce_qty = min(quantity, abs(held))
        rest = _lots_toward_zero(quantity - reduce_qty, instrument.lot_size)
        intents = [intent(reduce_qty, True)]
        if rest > 0:
            intents.append(intent(rest, False))
        return Plan(cancels, tuple(intents))
    return Plan(cancels, (intent(quantity, False),))


def finalize(intent: OrderIntent, decision: RiskDecision, client_order_id: str, instrument: Instrument,
             ttl_ns: int) -> FinalizedOrder | None:
    """Every field resolved, on the venue's grid; None if the accepted quantity is below one lot."""
    quantity = _lots_toward_zero(decision.quantity, instrument.lot_size)
    if quantity <= 0:
        return None
    quantity = instrument.quantity(round(quantity / instrument.lot_size))
    if intent.limit_price is None:
        return FinalizedOrder(client_order_id, intent.symbol, intent.side, "market", quantity, None, "ioc",
                              intent.ts_ns, 0)
    raw = intent.limit_price / instrument.tick_size
    # Buys round down, sells up: never more aggressive than the strategy asked.
    ticks = math.floor(raw + 1e-9) if intent.side == "buy" else math.ceil(raw - 1e-9)
    if ticks <= 0:
        return None
    return FinalizedOrder(client_order_id, intent.symbol, intent.side, "limit", quantity, instrument.price(ticks),
                          "gtc", intent.ts_ns, intent.ts_ns + ttl_ns)


def open_order(order: FinalizedOrder, organism: str) -> OpenOrder:
    return OpenOrder(order.client_order_id, organism, order.symbol, order.side, order.order_type, order.quantity,
                     order.limit_price, deadline_ns=order.deadline_ns)
