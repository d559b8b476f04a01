"""Background liquidity: turn quotes into resting orders of another participant in the matching engine.

    liquidity = BackgroundLiquidity(engine, owner="background")
    for event in market.events(bars=100):
        if event.kind == "quote" and event.symbol in engine.symbols:
            emitted = liquidity.on_quote(event)

Each quote replaces that symbol's previous pair of background orders (cancel, then a
gtc bid and a gtc ask at the quoted prices and sizes). Prices are moved onto the
engine's tick grid away from the mid (bid down, ask up) and sizes down to whole lots,
so a quote never becomes more aggressive than it was. Orders are plain gtc limits: if
the market moved through someone's resting order, the new background order trades with
it, as the market would. Deterministic: client order ids count up from 1.
"""

from __future__ import annotations

import math

from allele.kernel.domain import FinalizedOrder, MarketEvent, Side
from allele.kernel.venue import Emitted, Instrument, MatchingEngine


def quote_orders(quote: MarketEvent, instrument: Instrument, id_prefix: str) -> list[FinalizedOrder]:
    """The gtc limit orders (bid, then ask) that rest a quote's sizes at its prices, on the instrument's grid.

    A side with no price or less than one lot is left out.
    """
    orders: list[FinalizedOrder] = []
    sides: tuple[tuple[Side, float, float], ...] = (("buy", quote.bid, quote.bid_size),
                                                      ("sell", quote.ask, quote.ask_size))
    for side, price, size in sides:
        if not (price > 0 and math.isfinite(price) and size > 0 and math.isfinite(size)):
            continue
        raw_ticks = price / instrument.tick_size
        ticks = math.floor(raw_ticks + 1e-9) if side == "buy" else math.ceil(raw_ticks - 1e-9)
        lots = math.floor(size / instrument.lot_size + 1e-9)
        if ticks <= 0 or lots <= 0:
            continue
        orders.append(FinalizedOrder(f"{id_prefix}-{side}", quote.symbol, side, "limit", instrument.quantity(lots),
                                     instrument.price(ticks), "gtc", quote.ts_ns, 0))
    return orders


class BackgroundLiquidity:
    """Keeps one quoted bid and ask per symbol resting in `engine` under `owner`."""

    def __init__(self, engine: MatchingEngine, owner: str = "background") -> None:
        self.engine = engine
        self.owner = owner
        self._resting: dict[str, list[str]] = {}
        self._count = 0

    def on_quote(self, quote: MarketEvent) -> list[Emitted]:
        """Replace the symbol's background orders with the quote's; returns everything the engine emitted."""
        if quote.kind != "quote":
            raise ValueError(f"expected a quote, got a {quote.kind} event")
        instrument = self.engine.instrument(quote.symbol)
        out: list[Emitted] = []
        for client_order_id in self._resting.pop(quote.symbol, []):
            if self.engine.open_quantity(self.owner, client_order_id):
                out.extend(self.engine.cancel(self.owner, client_order_id, quote.ts_ns))
        self._count += 1
        placed: list[str] = []
        for order in quote_orders(quote, instrument, f"{self.owner}-{self._count}"):
            out.extend(self.engine.submit(order, self.owner, quote.ts_ns))
            placed.append(order.client_order_id)
        self._resting[quote.symbol] = placed
        return out
