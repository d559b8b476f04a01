"""The ccxt adapter against the venue emulator on 127.0.0.1: real ccxt (async and ccxt.pro), credentials from a
credential source (MemorySigner and a real Vault file), normalized events and updates; and the normalizer
fuzzed."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import ccxt
import pytest
from conftest import running_emulator
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from allele.kernel.domain import FinalizedOrder, MarketEvent, OrderUpdate
from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.emulator.state import EmulatorConfig
from allele.kernel.exchange.ccxt_adapter import CcxtExchange, VenueError
from allele.kernel.exchange.normalize import Normalizer, OrderTracker, SymbolMap, allele_symbol
from allele.kernel.exchange.settings import ExchangeSettings
from allele.vault import ScryptParams, Vault
from allele.vault.signing import Credentials, MemorySigner

KEY, SECRET = "adapter-key", "adapter-secret-value-1234"


def start(config: EmulatorConfig | None = None) -> AbstractContextManager[EmulatorServer]:
    return running_emulator({KEY: (SECRET, {"USDT": 50_000.0, "BTC": 2.0, "ETH": 10.0})}, config=config)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with start() as server:
        yield server


class CountingSource:
    """A credential source that counts how often, and for how long, credentials were handed out."""

    def __init__(self, accounts: dict[str, tuple[str, str]]) -> None:
        self.accounts = accounts
        self.handed_out = 0
        self.held = 0

    @contextmanager
    def credentials(self, account: str) -> Iterator[Credentials]:
        inner = MemorySigner({k: (key, secret.encode()) for k, (key, secret) in self.accounts.items()})
        with inner.credentials(account) as creds:
            self.handed_out += 1
            self.held += 1
            try:
                yield creds
            finally:
                self.held -= 1


def settings(server: EmulatorServer, **kw: Any) -> ExchangeSettings:
    return ExchangeSettings(**{"id": "binance", "account": "main", "urls": server.ccxt_urls(),
                               "symbols": ("BTC-USDT",), "backoff_s": 0.05, "backoff_max_s": 0.5, **kw})


def order(cid: str, **kw: Any) -> FinalizedOrder:
    fields: dict[str, Any] = {"client_order_id": cid, "symbol": "BTC-USDT", "side": "buy", "order_type": "market",
                              "quantity": 0.002, "limit_price": None, "time_in_force": "gtc",
                              "ts_ns": time.time_ns(), "deadline_ns": 0}
    fields.update(kw)
    return FinalizedOrder(**fields)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_markets_become_instruments_and_the_stream_becomes_events(emulator: EmulatorServer) -> None:
    ex = CcxtExchange(settings(emulator, symbols=("BTC-USDT", "ETH-USDT")), None)
    await ex.open()
    try:
        assert ex.symbols() == ("BTC-USDT", "ETH-USDT")
        btc = ex.instrument("BTC-USDT")
        assert (btc.tick_size, btc.lot_size, btc.taker_fee, btc.quote_currency) == (0.01, 0.001, 0.001, "USDT")
        with pytest.raises(KeyError, match="does not list DOGE-USDT"):
            ex.instrument("DOGE-USDT")
        events: list[MarketEvent] = []
        stop = asyncio.Event()
        task = asyncio.create_task(ex.watch(["BTC-USDT", "ETH-USDT"], events.append, stop))
        await wait_for(lambda: {(e.kind, e.symbol) for e in events} >= {("trade", "BTC-USDT"), ("quote", "BTC-USDT"),
                                                                         ("trade", "ETH-USDT"), ("quote", "ETH-USDT")})
        stop.set()
        await task
        quotes = [e for e in events if e.kind == "quote"]
        assert all(0 < q.bid < q.ask and q.price == (q.bid + q.ask) / 2 and q.venue == "binance" for q in quotes)
        assert all(e.ts_ns > 1_600_000_000 * 10**9 for e in events)
        assert ex.normalizer.dropped_total == 0 and ex.counters["stream_errors"] == 0
    finally:
        await ex.close()


async def test_orders_fills_cancels_balances_with_a_client_per_call(emulator: EmulatorServer) -> None:
    source = CountingSource({"main": (KEY, SECRET)})
    ex = CcxtExchange(settings(emulator), source)
    await ex.open()
    try:
        assert source.handed_out == 0  # markets and the clock need no credentials
        filled = await ex.execute(order("ad-1"))
        assert [u.status for u in filled] == ["accepted", "filled"]
        fill = filled[-1]
        assert fill.client_order_id == "ad-1" and fill.fill_quantity == 0.002 and fill.fill_price > 0
        assert fill.fee == pytest.approx(0.002 * fill.fill_price * 0.001) and fill.fee_currency == "USDT"
        assert fill.venue_order_id == emulator.call(lambda: str(emulator.state._by_client[(KEY, "ad-1")].order_id))

        resting = await ex.execute(order("ad-2", order_type="limit", limit_price=1000.0))
        assert [u.status for u in resting] == ["accepted"]
        assert await ex.poll_orders() == []  # nothing new while it rests
        cancelled = await ex.cancel("ad-2")
        assert [u.status for u in cancelled] == ["cancelled"]
        assert (await ex.cancel("ad-2"))[0].status == "rejected"  # closed already: the venue is not asked

        balances = await ex.balances()
        assert balances["BTC"].total == pytest.approx(2.002)
        assert balances["USDT"].total == pytest.approx(50_000 - 0.002 * fill.fill_price - fill.fee)

        refused = await ex.execute(order("ad-3", side="sell", quantity=100.0))
        assert refused[0].status == "rejected" and "insufficient balance" in refused[0].reason
        assert source.handed_out == 6 and source.held == 0
        assert ex.counters["private_clients"] == 6 and ex.private_clients_open == 0
    finally:
        await ex.close()


async def test_a_resting_order_filled_later_is_found_by_polling() -> None:
    # a still market: one background quote, stepped by hand
    with running_emulator({KEY: (SECRET, {"USDT": 50_000.0, "BTC": 2.0})}, tick_s=0) as server:
        state = server.state
        server.call(state.step_market)
        ex = CcxtExchange(settings(server), MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            book = server.call(lambda: state.depth("BTCUSDT", 1))
            bid, ask = float(book["bids"][0][0]), float(book["asks"][0][0])
            inside = round((bid + ask) / 2, 2)
            assert [u.status for u in await ex.execute(order("ad-q", order_type="limit", limit_price=inside,
                                                             quantity=0.003))] == ["accepted"]
            assert await ex.poll_orders() == []

            def someone_sells(quantity: float) -> None:  # another trader's market sell meets our bid, the best one
                sell = FinalizedOrder(f"x-{quantity}", "BTCUSDT", "sell", "market", quantity, None, "gtc",
                                      time.time_ns(), 0)
                state._apply(state.engine.submit(sell, "another", time.time_ns()))

            server.call(lambda: someone_sells(0.001))
            part = await ex.poll_orders()
            assert [(u.status, u.fill_quantity, u.fill_price) for u in part] == [("partially-filled", 0.001, inside)]
            server.call(lambda: someone_sells(0.002))
            rest = await ex.poll_orders()
            assert [(u.status, u.fill_quantity, u.fill_price) for u in rest] == [("filled", 0.002, inside)]
            assert await ex.poll_orders() == [] and ex.orders.open_orders() == {}
        finally:
            await ex.close()


@pytest.mark.parametrize("source", ["memory", "vault"])
async def test_wrong_credentials_are_a_clear_error_naming_venue_and_account(emulator: EmulatorServer,
                                                                           tmp_path: Path, source: str) -> None:
    wrong = "definitely-not-the-secret-98765"
    if source == "vault":
        vault = Vault.create(tmp_path / "vault", passphrase="correct horse battery", scrypt=ScryptParams(n=2**10))
        vault.add("main", exchange="binance", api_key=KEY, secret=wrong)
        creds: Any = Vault.open(tmp_path / "vault", passphrase="correct horse battery")
    else:
        creds = MemorySigner({"main": (KEY, wrong.encode())})
    ex = CcxtExchange(settings(emulator), creds)
    await ex.open()
    try:
        with pytest.raises(VenueError) as info:
            await ex.execute(order("bad-1"))
        message = str(info.value)
        assert f"binance at {emulator.rest_url}" in message and "account 'main'" in message
        assert "Signature for this request is not valid" in message and "Check the API key and secret" in message
        assert wrong not in message and SECRET not in message
        with pytest.raises(VenueError, match="refused the credentials"):
            await ex.balances()
        assert emulator.state.counters["orders"] == 0 and ex.private_clients_open == 0
    finally:
        await ex.close()


async def test_credentials_from_a_real_vault_file_trade(emulator: EmulatorServer, tmp_path: Path) -> None:
    vault = Vault.create(tmp_path / "vault", passphrase="correct horse battery", scrypt=ScryptParams(n=2**10))
    vault.add("main", exchange="binance", api_key=KEY, secret=SECRET)
    reopened = Vault.open(tmp_path / "vault", passphrase="correct horse battery")
    ex = CcxtExchange(settings(emulator), reopened)
    await ex.open()
    try:
        assert [u.status for u in await ex.execute(order("vault-1"))] == ["accepted", "filled"]
    finally:
        await ex.close()


async def test_an_unknown_account_says_how_to_add_it(emulator: EmulatorServer) -> None:
    ex = CcxtExchange(settings(emulator, account="nobody"), MemorySigner({"main": (KEY, SECRET.encode())}))
    await ex.open()
    try:
        with pytest.raises(VenueError, match=r"no credentials for account 'nobody'.*allele vault add nobody"):
            await ex.balances()
    finally:
        await ex.close()


async def test_rate_limits_back_off_and_retry() -> None:
    with start(EmulatorConfig(weight_per_minute=10, weight_window_s=1.0)) as server:
        ex = CcxtExchange(settings(server), MemorySigner({"main": (KEY, SECRET.encode())}))
        try:
            await ex.open()
            for i in range(3):  # a private read weighs 10 of 10: one per window, the next waits its turn
                assert (await ex.balances())["BTC"].total == 2.0, i
            assert ex.counters["rate_limited"] >= 2 and ex.counters["retries"] >= 2
            assert server.state.counters["rate_limited"] >= 2
        finally:
            await ex.close()


async def test_rate_limit_retries_are_bounded() -> None:
    with start(EmulatorConfig(weight_per_minute=2)) as server:
        ex = CcxtExchange(settings(server, retries=2), MemorySigner({"main": (KEY, SECRET.encode())}))
        try:
            await ex.open()
            with pytest.raises((ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
                await ex.balances()
            assert ex.counters["retries"] == 2
        finally:
            await ex.close()


async def test_clock_skew_is_measured_and_corrected() -> None:
    with start(EmulatorConfig(clock_offset_ms=-20_000)) as server:  # the venue's clock is 20 s behind ours
        raw = ccxt.async_support.binance({"apiKey": KEY, "secret": SECRET, "options": {
            "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}})
        raw.urls["api"] = server.ccxt_urls()
        try:
            with pytest.raises(ccxt.InvalidNonce, match="-1021"):  # uncorrected, the venue refuses the request
                await raw.fetch_balance()
        finally:
            await raw.close()
        ex = CcxtExchange(settings(server), MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            assert 19_000 < ex.time_difference_ms < 21_000
            assert [u.status for u in await ex.execute(order("skew-1"))] == ["accepted", "filled"]
            ex.time_difference_ms = 0  # drift: the venue answers -1021, the adapter re-measures and retries
            assert (await ex.balances())["BTC"].total == pytest.approx(2.002)
            assert 19_000 < ex.time_difference_ms < 21_000 and ex.counters["retries"] >= 1
        finally:
            await ex.close()


async def test_a_garbled_frame_is_survived_and_the_stream_resumes(emulator: EmulatorServer) -> None:
    ex = CcxtExchange(settings(emulator), None)
    await ex.open()
    try:
        events: list[MarketEvent] = []
        stop = asyncio.Event()
        task = asyncio.create_task(ex.watch(["BTC-USDT"], events.append, stop))
        await wait_for(lambda: len(events) > 3)
        for frame in ("}{ not json", "[1, 2", '{"e": "trade", "s": "BTCUSDT", "p": "NaN"}', "\x00\xff"):
            emulator.call(lambda frame=frame: emulator.hub.broadcast_raw(frame))
        seen = len(events)
        await wait_for(lambda: len([e for e in events[seen:] if e.kind == "trade"]) > 3
                       and len([e for e in events[seen:] if e.kind == "quote"]) > 3)
        stop.set()
        await task
        assert all(math.isfinite(e.price) and e.price > 0 for e in events)
        unreadable = sum(n for reason, n in ex.normalizer.dropped.items() if "unreadable" in reason)
        assert unreadable >= 2, ex.normalizer.dropped
    finally:
        await ex.close()


async def test_the_stream_falls_back_to_rest_without_websocket(emulator: EmulatorServer) -> None:
    ex = CcxtExchange(settings(emulator, poll_s=0.05), None)
    await ex.open()
    try:
        ex._public.has["watchTrades"] = False  # as an exchange without ccxt.pro support
        ex._public.has["watchOrderBook"] = False
        ex._public.has["watchTicker"] = False
        events: list[MarketEvent] = []
        stop = asyncio.Event()
        task = asyncio.create_task(ex.watch(["BTC-USDT"], events.append, stop))
        await wait_for(lambda: {e.kind for e in events} == {"trade", "quote"} and ex.counters["rest_polls"] > 4)
        stop.set()
        await task
    finally:
        await ex.close()


def test_live_trading_needs_an_explicit_setting() -> None:
    with pytest.raises(ValidationError, match="allow_live = true"):
        ExchangeSettings(id="binance", sandbox=False)
    assert ExchangeSettings(id="binance", sandbox=False, allow_live=True).live
    assert not ExchangeSettings(id="binance").live
    with pytest.raises(ValidationError, match="not a ccxt exchange id"):
        ExchangeSettings(id="no-such-exchange")


async def test_an_exchange_without_a_sandbox_is_refused_unless_live() -> None:
    ex = CcxtExchange(ExchangeSettings(id="kraken", symbols=()), None)  # ccxt's kraken has no testnet URL
    with pytest.raises(VenueError, match="no sandbox/testnet"):
        await ex.open()


# --- normalization ------------------------------------------------------------------------------------------

SYMBOLS = SymbolMap(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "weird"])


def test_symbols_map_both_ways() -> None:
    assert allele_symbol("BTC/USDT") == "BTC-USDT" and allele_symbol("BTC/USDT:USDT") == "BTC-USDT-PERP"
    assert SYMBOLS.ccxt("BTC-USDT-PERP") == "BTC/USDT:USDT" and "weird" not in SYMBOLS.to_allele
    with pytest.raises(KeyError, match="does not list X-Y"):
        SYMBOLS.ccxt("X-Y")


def test_order_tracker_reports_each_fill_and_the_close_once() -> None:
    tracker = OrderTracker(Normalizer("v", SYMBOLS))
    base = {"id": "7", "symbol": "BTC/USDT", "amount": 1.0, "timestamp": 1_700_000_000_000}
    first = tracker.updates("c", {**base, "status": "open", "filled": 0.0}, 5)
    assert [(u.status, u.venue_order_id) for u in first] == [("accepted", "7")]
    part = tracker.updates("c", {**base, "status": "open", "filled": 0.4, "cost": 40.0,
                                 "fee": {"cost": 0.04, "currency": "USDT"}}, 5)
    assert [(u.status, u.fill_quantity, u.fill_price, u.fee) for u in part] == [("partially-filled", 0.4, 100.0,
                                                                                 0.04)]
    assert tracker.updates("c", {**base, "status": "open", "filled": 0.4, "cost": 40.0}, 5) == []
    done = tracker.updates("c", {**base, "status": "closed", "filled": 1.0, "cost": 106.0,
                                 "fee": {"cost": 0.1, "currency": "USDT"}}, 5)
    assert [(u.status, round(u.fill_quantity, 9), round(u.fill_price, 9), round(u.fee, 9)) for u in done] == \
        [("filled", 0.6, 110.0, 0.06)]
    assert tracker.updates("c", {**base, "status": "closed", "filled": 1.0}, 5) == [] and tracker.closed("c")
    tracker.updates("d", {**base, "id": "8", "status": "open", "filled": 0.0}, 5)
    gone = tracker.updates("d", {**base, "id": "8", "status": "canceled", "filled": 0.25, "cost": 25.0}, 5)
    assert [u.status for u in gone] == ["partially-filled", "cancelled"]
    trades = tracker.updates("e", {**base, "id": "9", "status": "closed", "filled": 1.0, "trades": [
        {"id": "t1", "amount": 0.5, "price": 10.0, "fee": {"cost": 0.01, "currency": "USDT"}},
        {"id": "t2", "amount": 0.5, "price": 11.0}]}, 5)
    assert [(u.status, u.fill_price) for u in trades] == [("accepted", 0.0), ("partially-filled", 10.0),
                                                          ("filled", 11.0)]


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                      max_size=5), max_leaves=12)
_keys = st.sampled_from(["symbol", "price", "amount", "timestamp", "bids", "asks", "bid", "ask", "bidVolume",
                         "askVolume", "id", "status", "filled", "cost", "average", "fee", "trades", "info"])
_structures = st.one_of(_values, st.dictionaries(_keys, _values | st.sampled_from(
    ["BTC/USDT", "BTC/USDT:USDT", "open", "closed", "canceled", "1e308", "nan", "-1", "0.5", 1.0, [[1.0, 2.0]],
     [["1", "x"]], [[2.0, 1.0]]]), max_size=10))


@given(raw=_structures, now=st.integers(min_value=0, max_value=2**62))
def test_fuzz_normalization_never_raises_and_yields_sane_events(raw: object, now: int) -> None:
    norm = Normalizer("v", SYMBOLS)
    before = norm.dropped_total
    for event in (norm.trade(raw, now), norm.book(raw, now), norm.ticker(raw, now)):
        if event is not None:
            assert isinstance(event, MarketEvent) and event.symbol in SYMBOLS.to_ccxt
            assert math.isfinite(event.price) and event.price > 0 and event.ts_ns >= 0
            if event.kind == "quote":
                assert 0 < event.bid <= event.ask
    updates = OrderTracker(norm).updates("cid", raw, now)
    assert all(isinstance(u, OrderUpdate) and u.client_order_id == "cid" and u.fill_quantity >= 0 for u in updates)
    if not isinstance(raw, dict):
        assert norm.dropped_total >= before + 4  # counted, not raised


async def test_quotes_come_from_the_ticker_where_there_is_no_book_stream(emulator: EmulatorServer) -> None:
    # binance streams its 24 h ticker (with bid and ask) only when asked: "miniTicker" is its default.
    ex = CcxtExchange(settings(emulator, options={"watchTickers": {"name": "ticker"}}), None)
    await ex.open()
    try:
        ex._public.has["watchOrderBook"] = False
        events: list[MarketEvent] = []
        stop = asyncio.Event()
        task = asyncio.create_task(ex.watch(["BTC-USDT"], events.append, stop))
        await wait_for(lambda: len([e for e in events if e.kind == "quote"]) > 3)
        stop.set()
        await task
        assert all(0 < e.bid < e.ask for e in events if e.kind == "quote")
        assert ex.counters["rest_polls"] == 0 and ex.normalizer.dropped_total == 0
    finally:
        await ex.close()


# --- perpetuals and the user data stream ------------------------------------------------------------------------

PERP = "BTC-USDT-PERP"


def someone_trades(server: EmulatorServer, side: str, quantity: float, *, futures: bool) -> None:
    """Another trader's market order on the emulator's (spot or futures) book: it meets our resting order first
    when ours is the best price."""
    state = server.futures if futures else server.state
    assert state is not None

    def trade() -> None:
        order = FinalizedOrder(f"x-{time.time_ns()}", "BTCUSDT", side, "market", quantity, None, "gtc",
                               time.time_ns(), 0)
        state._apply(state.engine.submit(order, "another", time.time_ns()))

    server.call(trade)


def inside(server: EmulatorServer, *, futures: bool) -> float:
    """A price strictly inside the (still) market's spread, on its tick grid."""
    state = server.futures if futures else server.state
    assert state is not None
    book = server.call(lambda: state.depth("BTCUSDT", 1))
    return round((float(book["bids"][0][0]) + float(book["asks"][0][0])) / 2, 2)


@contextmanager
def still_market() -> Iterator[EmulatorServer]:
    """An emulator whose spot and futures markets hold one background quote each and move only when told."""
    with running_emulator({KEY: (SECRET, {"USDT": 50_000.0, "BTC": 2.0})}, tick_s=0) as server:
        assert server.futures is not None
        server.call(server.state.step_market)
        server.call(server.futures.step_market)
        yield server


async def test_perpetuals_open_a_short_from_flat_and_close_it_end_to_end() -> None:
    with still_market() as server:
        ex = CcxtExchange(settings(server, market_type="swap", symbols=(PERP,)),
                          MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            assert ex.symbols() == ("BTC-USDT-PERP", "ETH-USDT-PERP")
            perp = ex.instrument(PERP)
            assert (perp.tick_size, perp.lot_size, perp.maker_fee, perp.taker_fee, perp.quote_currency) == \
                (0.01, 0.001, 0.0002, 0.0005, "USDT")
            assert await ex.positions() == {}

            opened = await ex.execute(order("perp-1", symbol=PERP, side="sell", quantity=0.01))
            assert [u.status for u in opened] == ["accepted", "filled"]
            sold = opened[-1]
            assert sold.fill_quantity == 0.01 and sold.fill_price > 0
            short = (await ex.positions())[PERP]
            assert short.quantity == pytest.approx(-0.01) and short.entry_price == pytest.approx(sold.fill_price)

            bid = inside(server, futures=True)
            closing = await ex.execute(order("perp-2", symbol=PERP, side="buy", order_type="limit", limit_price=bid,
                                             quantity=0.01))
            assert [u.status for u in closing] == ["accepted"]
            someone_trades(server, "sell", 0.01, futures=True)
            closed = await ex.poll_orders()
            assert [(u.client_order_id, u.status, u.fill_quantity, u.fill_price) for u in closed] == \
                [("perp-2", "filled", 0.01, bid)]
            assert await ex.positions() == {}

            realized = 0.01 * (sold.fill_price - bid)
            taker_fee, maker_fee = 0.01 * sold.fill_price * 0.0005, 0.01 * bid * 0.0002
            usdt = (await ex.balances())["USDT"]
            assert usdt.total == pytest.approx(50_000 + realized - taker_fee - maker_fee, abs=1e-6)
            assert usdt.used == 0.0 and usdt.free == pytest.approx(usdt.total)
            assert "BTC" not in await ex.balances()  # a perpetual moves USDT only
            assert server.call(lambda: server.state.accounts[KEY].balances["BTC"]) == 2.0  # spot untouched
        finally:
            await ex.close()


async def test_perpetual_market_data_streams_through_ccxt_pro(emulator: EmulatorServer) -> None:
    ex = CcxtExchange(settings(emulator, market_type="swap", symbols=(PERP,)), None)
    await ex.open()
    try:
        events: list[MarketEvent] = []
        stop = asyncio.Event()
        task = asyncio.create_task(ex.watch([PERP], events.append, stop))
        await wait_for(lambda: {(e.kind, e.symbol) for e in events} >= {("trade", PERP), ("quote", PERP)})
        stop.set()
        await task
        assert all(0 < e.bid < e.ask for e in events if e.kind == "quote")
        assert ex.counters["stream_errors"] == 0 and ex.counters["rest_polls"] == 0
        assert ex.normalizer.dropped_total == 0
    finally:
        await ex.close()


async def test_perpetuals_refuse_wrong_credentials_with_a_clear_error(emulator: EmulatorServer) -> None:
    wrong = "not-the-futures-secret-4242"
    ex = CcxtExchange(settings(emulator, market_type="swap", symbols=(PERP,)), MemorySigner({"main": (KEY,
                                                                                                      wrong.encode())}))
    await ex.open()
    try:
        with pytest.raises(VenueError) as info:
            await ex.execute(order("perp-bad", symbol=PERP, side="sell"))
        message = str(info.value)
        assert "account 'main'" in message and "Signature for this request is not valid" in message
        assert "Check the API key and secret" in message and wrong not in message and SECRET not in message
        with pytest.raises(VenueError, match="refused the credentials"):
            await ex.positions()
        assert emulator.futures is not None
        assert emulator.futures.counters["orders"] == 0 and emulator.futures.counters["rejected_auth"] >= 2
    finally:
        await ex.close()


async def _streaming(ex: CcxtExchange) -> tuple[list[OrderUpdate], asyncio.Event, asyncio.Task[None]]:
    got: list[OrderUpdate] = []
    stop = asyncio.Event()
    task = asyncio.create_task(ex.stream_orders(got.append, stop))
    await wait_for(lambda: ex.user_stream_up)
    return got, stop, task


@pytest.mark.parametrize("market_type", ["spot", "swap"])
async def test_fills_arriving_only_through_the_user_stream_reach_the_caller_once(market_type: str) -> None:
    futures = market_type == "swap"
    symbol = PERP if futures else "BTC-USDT"
    with still_market() as server:
        ex = CcxtExchange(settings(server, market_type=market_type, symbols=(symbol,), stream_poll_s=3600),
                          MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            got, stop, task = await _streaming(ex)
            price = inside(server, futures=futures)
            placed = await ex.execute(order("us-1", symbol=symbol, order_type="limit", limit_price=price,
                                            quantity=0.003))
            someone_trades(server, "sell", 0.001, futures=futures)
            await wait_for(lambda: any(u.status == "partially-filled" for u in got))
            assert await ex.poll_orders() == []  # polling is slowed while the stream is up: the stream told us
            someone_trades(server, "sell", 0.002, futures=futures)
            await wait_for(lambda: any(u.status == "filled" for u in got))
            stop.set()
            await task
            everything = placed + got
            assert [(u.status, u.fill_quantity, u.fill_price) for u in everything] == [
                ("accepted", 0.0, 0.0), ("partially-filled", 0.001, price), ("filled", 0.002, price)]
            fee_rate = 0.0002 if futures else 0.001
            assert [u.fee for u in everything[1:]] == [pytest.approx(q * price * fee_rate) for q in (0.001, 0.002)]
            assert all(u.venue_order_id == everything[0].venue_order_id != "" for u in everything)
            assert not ex.user_stream_up and await ex.poll_orders() == []  # polling again: nothing is new
            assert ex.counters["user_stream_updates"] >= 3 and ex.counters["user_stream_errors"] == 0
        finally:
            await ex.close()


@pytest.mark.parametrize("market_type", ["spot", "swap"])
async def test_the_user_stream_cut_off_falls_back_to_polling_then_resumes(market_type: str) -> None:
    futures = market_type == "swap"
    symbol = PERP if futures else "BTC-USDT"
    with still_market() as server:
        ex = CcxtExchange(settings(server, market_type=market_type, symbols=(symbol,), stream_poll_s=3600,
                                   backoff_s=0.5, backoff_max_s=1.0), MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            got, stop, task = await _streaming(ex)
            price = inside(server, futures=futures)
            got += await ex.execute(order("cut-1", symbol=symbol, order_type="limit", limit_price=price,
                                          quantity=0.002))
            hub = server.futures_hub if futures else server.hub
            assert hub is not None
            server.call(hub.drop_connections)
            await wait_for(lambda: ex.counters["user_stream_errors"] >= 1)
            someone_trades(server, "sell", 0.001, futures=futures)  # while nobody listens
            got += await ex.poll_orders()  # the stream is down: this reads the venue (or the reopened stream did)
            await wait_for(lambda: ex.user_stream_up)
            someone_trades(server, "sell", 0.001, futures=futures)
            await wait_for(lambda: any(u.status == "filled" for u in got))
            stop.set()
            await task
            assert [(u.status, u.fill_quantity) for u in got] == [("accepted", 0.0), ("partially-filled", 0.001),
                                                                  ("filled", 0.001)]
        finally:
            await ex.close()


async def test_a_garbled_user_data_frame_is_counted_and_dropped_and_the_stream_goes_on() -> None:
    with still_market() as server:
        ex = CcxtExchange(settings(server, market_type="swap", symbols=(PERP,), stream_poll_s=3600),
                          MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            got, stop, task = await _streaming(ex)
            assert server.futures_hub is not None
            hub = server.futures_hub
            price = inside(server, futures=True)
            got += await ex.execute(order("gb-1", symbol=PERP, order_type="limit", limit_price=price,
                                          quantity=0.001))
            # Not JSON; and an event for our order whose numbers are not numbers (it must not become a fill).
            broken: dict[str, Any] = {"e": "ORDER_TRADE_UPDATE", "E": 1, "T": 1, "o": {
                "s": "BTCUSDT", "c": "gb-1", "S": "BUY", "o": "LIMIT", "X": "FILLED", "x": "TRADE", "i": 999,
                "q": "0.001", "z": "NaN", "l": "lots", "L": "1e999", "n": "0"}}
            negative = {**broken, "o": {**broken["o"], "z": "-0.5", "l": "0.001", "L": "1"}}  # ccxt reads it
            for frame in ("}{ not json", json.dumps(broken), "\x00\xff", json.dumps(negative)):
                server.call(lambda frame=frame: hub.broadcast_raw(frame))
            someone_trades(server, "sell", 0.001, futures=True)
            await wait_for(lambda: any(u.status == "filled" for u in got))
            stop.set()
            await task
            assert [(u.status, u.fill_quantity, u.fill_price) for u in got] == [("accepted", 0.0, 0.0),
                                                                                ("filled", 0.001, price)]
            dropped = ex.normalizer.dropped
            assert dropped["unreadable WebSocket frame (not a JSON object or array)"] == 2, dropped
            assert dropped["unreadable WebSocket frame (ValueError)"] == 1, dropped  # ccxt choked on "lots"
            assert dropped["user data order without fill fields"] == 1, dropped  # we refused a negative total
            assert ex.counters["user_stream_errors"] == 0
        finally:
            await ex.close()


async def test_the_user_stream_with_wrong_credentials_is_refused_and_polling_carries_on(
        emulator: EmulatorServer) -> None:
    wrong = "not-the-stream-secret-777"
    ex = CcxtExchange(settings(emulator, backoff_s=0.05, backoff_max_s=0.1), MemorySigner({"main": (KEY,
                                                                                                   wrong.encode())}))
    await ex.open()
    try:
        got: list[OrderUpdate] = []
        stop = asyncio.Event()
        task = asyncio.create_task(ex.stream_orders(got.append, stop))
        await wait_for(lambda: ex.counters["user_stream_errors"] >= 2)
        assert not ex.user_stream_up and got == []
        stop.set()
        await task
        assert emulator.state.counters["rejected_auth"] >= 2
    finally:
        await ex.close()


async def test_with_the_user_stream_unreachable_polling_finds_the_fills() -> None:
    with still_market() as server:
        urls = server.ccxt_urls()
        urls["ws"] = {**urls["ws"], "ws-api": {"spot": "ws://127.0.0.1:1/ws-api/v3"}}  # nothing listens there
        ex = CcxtExchange(settings(server, urls=urls, stream_poll_s=3600),
                          MemorySigner({"main": (KEY, SECRET.encode())}))
        await ex.open()
        try:
            got: list[OrderUpdate] = []
            stop = asyncio.Event()
            task = asyncio.create_task(ex.stream_orders(got.append, stop))
            await wait_for(lambda: ex.counters["user_stream_errors"] >= 1)
            price = inside(server, futures=False)
            placed = await ex.execute(order("down-1", order_type="limit", limit_price=price, quantity=0.001))
            someone_trades(server, "sell", 0.001, futures=False)
            polled = await ex.poll_orders()
            stop.set()
            await task
            assert [u.status for u in placed] == ["accepted"] and got == []
            assert [(u.status, u.fill_quantity, u.fill_price) for u in polled] == [("filled", 0.001, price)]
            assert not ex.user_stream_up
        finally:
            await ex.close()


_events = st.dictionaries(st.sampled_from(["z", "l", "L", "n", "N", "i", "X"]), _values | st.sampled_from(
    ["0.001", "0", "-1", "NaN", "1e999", "lots", "USDT"]), max_size=7)


@given(batch=st.one_of(_values, st.lists(st.one_of(_values, st.fixed_dictionaries(
    {"clientOrderId": st.sampled_from(["cid", "other", ""]), "info": _events | _values},
    optional={"id": _values | st.just("7"), "symbol": st.sampled_from(["BTC/USDT", "BTC/USDT:USDT", "x"]),
              "status": st.sampled_from(["open", "closed", "canceled", "expired"]) | _values,
              "amount": _values, "cost": _values})), max_size=4)))
def test_fuzz_user_stream_orders_never_raise_and_yield_sane_updates(batch: object) -> None:
    ex = CcxtExchange(ExchangeSettings(id="binance"), None)
    ex.symbols_map = ex.normalizer.symbols = SYMBOLS
    ex.orders.track("cid", "BTC-USDT")
    first, again = ex._stream_updates(batch), ex._stream_updates(batch)
    for update in first + again:
        assert update.client_order_id == "cid" and update.symbol in SYMBOLS.to_ccxt
        assert math.isfinite(update.fill_quantity) and update.fill_quantity >= 0
        assert math.isfinite(update.fill_price) and math.isfinite(update.fee)
    assert all(u.fill_quantity == 0 for u in again)  # the same events once more: no fill twice
