"""The venue emulator's state: a Binance-spot-shaped account and order model over the matching engine.

No HTTP here: `EmulatorState` takes already-parsed requests (a dict of parameters, the API key
header, the raw signed payload) and returns `(http status, JSON body)`, so the request handling can
be fuzzed without a server. `allele.kernel.emulator.server` puts it behind FastAPI.

    state = EmulatorState(EmulatorConfig(), accounts={"key": Account("secret", {"USDT": 10_000.0})})
    status, body = state.private("POST", "order", params, api_key, payload, signature)

What it models (the subset of the Binance spot API that ccxt's `binance` class and the bundled
`binance_spot` plugin use):

- symbols "BTCUSDT" ... traded in the `MatchingEngine` (price-time priority, maker/taker fees in the
  quote asset), with background liquidity from the seeded `SyntheticMarket` (one bid and one ask per
  symbol, replaced every `step_market()`);
- accounts: an API key, its HMAC secret, balances per asset; locked = what the open orders hold;
- request authentication exactly as Binance does it: the `X-MBX-APIKEY` header names the account
  (missing/malformed: -2014, unknown: -2015), `signature` is the lowercase hex HMAC-SHA256 of the
  query string and body that precede it (-1022 otherwise), `timestamp` must lie within `recvWindow`
  (default 5000 ms) of the server clock and not more than 1000 ms ahead (-1021);
- errors as Binance-style JSON `{"code": -NNNN, "msg": "..."}` with HTTP 400/401/404/429, so ccxt
  raises its own exception classes (AuthenticationError, InvalidOrder, OrderNotFound, RateLimitExceeded...);
- a request-weight budget per API key (or client address for public calls) per minute: over it, HTTP
  429 with -1003 and a Retry-After header.

Public market data is pushed to `listeners` (callables taking a stream name and a JSON frame): the
server turns them into WebSocket frames for `<symbol>@trade`, `@depth`/`@depth@100ms` (diffs with
update ids U..u, as the REST `depth` snapshot's `lastUpdateId` continues them), `@ticker` and
`@bookTicker`, `@miniTicker`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderUpdate, Side, TimeInForce
from allele.kernel.market import BackgroundLiquidity, SyntheticMarket
from allele.kernel.venue import PUBLIC, Emitted, Instrument, MatchingEngine

JSON = dict[str, Any]
Reply = tuple[int, Any]
Listener = Callable[[str, JSON], None]

BACKGROUND = "background"
_API_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9.:/_\-]{1,36}")
_STATUS = {"accepted": "NEW", "partially-filled": "PARTIALLY_FILLED", "filled": "FILLED", "cancelled": "CANCELED",
           "rejected": "REJECTED", "expired": "EXPIRED"}
_OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})
MAX_RECV_WINDOW_MS = 60_000
USER_STREAM = "user:"
"""Stream-name prefix of an account's user data: `user:<API key>` carries its order events."""
LISTEN_KEY_TTL_MS = 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One listed symbol: Binance id ("BTCUSDT"), its assets, grid and starting price."""

    symbol: str
    base: str
    quote: str
    start_price: float
    tick_size: float = 0.01
    lot_size: float = 0.001


DEFAULT_SYMBOLS = (SymbolSpec("BTCUSDT", "BTC", "USDT", 60_000.0), SymbolSpec("ETHUSDT", "ETH", "USDT", 3_000.0))


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes the emulated venue; the defaults suit tests and rehearsals."""

    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    seed: int = 7
    maker_fee: float = 0.001
    taker_fee: float = 0.001
    weight_per_minute: int = 6000
    weight_window_s: float = 60.0
    """Length of the request-weight window (Binance: one minute; shorter in tests)."""
    clock_offset_ms: int = 0
    """Added to the server clock: lets a test give the venue a skewed clock."""
    depth_levels: int = 100


@dataclass(slots=True)
class Account:
    """An API key's secret and balances (asset -> total, free + locked)."""

    secret: str
    balances: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"Account(balances={self.balances})"


@dataclass(slots=True)
class OrderRecord:
    """What the venue remembers of one order, in Binance's terms."""

    account: str
    symbol: str
    order_id: int
    client_order_id: str
    engine_id: str
    side: str
    type: str
    time_in_force: str
    price: float
    orig_qty: float
    time_ms: int
    executed_qty: float = 0.0
    quote_qty: float = 0.0
    status: str = "NEW"
    update_ms: int = 0
    fills: list[JSON] = field(default_factory=list)


class ApiError(Exception):
    """A Binance-style error reply: HTTP status, code, message."""

    def __init__(self, http: int, code: int, msg: str, data: JSON | None = None) -> None:
        super().__init__(msg)
        self.http, self.code, self.msg, self.data = http, code, msg, data

    def reply(self) -> Reply:
        body: JSON = {"code": self.code, "msg": self.msg}
        if self.data is not None:
            body["data"] = self.data
        return self.http, body


def fmt(value: float) -> str:
    """A decimal as Binance writes it: a string with 8 places."""
    return f"{value:.8f}"


def _execution_type(update: OrderUpdate, status: str) -> str:
    """Binance's execution type ("x") of an engine update: NEW, TRADE, CANCELED, EXPIRED or REJECTED."""
    if update.fill_quantity > 0:
        return "TRADE"
    return {"accepted": "NEW", "cancelled": "CANCELED", "expired": "EXPIRED", "rejected": "REJECTED"}.get(
        update.status, "CANCELED" if status == "CANCELED" else "NEW")


def parse_decimal(params: Mapping[str, str], name: str, *, required: bool = True) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                   "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not value.is_finite() or value <= 0 or value > Decimal("1e15"):
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                   "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    return float(value)


def parse_int(params: Mapping[str, str], name: str, *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def signed_payload(query: str, body: str) -> tuple[str, str | None]:
    """(what was signed, the signature) from the raw query string and body, as Binance reads them: the
    signature is the last parameter of whichever part carries it; the signed text is the query string
    followed by the body, both without the signature parameter."""
    signature: str | None = None
    parts = []
    for text in (query, body):
        head, sep, tail = text.rpartition("signature=")
        if sep and (head == "" or head.endswith("&")) and "&" not in tail:
            signature = tail
            text = head[:-1] if head.endswith("&") else head
        parts.append(text)
    return "".join(parts), signature


class EmulatorState:
    """The emulated venue. Single-threaded: the server calls it from one asyncio loop."""

    def __init__(self, config: EmulatorConfig | None = None, accounts: Mapping[str, Account] | None = None,
                 *, clock: Callable[[], int] = time.time_ns) -> None:
        self.config = config or EmulatorConfig()
        self.accounts: dict[str, Account] = dict(accounts or {})
        self._clock = clock
        self.specs = {s.symbol: s for s in self.config.symbols}
        if not self.specs:
            raise ValueError("the emulator needs at least one symbol")
        instruments = [Instrument(s.symbol, s.tick_size, s.lot_size, self.config.maker_fee, self.config.taker_fee,
                                  quote_currency=s.quote) for s in self.config.symbols]
        self.engine = MatchingEngine(instruments, venue="emu")
        self.liquidity = BackgroundLiquidity(self.engine, owner=BACKGROUND)
        start_ns = self.now_ns()
        self.market = SyntheticMarket(self.config.seed, [s.symbol for s in self.config.symbols], start_ns,
                                      venue="emulator", start_prices={s.symbol: s.start_price
                                                                      for s in self.config.symbols},
                                      binary_events=())
        self.orders: dict[int, OrderRecord] = {}
        self._by_engine_id: dict[str, OrderRecord] = {}
        self._by_client: dict[tuple[str, str], OrderRecord] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._client_ids = itertools.count(1)
        self.my_trades: dict[str, list[JSON]] = {}
        self.public_trades: dict[str, deque[JSON]] = {s: deque(maxlen=500) for s in self.specs}
        self.update_id: dict[str, int] = {s: 1 for s in self.specs}
        self._published_depth: dict[str, tuple[dict[int, int], dict[int, int]]] = {s: ({}, {}) for s in self.specs}
        self.stats: dict[str, dict[str, float]] = {}
        self.listeners: list[Listener] = []
        self._weights: dict[str, tuple[int, int]] = {}
        self.counters = {"requests": 0, "rejected_auth": 0, "rate_limited": 0, "orders": 0, "cancels": 0}
        self._event_ids = itertools.count(1)
        self.listen_keys: dict[str, tuple[str, int]] = {}
        """listenKey -> (API key, expiry in ms): the user data streams (see `listen_key`)."""

    # --- clock -----------------------------------------------------------------------------------

    def now_ns(self) -> int:
        return self._clock() + self.config.clock_offset_ms * 1_000_000

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    # --- the synthetic market ----------------------------------------------------------------------

    def step_market(self) -> None:
        """One bar of the synthetic market: its trades are printed, its quotes rest as background orders."""
        now = self.now_ns()
        for event in self.market.step():
            stamped = MarketEvent(event.kind, event.venue, event.symbol, now, event.price, event.size, event.bid,
                                  event.ask, event.bid_size, event.ask_size)
            if stamped.kind == "quote":
                self._apply(self.liquidity.on_quote(stamped))
            elif stamped.kind == "trade" and stamped.size > 0:
                self._print_trade(stamped.symbol, stamped.price, stamped.size, now // 1_000_000, buyer_maker=False)
        self._publish_books()

    # --- rate limit and authentication --------------------------------------------------------------

    def charge(self, who: str, weight: int) -> None:
        """Count `weight` against `who`'s budget of the current minute; ApiError -1003 (HTTP 429) when spent."""
        # The window opens at `who`'s first request (not on the clock's minute), so a test's burst never
        # straddles a boundary by chance.
        now = self.now_ms()
        start, used = self._weights.get(who, (now, 0))
        if now - start >= self.config.weight_window_s * 1000:
            start, used = now, 0
        used += weight
        self._weights[who] = (start, used)
        if used > self.config.weight_per_minute:
            self.counters["rate_limited"] += 1
            raise ApiError(429, -1003, f"Too much request weight used; current limit is "
                                       f"{self.config.weight_per_minute} request weight per 1 MINUTE. "
                                       "Please use WebSocket Streams for live updates to avoid polling the API.")

    def authenticate(self, api_key: str | None, payload: str, signature: str | None,
                     params: Mapping[str, str]) -> str:
        """The account a signed request acts for; ApiError (-2014, -2015, -1022, -1021, -1102) otherwise."""
        if not api_key or not _API_KEY.fullmatch(api_key):
            self.counters["rejected_auth"] += 1
            raise ApiError(401, -2014, "API-key format invalid.")
        account = self.accounts.get(api_key)
        if account is None:
            self.counters["rejected_auth"] += 1
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if signature is None or not _SIGNATURE.fullmatch(signature):
            self.counters["rejected_auth"] += 1
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        expected = hmac.new(account.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            self.counters["rejected_auth"] += 1
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        timestamp = parse_int(params, "timestamp")
        window = parse_int(params, "recvWindow", required=False) or 5000
        if window > MAX_RECV_WINDOW_MS:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self.now_ms()
        assert timestamp is not None
        if timestamp > now + 1000 or now - timestamp > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return api_key

    # --- public endpoints --------------------------------------------------------------------------

    def public(self, path: str, params: Mapping[str, str]) -> Reply:
        """GET /api/v3/<path> without authentication."""
        try:
            return 200, self._public(path, params)
        except ApiError as exc:
            return exc.reply()

    def _public(self, path: str, params: Mapping[str, str]) -> Any:
        if path == "ping":
            return {}
        if path == "time":
            return {"serverTime": self.now_ms()}
        if path == "exchangeInfo":
            return self.exchange_info()
        if path == "depth":
            symbol = self._symbol(params)
            limit = parse_int(params, "limit", required=False) or 100
            return self.depth(symbol, min(limit, 5000))
        if path == "trades":
            symbol = self._symbol(params)
            limit = min(parse_int(params, "limit", required=False) or 500, 1000)
            return list(self.public_trades[symbol])[-limit:]
        if path == "aggTrades":
            symbol = self._symbol(params)
            limit = min(parse_int(params, "limit", required=False) or 500, 1000)
            since = parse_int(params, "startTime", required=False) or 0
            recent = [t for t in self.public_trades[symbol] if t["time"] >= since][-limit:]
            return [{"a": t["id"], "p": t["price"], "q": t["qty"], "f": t["id"], "l": t["id"], "T": t["time"],
                     "m": t["isBuyerMaker"], "M": True} for t in recent]
        if path in ("ticker/24hr", "ticker/bookTicker", "ticker/price"):
            render = {"ticker/24hr": self.ticker_24hr, "ticker/bookTicker": self.book_ticker,
                      "ticker/price": self.price_ticker}[path]
            if "symbol" in params:
                return render(self._symbol(params))
            return [render(s) for s in self.specs]
        raise ApiError(404, -1000, f"unknown endpoint /api/v3/{path} (the emulator speaks a subset of the "
                                   "Binance spot API)")

    def _symbol(self, params: Mapping[str, str], required: bool = True) -> str:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return ""
        if symbol not in self.specs:
            raise ApiError(400, -1121, "Invalid symbol.")
        return symbol

    def exchange_info(self) -> JSON:
        symbols = []
        for s in self.config.symbols:
            symbols.append({
                "symbol": s.symbol, "status": "TRADING", "baseAsset": s.base, "baseAssetPrecision": 8,
                "quoteAsset": s.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "icebergAllowed": False, "ocoAllowed": False,
                "quoteOrderQtyMarketAllowed": False, "allowTrailingStop": False, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": fmt(s.tick_size), "maxPrice": "10000000.00000000",
                     "tickSize": fmt(s.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": fmt(s.lot_size), "maxQty": "9000.00000000",
                     "stepSize": fmt(s.lot_size)},
                    {"filterType": "NOTIONAL", "minNotional": "1.00000000", "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "NONE",
                "allowedSelfTradePreventionModes": ["NONE"],
            })
        return {"timezone": "UTC", "serverTime": self.now_ms(),
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                "limit": self.config.weight_per_minute}],
                "exchangeFilters": [], "symbols": symbols}

    def _levels(self, symbol: str) -> tuple[dict[int, int], dict[int, int]]:
        book = self.engine.book(symbol)
        return dict(book.levels("buy")), dict(book.levels("sell"))

    def depth(self, symbol: str, limit: int) -> JSON:
        inst = self.engine.instrument(symbol)
        bids, asks = self._levels(symbol)
        return {"lastUpdateId": self.update_id[symbol],
                "bids": [[fmt(inst.price(t)), fmt(inst.quantity(q))] for t, q in list(bids.items())[:limit]],
                "asks": [[fmt(inst.price(t)), fmt(inst.quantity(q))] for t, q in list(asks.items())[:limit]]}

    def _top(self, symbol: str) -> tuple[float, float, float, float]:
        inst = self.engine.instrument(symbol)
        top = self.engine.book(symbol).top()
        bid = inst.price(top.bid_ticks) if top.bid_ticks is not None else 0.0
        ask = inst.price(top.ask_ticks) if top.ask_ticks is not None else 0.0
        return bid, inst.quantity(top.bid_lots), ask, inst.quantity(top.ask_lots)

    def book_ticker(self, symbol: str) -> JSON:
        bid, bid_qty, ask, ask_qty = self._top(symbol)
        return {"symbol": symbol, "bidPrice": fmt(bid), "bidQty": fmt(bid_qty), "askPrice": fmt(ask),
                "askQty": fmt(ask_qty)}

    def price_ticker(self, symbol: str) -> JSON:
        return {"symbol": symbol, "price": fmt(self._last(symbol))}

    def _last(self, symbol: str) -> float:
        stats = self.stats.get(symbol)
        if stats is not None:
            return stats["last"]
        bid, _, ask, _ = self._top(symbol)
        return (bid + ask) / 2 if bid and ask else self.specs[symbol].start_price

    def ticker_24hr(self, symbol: str) -> JSON:
        last = self._last(symbol)
        st = self.stats.get(symbol, {"open": last, "high": last, "low": last, "last": last, "last_qty": 0.0,
                                     "volume": 0.0, "quote_volume": 0.0, "count": 0.0, "open_ms": self.now_ms()})
        bid, bid_qty, ask, ask_qty = self._top(symbol)
        change = st["last"] - st["open"]
        wavg = st["quote_volume"] / st["volume"] if st["volume"] else st["last"]
        return {"symbol": symbol, "priceChange": fmt(change),
                "priceChangePercent": f"{(change / st['open'] * 100 if st['open'] else 0.0):.3f}",
                "weightedAvgPrice": fmt(wavg), "prevClosePrice": fmt(st["open"]), "lastPrice": fmt(st["last"]),
                "lastQty": fmt(st["last_qty"]), "bidPrice": fmt(bid), "bidQty": fmt(bid_qty), "askPrice": fmt(ask),
                "askQty": fmt(ask_qty), "openPrice": fmt(st["open"]), "highPrice": fmt(st["high"]),
                "lowPrice": fmt(st["low"]), "volume": fmt(st["volume"]), "quoteVolume": fmt(st["quote_volume"]),
                "openTime": int(st["open_ms"]), "closeTime": self.now_ms(), "firstId": 1, "lastId": int(st["count"]),
                "count": int(st["count"])}

    # --- private endpoints -------------------------------------------------------------------------

    def private(self, method: str, path: str, params: Mapping[str, str], api_key: str | None, payload: str,
                signature: str | None) -> Reply:
        """A signed request to /api/v3/<path>; every failure is a Binance-style error reply."""
        self.counters["requests"] += 1
        try:
            self.charge(api_key or "anonymous", 1 if method != "GET" or path == "order" else 10)
            account = self.authenticate(api_key, payload, signature, params)
            route = (method, path)
            if route == ("POST", "order"):
                return 200, self.new_order(account, params)
            if route == ("POST", "order/test"):
                self._order_request(params)
                return 200, {}
            if route == ("POST", "order/cancelReplace"):
                return 200, self.cancel_replace(account, params)
            if route == ("DELETE", "order"):
                return 200, self.cancel_order(account, params)
            if route == ("GET", "order"):
                return 200, self._render(self._find(account, params))
            if route == ("GET", "account"):
                return 200, self.account_info(account)
            listed = self.order_lists(account, route, params)
            if listed is not None:
                return 200, listed
            raise ApiError(404, -1000, f"unknown endpoint {method} /api/v3/{path} (the emulator speaks a subset "
                                       "of the Binance spot API)")
        except ApiError as exc:
            return exc.reply()

    def order_lists(self, account: str, route: tuple[str, str], params: Mapping[str, str]) -> list[JSON] | None:
        """The account's open orders, all orders of a symbol, or its trades of a symbol (`myTrades` on spot,
        `userTrades` on futures): the reads spot and futures answer alike; None for any other route."""
        if route == ("GET", "openOrders"):
            symbol = self._symbol(params, required=False)
            return [self._render(o) for o in self.orders.values()
                    if o.account == account and o.status in _OPEN and (not symbol or o.symbol == symbol)]
        if route == ("GET", "allOrders"):
            symbol = self._symbol(params)
            return [self._render(o) for o in self.orders.values() if o.account == account and o.symbol == symbol]
        if route in (("GET", "myTrades"), ("GET", "userTrades")):
            symbol = self._symbol(params)
            return [t for t in self.my_trades.get(account, []) if t["symbol"] == symbol]
        return None

    def user_data_stream(self, method: str, api_key: str | None, params: Mapping[str, str]) -> Reply:
        """Binance's listenKey endpoints (spot `/api/v3/userDataStream`, futures `/fapi/v1/listenKey`): POST
        opens (or, within its life, returns) the account's listenKey, PUT extends it by `LISTEN_KEY_TTL_MS`,
        DELETE closes it. They take the API key header only, no signature, as Binance's do."""
        self.counters["requests"] += 1
        try:
            self.charge(api_key or "anonymous", 1)
            if not api_key or not _API_KEY.fullmatch(api_key):
                self.counters["rejected_auth"] += 1
                raise ApiError(401, -2014, "API-key format invalid.")
            if api_key not in self.accounts:
                self.counters["rejected_auth"] += 1
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            now = self.now_ms()
            if method == "POST":
                key = next((k for k, (owner, expiry) in self.listen_keys.items() if owner == api_key and expiry > now),
                           None) or secrets.token_hex(32)
                self.listen_keys[key] = (api_key, now + LISTEN_KEY_TTL_MS)
                return 200, {"listenKey": key}
            key = params.get("listenKey") or next(
                (k for k, (owner, _) in self.listen_keys.items() if owner == api_key), "")
            entry = self.listen_keys.get(key)
            if entry is None or entry[0] != api_key or entry[1] <= now:
                raise ApiError(400, -1125, "This listenKey does not exist.")
            if method == "PUT":
                self.listen_keys[key] = (api_key, now + LISTEN_KEY_TTL_MS)
                return 200, {"listenKey": key}
            if method == "DELETE":
                del self.listen_keys[key]
                return 200, {}
            raise ApiError(405, -1000, f"{method} is not a listenKey method: use POST, PUT or DELETE")
        except ApiError as exc:
            return exc.reply()

    def listen_key_owner(self, key: str) -> str | None:
        """The API key whose user data `key` streams, if it is a live listenKey."""
        entry = self.listen_keys.get(key)
        return entry[0] if entry is not None and entry[1] > self.now_ms() else None

    def _find(self, account: str, params: Mapping[str, str]) -> OrderRecord:
        self._symbol(params)
        order_id = parse_int(params, "orderId", required=False)
        client_id = params.get("origClientOrderId")
        record: OrderRecord | None = None
        if order_id is not None:
            record = self.orders.get(order_id)
        elif client_id:
            record = self._by_client.get((account, client_id))
        else:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if record is None or record.account != account or record.symbol != params.get("symbol"):
            raise ApiError(400, -2013, "Order does not exist.")
        return record

    def _order_request(self, params: Mapping[str, str]) -> tuple[str, Side, str, TimeInForce, float, float | None]:
        symbol = self._symbol(params)
        side_raw = params.get("side")
        if side_raw not in ("BUY", "SELL"):
            raise ApiError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        side: Side = "buy" if side_raw == "BUY" else "sell"
        kind = params.get("type")
        if kind not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise ApiError(400, -1116, "Invalid orderType.")
        if "quoteOrderQty" in params:
            raise ApiError(400, -1106, "Parameter 'quoteOrderQty' sent when not required (the emulator takes "
                                       "'quantity' only).")
        quantity = parse_decimal(params, "quantity")
        assert quantity is not None
        price = parse_decimal(params, "price", required=kind != "MARKET")
        tif: TimeInForce = "gtc"
        if kind == "LIMIT":
            raw_tif = params.get("timeInForce")
            tifs: dict[str | None, TimeInForce] = {"GTC": "gtc", "IOC": "ioc", "FOK": "fok"}
            if raw_tif not in tifs:
                raise ApiError(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or "
                                           "malformed.")
            tif = tifs[raw_tif]
        elif kind == "LIMIT_MAKER":
            tif = "post-only"
        elif price is not None:
            raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
        inst = self.engine.instrument(symbol)
        lots = inst.to_lots(quantity)
        if lots is None or lots <= 0:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if price is not None and inst.to_ticks(price) is None:
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        return symbol, side, kind, tif, quantity, price

    def new_order(self, account: str, params: Mapping[str, str]) -> JSON:
        symbol, side, kind, tif, quantity, price = self._order_request(params)
        client_id = params.get("newClientOrderId") or f"emu{next(self._client_ids)}"
        if not _CLIENT_ID.fullmatch(client_id):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                       "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        existing = self._by_client.get((account, client_id))
        if existing is not None and existing.status in _OPEN:
            raise ApiError(400, -2010, "Duplicate order sent.")
        reference = price if price is not None else self._top(symbol)[2 if side == "buy" else 0] or self._last(symbol)
        self._check_funds(account, params, symbol, side, quantity, reference)
        now_ns = self.now_ns()
        order = FinalizedOrder(client_id, symbol, side, "market" if kind == "MARKET" else "limit", quantity, price,
                               tif, now_ns, 0)
        emitted = self.engine.submit(order, account, now_ns)
        first = next((e.event for e in emitted if e.owner == account and isinstance(e.event, OrderUpdate)), None)
        if first is None or first.status == "rejected":
            reason = first.reason if first is not None else "not accepted"
            if "post-only would cross" in reason:
                raise ApiError(400, -2010, "Order would immediately match and take.")
            raise ApiError(400, -2010, f"Order rejected: {reason}")
        if first.status == "expired":
            raise ApiError(400, -2010, f"Order expired: {first.reason}")
        record = OrderRecord(account, symbol, next(self._order_ids), client_id, first.venue_order_id,
                             "BUY" if side == "buy" else "SELL", kind,
                             {"gtc": "GTC", "ioc": "IOC", "fok": "FOK", "post-only": "GTC"}[tif], price or 0.0,
                             quantity, now_ns // 1_000_000, update_ms=now_ns // 1_000_000)
        self.orders[record.order_id] = record
        self._by_engine_id[record.engine_id] = record
        self._by_client[(account, client_id)] = record
        self.counters["orders"] += 1
        self._apply(emitted)
        self._publish_books()
        reply = self._render(record)
        reply["transactTime"] = record.time_ms
        reply["fills"] = list(record.fills)
        return reply

    def _check_funds(self, account: str, params: Mapping[str, str], symbol: str, side: Side, quantity: float,
                     reference: float) -> None:
        """ApiError -2010 unless `account` can pay for the order (spot: quote asset to buy, base asset to sell)."""
        spec = self.specs[symbol]
        need_asset, need = (spec.quote, quantity * reference * (1 + self.config.taker_fee)) if side == "buy" \
            else (spec.base, quantity)
        if self.free(account, need_asset) + 1e-12 < need:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")

    def cancel_replace(self, account: str, params: Mapping[str, str]) -> JSON:
        """POST /api/v3/order/cancelReplace in STOP_ON_FAILURE mode (the one ccxt's `edit_order` sends): cancel the
        order named by `cancelOrderId` or `cancelOrigClientOrderId`, then place the new one (it may reuse the
        cancelled order's client id). A failed cancel places nothing (-2022, HTTP 400); a refused new order
        after a successful cancel is -2021 (HTTP 409); `data` says which part failed, as Binance's does."""
        if params.get("cancelReplaceMode") != "STOP_ON_FAILURE":
            raise ApiError(400, -1102, "Mandatory parameter 'cancelReplaceMode' was not sent, was empty/null, or "
                                       "malformed (the emulator speaks STOP_ON_FAILURE only).")
        self._order_request(params)  # a malformed new order is refused before anything is cancelled
        target = {"symbol": params.get("symbol", "")}
        if params.get("cancelOrderId"):
            target["orderId"] = params["cancelOrderId"]
        if params.get("cancelOrigClientOrderId"):
            target["origClientOrderId"] = params["cancelOrigClientOrderId"]
        try:
            cancelled = self.cancel_order(account, target)
        except ApiError as exc:
            raise ApiError(400, -2022, "Order cancel-replace failed.", {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": {"code": exc.code, "msg": exc.msg}, "newOrderResponse": None}) from None
        try:
            placed = self.new_order(account, params)
        except ApiError as exc:
            raise ApiError(409, -2021, "Order cancel-replace partially failed.", {
                "cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": cancelled,
                "newOrderResponse": {"code": exc.code, "msg": exc.msg}}) from None
        return {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": cancelled,
                "newOrderResponse": placed}

    def cancel_order(self, account: str, params: Mapping[str, str]) -> JSON:
        try:
            record = self._find(account, params)
        except ApiError as exc:
            if exc.code == -2013:
                raise ApiError(400, -2011, "Unknown order sent.") from None
            raise
        if record.status not in _OPEN:
            raise ApiError(400, -2011, "Unknown order sent.")
        self._apply(self.engine.cancel(account, record.client_order_id, self.now_ns()))
        self._publish_books()
        self.counters["cancels"] += 1
        reply = self._render(record)
        reply["origClientOrderId"] = record.client_order_id
        return reply

    def _render(self, o: OrderRecord) -> JSON:
        return {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
                "price": fmt(o.price), "origQty": fmt(o.orig_qty), "executedQty": fmt(o.executed_qty),
                "cummulativeQuoteQty": fmt(o.quote_qty), "status": o.status, "timeInForce": o.time_in_force,
                "type": o.type, "side": o.side, "stopPrice": fmt(0.0), "icebergQty": fmt(0.0), "time": o.time_ms,
                "updateTime": o.update_ms, "isWorking": o.status in _OPEN, "workingTime": o.time_ms,
                "origQuoteOrderQty": fmt(0.0), "selfTradePreventionMode": "NONE"}

    # --- balances ----------------------------------------------------------------------------------

    def locked(self, account: str, asset: str) -> float:
        total = 0.0
        for o in self.orders.values():
            if o.account != account or o.status not in _OPEN:
                continue
            spec = self.specs[o.symbol]
            remaining = o.orig_qty - o.executed_qty
            if o.side == "BUY" and spec.quote == asset:
                total += remaining * o.price
            elif o.side == "SELL" and spec.base == asset:
                total += remaining
        return total

    def free(self, account: str, asset: str) -> float:
        return self.accounts[account].balances.get(asset, 0.0) - self.locked(account, asset)

    def account_info(self, account: str) -> JSON:
        balances = self.accounts[account].balances
        return {"makerCommission": int(self.config.maker_fee * 10_000),
                "takerCommission": int(self.config.taker_fee * 10_000), "buyerCommission": 0, "sellerCommission": 0,
                "commissionRates": {"maker": fmt(self.config.maker_fee), "taker": fmt(self.config.taker_fee),
                                    "buyer": fmt(0.0), "seller": fmt(0.0)},
                "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.now_ms(),
                "accountType": "SPOT", "permissions": ["SPOT"], "uid": 1,
                "balances": [{"asset": a, "free": fmt(self.free(account, a)), "locked": fmt(self.locked(account, a))}
                             for a in sorted(balances)]}

    # --- what the matching engine emitted ------------------------------------------------------------

    def _apply(self, emitted: list[Emitted]) -> None:
        for e in emitted:
            event = e.event
            if isinstance(event, MarketEvent):
                if e.owner == PUBLIC and event.kind == "trade":
                    self._print_trade(event.symbol, event.price, event.size, event.ts_ns // 1_000_000,
                                      buyer_maker=False)
                continue
            if e.owner == BACKGROUND or e.owner not in self.accounts:
                continue
            record = self._by_engine_id.get(event.venue_order_id)
            if record is None:
                continue
            self._order_update(record, event)

    def _order_update(self, record: OrderRecord, update: OrderUpdate) -> None:
        record.update_ms = update.ts_ns // 1_000_000
        if update.fill_quantity > 0:
            qty, price = update.fill_quantity, update.fill_price
            record.executed_qty = float(Decimal(repr(record.executed_qty)) + Decimal(repr(qty)))
            record.quote_qty += qty * price
            self._settle_fill(record, qty, price, update.fee)
            trade_id = next(self._trade_ids)
            record.fills.append({"price": fmt(price), "qty": fmt(qty), "commission": fmt(update.fee),
                                 "commissionAsset": update.fee_currency, "tradeId": trade_id})
            self.my_trades.setdefault(record.account, []).append({
                "symbol": record.symbol, "id": trade_id, "orderId": record.order_id, "orderListId": -1,
                "price": fmt(price), "qty": fmt(qty), "quoteQty": fmt(qty * price), "commission": fmt(update.fee),
                "commissionAsset": update.fee_currency, "time": update.ts_ns // 1_000_000,
                "isBuyer": record.side == "BUY", "isMaker": update.reason == "maker", "isBestMatch": True})
        status = _STATUS[update.status]
        if update.status == "cancelled" and record.type == "MARKET" and record.executed_qty > 0:
            status = "EXPIRED"  # Binance: a market order whose rest found no liquidity
        elif update.status == "cancelled" and record.time_in_force in ("IOC", "FOK") and update.reason != \
                "cancelled by owner":
            status = "EXPIRED"
        if update.status != "accepted":
            record.status = status
        self._emit(f"{USER_STREAM}{record.account}", self._user_event(record, update))

    def _settle_fill(self, record: OrderRecord, qty: float, price: float, fee: float) -> None:
        """Move the money of one fill (spot: base against quote, the fee in the quote asset)."""
        spec = self.specs[record.symbol]
        balances = self.accounts[record.account].balances
        sign = 1.0 if record.side == "BUY" else -1.0
        balances[spec.base] = balances.get(spec.base, 0.0) + sign * qty
        balances[spec.quote] = balances.get(spec.quote, 0.0) - sign * qty * price - fee

    def _user_event(self, record: OrderRecord, update: OrderUpdate) -> JSON:
        """The user-data-stream frame of one change of `record` (spot: an `executionReport`)."""
        fill = record.fills[-1] if update.fill_quantity > 0 and record.fills else None
        now = self.now_ms()
        return {"e": "executionReport", "E": now, "s": record.symbol, "c": record.client_order_id, "S": record.side,
                "o": record.type, "f": record.time_in_force, "q": fmt(record.orig_qty), "p": fmt(record.price),
                "P": fmt(0.0), "F": fmt(0.0), "g": -1, "C": "", "x": _execution_type(update, record.status),
                "X": record.status, "r": "NONE", "i": record.order_id, "l": fmt(update.fill_quantity),
                "z": fmt(record.executed_qty), "L": fmt(update.fill_price), "n": fmt(update.fee),
                "N": update.fee_currency or None, "T": record.update_ms, "t": fill["tradeId"] if fill else -1,
                "I": next(self._event_ids), "w": record.status in _OPEN and record.type != "MARKET",
                "m": update.reason == "maker", "M": False, "O": record.time_ms, "Z": fmt(record.quote_qty),
                "Y": fmt(update.fill_quantity * update.fill_price), "Q": fmt(0.0), "W": record.time_ms,
                "V": "NONE"}

    def _print_trade(self, symbol: str, price: float, size: float, ts_ms: int, *, buyer_maker: bool) -> None:
        trade_id = next(self._trade_ids)
        self.public_trades[symbol].append({"id": trade_id, "price": fmt(price), "qty": fmt(size),
                                           "quoteQty": fmt(price * size), "time": ts_ms,
                                           "isBuyerMaker": buyer_maker, "isBestMatch": True})
        st = self.stats.setdefault(symbol, {"open": price, "high": price, "low": price, "last": price,
                                            "last_qty": size, "volume": 0.0, "quote_volume": 0.0, "count": 0.0,
                                            "open_ms": float(ts_ms)})
        st["high"], st["low"], st["last"], st["last_qty"] = max(st["high"], price), min(st["low"], price), price, size
        st["volume"] += size
        st["quote_volume"] += size * price
        st["count"] += 1
        self._emit(f"{symbol.lower()}@trade", {"e": "trade", "E": ts_ms, "s": symbol, "t": trade_id,
                                                "p": fmt(price), "q": fmt(size), "T": ts_ms, "m": buyer_maker,
                                                "M": True})

    def _publish_books(self) -> None:
        """Depth diffs, book tickers and 24h tickers for every symbol whose book changed since last time."""
        for symbol in self.specs:
            bids, asks = self._levels(symbol)
            old_bids, old_asks = self._published_depth[symbol]
            if bids == old_bids and asks == old_asks:
                continue
            inst = self.engine.instrument(symbol)

            def diff(new: dict[int, int], old: dict[int, int], inst: Instrument = inst) -> list[list[str]]:
                changed = [t for t in new if old.get(t) != new[t]] + [t for t in old if t not in new]
                return [[fmt(inst.price(t)), fmt(inst.quantity(new.get(t, 0)))] for t in changed]

            self.update_id[symbol] += 1
            uid = self.update_id[symbol]
            self._published_depth[symbol] = (bids, asks)
            now = self.now_ms()
            depth = {"e": "depthUpdate", "E": now, "s": symbol, "U": uid, "u": uid, "b": diff(bids, old_bids),
                     "a": diff(asks, old_asks)}
            self._emit(f"{symbol.lower()}@depth", depth)
            self._emit(f"{symbol.lower()}@depth@100ms", depth)
            bid, bid_qty, ask, ask_qty = self._top(symbol)
            self._emit(f"{symbol.lower()}@bookTicker", {"u": uid, "s": symbol, "b": fmt(bid), "B": fmt(bid_qty),
                                                        "a": fmt(ask), "A": fmt(ask_qty)})
            t = self.ticker_24hr(symbol)
            self._emit(f"{symbol.lower()}@ticker", {
                "e": "24hrTicker", "E": now, "s": symbol, "p": t["priceChange"], "P": t["priceChangePercent"],
                "w": t["weightedAvgPrice"], "x": t["prevClosePrice"], "c": t["lastPrice"], "Q": t["lastQty"],
                "b": t["bidPrice"], "B": t["bidQty"], "a": t["askPrice"], "A": t["askQty"], "o": t["openPrice"],
                "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"],
                "O": t["openTime"], "C": t["closeTime"], "F": t["firstId"], "L": t["lastId"], "n": t["count"]})
            self._emit(f"{symbol.lower()}@miniTicker", {
                "e": "24hrMiniTicker", "E": now, "s": symbol, "c": t["lastPrice"], "o": t["openPrice"],
                "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"]})

    def _emit(self, stream: str, frame: JSON) -> None:
        for listener in list(self.listeners):
            listener(stream, frame)


def stream_names(state: EmulatorState) -> set[str]:
    """Every stream name a client may subscribe to."""
    names: set[str] = set()
    for symbol in state.specs:
        low = symbol.lower()
        names.update({f"{low}@trade", f"{low}@depth", f"{low}@depth@100ms", f"{low}@bookTicker", f"{low}@ticker",
                      f"{low}@miniTicker"})
    return names
