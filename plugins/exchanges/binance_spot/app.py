"""binance_spot: Binance spot stream normalizer and signed order encoder.

Symbols: the venue writes "BTCUSDT"; Allele writes "BTC-USDT". The split is
made at the longest known quote asset that ends the venue symbol (QUOTES
below); a symbol ending in none of them is an error.

subscribe
    One JSON frame {"method": "SUBSCRIBE", "params": ["btcusdt@trade",
    "btcusdt@bookTicker", ...], "id": n} for the market streams. The WIT call
    has no error channel, so a symbol it cannot read is skipped with a warning
    in the host's log rather than raised.

decode (raw frames, combined-stream wrappers {"stream": ..., "data": {...}},
and WebSocket-API event wrappers {"subscriptionId": n, "event": {...}})
    trade            -> MarketEvent "trade": price "p", size "q", ts_ns = "T" ms * 1e6
    bookTicker       -> MarketEvent "quote": price = (bid + ask) / 2, bid/ask "b"/"a",
                        sizes "B"/"A". Binance's spot bookTicker frame carries no
                        timestamp, so ts_ns is 0 and the host stamps the event
                        with its receive time.
    executionReport  -> OrderUpdate: client order id "C" when set (the original
                        order's id, on cancels) else "c"; venue order id "i";
                        status from "X"; this fill's "l" at "L"; fee "n" in "N";
                        ts_ns from "T" (else "E"); reason "r" unless "NONE".
    {"result": null, "id": n}                    (subscription ack)   -> []
    outboundAccountPosition, balanceUpdate       (balance pushes that
                        accompany every fill; Allele tracks fills)    -> []
    Anything else (not JSON, not an object, a venue error {"error": ...},
    an unknown event, a missing or invalid field, a price that is not
    positive) is a PluginError naming what was wrong.

encode_order
    POST {base}/api/v3/order, form-encoded body
        symbol, side, type, [timeInForce], quantity, [price], newClientOrderId,
        recvWindow, timestamp, signature
    type is MARKET, LIMIT, or LIMIT_MAKER for post-only (which takes no
    timeInForce); timeInForce (GTC/IOC/FOK) goes with LIMIT only. Quantity and
    price are plain decimals with at most 8 places. timestamp is the order's
    finalization time in ms. signature is the host's HMAC-SHA256 of the body
    before it; the API key header carries the {{api-key}} placeholder, which
    the host fills in when it sends.
"""

from __future__ import annotations

import json
import math
from typing import Any

from allele_guest import (
    API_KEY_PLACEHOLDER,
    Exchange,
    FinalizedOrder,
    Manifest,
    MarketEvent,
    OrderUpdate,
    Param,
    PluginError,
    VenueRequest,
    export_exchange,
    log,
    sign,
)

VENUE = "binance"
MAINNET = "https://api.binance.com"
TESTNET = "https://testnet.binance.vision"

# Quote assets, matched longest first ("BTCFDUSD" is BTC/FDUSD, "USDCUSDT" is USDC/USDT).
QUOTES = tuple(sorted((
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "DOT",
    "EUR", "TRY", "GBP", "BRL", "AUD", "JPY", "RUB", "UAH", "ZAR", "PLN", "RON", "ARS", "MXN", "COP", "IDR",
    "CZK", "AEUR",
), key=len, reverse=True))

STATUSES = {
    "NEW": "accepted",
    "PARTIALLY_FILLED": "partially-filled",
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",  # self-trade prevention expired it
}
IGNORED_EVENTS = ("outboundAccountPosition", "balanceUpdate")
TIME_IN_FORCE = {"gtc": "GTC", "ioc": "IOC", "fok": "FOK"}
MAX_DECIMALS = 8
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_CLIENT_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.:/_-")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdef")


def _describe(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def normalize_symbol(venue_symbol: str) -> str:
    """"BTCUSDT" -> "BTC-USDT", split at the longest known quote asset."""
    if not isinstance(venue_symbol, str) or not venue_symbol:
        raise PluginError(f"symbol must be a non-empty string, got {_describe(venue_symbol)}")
    sym = venue_symbol.upper()
    if not set(sym) <= _ALNUM:
        raise PluginError(f"symbol {venue_symbol!r} has characters other than letters and digits")
    for quote in QUOTES:
        if sym.endswith(quote) and len(sym) > len(quote):
            return f"{sym[:-len(quote)]}-{quote}"
    raise PluginError(f"symbol {venue_symbol!r} does not end in a known quote asset ({', '.join(QUOTES)})")


def venue_symbol(symbol: str) -> str:
    """"BTC-USDT" (or "BTCUSDT") -> "BTCUSDT", checked."""
    if not isinstance(symbol, str):
        raise PluginError(f"symbol must be a string, got {_describe(symbol)}")
    if "-" in symbol:
        parts = symbol.upper().split("-")
        if len(parts) != 2 or not parts[0] or not parts[1] or not set(parts[0] + parts[1]) <= _ALNUM:
            raise PluginError(f"symbol {symbol!r} is not BASE-QUOTE")
        return parts[0] + parts[1]
    return normalize_symbol(symbol).replace("-", "")


def format_decimal(value: float, what: str) -> str:
    """A positive number as a plain decimal: at most 8 places, no exponent, no trailing zeros."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PluginError(f"{what} must be a finite number, got {_describe(value)}")
    if value <= 0:
        raise PluginError(f"{what} must be positive, got {value!r}")
    text = f"{value:.{MAX_DECIMALS}f}".rstrip("0").rstrip(".")
    if text == "0":
        raise PluginError(f"{what} {value!r} rounds to 0 at {MAX_DECIMALS} decimal places")
    return text


def _quote(text: str) -> str:
    """Percent-encode for a form body (RFC 3986 unreserved characters stay as they are)."""
    return "".join(c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def _field(obj: dict[str, Any], key: str, what: str) -> object:
    if key not in obj:
        raise PluginError(f"{what} frame has no '{key}' field")
    return obj[key]


def _text(obj: dict[str, Any], key: str, what: str) -> str:
    value = _field(obj, key, what)
    if not isinstance(value, str) or not value:
        raise PluginError(f"{what} field '{key}' must be a non-empty string, got {_describe(value)}")
    return value


def _number(obj: dict[str, Any], key: str, what: str, positive: bool) -> float:
    """A decimal field (Binance sends them as strings): finite, > 0 or >= 0."""
    value = _field(obj, key, what)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PluginError(f"{what} field '{key}' must be a decimal string, got {_describe(value)}")
    try:
        number = float(value)
    except ValueError:
        raise PluginError(f"{what} field '{key}' = {_describe(value)} is not a number") from None
    if not math.isfinite(number):
        raise PluginError(f"{what} field '{key}' = {_describe(value)} is not finite")
    if number < 0 or (positive and number == 0):
        raise PluginError(f"{what} field '{key}' = {_describe(value)} must be {'positive' if positive else '>= 0'}")
    return number


def _millis(obj: dict[str, Any], key: str, what: str) -> int:
    value = _field(obj, key, what)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PluginError(f"{what} field '{key}' must be a positive integer (ms), got {_describe(value)}")
    return value


class BinanceSpot(Exchange):
    manifest = Manifest(
        name="binance_spot", version="0.1.0", kind="exchange", author="Allele",
        description="Binance spot: trade/bookTicker/executionReport frames to normalized events; "
                    "signed REST orders (HMAC-SHA256 through the host's vault).",
        parameters=(
            Param.bool("testnet", False,
                       description="send orders to testnet.binance.vision instead of api.binance.com"),
            Param.int("recv_window_ms", 5000, 1, 60000,
                      description="recvWindow: ms after 'timestamp' during which Binance accepts the order"),
        ),
        allowed_hosts=("api.binance.com", "testnet.binance.vision", "stream.binance.com"),
    )

    def reset(self) -> None:
        self._base = TESTNET if self.params["testnet"] else MAINNET
        self._next_id = 1

    # -- stream -------------------------------------------------------------------------------------------------

    def subscribe(self, symbols: list[str]) -> list[str]:
        streams: list[str] = []
        for symbol in symbols:
            try:
                name = venue_symbol(symbol).lower()
            except PluginError as exc:
                log(f"binance_spot: not subscribing to {symbol!r}: {exc}", "warn")
                continue
            for stream in (f"{name}@trade", f"{name}@bookTicker"):
                if stream not in streams:
                    streams.append(stream)
        if not streams:
            return []
        frame = json.dumps({"method": "SUBSCRIBE", "params": streams, "id": self._next_id}, separators=(",", ":"))
        self._next_id += 1
        return [frame]

    def decode(self, frame: str) -> list[MarketEvent | OrderUpdate]:
        try:
            obj = json.loads(frame)
        except (TypeError, ValueError):
            raise PluginError(f"frame is not JSON: {_describe(frame)}") from None
        if not isinstance(obj, dict):
            raise PluginError(f"frame is not a JSON object: {_describe(obj)}")
        if "stream" in obj and "data" in obj:  # combined stream
            obj = obj["data"]
            if not isinstance(obj, dict):
                raise PluginError(f"combined-stream 'data' is not an object: {_describe(obj)}")
        elif "subscriptionId" in obj and "event" in obj:  # WebSocket API user data
            obj = obj["event"]
            if not isinstance(obj, dict):
                raise PluginError(f"user-data 'event' is not an object: {_describe(obj)}")
        if "id" in obj and "result" in obj:
            return []  # reply to SUBSCRIBE / UNSUBSCRIBE
        if "error" in obj:
            raise PluginError(f"venue error: {_describe(obj['error'], 200)}")
        event = obj.get("e")
        if event == "trade":
            return [self._trade(obj)]
        if event == "executionReport":
            return [self._execution(obj)]
        if event in IGNORED_EVENTS:
            return []
        if event == "bookTicker" or (event is None and "b" in obj and "a" in obj):
            return [self._book_ticker(obj)]  # spot bookTicker frames have no "e"
        if event is None:
            raise PluginError(f"frame has no event type 'e' and is not a bookTicker: {_describe(obj)}")
        raise PluginError(f"unknown event type {_describe(event)}")

    def _trade(self, obj: dict[str, Any]) -> MarketEvent:
        what = "trade"
        symbol = normalize_symbol(_text(obj, "s", what))
        price = _number(obj, "p", what, positive=True)
        size = _number(obj, "q", what, positive=True)
        ts_ns = _millis(obj, "T", what) * 1_000_000
        return MarketEvent("trade", VENUE, symbol, ts_ns, price, size)

    def _book_ticker(self, obj: dict[str, Any]) -> MarketEvent:
        what = "bookTicker"
        symbol = normalize_symbol(_text(obj, "s", what))
        bid = _number(obj, "b", what, positive=True)
        ask = _number(obj, "a", what, positive=True)
        bid_size = _number(obj, "B", what, positive=False)
        ask_size = _number(obj, "A", what, positive=False)
        if bid > ask:
            raise PluginError(f"bookTicker for {symbol} is crossed: bid {bid} > ask {ask}")
        # No timestamp in a spot bookTicker frame: 0 tells the host to stamp its receive time.
        return MarketEvent("quote", VENUE, symbol, 0, (bid + ask) / 2, 0.0, bid, ask, bid_size, ask_size)

    def _execution(self, obj: dict[str, Any]) -> OrderUpdate:
        what = "executionReport"
        symbol = normalize_symbol(_text(obj, "s", what))
        raw_status = _text(obj, "X", what)
        status = STATUSES.get(raw_status)
        if status is None:
            raise PluginError(f"{what} order status 'X' = {raw_status!r} is not one of {', '.join(STATUSES)}")
        original = obj.get("C")
        if isinstance(original, str) and original:
            client_id = original  # a cancel: "c" is the cancel request's id, "C" the order's
        else:
            client_id = _text(obj, "c", what)
        venue_id = _field(obj, "i", what)
        if isinstance(venue_id, bool) or not isinstance(venue_id, (int, str)) or venue_id == "":
            raise PluginError(f"{what} field 'i' must be the venue order id, got {_describe(venue_id)}")
        fill_qty = _number(obj, "l", what, positive=False)
        fill_price = _number(obj, "L", what, positive=False)
        if fill_qty > 0 and fill_price == 0:
            raise PluginError(f"{what} reports a fill of {fill_qty} with no price 'L'")
        fee = _number(obj, "n", what, positive=False) if obj.get("n") is not None else 0.0
        fee_currency = obj.get("N")
        if fee_currency is None:
            fee_currency = ""
        elif not isinstance(fee_currency, str):
            raise PluginError(f"{what} field 'N' must be the fee asset, got {_describe(fee_currency)}")
        ts_ns = _millis(obj, "T" if "T" in obj else "E", what) * 1_000_000
        reason = obj.get("r", "NONE")
        if not isinstance(reason, str):
            raise PluginError(f"{what} field 'r' must be a string, got {_describe(reason)}")
        return OrderUpdate(client_id, str(venue_id), symbol, status, fill_qty, fill_price, fee, fee_currency, ts_ns,
                           "" if reason == "NONE" else reason)

    # -- orders -------------------------------------------------------------------------------------------------

    def encode_order(self, order: FinalizedOrder, account: str) -> VenueRequest:
        side = {"buy": "BUY", "sell": "SELL"}.get(order.side)
        if side is None:
            raise PluginError(f"order side must be buy or sell, got {order.side!r}")
        client_id = order.client_order_id
        if not client_id or len(client_id) > 36 or not set(client_id) <= _CLIENT_ID_CHARS:
            raise PluginError(f"client order id {client_id!r} is not 1-36 characters of [A-Za-z0-9.:/_-] "
                              "as Binance requires")
        params: list[tuple[str, str]] = [("symbol", venue_symbol(order.symbol)), ("side", side)]
        tif = order.time_in_force
        if order.order_type == "market":
            if tif == "post-only":
                raise PluginError("a post-only order must be a limit order, not market")
            params.append(("type", "MARKET"))
            params.append(("quantity", format_decimal(order.quantity, "quantity")))
        elif order.order_type == "limit":
            if order.limit_price is None:
                raise PluginError(f"limit order {client_id} has no limit price")
            if tif == "post-only":
                params.append(("type", "LIMIT_MAKER"))
            elif tif in TIME_IN_FORCE:
                params.append(("type", "LIMIT"))
                params.append(("timeInForce", TIME_IN_FORCE[tif]))
            else:
                raise PluginError(f"time in force must be gtc, ioc, fok or post-only, got {tif!r}")
            params.append(("quantity", format_decimal(order.quantity, "quantity")))
            params.append(("price", format_decimal(order.limit_price, "limit price")))
        else:
            raise PluginError(f"order type must be market or limit, got {order.order_type!r}")
        if isinstance(order.ts_ns, bool) or not isinstance(order.ts_ns, int) or order.ts_ns <= 0:
            raise PluginError(f"order ts_ns must be a positive integer, got {order.ts_ns!r}")
        params.append(("newClientOrderId", client_id))
        params.append(("recvWindow", str(self.params["recv_window_ms"])))
        params.append(("timestamp", str(order.ts_ns // 1_000_000)))
        body = "&".join(f"{k}={_quote(v)}" for k, v in params)
        signature = sign(account, body, "hmac-sha256")
        if not isinstance(signature, str) or len(signature) != 64 or not set(signature) <= _HEX:
            raise PluginError(f"the host returned a signature that is not 64 lowercase hex digits: "
                              f"{_describe(signature)}")
        return VenueRequest(
            "POST", f"{self._base}/api/v3/order",
            [("X-MBX-APIKEY", API_KEY_PLACEHOLDER), ("Content-Type", "application/x-www-form-urlencoded")],
            f"{body}&signature={signature}")


ExchangeApi = export_exchange(BinanceSpot)
