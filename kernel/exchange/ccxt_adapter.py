"""CcxtExchange: any ccxt exchange as an Allele venue — markets, live data, orders — in asyncio.

    exchange = CcxtExchange(ExchangeSettings(id="binance", account="main"), credentials=vault)
    await exchange.open()                                 # markets and precision; server clock offset
    exchange.instrument("BTC-USDT")                       # tick, lot, fees, quote currency
    await exchange.watch(["BTC-USDT"], sink, stop)        # MarketEvents into `sink` until `stop` is set
    updates = await exchange.execute(order)               # FinalizedOrder -> [OrderUpdate, ...]
    updates = await exchange.cancel(client_order_id)
    updates = await exchange.poll_orders()                # new fills / closes of our open orders
    balances = await exchange.balances()                  # {"USDT": Balance(free, used, total), ...}
    positions = await exchange.positions()                # perpetuals: {"BTC-USDT-PERP": Position(...)}
    await exchange.stream_orders(order_sink, stop)        # our orders' updates off the user data stream
    await exchange.close()

Credentials: market data uses an unauthenticated client that lives as long as the exchange object.
Every private call (`execute`, `cancel`, `poll_orders`, `order_status`, `balances`) builds a fresh
authenticated ccxt client inside `with credentials.credentials(account) as creds:` and closes and drops it
when the call ends, so a secret lives in process memory only while a request that needs it is made. A
failure never carries the secret: messages are scrubbed of it, and an authentication failure becomes a
`VenueError` naming the venue, the account and what to do.

Resilience:
- rate limits: ccxt's `enableRateLimit` throttles; a `RateLimitExceeded`/`DDoSProtection` answer (HTTP 429/418,
  Binance -1003) waits with exponential back-off (`backoff_s` doubling to `backoff_max_s`) and retries, up to
  `retries` times; so does a network failure of a read;
- an order whose placement failed on the network is looked up by its client order id before it is sent
  again, so a lost answer never doubles an order;
- clock skew: the server clock's offset is measured with `fetch_time` at `open` and on an `InvalidNonce`
  (Binance -1021), and handed to every authenticated client (`options['timeDifference']`);
- streams: each watcher reconnects with back-off after an error; while the stream is down, the same data
  is polled over REST (`fetch_trades`, `fetch_ticker`) every `poll_s`; an exchange without WebSocket
  support is polled throughout. A message that cannot be normalized is counted and dropped (`Normalizer`);
- user data: `stream_orders` follows our orders on the venue's user data stream; while it is up
  `poll_orders` slows to `stream_poll_s`, when it is down polling takes over (see `stream_orders`).

Perpetuals: `market_type = "swap"` trades the venue's linear swaps ("BTC-USDT-PERP", margined in the
settle currency); `positions()` reads them, signed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
from aiohttp import WSMsgType

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderUpdate
from allele.kernel.venue.book import Instrument
from allele.vault.signing import Credentials, CredentialSource, UnknownAccount

from .normalize import Normalizer, OrderTracker, SymbolMap
from .settings import ExchangeSettings

log = logging.getLogger("allele.exchange")

T = TypeVar("T")
Sink = Callable[[MarketEvent], None]
OrderSink = Callable[[OrderUpdate], None]


class VenueError(RuntimeError):
    """A venue could not be used as configured; the message says which venue, which account and what to do."""


@dataclass(frozen=True, slots=True)
class Balance:
    free: float
    used: float
    total: float


@dataclass(frozen=True, slots=True)
class Position:
    """A perpetual position: `quantity` in base units, negative for a short; PnL in the settle currency."""

    symbol: str
    quantity: float
    entry_price: float
    unrealized_pnl: float


@dataclass
class Backoff:
    """Exponential back-off with jitter: `delay()` doubles from `first` up to `cap`; `reset()` after a success."""

    first: float
    cap: float
    attempts: int = 0

    def delay(self) -> float:
        base = min(self.first * 2 ** self.attempts, self.cap)
        self.attempts += 1
        jitter: float = 0.5 + random.random() / 2
        return float(base) * jitter

    def reset(self) -> None:
        self.attempts = 0


def _json_container(data: object) -> bool:
    """Whether a text frame is a JSON object or array (what every venue frame ccxt handles is)."""
    try:
        return isinstance(json.loads(data), (dict, list)) if isinstance(data, (str, bytes)) else False
    except ValueError:
        return False


def _scrub(text: str, creds: Credentials | None) -> str:
    if creds is not None:
        for secret in (creds.secret, creds.passphrase, creds.wallet_private_key):
            if secret:
                text = text.replace(secret, "<redacted>")
    return text[:500]


def _plus(base: float, value: object) -> object:
    """`base + value` on the printed decimals (0.1 + 0.2 is 0.3 here); `value` as it is if it is not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(Decimal(repr(base)) + Decimal(repr(float(value))))
    return value


class ReplacingTracker(OrderTracker):
    """An `OrderTracker` that follows an order through cancel-replace amends.

    After a cancel-replace (Binance spot's amend) the order lives on as a new venue order (a new id,
    its own filled count from 0) under the same client order id. `replaced` notes what the client order
    filled before; the replacement's ccxt orders are then read on top of it, so fills and "filled" come
    out for the client order as a whole."""

    def __init__(self, normalizer: Normalizer) -> None:
        super().__init__(normalizer)
        self._base: dict[str, tuple[str, float, float, float]] = {}  # cid -> (new venue id, filled, cost, fee)
        self.amending: set[str] = set()

    def adopt(self, client_order_id: str, symbol: str, venue_order_id: str, *, accepted: bool, filled: float,
              cost: float, fee: float) -> None:
        """Follow an order an earlier session placed, from what the ledger already holds of it (so only what is
        new on the venue comes out of `updates`)."""
        self.track(client_order_id, symbol)
        seen = self._seen[client_order_id]
        seen.venue_order_id, seen.accepted = venue_order_id, accepted
        seen.filled, seen.cost, seen.fee = filled, cost, fee

    def open_orders(self) -> dict[str, tuple[str, str]]:
        """As `OrderTracker.open_orders`, without the orders being amended (the amend reads them itself: a
        poller reading the cancelled half of a cancel-replace would close the order)."""
        return {cid: v for cid, v in super().open_orders().items() if cid not in self.amending}

    def replaced(self, client_order_id: str, venue_order_id: str) -> None:
        """`client_order_id` continues as venue order `venue_order_id` (the old one's fills are all counted)."""
        seen = self._seen[client_order_id]
        self._base[client_order_id] = (venue_order_id, seen.filled, seen.cost, seen.fee)
        seen.venue_order_id = venue_order_id

    def updates(self, client_order_id: str, raw: object, now_ns: int, *, amend: bool = False) -> list[OrderUpdate]:
        """As `OrderTracker.updates`; while an amend runs only its own reads count (`amend=True`): a poll
        that started before it could otherwise report the cancelled half of the cancel-replace."""
        if client_order_id in self.amending and not amend:
            return []
        base = self._base.get(client_order_id)
        if base is not None and isinstance(raw, dict) and str(raw.get("id")) != base[0]:
            return []  # a late read of a replaced venue order: its fills were counted when it was replaced
        if base is not None and isinstance(raw, dict):
            _, filled, cost, fee = base
            raw = {**raw, "filled": _plus(filled, raw.get("filled")), "amount": _plus(filled, raw.get("amount")),
                   "cost": _plus(cost, raw.get("cost"))}
            if isinstance(raw.get("fee"), dict):
                raw["fee"] = {**raw["fee"], "cost": _plus(fee, raw["fee"].get("cost") or 0.0)}
        return super().updates(client_order_id, raw, now_ns)


class CcxtExchange:
    """One ccxt venue: public data client, per-call authenticated clients, normalized events and updates."""

    def __init__(self, settings: ExchangeSettings, credentials: CredentialSource | None = None, *,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self.credentials = credentials
        self.clock = clock
        self.name = settings.id
        self._public: Any = None
        self._markets: dict[str, Any] = {}
        self.symbols_map = SymbolMap([])
        self.normalizer = Normalizer(self.name, self.symbols_map)
        self.orders = ReplacingTracker(self.normalizer)
        self._instruments: dict[str, Instrument] = {}
        self.time_difference_ms = 0
        self.counters = {"stream_errors": 0, "reconnects": 0, "rest_polls": 0, "rate_limited": 0, "retries": 0,
                         "private_clients": 0, "user_stream_errors": 0, "user_stream_updates": 0}
        self.user_stream_up = False
        self._last_poll = float("-inf")
        self._stream_progress: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # venue id -> filled, cost, fee
        self.private_clients_open = 0

    # --- where ---------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The venue as a user recognises it in a message."""
        if self.settings.urls:
            url = self.settings.urls.get("private") or self.settings.urls.get("public") or ""
            return f"{self.name} at {url}" if url else self.name
        return f"{self.name} {'sandbox' if self.settings.sandbox else 'LIVE'}"

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"defaultType": self.settings.market_type}
        if self.settings.id.startswith("binance"):
            # Only the market type we trade; no margin pairs and no currency list (both need sapi endpoints
            # that testnets and the emulator do not have).
            options.update({"fetchMarkets": {"types": ["spot" if self.settings.market_type == "spot" else "linear"]},
                            "fetchCurrencies": False, "fetchMargins": False})
        options.update(self.settings.options)
        return options

    def _new_client(self, module: Any, creds: Credentials | None) -> Any:
        config: dict[str, Any] = {"enableRateLimit": True, "timeout": self.settings.timeout_ms,
                                  "options": self._options()}
        if creds is not None:
            config.update({"apiKey": creds.api_key, "secret": creds.secret})
            if creds.passphrase:
                config["password"] = creds.passphrase
            if creds.wallet_private_key:
                config["privateKey"] = creds.wallet_private_key
        client = getattr(module, self.settings.id)(config)
        if self.settings.sandbox and not self.settings.urls:
            try:
                if not client.urls.get("test"):  # ccxt's own check fails with a TypeError on some classes
                    raise ccxt.NotSupported(self.settings.id)
                client.set_sandbox_mode(True)
            except ccxt.NotSupported:
                raise VenueError(f"{self.name} has no sandbox/testnet in ccxt: to trade it for real set "
                                 "sandbox = false and allow_live = true in [exchange], or rehearse against "
                                 "`allele venue emulator`") from None
        if self.settings.urls:
            api = dict(client.urls.get("api") or {})
            for key, value in self.settings.urls.items():
                if isinstance(value, dict) and isinstance(api.get(key), dict):
                    api[key] = {**api[key], **value}
                else:
                    api[key] = value
            client.urls["api"] = api
        if creds is not None:
            client.options["timeDifference"] = self.time_difference_ms
        return client

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Load markets (precision, limits, fees) with the unauthenticated client and measure the clock offset."""
        module = ccxt_pro if hasattr(ccxt_pro, self.settings.id) else ccxt_async
        self._public = self._new_client(module, None)
        if module is ccxt_pro:
            self._guard_streams(self._public)
        try:
            markets = await self._retrying("load markets", lambda: self._public.load_markets())
        except ccxt.BaseError as exc:
            await self.close()
            raise VenueError(f"{self.where}: could not load its markets: {_scrub(str(exc), None)}. Check the "
                             "network, the exchange id and the urls override in [exchange].") from None
        self._markets = {s: m for s, m in markets.items() if m.get("type") == self.settings.market_type}
        self.symbols_map = SymbolMap(sorted(self._markets))
        self.normalizer.symbols = self.symbols_map
        self._instruments = {}
        for unified, ours in self.symbols_map.to_allele.items():
            instrument = self._instrument(ours, self._markets[unified])
            if instrument is not None:
                self._instruments[ours] = instrument
        unknown = [s for s in self.settings.symbols if s not in self._instruments]
        if unknown:
            await self.close()
            listed = ", ".join(sorted(self._instruments)[:20])
            raise VenueError(f"{self.where} does not list {unknown} as {self.settings.market_type} markets; it lists "
                             f"{listed}{' ...' if len(self._instruments) > 20 else ''}")
        await self.sync_time()

    def _guard_streams(self, exchange: Any) -> None:
        """Make every WebSocket connection of `exchange` survive a frame it cannot parse or handle.

        ccxt.pro decodes and dispatches each frame inside its receive loop; an exception there (a frame
        that is not JSON, or JSON its handler chokes on) ends the loop, and the stream falls silent
        without an error. Each connection's `handle_message` is wrapped so that such a frame is counted
        in `normalizer.dropped`, logged and dropped, and the loop goes on to the next frame."""
        make_client = exchange.client
        normalizer = self.normalizer

        def client(url: str) -> Any:
            conn = make_client(url)
            if not getattr(conn, "_allele_guarded", False):
                handle = conn.handle_message

                def guarded(message: Any) -> None:
                    data = getattr(message, "data", None)
                    if getattr(message, "type", None) == WSMsgType.TEXT and not _json_container(data):
                        # ccxt would hand the text on as it is, and its handlers would ignore it unseen.
                        normalizer.drop("unreadable WebSocket frame (not a JSON object or array)", data)
                        return
                    try:
                        handle(message)
                    except Exception as exc:  # one bad frame; the connection and the next frames are fine
                        normalizer.drop(f"unreadable WebSocket frame ({type(exc).__name__})",
                                        getattr(message, "data", message))

                conn.handle_message = guarded
                conn._allele_guarded = True
            return conn

        exchange.client = client

    def _instrument(self, symbol: str, market: dict[str, Any]) -> Instrument | None:
        precision = market.get("precision") or {}
        tick, lot = precision.get("price"), precision.get("amount")
        if tick is None or lot is None:
            return None
        if self._public.precisionMode == ccxt.DECIMAL_PLACES:
            tick, lot = 10.0 ** -float(tick), 10.0 ** -float(lot)
        elif self._public.precisionMode == ccxt.SIGNIFICANT_DIGITS:
            return None  # no fixed grid: not tradeable through the order kernel's integer ticks
        quote = market.get("settle") or market.get("quote") or "USD"
        try:
            return Instrument(symbol, float(tick), float(lot), float(market.get("maker") or 0.0),
                              float(market.get("taker") or 0.0), quote_currency=str(quote))
        except ValueError:
            return None

    async def close(self) -> None:
        if self._public is not None:
            client, self._public = self._public, None
            await client.close()

    async def sync_time(self) -> None:
        """Measure `local - server` in ms (what ccxt subtracts from its nonce); 0 if the venue has no clock call."""
        if self._public is None or not self._public.has.get("fetchTime"):
            return
        try:
            before = self.clock() // 1_000_000
            server = await self._public.fetch_time()
            after = self.clock() // 1_000_000
        except ccxt.BaseError as exc:
            log.warning("%s: could not read the server clock (%s); assuming no skew", self.where, exc)
            return
        if isinstance(server, (int, float)) and server > 0:
            self.time_difference_ms = int((before + after) / 2 - server)
            if abs(self.time_difference_ms) > 1000:
                log.warning("%s: the local clock is %+d ms off the venue's; requests are stamped with venue time",
                            self.where, self.time_difference_ms)

    def now_ns(self) -> int:
        """Venue time: the local clock corrected by the measured offset."""
        return self.clock() - self.time_difference_ms * 1_000_000

    # --- markets -------------------------------------------------------------------------------

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self._instruments[symbol]
        except KeyError:
            raise KeyError(f"{self.where} does not list {symbol}") from None

    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._instruments))

    # --- retries -------------------------------------------------------------------------------

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call` with back-off on rate limits and network failures (reads only: they can be repeated)."""
        backoff = Backoff(self.settings.backoff_s, self.settings.backoff_max_s)
        while True:
            try:
                return await call()
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.NetworkError) as exc:
                if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
                    self.counters["rate_limited"] += 1
                if isinstance(exc, ccxt.InvalidNonce):
                    await self.sync_time()
                if backoff.attempts >= self.settings.retries:
                    raise
                self.counters["retries"] += 1
                delay = backoff.delay()
                log.warning("%s: %s failed (%s: %s); retrying in %.2fs", self.where, what, type(exc).__name__,
                            str(exc)[:200], delay)
                await asyncio.sleep(delay)

    def _signing_credentials(self) -> AbstractContextManager[Credentials]:
        """The account's credentials for the length of a `with` block (VenueError if there is no account;
        UnknownAccount, for `_no_credentials`, if the vault has none for it)."""
        account = self.settings.account
        if self.credentials is None or not account:
            raise VenueError(f"{self.where}: no account to sign with: set account = \"<vault entry>\" in [exchange] "
                             "and store its API key with the vault")
        held: AbstractContextManager[Credentials] = self.credentials.credentials(account)
        return held

    def _no_credentials(self, account: str) -> VenueError:
        return VenueError(f"{self.where}: the vault has no credentials for account '{account}': add them "
                          f"(allele vault add {account} --exchange {self.name}) or fix account in [exchange]")

    async def _private(self, what: str, call: Callable[[Any], Awaitable[T]]) -> T:
        """`call(client)` with a fresh authenticated client, closed and dropped when it returns."""
        account = self.settings.account
        try:
            with self._signing_credentials() as creds:
                client = self._new_client(ccxt_async, creds)
                client.set_markets(self._markets)
                self.counters["private_clients"] += 1
                self.private_clients_open += 1

                async def attempt() -> T:
                    client.options["timeDifference"] = self.time_difference_ms  # re-measured on InvalidNonce
                    return await call(client)

                try:
                    return await self._retrying(what, attempt)
                except (ccxt.AuthenticationError, ccxt.PermissionDenied) as exc:
                    raise VenueError(
                        f"{self.where} refused the credentials of account '{account}' while trying to {what}: "
                        f"{_scrub(str(exc), creds)}. Check the API key and secret stored in the vault for "
                        f"'{account}' (they must belong to this venue"
                        f"{' testnet' if self.settings.sandbox and not self.settings.urls else ''} and allow "
                        "trading), then try again.") from None
                except ccxt.BaseError as exc:
                    # Re-raised as a fresh error so that neither the message nor the traceback frames carry
                    # the client (and its secret) further up.
                    raise type(exc)(_scrub(str(exc), creds)) from None
                finally:
                    self.private_clients_open -= 1
                    await client.close()
        except UnknownAccount:
            raise self._no_credentials(account) from None

    # --- orders --------------------------------------------------------------------------------

    def _order_args(self, order: FinalizedOrder) -> tuple[str, str, str, float, float | None, dict[str, Any]]:
        symbol = self.symbols_map.ccxt(order.symbol)
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        price = order.limit_price if order.order_type == "limit" else None
        if order.order_type == "limit":
            if order.time_in_force == "post-only":
                params["postOnly"] = True
            else:
                params["timeInForce"] = order.time_in_force.upper()
        return symbol, order.order_type, order.side, order.quantity, price, params

    async def execute(self, order: FinalizedOrder) -> list[OrderUpdate]:
        """Place `order`; its updates so far (accepted, fills, or rejected with the venue's reason)."""
        now = self.now_ns()
        try:
            args = self._order_args(order)
        except KeyError as exc:
            return [OrderUpdate(order.client_order_id, "", order.symbol, "rejected", ts_ns=now,
                                reason=str(exc.args[0]))]
        symbol, kind, side, amount, price, params = args
        self.orders.track(order.client_order_id, order.symbol)

        async def place(client: Any) -> Any:
            try:
                return await client.create_order(symbol, kind, side, amount, price, dict(params))
            except (ccxt.RequestTimeout, ccxt.ExchangeNotAvailable):
                # The answer was lost, not necessarily the order: look for it before sending it again.
                found = await self._lookup(client, order.client_order_id, symbol)
                if found is not None:
                    return found
                raise

        try:
            placed = await self._private(f"place order {order.client_order_id}", place)
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest, ccxt.OperationRejected) as exc:
            self.orders.close(order.client_order_id)
            return [OrderUpdate(order.client_order_id, "", order.symbol, "rejected", ts_ns=now,
                                reason=f"{self.name}: {str(exc)[:300]}")]
        except ccxt.BaseError as exc:
            self.orders.close(order.client_order_id)
            return [OrderUpdate(order.client_order_id, "", order.symbol, "rejected", ts_ns=now,
                                reason=f"{self.name}: order not placed ({type(exc).__name__}: {str(exc)[:300]})")]
        return self.orders.updates(order.client_order_id, placed, now)

    async def amend(self, client_order_id: str, *, quantity: float | None = None,
                    price: float | None = None) -> list[OrderUpdate]:
        """Re-parameterize one of our resting orders: `quantity` is its new open (unfilled) quantity, `price` its
        new limit; None keeps either as it is.

        Through ccxt's `edit_order`; on Binance spot that is a cancel-replace (STOP_ON_FAILURE): the venue
        cancels the order and places a new one under the same client order id, which `orders` follows
        (`ReplacingTracker`). The order is read first: fills it got since it was last read are reported
        first and taken off `quantity` (the engine sized the amend without them), and if nothing is left to
        rest the order is cancelled instead. Updates: those fills, then "accepted" with reason "amended:
        priority lost" and the replacement's own fills; or "rejected" ("amend: ...") when the venue refused
        and the order stands as it was; or the order's end when the venue cancelled it but refused the
        replacement. Like the simulated venue's amend, a changed order loses its queue priority."""
        now = self.now_ns()
        venue_id, symbol = self.orders.venue_order_id(client_order_id), self.orders.symbol(client_order_id)
        if not venue_id or not symbol or self.orders.closed(client_order_id):
            return [OrderUpdate(client_order_id, venue_id or "", symbol or "", "rejected", ts_ns=now,
                                reason=f"amend: unknown or closed order {client_order_id!r}")]
        unified = self.symbols_map.ccxt(symbol)
        lot = self.instrument(symbol).lot_size
        out: list[OrderUpdate] = []

        async def edit(client: Any) -> tuple[Any, Exception | None]:
            current = await client.fetch_order(venue_id, unified)
            out.extend(self.orders.updates(client_order_id, current, self.now_ns(), amend=True))
            if self.orders.closed(client_order_id):
                return None, None  # it ended before the amend got there; its end is reported
            fresh = sum(u.fill_quantity for u in out)
            left = float(current.get("amount") or 0.0) - float(current.get("filled") or 0.0)
            amount = float(Decimal(repr(quantity if quantity is not None else left)) - Decimal(repr(fresh)))
            if amount < lot / 2:
                return await client.cancel_order(venue_id, unified), None
            params: dict[str, Any] = {"clientOrderId": client_order_id}
            if current.get("postOnly"):
                params["postOnly"] = True
            elif current.get("timeInForce"):
                params["timeInForce"] = current["timeInForce"]
            try:
                new = await client.edit_order(venue_id, unified, current.get("type") or "limit", current["side"],
                                              amount, price if price is not None else current.get("price"), params)
            except (ccxt.AuthenticationError, ccxt.PermissionDenied):
                raise
            except ccxt.BaseError as exc:
                # Refused, or only the answer was lost: the replacement, if placed, carries our client id.
                found = await self._lookup(client, client_order_id, unified)
                if found is None or str(found.get("id")) == venue_id:
                    return await client.fetch_order(venue_id, unified), exc
                new = found
            if str(new.get("id")) != venue_id:
                # A new venue order: count the old one's last fills (those before the cancel) first.
                old = await client.fetch_order(venue_id, unified)
                out.extend(self.orders.updates(client_order_id, {**old, "status": "open"}, self.now_ns(),
                                               amend=True))
                self.orders.replaced(client_order_id, str(new.get("id")))
            out.append(OrderUpdate(client_order_id, str(new.get("id") or venue_id), symbol, "accepted",
                                   ts_ns=self.now_ns(), reason="amended: priority lost"))
            return new, None

        self.orders.amending.add(client_order_id)
        try:
            result, refused = await self._private(f"amend order {client_order_id}", edit)
        except ccxt.BaseError as exc:
            return [*out, OrderUpdate(client_order_id, venue_id, symbol, "rejected", ts_ns=now,
                                      reason=f"amend: refused by {self.name}: {str(exc)[:300]}; the order stands")]
        finally:
            self.orders.amending.discard(client_order_id)
        if result is None:
            return out
        after = self.orders.updates(client_order_id, result, self.now_ns(), amend=True)
        if refused is not None:
            why = f"amend: refused by {self.name}: {str(refused)[:300]}"
            if after and after[-1].status == "cancelled":
                after[-1] = dataclasses.replace(after[-1], reason=f"{why}; the venue had cancelled the order")
            else:
                after.append(OrderUpdate(client_order_id, venue_id, symbol, "rejected", ts_ns=self.now_ns(),
                                         reason=f"{why}; the order stands"))
        return out + after

    async def _lookup(self, client: Any, client_order_id: str, symbol: str) -> Any:
        try:
            return await client.fetch_order(None, symbol, {"clientOrderId": client_order_id})
        except ccxt.OrderNotFound:
            return None

    async def cancel(self, client_order_id: str) -> list[OrderUpdate]:
        """Cancel one of our orders; a "rejected" update (the order stands, or is unknown) if the venue refuses."""
        now = self.now_ns()
        venue_id, symbol = self.orders.venue_order_id(client_order_id), self.orders.symbol(client_order_id)
        if not venue_id or not symbol or self.orders.closed(client_order_id):
            return [OrderUpdate(client_order_id, venue_id or "", symbol or "", "rejected", ts_ns=now,
                                reason=f"cancel: unknown or closed order {client_order_id!r}")]
        unified = self.symbols_map.ccxt(symbol)

        async def cancel(client: Any) -> Any:
            try:
                return await client.cancel_order(venue_id, unified)
            except ccxt.OrderNotFound:
                # Filled or closed before the cancel arrived: report what actually happened to it.
                return await client.fetch_order(venue_id, unified)

        try:
            result = await self._private(f"cancel order {client_order_id}", cancel)
        except ccxt.BaseError as exc:
            return [OrderUpdate(client_order_id, venue_id, symbol, "rejected", ts_ns=now,
                                reason=f"cancel refused by {self.name}: {str(exc)[:300]}")]
        updates = self.orders.updates(client_order_id, result, now)
        if not self.orders.closed(client_order_id):
            # ccxt returned the order before the cancel showed: ask once more.
            updates += await self.order_status(client_order_id)
        return updates

    async def order_status(self, client_order_id: str) -> list[OrderUpdate]:
        """The new updates of one order, from the venue's current view of it."""
        venue_id, symbol = self.orders.venue_order_id(client_order_id), self.orders.symbol(client_order_id)
        if not venue_id or not symbol:
            return []
        unified = self.symbols_map.ccxt(symbol)
        result = await self._private(f"read order {client_order_id}",
                                     lambda client: client.fetch_order(venue_id, unified))
        return self.orders.updates(client_order_id, result, self.now_ns())

    async def poll_orders(self) -> list[OrderUpdate]:
        """The new updates of every order we hold open, with one authenticated client for the round. While the
        user data stream is up (`stream_orders`) it reads the venue only every `stream_poll_s`, else [] ."""
        open_orders = self.orders.open_orders()
        if not open_orders:
            return []
        if self.user_stream_up and time.monotonic() - self._last_poll < self.settings.stream_poll_s:
            return []
        self._last_poll = time.monotonic()

        async def poll(client: Any) -> list[tuple[str, Any]]:
            out = []
            for cid, (venue_id, symbol) in open_orders.items():
                if venue_id:
                    out.append((cid, await client.fetch_order(venue_id, self.symbols_map.ccxt(symbol))))
            return out

        results = await self._private("read open orders", poll)
        now = self.now_ns()
        updates: list[OrderUpdate] = []
        for cid, raw in results:
            updates += self.orders.updates(cid, raw, now)
        return updates

    async def venue_open_orders(self, symbols: Iterable[str]) -> list[dict[str, Any]]:
        """The account's open orders on `symbols` as the venue lists them (ccxt order structures), ours or not."""
        unified = [self.symbols_map.ccxt(s) for s in symbols]

        async def fetch(client: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for symbol in unified:
                out += await client.fetch_open_orders(symbol)
            return out

        return await self._private("read open orders", fetch)

    async def find_order(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        """The venue's order under our `client_order_id`, or None if it has none."""
        unified = self.symbols_map.ccxt(symbol)
        found: dict[str, Any] | None = await self._private(
            f"read order {client_order_id}", lambda client: self._lookup(client, client_order_id, unified))
        return found

    async def cancel_venue_order(self, venue_order_id: str, symbol: str) -> dict[str, Any]:
        """Cancel an order by its venue id, whether we track it or not (reconciliation's orphans)."""
        unified = self.symbols_map.ccxt(symbol)
        result: dict[str, Any] = await self._private(f"cancel venue order {venue_order_id}",
                                                     lambda client: client.cancel_order(venue_order_id, unified))
        return result

    async def balances(self) -> dict[str, Balance]:
        """Free, used and total per asset with a non-zero total."""
        raw = await self._private("read balances", lambda client: client.fetch_balance())
        out: dict[str, Balance] = {}
        for asset, total in (raw.get("total") or {}).items():
            if total:
                out[asset] = Balance(float(raw.get("free", {}).get(asset) or 0.0),
                                     float(raw.get("used", {}).get(asset) or 0.0), float(total))
        return out

    async def positions(self) -> dict[str, Position]:
        """Open perpetual positions by Allele symbol (signed: a short is negative); {} on a spot venue."""
        if self.settings.market_type != "swap":
            return {}
        raw = await self._private("read positions", lambda client: client.fetch_positions())
        out: dict[str, Position] = {}
        for p in raw if isinstance(raw, list) else []:
            symbol = self.symbols_map.to_allele.get(str(p.get("symbol"))) if isinstance(p, dict) else None
            if symbol is None:
                continue
            contracts = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
            if contracts:
                out[symbol] = Position(symbol, -contracts if p.get("side") == "short" else contracts,
                                       float(p.get("entryPrice") or 0.0), float(p.get("unrealizedPnl") or 0.0))
        return out

    # --- user data stream ----------------------------------------------------------------------

    async def stream_orders(self, sink: OrderSink, stop: asyncio.Event) -> None:
        """Our orders' updates from the venue's user data stream (ccxt.pro `watch_orders`) into `sink` until
        `stop` is set; the same `OrderUpdate`s `poll_orders` makes, each reported once whichever path saw it
        first. While the stream is up, `poll_orders` slows to every `stream_poll_s` (a safety net); when it
        fails it is counted, logged and reopened with back-off, and `poll_orders` polls every call again.

        With the stream running, `execute`, `cancel` and `poll_orders` return only what it has not reported
        already (an order's fill may reach `sink` before `execute` has its answer).

        Credentials: the stream's client is built, and subscribes (spot: a signed WebSocket API request;
        perpetuals: a listenKey), inside `credentials(account)`; the secret is then wiped from it, so it does
        not outlive the subscription. A reopened stream takes the credentials again."""
        if not self.settings.user_stream or not hasattr(ccxt_pro, self.settings.id):
            await stop.wait()
            return
        task = asyncio.create_task(self._stream_loop(sink, stop))
        try:
            await stop.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _stream_loop(self, sink: OrderSink, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.backoff_s, self.settings.backoff_max_s)
        while not stop.is_set():
            client: Any = None
            try:
                client, first = await self._open_user_stream()
                # What happened while no stream listened is only found by reading the orders: once, now that
                # everything later will arrive on the stream.
                for update in await self.poll_orders():
                    sink(update)
                self.user_stream_up = True
                backoff.reset()
                batch = await first
                while True:
                    for update in self._stream_updates(batch):
                        sink(update)
                    batch = await client.watch_orders()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream's failure never ends the session: polling takes over
                self.counters["user_stream_errors"] += 1
                delay = backoff.delay()
                log.warning("%s: the user data stream failed (%s: %s); polling orders, reopening in %.2fs",
                            self.where, type(exc).__name__, str(exc)[:300], delay)
                self.user_stream_up = False
                if client is not None:
                    await client.close()
                    client = None
                await asyncio.sleep(delay)
            finally:
                self.user_stream_up = False
                if client is not None:
                    await client.close()

    async def _open_user_stream(self) -> tuple[Any, asyncio.Future[Any]]:
        """A subscribed ccxt.pro client, its secret wiped, and the first `watch_orders` in flight once its
        WebSocket is connected (so no event after this returns is missed)."""
        account = self.settings.account
        try:
            with self._signing_credentials() as creds:
                client = self._new_client(ccxt_pro, creds)
                client.set_markets(self._markets)
                client.options["timeDifference"] = self.time_difference_ms
                # ccxt would renew a listenKey with the key only; our reopen (fresh credentials) does it instead.
                client.options["listenKeyRefreshRate"] = 10 * 365 * 86_400_000
                # Orders only: no positions snapshot (a REST call the wiped secret could not sign).
                client.options["watchPositions"] = {**(client.options.get("watchPositions") or {}),
                                                    "fetchPositionsSnapshot": False}
                self._guard_streams(client)
                try:
                    await client.authenticate()
                except (ccxt.AuthenticationError, ccxt.PermissionDenied) as exc:
                    await client.close()
                    raise VenueError(f"{self.where} refused the credentials of account '{account}' for its user "
                                     f"data stream: {_scrub(str(exc), creds)}. Check the API key and secret stored "
                                     f"in the vault for '{account}'.") from None
                except BaseException:
                    await client.close()
                    raise
                for field in ("secret", "password", "privateKey"):
                    if getattr(client, field, None):
                        setattr(client, field, "")
        except UnknownAccount:
            raise self._no_credentials(account) from None
        first: asyncio.Future[Any] = asyncio.ensure_future(client.watch_orders())
        try:
            if self.settings.market_type == "swap":
                url = client.get_private_ws_url("linear", client.options["linear"]["listenKey"])
            else:
                url = client.urls["api"]["ws"]["ws-api"]["spot"]
            await asyncio.wait_for(asyncio.shield(client.client(url).connected), self.settings.timeout_ms / 1000)
        except BaseException:
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await client.close()
            raise
        return client, first

    def _stream_updates(self, batch: object) -> list[OrderUpdate]:
        """The new updates in a `watch_orders` batch, for the orders we track (others are not ours)."""
        if not isinstance(batch, list):
            self.normalizer.drop("user data batch is not a list", batch)
            return []
        out: list[OrderUpdate] = []
        for raw in batch:
            cid = raw.get("clientOrderId") if isinstance(raw, dict) else None
            if not isinstance(cid, str) or not cid:
                self.normalizer.drop("user data order without a client order id", raw)
                continue
            if self.orders.symbol(cid) is None:
                continue  # another client's order on the same account: not ours to report
            if cid in self.orders.amending:
                continue  # the amend reads the order itself; half a cancel-replace would close it here
            structure = self._stream_order(raw)
            if structure is None:
                self.normalizer.drop("user data order without fill fields", raw)
                continue
            self.counters["user_stream_updates"] += 1
            out += self.orders.updates(cid, structure, self.now_ns())
            if self.orders.closed(cid):
                self._stream_progress.pop(str(structure.get("id")), None)
        return out

    def _stream_order(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """A ccxt order from the stream, with exact cumulative filled/cost/fee of its venue order.

        The raw event (`info`: Binance's executionReport or ORDER_TRADE_UPDATE "o") carries this fill (l @ L,
        fee n) and the cumulative quantity z; the cost is summed here per venue order on the printed decimals
        (ccxt's is average x filled, off in the last digits), and so is the fee (ccxt's is the last fill's)."""
        info = raw.get("info")
        if not isinstance(info, dict):
            return None
        try:
            cum, last_qty, last_price = (Decimal(str(info[k])) for k in ("z", "l", "L"))
            fee = Decimal(str(info.get("n") or 0))
        except (KeyError, ArithmeticError, ValueError):
            return None
        if not all(d.is_finite() and d >= 0 for d in (cum, last_qty, last_price, fee)):
            return None
        venue_id = str(raw.get("id") or info.get("i") or "")
        filled, cost, fees = self._stream_progress.get(venue_id, (Decimal(0), Decimal(0), Decimal(0)))
        if cum > filled:
            if cum - filled == last_qty:
                cost += last_qty * last_price
            else:  # an event was missed (or merged by ccxt's cache): the rest at ccxt's average
                reported = raw.get("cost")
                cost = Decimal(repr(float(reported))) if isinstance(reported, (int, float)) and reported > 0 \
                    else cost + (cum - filled) * last_price
            filled, fees = cum, fees + fee
            self._stream_progress[venue_id] = (filled, cost, fees)
        currency = info.get("N")
        return {**raw, "trades": None, "filled": float(filled), "cost": float(cost),
                "fee": {"cost": float(fees), "currency": currency if isinstance(currency, str) else ""}}

    # --- market data ---------------------------------------------------------------------------

    async def watch(self, symbols: Iterable[str], sink: Sink, stop: asyncio.Event) -> None:
        """Trades and top-of-book quotes of `symbols` into `sink` until `stop` is set: WebSocket watchers
        (ccxt.pro) with reconnect and back-off, and REST polling while a stream is down or unsupported."""
        tasks = []
        for symbol in symbols:
            unified = self.symbols_map.ccxt(symbol)
            tasks.append(asyncio.create_task(self._watch_loop("trades", unified, sink, stop)))
            tasks.append(asyncio.create_task(self._watch_loop("book", unified, sink, stop)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_loop(self, channel: str, unified: str, sink: Sink, stop: asyncio.Event) -> None:
        client = self._public
        has = client.has
        # Quotes come from the order book's top; an exchange without book streams quotes its ticker instead.
        book_by_ticker = channel == "book" and not has.get("watchOrderBook") and bool(has.get("watchTicker"))
        has_ws = bool(has.get("watchTrades")) if channel == "trades" else bool(has.get("watchOrderBook")
                                                                             or has.get("watchTicker"))
        backoff = Backoff(self.settings.backoff_s, self.settings.backoff_max_s)
        last_quote: tuple[float, float, float, float] | None = None
        seen_trades: dict[str, None] = {}
        last_trade_ms = 0

        def emit(event: MarketEvent | None) -> None:
            nonlocal last_quote
            if event is None:
                return
            if event.kind == "quote":
                top = (event.bid, event.ask, event.bid_size, event.ask_size)
                if top == last_quote:
                    return
                last_quote = top
            sink(event)

        def trades(batch: object) -> None:
            nonlocal last_trade_ms
            if not isinstance(batch, list):
                self.normalizer.drop("trades batch is not a list", batch)
                return
            for raw in batch:
                key = str(raw.get("id") or f"{raw.get('timestamp')}:{raw.get('price')}:{raw.get('amount')}") \
                    if isinstance(raw, dict) else ""
                if key and key in seen_trades:
                    continue
                if key:
                    seen_trades[key] = None
                    if len(seen_trades) > 5000:
                        seen_trades.pop(next(iter(seen_trades)))
                if isinstance(raw, dict) and isinstance(raw.get("timestamp"), int):
                    last_trade_ms = max(last_trade_ms, raw["timestamp"])
                emit(self.normalizer.trade(raw, self.now_ns()))

        async def poll_rest() -> None:
            self.counters["rest_polls"] += 1
            if channel == "trades":
                trades(await client.fetch_trades(unified, last_trade_ms + 1 if last_trade_ms else None))
            elif has.get("fetchOrderBook", True):
                emit(self.normalizer.book(await client.fetch_order_book(unified, 5), self.now_ns()))
            else:
                emit(self.normalizer.ticker(await client.fetch_ticker(unified), self.now_ns()))

        while not stop.is_set():
            try:
                if has_ws:
                    if channel == "trades":
                        trades(await client.watch_trades(unified))
                    elif book_by_ticker:
                        emit(self.normalizer.ticker(await client.watch_ticker(unified), self.now_ns()))
                    else:
                        emit(self.normalizer.book(await client.watch_order_book(unified), self.now_ns()))
                else:
                    await poll_rest()
                    await asyncio.sleep(self.settings.poll_s)
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except ccxt.ExchangeClosedByUser:
                return  # `close()` was called: nothing left to watch with
            except Exception as exc:  # a stream failure must never end the session: count, back off, retry
                self.counters["stream_errors"] += 1
                delay = backoff.delay()
                log.warning("%s: %s stream of %s failed (%s: %s); REST fallback, reconnecting in %.2fs", self.where,
                            channel, unified, type(exc).__name__, str(exc)[:200], delay)
                try:
                    await poll_rest()
                except Exception as rest_exc:  # the REST fallback may be down too; the loop goes on
                    log.warning("%s: REST fallback for %s failed too: %s", self.where, unified, str(rest_exc)[:200])
                await asyncio.sleep(delay)
                if has_ws:
                    self.counters["reconnects"] += 1
