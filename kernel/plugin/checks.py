"""Checks on what plugins return, at the boundary, before anything downstream sees it.

Both adapters hand plugin output over as plain Python data (dicts with
snake_case keys, lists, strings); these functions turn it into domain
objects or raise `MalformedResult` naming what was wrong. A malformed result
quarantines the instance: a plugin that returns garbage once is not trusted
with the next event.
"""

from __future__ import annotations

import json
import math
from typing import Any

from allele.kernel.domain import BatchSignal, MarketEvent, OrderUpdate, Reading, Signal, VenueEvent, VenueRequest

from .capabilities import url_allowed
from .limits import KindLimits

MAX_SYMBOL_CHARS = 64
MAX_TEXT_CHARS = 1024
MAX_UNITS = 1e12  # no instrument has a sane order quantity beyond this

EVENT_KINDS = ("trade", "quote", "bar")
ORDER_STATUSES = ("accepted", "partially-filled", "filled", "cancelled", "rejected", "expired")


class MalformedResult(ValueError):
    """A plugin returned something that breaks the contract."""


def _text(d: dict[str, Any], key: str, where: str, *, required: bool = False, limit: int = MAX_TEXT_CHARS) -> str:
    v = d.get(key, "")
    if not isinstance(v, str):
        raise MalformedResult(f"{where}.{key} must be a string, got {type(v).__name__}")
    if required and not v:
        raise MalformedResult(f"{where}.{key} is empty")
    if len(v) > limit:
        raise MalformedResult(f"{where}.{key} is {len(v)} characters long (limit {limit})")
    return v


def _number(d: dict[str, Any], key: str, where: str, *, positive: bool = False, nonneg: bool = False) -> float:
    v = d.get(key, 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MalformedResult(f"{where}.{key} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise MalformedResult(f"{where}.{key} is {v}, not a finite number")
    if (positive and v <= 0) or (nonneg and v < 0):
        raise MalformedResult(f"{where}.{key} = {v} must be {'positive' if positive else 'non-negative'}")
    return v


def _int(d: dict[str, Any], key: str, where: str) -> int:
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int):
        raise MalformedResult(f"{where}.{key} must be an integer, got {v!r}")
    return v


def _count(items: Any, what: str, limits: KindLimits) -> list[Any]:
    if not isinstance(items, list):
        raise MalformedResult(f"expected a list of {what}, got {type(items).__name__}")
    if len(items) > limits.max_items:
        raise MalformedResult(f"returned {len(items)} {what}; the limit for one call is {limits.max_items}")
    return items


def event_for_plugin(event: MarketEvent | Reading) -> None:
    """Refuse to hand a plugin an event with non-finite numbers: bad data is the feed's fault, and
    must not reach (or quarantine) a plugin. Raises ValueError naming the field."""
    names = ("price", "size", "bid", "ask", "bid_size", "ask_size") if isinstance(event, MarketEvent) else ("value",)
    for name in names:
        value = getattr(event, name)
        if not math.isfinite(value):
            raise ValueError(f"event for {event.symbol or '(no symbol)'} has {name} = {value}; "
                             "events with non-finite numbers are not passed to plugins")


def signal(d: dict[str, Any], where: str = "signal") -> Signal:
    sizing = d.get("sizing")
    if sizing not in ("exposure", "units"):
        raise MalformedResult(f"{where}.sizing must be 'exposure' or 'units', got {sizing!r}")
    amount = _number(d, "amount", where)
    if sizing == "exposure" and not -1.0 <= amount <= 1.0:
        raise MalformedResult(f"{where}.amount = {amount} is an exposure outside [-1, 1]")
    if abs(amount) > MAX_UNITS:
        raise MalformedResult(f"{where}.amount = {amount} is beyond any sane quantity")
    limit = d.get("limit_price")
    if limit is not None:
        limit = _number(d, "limit_price", where, positive=True)
    return Signal(symbol=_text(d, "symbol", where, required=True, limit=MAX_SYMBOL_CHARS), sizing=sizing,
                  amount=amount, limit_price=limit, group=_text(d, "group", where, limit=MAX_SYMBOL_CHARS * 2),
                  note=_text(d, "note", where))


def signals(items: Any, limits: KindLimits) -> list[Signal]:
    return [signal(d, f"signal[{i}]") for i, d in enumerate(_count(items, "signals", limits))]


def batch_signals(text: Any, n_rows: int, symbols: list[str], limits: KindLimits) -> list[BatchSignal]:
    """The columnar output of `on-batch` (wit/worlds.wit) as BatchSignals."""
    if not isinstance(text, str):
        raise MalformedResult(f"on-batch must return a JSON string, got {type(text).__name__}")
    if len(text) > limits.max_result_bytes:
        raise MalformedResult(f"on-batch returned {len(text)} bytes; the limit is {limits.max_result_bytes}")
    try:
        cols = json.loads(text)
    except ValueError as exc:
        raise MalformedResult(f"on-batch returned text that is not JSON ({exc})") from None
    if not isinstance(cols, dict):
        raise MalformedResult("on-batch must return a JSON object of columns")
    names = ("row", "sym", "sizing", "amount", "limit", "group")
    for name in names:
        if not isinstance(cols.get(name), list):
            raise MalformedResult(f"on-batch output column '{name}' is missing or not a list")
    n = len(cols["row"])
    for name in names:
        if len(cols[name]) != n:
            raise MalformedResult(f"on-batch output column '{name}' has {len(cols[name])} entries, 'row' has {n}")
    out: list[BatchSignal] = []
    last_row = -1
    for i, (row, sym, sizing, amount, limit, group) in enumerate(zip(*(cols[c] for c in names), strict=True)):
        where = f"on-batch signal {i}"
        if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < n_rows:
            raise MalformedResult(f"{where}: row {row!r} is not a row of the {n_rows}-row input")
        if row < last_row:
            raise MalformedResult(f"{where}: rows must be in ascending order ({row} after {last_row})")
        last_row = row
        if not isinstance(sym, int) or isinstance(sym, bool) or not 0 <= sym < len(symbols):
            raise MalformedResult(f"{where}: sym {sym!r} is not an index into the {len(symbols)} input symbols")
        if sizing not in (0, 1) or isinstance(sizing, bool):
            raise MalformedResult(f"{where}: sizing must be 0 (exposure) or 1 (units), got {sizing!r}")
        sig = signal({"symbol": symbols[sym], "sizing": ("exposure", "units")[sizing], "amount": amount,
                      "limit_price": limit, "group": group if group is not None else ""}, where)
        out.append(BatchSignal(row, sig))
    return out


def market_event(d: dict[str, Any], where: str = "event") -> MarketEvent:
    kind = d.get("kind")
    if kind not in EVENT_KINDS:
        raise MalformedResult(f"{where}.kind must be one of {EVENT_KINDS}, got {kind!r}")
    return MarketEvent(kind=kind, venue=_text(d, "venue", where, limit=MAX_SYMBOL_CHARS),
                       symbol=_text(d, "symbol", where, required=True, limit=MAX_SYMBOL_CHARS),
                       ts_ns=_int(d, "ts_ns", where), price=_number(d, "price", where, nonneg=True),
                       size=_number(d, "size", where, nonneg=True), bid=_number(d, "bid", where, nonneg=True),
                       ask=_number(d, "ask", where, nonneg=True), bid_size=_number(d, "bid_size", where, nonneg=True),
                       ask_size=_number(d, "ask_size", where, nonneg=True))


def readings(items: Any, limits: KindLimits) -> list[Reading]:
    out = []
    for i, d in enumerate(_count(items, "readings", limits)):
        where = f"reading[{i}]"
        out.append(Reading(sensor=_text(d, "sensor", where, required=True, limit=MAX_SYMBOL_CHARS),
                           name=_text(d, "name", where, required=True, limit=MAX_SYMBOL_CHARS),
                           symbol=_text(d, "symbol", where, limit=MAX_SYMBOL_CHARS), ts_ns=_int(d, "ts_ns", where),
                           value=_number(d, "value", where)))
    return out


def order_update(d: dict[str, Any], where: str = "order") -> OrderUpdate:
    status = d.get("status")
    if status not in ORDER_STATUSES:
        raise MalformedResult(f"{where}.status must be one of {ORDER_STATUSES}, got {status!r}")
    return OrderUpdate(client_order_id=_text(d, "client_order_id", where, limit=MAX_SYMBOL_CHARS),
                       venue_order_id=_text(d, "venue_order_id", where, limit=MAX_SYMBOL_CHARS),
                       symbol=_text(d, "symbol", where, limit=MAX_SYMBOL_CHARS), status=status,
                       fill_quantity=_number(d, "fill_quantity", where, nonneg=True),
                       fill_price=_number(d, "fill_price", where, nonneg=True), fee=_number(d, "fee", where),
                       fee_currency=_text(d, "fee_currency", where, limit=16), ts_ns=_int(d, "ts_ns", where),
                       reason=_text(d, "reason", where))


def venue_events(items: Any, limits: KindLimits) -> list[VenueEvent]:
    out: list[VenueEvent] = []
    for i, item in enumerate(_count(items, "venue events", limits)):
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ("market", "order"):
            raise MalformedResult(f"venue event {i} must be {{'market': ...}} or {{'order': ...}}")
        tag, body = next(iter(item.items()))
        out.append(market_event(body, f"event[{i}]") if tag == "market" else order_update(body, f"event[{i}]"))
    return out


def venue_request(d: Any, allowed_hosts: frozenset[str]) -> VenueRequest:
    if not isinstance(d, dict):
        raise MalformedResult(f"encode-order must return a request, got {type(d).__name__}")
    method = _text(d, "method", "request", required=True, limit=8).upper()
    if method not in ("GET", "POST", "PUT", "DELETE"):
        raise MalformedResult(f"request.method '{method}' is not one of GET, POST, PUT, DELETE")
    url = _text(d, "url", "request", required=True, limit=8192)
    if not url_allowed(url, allowed_hosts):
        # The host puts the account's API key into this request: it may only go where the manifest says.
        raise MalformedResult(f"request.url {url[:200]!r} is not an http(s) URL on one of the plugin's "
                              f"allowed_hosts {sorted(allowed_hosts)}")
    headers = d.get("headers", [])
    if not isinstance(headers, list) or not all(
            isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers):
        raise MalformedResult("request.headers must be a list of (name, value) string pairs")
    return VenueRequest(method=method, url=url, headers=tuple((str(k), str(v)) for k, v in headers),
                        body=_text(d, "body", "request", limit=1 << 20))


def frames(items: Any, limits: KindLimits) -> list[str]:
    out = _count(items, "subscription frames", limits)
    if not all(isinstance(f, str) for f in out):
        raise MalformedResult("subscribe must return a list of strings")
    return out
