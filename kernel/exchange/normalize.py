"""ccxt's unified structures (trades, order books, tickers, orders) -> Allele's `MarketEvent` / `OrderUpdate`.

Symbols: ccxt writes "BTC/USDT" (spot) and "BTC/USDT:USDT" (a linear perpetual); Allele writes
"BTC-USDT" and "BTC-USDT-PERP". `SymbolMap` holds both directions for the markets a venue lists.

A structure that cannot be read (not a dict, a missing or non-finite price, an unknown symbol, a
crossed book) is counted in `Normalizer.dropped` under a short reason, logged (the first few of each
reason, then every 1000th) and dropped: the caller gets None or [] and carries on. Nothing here raises
on venue data.

Orders: `OrderTracker` remembers, per client order id, what has been reported already (acceptance,
filled quantity and cost, trades seen), so a polled or returned ccxt order turns into the *new*
`OrderUpdate`s only: "accepted" once, one "partially-filled"/"filled" update per new fill (from the
order's `trades` when the venue lists them, else from the growth of `filled` and `cost`), then the
terminal status ("cancelled", "expired", "rejected"), exactly once.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from allele.kernel.domain import MarketEvent, OrderStatus, OrderUpdate

log = logging.getLogger("allele.exchange")

PERP_SUFFIX = "-PERP"
_LOG_FIRST = 5


def allele_symbol(unified: str) -> str:
    """"BTC/USDT" -> "BTC-USDT"; "BTC/USDT:USDT" -> "BTC-USDT-PERP"; ValueError for other shapes."""
    base_quote, _, settle = unified.partition(":")
    base, slash, quote = base_quote.partition("/")
    if not slash or not base or not quote or "-" in base or "-" in quote:
        raise ValueError(f"ccxt symbol {unified!r} is not BASE/QUOTE[:SETTLE]")
    return f"{base}-{quote}{PERP_SUFFIX if settle else ''}"


class SymbolMap:
    """Allele symbol <-> ccxt unified symbol, for the markets a venue lists."""

    def __init__(self, unified_symbols: list[str]) -> None:
        self.to_ccxt: dict[str, str] = {}
        self.to_allele: dict[str, str] = {}
        for unified in unified_symbols:
            try:
                ours = allele_symbol(unified)
            except ValueError:
                continue
            self.to_ccxt.setdefault(ours, unified)
            self.to_allele.setdefault(unified, ours)

    def ccxt(self, symbol: str) -> str:
        """The ccxt symbol of an Allele symbol; KeyError naming the symbol if the venue does not list it."""
        try:
            return self.to_ccxt[symbol]
        except KeyError:
            raise KeyError(f"the venue does not list {symbol}") from None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _ms_to_ns(value: object) -> int | None:
    ms = _number(value)
    if ms is None or ms <= 0 or ms > 1e14:
        return None
    return int(ms) * 1_000_000


@dataclass
class Normalizer:
    """Turns ccxt structures of one venue into Allele events; counts what it had to drop."""

    venue: str
    symbols: SymbolMap
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str, raw: object) -> None:
        self.dropped[reason] += 1
        n = self.dropped[reason]
        if n <= _LOG_FIRST or n % 1000 == 0:
            log.warning("%s: dropped an unreadable message (%s; %d so far): %.200r", self.venue, reason, n, raw)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def _symbol(self, raw: dict[str, Any]) -> str | None:
        unified = raw.get("symbol")
        if not isinstance(unified, str):
            return None
        return self.symbols.to_allele.get(unified)

    def trade(self, raw: object, now_ns: int) -> MarketEvent | None:
        """A ccxt trade -> "trade" event; `now_ns` stamps a trade without a timestamp."""
        if not isinstance(raw, dict):
            self.drop("trade is not an object", raw)
            return None
        symbol = self._symbol(raw)
        price, amount = _number(raw.get("price")), _number(raw.get("amount"))
        if symbol is None:
            self.drop("trade of an unknown symbol", raw)
            return None
        if price is None or price <= 0 or amount is None or amount < 0:
            self.drop("trade without a positive price and size", raw)
            return None
        ts = _ms_to_ns(raw.get("timestamp")) or now_ns
        return MarketEvent("trade", self.venue, symbol, ts, price, amount)

    def book(self, raw: object, now_ns: int) -> MarketEvent | None:
        """A ccxt order book -> "quote" event of its top; None for a one-sided or crossed book."""
        if not isinstance(raw, dict):
            self.drop("order book is not an object", raw)
            return None
        symbol = self._symbol(raw)
        if symbol is None:
            self.drop("order book of an unknown symbol", raw)
            return None
        bids, asks = raw.get("bids"), raw.get("asks")
        try:
            bid, bid_size = (_number(bids[0][0]), _number(bids[0][1])) if bids else (None, None)
            ask, ask_size = (_number(asks[0][0]), _number(asks[0][1])) if asks else (None, None)
        except (TypeError, IndexError, KeyError):
            self.drop("order book levels are not [price, size] pairs", raw)
            return None
        if bid is None or ask is None or bid_size is None or ask_size is None:
            if bids and asks:
                self.drop("order book top is not numeric", raw)
            return None  # one-sided: nothing to quote yet
        if bid <= 0 or ask <= 0 or bid_size < 0 or ask_size < 0 or bid > ask:
            self.drop("order book top is crossed or not positive", raw)
            return None
        ts = _ms_to_ns(raw.get("timestamp")) or now_ns
        return MarketEvent("quote", self.venue, symbol, ts, (bid + ask) / 2, 0.0, bid, ask, bid_size, ask_size)

    def ticker(self, raw: object, now_ns: int) -> MarketEvent | None:
        """A ccxt ticker with bid and ask -> "quote" event (REST fallback of the book stream)."""
        if not isinstance(raw, dict):
            self.drop("ticker is not an object", raw)
            return None
        symbol = self._symbol(raw)
        if symbol is None:
            self.drop("ticker of an unknown symbol", raw)
            return None
        bid, ask = _number(raw.get("bid")), _number(raw.get("ask"))
        if bid is None or ask is None or bid <= 0 or ask <= 0 or bid > ask:
            self.drop("ticker without a sane bid and ask", raw)
            return None
        bid_size = _number(raw.get("bidVolume")) or 0.0
        ask_size = _number(raw.get("askVolume")) or 0.0
        ts = _ms_to_ns(raw.get("timestamp")) or now_ns
        return MarketEvent("quote", self.venue, symbol, ts, (bid + ask) / 2, 0.0, bid, ask, max(bid_size, 0.0),
                           max(ask_size, 0.0))


_CCXT_STATUS: dict[str, OrderStatus] = {"canceled": "cancelled", "cancelled": "cancelled", "expired": "expired",
                                        "rejected": "rejected"}


@dataclass
class _Seen:
    venue_order_id: str = ""
    symbol: str = ""
    accepted: bool = False
    filled: float = 0.0
    cost: float = 0.0
    fee: float = 0.0
    trades: set[str] = field(default_factory=set)
    closed: bool = False


class OrderTracker:
    """What has been reported per client order id; turns ccxt orders into the new `OrderUpdate`s."""

    def __init__(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer
        self._seen: dict[str, _Seen] = {}

    def open_orders(self) -> dict[str, tuple[str, str]]:
        """Client order id -> (venue order id, Allele symbol) of every order not yet closed."""
        return {cid: (s.venue_order_id, s.symbol) for cid, s in self._seen.items() if not s.closed}

    def venue_order_id(self, client_order_id: str) -> str | None:
        seen = self._seen.get(client_order_id)
        return seen.venue_order_id if seen else None

    def symbol(self, client_order_id: str) -> str | None:
        seen = self._seen.get(client_order_id)
        return seen.symbol if seen else None

    def track(self, client_order_id: str, symbol: str) -> None:
        self._seen.setdefault(client_order_id, _Seen(symbol=symbol))

    def closed(self, client_order_id: str) -> bool:
        seen = self._seen.get(client_order_id)
        return seen is not None and seen.closed

    def close(self, client_order_id: str) -> None:
        seen = self._seen.get(client_order_id)
        if seen is not None:
            seen.closed = True

    def updates(self, client_order_id: str, raw: object, now_ns: int) -> list[OrderUpdate]:
        """The new updates a ccxt order structure carries for our order `client_order_id`."""
        norm = self.normalizer
        if not isinstance(raw, dict):
            norm.drop("order is not an object", raw)
            return []
        seen = self._seen.setdefault(client_order_id, _Seen())
        if seen.closed:
            return []
        venue_id = raw.get("id")
        if isinstance(venue_id, (int, str)) and not isinstance(venue_id, bool) and str(venue_id):
            seen.venue_order_id = str(venue_id)
        symbol = norm._symbol(raw) or seen.symbol
        if not symbol:
            norm.drop("order of an unknown symbol", raw)
            return []
        seen.symbol = symbol
        status = raw.get("status")
        filled = _number(raw.get("filled"))
        amount = _number(raw.get("amount"))
        if status not in ("open", "closed", "canceled", "cancelled", "expired", "rejected") or filled is None \
                or filled < 0:
            norm.drop("order without a known status and a filled quantity", raw)
            return []
        ts = _ms_to_ns(raw.get("lastUpdateTimestamp")) or _ms_to_ns(raw.get("timestamp")) or now_ns
        out: list[OrderUpdate] = []

        def update(status: OrderStatus, qty: float = 0.0, price: float = 0.0, fee: float = 0.0, currency: str = "",
                   reason: str = "") -> None:
            out.append(OrderUpdate(client_order_id, seen.venue_order_id, symbol, status, qty, price, fee, currency,
                                   ts, reason))

        if status == "rejected":
            seen.closed = True
            update("rejected", reason=str(raw.get("info", {}).get("msg", "rejected by the venue"))[:200]
                   if isinstance(raw.get("info"), dict) else "rejected by the venue")
            return out
        if not seen.accepted:
            seen.accepted = True
            update("accepted")
        fills = self._new_fills(seen, raw, filled)
        done = status == "closed" or (amount is not None and filled >= amount > 0)
        for i, (qty, price, fee, currency) in enumerate(fills):
            last = i == len(fills) - 1
            update("filled" if last and done else "partially-filled", qty, price, fee, currency,
                   "fill" if not last or not done else "")
        terminal = _CCXT_STATUS.get(str(status))
        if terminal is not None:
            seen.closed = True
            update(terminal, reason=f"{status} by the venue")
        elif done:
            seen.closed = True
            if not fills:  # closed with nothing new to report: the last fill update said "partially-filled"
                update("filled", reason="closed by the venue")
        return out

    def _new_fills(self, seen: _Seen, raw: dict[str, Any], filled: float) -> list[tuple[float, float, float, str]]:
        fills: list[tuple[float, float, float, str]] = []
        trades = raw.get("trades")
        if isinstance(trades, list) and trades:
            for t in trades:
                if not isinstance(t, dict):
                    continue
                tid = str(t.get("id") or f"{t.get('price')}@{t.get('amount')}#{len(seen.trades)}")
                qty, price = _number(t.get("amount")), _number(t.get("price"))
                if tid in seen.trades or qty is None or price is None or qty <= 0 or price <= 0:
                    continue
                seen.trades.add(tid)
                fee, currency = _fee(t.get("fee"))
                seen.fee += fee
                fills.append((qty, price, fee, currency))
                seen.filled += qty
                seen.cost += qty * price
            if fills or seen.filled >= filled - 1e-12:
                return fills
        # Decimal on the printed values: 59.99758 / 0.001 is 59997.58, not 59997.579999999994.
        delta_d = _dec(filled) - _dec(seen.filled)
        if delta_d <= Decimal("1e-12"):
            return fills
        delta = float(delta_d)
        cost = _number(raw.get("cost"))
        average = _number(raw.get("average")) or _number(raw.get("price")) or 0.0
        if cost is not None and cost > seen.cost:
            price = float((_dec(cost) - _dec(seen.cost)) / delta_d)
        else:
            price = average
        if price <= 0 or not math.isfinite(price):
            return fills
        total_fee, currency = _fee(raw.get("fee"))
        fee = max(total_fee - seen.fee, 0.0)  # the order's fee is cumulative; report this fill's share
        seen.filled, seen.cost, seen.fee = filled, float(_dec(seen.cost) + delta_d * _dec(price)), seen.fee + fee
        fills.append((delta, price, fee, currency))
        return fills


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


def _fee(raw: object) -> tuple[float, str]:
    if not isinstance(raw, dict):
        return 0.0, ""
    cost = _number(raw.get("cost")) or 0.0
    currency = raw.get("currency")
    return cost, currency if isinstance(currency, str) else ""
