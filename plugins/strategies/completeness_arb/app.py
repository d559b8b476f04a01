"""completeness_arb: buy every outcome of an event when the whole set costs less than its payout.

An event has `outcomes` mutually exclusive binary outcomes, exactly one of
which pays 1.0. Buying one unit of each costs, at the best asks a_i and with
a fee of `fee_rate` per unit of notional on every leg,

    cost = A + fee_rate * A,   A = sum of a_i   (math.fsum: exact, order-free)

and pays exactly 1.0 at settlement, whatever happens. The basket is bought
when

    cost < 1 - min_margin                         (strict)
    and 1 - cost <= max_edge                      (a larger edge is more likely bad data)
    and every ask <= max_ask

as one `units` signal per outcome: the same quantity
q = min(basket_units, smallest ask_size among the legs) on every leg, limit
price = that leg's ask, one shared group "<event>#<n>" (n counts this event's
baskets since reset), emitted together on the quote that completed the
condition. Nothing is emitted again for the event until one of its legs'
ask or ask_size changes.

Symbols are "<event>:<outcome>", split at the last ':'. Symbols without ':'
and events other than quotes are ignored. An event is considered only once
quotes of exactly `outcomes` distinct outcomes have been seen, every one with
a positive, finite ask and ask_size; if more outcomes than that appear the
event is never traded (the set is not what the genome says it is).

Proof document: docs/strategies/completeness_arb.md.
"""

from __future__ import annotations

import math

from allele_guest import (
    QUOTE,
    Manifest,
    MarketEvent,
    Param,
    PluginError,
    Reading,
    Signal,
    Strategy,
    export_strategy,
    units,
)


class _Event:
    """Latest offer of each outcome of one event, and how many baskets it has had."""

    __slots__ = ("baskets", "legs")

    def __init__(self) -> None:
        # outcome -> (symbol, ask, ask_size); (0.0, 0.0) when the leg has no usable offer
        self.legs: dict[str, tuple[str, float, float]] = {}
        self.baskets = 0


class CompletenessArb(Strategy):
    manifest = Manifest(
        name="completeness_arb", version="0.1.0", kind="strategy", author="Allele",
        description="Buys one of every outcome of a mutually exclusive event when the asks plus fees sum to less "
                    "than 1 - min_margin: the basket pays exactly 1 at settlement.",
        parameters=(
            Param.int("outcomes", 2, 2, 16, description="outcomes per event; only complete sets are traded"),
            Param.float("min_margin", 0.01, 0.0, 0.2, 0.005,
                        description="required edge per basket unit after fees (payout 1.0)"),
            Param.float("fee_rate", 0.01, 0.0, 0.1, 0.005,
                        description="fee per unit of notional, charged on each leg (cost = sum asks * (1 + fee_rate))"),
            Param.float("basket_units", 10.0, 1.0, 10000.0, description="units of each outcome to buy per basket"),
            Param.float("max_ask", 0.9, 0.5, 1.0, 0.01,
                        description="skip a basket if any leg's ask is above this (the risk gate's binary-outcome "
                                    "ban blocks legs priced above 0.90)"),
            Param.float("max_edge", 0.1, 0.01, 1.0, 0.01,
                        description="skip a basket whose edge (1 - cost) is above this: too good to be true usually "
                                    "means a missing outcome or a stale quote; > min_margin"),
        ),
        symbols=("*",),
        proof="docs/strategies/completeness_arb.md",
    )

    def reset(self) -> None:
        if self.params["max_edge"] <= self.params["min_margin"]:
            raise PluginError(f"max_edge ({self.params['max_edge']}) must be larger than min_margin "
                              f"({self.params['min_margin']}): no basket could pass both")
        self._events: dict[str, _Event] = {}

    def on_event(self, event: MarketEvent | Reading) -> list[Signal]:
        if not isinstance(event, MarketEvent) or event.kind != QUOTE:
            return []
        name, sep, outcome = event.symbol.rpartition(":")
        if not sep or not name or not outcome:
            return []
        ev = self._events.get(name)
        if ev is None:
            ev = self._events[name] = _Event()
        ask, size = float(event.ask), float(event.ask_size)
        if not (0.0 < ask < math.inf and 0.0 < size < math.inf):  # no offer on this leg (or garbage, NaN)
            ask = size = 0.0
        old = ev.legs.get(outcome)
        if old is not None and old[1] == ask and old[2] == size:
            # The offer side did not change, so neither did the decision: this is what keeps a
            # basket from being emitted twice for the same book.
            return []
        ev.legs[outcome] = (event.symbol, ask, size)
        return self._check(name, ev)

    def _check(self, name: str, ev: _Event) -> list[Signal]:
        p = self.params
        if len(ev.legs) != p["outcomes"]:
            return []
        legs = [ev.legs[o] for o in sorted(ev.legs)]
        asks = [leg[1] for leg in legs]
        if min(asks) <= 0.0 or max(asks) > p["max_ask"]:
            return []
        total = math.fsum(asks)
        fees = p["fee_rate"] * total
        cost = total + fees
        limit = 1.0 - p["min_margin"]
        if not cost < limit or 1.0 - cost > p["max_edge"]:
            return []
        qty = min(p["basket_units"], min(leg[2] for leg in legs))
        ev.baskets += 1
        group = f"{name}#{ev.baskets}"
        note = (f"sum asks {total:.6f} + fees {fees:.6f} = {cost:.6f} < {limit:.6f} (1 - margin {p['min_margin']}); "
                f"edge {1.0 - cost:.6f}/unit on {len(legs)} legs")
        return [units(symbol, qty, ask, group, note) for symbol, ask, _ in legs]


StrategyApi = export_strategy(CompletenessArb)
