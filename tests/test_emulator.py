"""The venue emulator: real ccxt (REST and ccxt.pro WebSocket) and the bundled binance_spot WASM plugin
against a real server on 127.0.0.1, and the request parsing fuzzed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import ccxt
import ccxt.pro as ccxtpro
import httpx
import pytest
import websockets
from conftest import running_emulator
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.domain import FinalizedOrder
from allele.kernel.emulator.futures import FuturesState
from allele.kernel.emulator.server import EmulatorServer, StreamHub, _Connection
from allele.kernel.emulator.state import Account, EmulatorConfig, EmulatorState, signed_payload
from allele.kernel.exchange.plugin_send import resolve_request, send_plugin_request
from allele.vault.signing import MemorySigner

KEY, SECRET = "emu-key-1", "emu-secret-1"
CCXT_OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                "defaultType": "spot"}


def start(config: EmulatorConfig | None = None,
          balances: dict[str, float] | None = None) -> AbstractContextManager[EmulatorServer]:
    return running_emulator({KEY: (SECRET, balances or {"USDT": 100_000.0, "BTC": 1.0})}, config=config)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with start() as server:
        yield server


def client(server: EmulatorServer, secret: str = SECRET, api_key: str = KEY) -> Any:
    ex = ccxtpro.binance({"apiKey": api_key, "secret": secret, "options": dict(CCXT_OPTIONS)})
    ex.urls["api"] = server.ccxt_urls()
    return ex


def signed(params: dict[str, str], secret: str = SECRET) -> str:
    query = urlencode(params)
    return f"{query}&signature={hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()}"


async def test_it_binds_loopback_and_reports_the_bound_port(emulator: EmulatorServer) -> None:
    assert emulator.port > 0
    assert emulator.rest_url == f"http://127.0.0.1:{emulator.port}/api/v3"
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"{emulator.rest_url}/time")
    server_ms = reply.json()["serverTime"]
    assert abs(server_ms - time.time_ns() // 1_000_000) < 60_000


async def test_ccxt_loads_markets_and_reads_public_data(emulator: EmulatorServer) -> None:
    ex = client(emulator)
    try:
        markets = await ex.load_markets()
        assert sorted(markets) == ["BTC/USDT", "ETH/USDT"]
        btc = markets["BTC/USDT"]
        assert btc["spot"] and btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.001
        assert btc["limits"]["amount"]["min"] == 0.001
        book = await ex.fetch_order_book("BTC/USDT")
        assert book["bids"] and book["asks"] and book["bids"][0][0] < book["asks"][0][0]
        ticker = await ex.fetch_ticker("BTC/USDT")
        assert ticker["bid"] > 0 and ticker["ask"] >= ticker["bid"] and ticker["last"] > 0
        trades = await ex.fetch_trades("BTC/USDT")
        assert trades and all(t["price"] > 0 for t in trades)
    finally:
        await ex.close()


async def test_orders_fill_rest_cancel_and_move_balances(emulator: EmulatorServer) -> None:
    ex = client(emulator)
    try:
        await ex.load_markets()
        before = await ex.fetch_balance()
        assert before["total"]["USDT"] == 100_000.0 and before["total"]["BTC"] == 1.0
        bought = await ex.create_order("BTC/USDT", "market", "buy", 0.003, None, {"clientOrderId": "mkt-1"})
        assert bought["status"] == "closed" and bought["filled"] == 0.003 and bought["clientOrderId"] == "mkt-1"
        assert bought["trades"] and bought["fee"]["currency"] == "USDT" and bought["fee"]["cost"] > 0
        after = await ex.fetch_balance()
        assert after["total"]["BTC"] == pytest.approx(1.003)
        assert after["total"]["USDT"] == pytest.approx(100_000.0 - bought["cost"] - bought["fee"]["cost"])

        resting = await ex.create_order("BTC/USDT", "limit", "buy", 0.002, 1000.0, {"clientOrderId": "lim-1"})
        assert resting["status"] == "open" and resting["filled"] == 0
        locked = await ex.fetch_balance()
        assert locked["used"]["USDT"] == pytest.approx(2.0)
        assert [o["clientOrderId"] for o in await ex.fetch_open_orders("BTC/USDT")] == ["lim-1"]
        cancelled = await ex.cancel_order(resting["id"], "BTC/USDT")
        assert cancelled["status"] == "canceled"
        assert (await ex.fetch_order(resting["id"], "BTC/USDT"))["status"] == "canceled"
        assert await ex.fetch_open_orders("BTC/USDT") == []
        mine = await ex.fetch_my_trades("BTC/USDT")
        assert sum(t["amount"] for t in mine) == pytest.approx(0.003)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order(resting["id"], "BTC/USDT")
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order("999999", "BTC/USDT")
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order("BTC/USDT", "limit", "sell", 5.0, 1_000_000.0)
    finally:
        await ex.close()


async def test_a_post_only_order_that_would_cross_is_refused(emulator: EmulatorServer) -> None:
    ex = client(emulator)
    try:
        await ex.load_markets()
        ask = (await ex.fetch_order_book("BTC/USDT"))["asks"][0][0]
        with pytest.raises(ccxt.InvalidOrder, match="immediately match"):
            await ex.create_order("BTC/USDT", "limit", "buy", 0.001, ask + 1000, {"postOnly": True})
    finally:
        await ex.close()


@pytest.mark.parametrize(("secret", "api_key", "code"), [("wrong-secret", KEY, -1022),
                                                         (SECRET, "someone-else", -2015)])
async def test_wrong_credentials_raise_ccxt_authentication_error(emulator: EmulatorServer, secret: str,
                                                                 api_key: str, code: int) -> None:
    ex = client(emulator, secret=secret, api_key=api_key)
    try:
        await ex.load_markets()
        with pytest.raises(ccxt.AuthenticationError, match=str(code)):
            await ex.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError):
            await ex.create_order("BTC/USDT", "market", "buy", 0.001)
    finally:
        await ex.close()
    assert emulator.state.counters["orders"] == 0 and emulator.state.counters["rejected_auth"] >= 2


async def test_signature_header_and_timestamp_checks_over_raw_http(emulator: EmulatorServer) -> None:
    now = str(time.time_ns() // 1_000_000)
    async with httpx.AsyncClient(base_url=emulator.rest_url) as http:
        ok = await http.get(f"/account?{signed({'timestamp': now})}", headers={"X-MBX-APIKEY": KEY})
        assert ok.status_code == 200 and {b["asset"] for b in ok.json()["balances"]} == {"BTC", "USDT"}
        missing = await http.get(f"/account?{signed({'timestamp': now})}")
        assert missing.status_code == 401 and missing.json()["code"] == -2014
        tampered = signed({"timestamp": now}).replace(now, str(int(now) + 1), 1)
        bad = await http.get(f"/account?{tampered}", headers={"X-MBX-APIKEY": KEY})
        assert bad.json() == {"code": -1022, "msg": "Signature for this request is not valid."}
        stale = await http.get(f"/account?{signed({'timestamp': str(int(now) - 60_000)})}",
                               headers={"X-MBX-APIKEY": KEY})
        assert stale.json()["code"] == -1021
        unsigned = await http.get(f"/account?timestamp={now}", headers={"X-MBX-APIKEY": KEY})
        assert unsigned.json()["code"] == -1022
        body = signed({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                       "quantity": "0.001", "price": "1000", "newClientOrderId": "raw-1", "timestamp": now})
        placed = await http.post("/order", content=body, headers={"X-MBX-APIKEY": KEY,
                                                                   "Content-Type": "application/x-www-form-urlencoded"})
        assert placed.status_code == 200 and placed.json()["status"] == "NEW"
        off_grid = body.replace("quantity=0.001", "quantity=0.0015").rsplit("&signature=", 1)[0]
        off_grid = signed(dict(p.split("=", 1) for p in off_grid.split("&")))
        lot = await http.post("/order", content=off_grid, headers={"X-MBX-APIKEY": KEY})
        assert lot.json() == {"code": -1013, "msg": "Filter failure: LOT_SIZE"}
        unknown = await http.get("/nope")
        assert unknown.status_code == 404 and unknown.json()["code"] == -1000


async def test_the_request_weight_budget_answers_429_and_ccxt_raises_rate_limit() -> None:
    with start(EmulatorConfig(weight_per_minute=3)) as server:
        ex = client(server)
        try:
            async with httpx.AsyncClient(base_url=server.rest_url) as http:
                codes = [(await http.get("/ping")).status_code for _ in range(5)]
                assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
                limited = await http.get("/ping")
                assert limited.json()["code"] == -1003 and limited.headers["Retry-After"] == "60"
            with pytest.raises((ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
                await ex.fetch_time()
        finally:
            await ex.close()


async def test_ccxt_pro_watches_trades_ticker_and_the_order_book(emulator: EmulatorServer) -> None:
    ex = client(emulator)
    try:
        trades = await asyncio.wait_for(ex.watch_trades("BTC/USDT"), 10)
        assert trades and trades[-1]["symbol"] == "BTC/USDT" and trades[-1]["price"] > 0
        ticker = await asyncio.wait_for(ex.watch_ticker("BTC/USDT"), 10)
        assert ticker["symbol"] == "BTC/USDT" and ticker["last"] > 0
        nonces = []
        for _ in range(3):  # the diff stream continues the REST snapshot: ccxt checks U/u against lastUpdateId
            book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
            nonces.append(book["nonce"])
            assert book["bids"][0][0] < book["asks"][0][0]
        assert nonces == sorted(nonces) and nonces[-1] > nonces[0]
        # Our own resting order shows up in the streamed book, at its price and size.
        await ex.load_markets()
        await ex.create_order("BTC/USDT", "limit", "buy", 0.007, 1234.5)
        for _ in range(50):
            book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 10)
            if [1234.5, 0.007] in book["bids"]:
                break
        assert [1234.5, 0.007] in book["bids"]
    finally:
        await ex.close()


async def test_websocket_protocol_and_garbage_frames(emulator: EmulatorServer) -> None:
    async with websockets.connect(f"{emulator.ws_url}/0") as ws:
        await ws.send("this is not json")
        assert json.loads(await ws.recv())["error"]["code"] == 3
        await ws.send(b"\x00\xffbinary")
        assert json.loads(await ws.recv())["error"]["code"] == 3
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 1}))
        assert "unknown stream" in json.loads(await ws.recv())["error"]["msg"]
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}))
        assert json.loads(await ws.recv()) == {"result": None, "id": 2}
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["e"] == "trade" and frame["s"] == "BTCUSDT" and float(frame["p"]) > 0
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        for _ in range(100):
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply.get("id") == 3:
                break
        assert reply == {"result": ["btcusdt@trade"], "id": 3}
    assert emulator.hub.bad_requests == 3


SWAP_OPTIONS = {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False, "fetchMargins": False,
                "defaultType": "swap"}


def swap_client(server: EmulatorServer, secret: str = SECRET, api_key: str = KEY) -> Any:
    ex = ccxt.async_support.binance({"apiKey": api_key, "secret": secret, "options": dict(SWAP_OPTIONS)})
    ex.urls["api"] = server.ccxt_urls()
    return ex


async def test_ccxt_trades_perpetuals_with_signed_positions_and_usdt_margin(emulator: EmulatorServer) -> None:
    ex = swap_client(emulator)
    try:
        markets = await ex.load_markets()
        assert sorted(markets) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
        perp = markets["BTC/USDT:USDT"]
        assert perp["swap"] and perp["linear"] and perp["settle"] == "USDT" and perp["contractSize"] == 1
        assert (perp["precision"]["price"], perp["precision"]["amount"], perp["taker"]) == (0.01, 0.001, 0.0005)
        ticker = await ex.fetch_ticker("BTC/USDT:USDT")
        assert 0 < ticker["bid"] < ticker["ask"]
        assert (await ex.fetch_order_book("BTC/USDT:USDT", 5))["bids"]
        assert (await ex.fetch_balance())["total"]["USDT"] == 100_000.0  # the futures wallet: the account's USDT

        short = await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"clientOrderId": "f-1"})
        assert short["status"] == "closed" and short["filled"] == 0.01 and short["clientOrderId"] == "f-1"
        [position] = await ex.fetch_positions(["BTC/USDT:USDT"])
        assert position["side"] == "short" and position["contracts"] == 0.01
        assert position["entryPrice"] == pytest.approx(short["average"])
        # ccxt maps futures error codes to its classes by host name (fapi.binance.com), so at 127.0.0.1 they
        # arrive as ExchangeError with the venue's code and message.
        with pytest.raises(ccxt.ExchangeError, match="-2022"):  # reduce-only may not add to the short
            await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"reduceOnly": True})

        flip = await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.03, None, {"clientOrderId": "f-2"})
        [position] = await ex.fetch_positions(["BTC/USDT:USDT"])
        assert position["side"] == "long" and position["contracts"] == pytest.approx(0.02)
        assert position["entryPrice"] == pytest.approx(flip["average"])
        realized = 0.01 * (short["average"] - flip["average"])
        fees = 0.0005 * (short["cost"] + flip["cost"])
        balance = await ex.fetch_balance()
        # The wallet: realized PnL and fees in. (ccxt's total is the margin balance: the wallet plus the unrealized
        # PnL, which moves with the market between two requests.)
        assert float(balance["info"]["totalWalletBalance"]) == pytest.approx(100_000 + realized - fees, abs=1e-6)
        assert balance["used"]["USDT"] == pytest.approx(0.02 * position["markPrice"] / 10, rel=0.05)  # 10x

        resting = await ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.002, 1000.0, {"clientOrderId": "f-3"})
        assert [o["clientOrderId"] for o in await ex.fetch_open_orders("BTC/USDT:USDT")] == ["f-3"]
        assert (await ex.cancel_order(resting["id"], "BTC/USDT:USDT"))["status"] == "canceled"
        assert len(await ex.fetch_my_trades("BTC/USDT:USDT")) >= 2
        with pytest.raises(ccxt.ExchangeError, match="-2019"):  # 100 BTC at 10x is far beyond the margin
            await ex.create_order("BTC/USDT:USDT", "market", "sell", 100.0)
        closing = await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.02, None, {"reduceOnly": True})
        assert closing["filled"] == pytest.approx(0.02) and await ex.fetch_positions() == []
        assert emulator.state.accounts[KEY].balances == {"USDT": 100_000.0, "BTC": 1.0}  # spot untouched
    finally:
        await ex.close()


@pytest.mark.parametrize(("secret", "api_key"), [("wrong-secret", KEY), (SECRET, "unknown-key")])
async def test_futures_refuse_wrong_credentials(emulator: EmulatorServer, secret: str, api_key: str) -> None:
    ex = swap_client(emulator, secret, api_key)
    try:
        await ex.load_markets()
        with pytest.raises(ccxt.AuthenticationError):
            await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.01)
        with pytest.raises(ccxt.AuthenticationError):
            await ex.fetch_balance()
        assert emulator.futures is not None and emulator.futures.counters["orders"] == 0
    finally:
        await ex.close()


async def _next_event(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        event = frame.get("event", frame)
        if event.get("e") == kind:
            return dict(event)


async def test_listen_keys_open_user_streams_of_execution_reports_and_order_trade_updates(
        emulator: EmulatorServer) -> None:
    def now() -> str:
        return str(time.time_ns() // 1_000_000)

    base = emulator.base_url
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{base}/api/v3/userDataStream")).json()["code"] == -2014
        assert (await http.post(f"{base}/api/v3/userDataStream", headers={"X-MBX-APIKEY": "nobody"})).json()[
            "code"] == -2015
        header = {"X-MBX-APIKEY": KEY}
        spot_key = (await http.post(f"{base}/api/v3/userDataStream", headers=header)).json()["listenKey"]
        assert (await http.post(f"{base}/api/v3/userDataStream", headers=header)).json()["listenKey"] == spot_key
        assert (await http.put(f"{base}/api/v3/userDataStream?listenKey={spot_key}", headers=header)).json() == {
            "listenKey": spot_key}
        async with websockets.connect(f"{emulator.ws_url.removesuffix('/stream/ws')}/ws/{spot_key}") as ws:
            placed = await http.post(f"{base}/api/v3/order", headers=header, content=signed(
                {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                 "newClientOrderId": "ud-1", "timestamp": now()}))
            assert placed.json()["status"] == "FILLED"
            new, trade = await _next_event(ws, "executionReport"), await _next_event(ws, "executionReport")
            assert (new["c"], new["x"], new["X"]) == ("ud-1", "NEW", "NEW")
            assert (trade["x"], trade["X"], trade["l"], trade["z"]) == ("TRADE", "FILLED", "0.00100000", "0.00100000")
            assert float(trade["n"]) > 0 and trade["N"] == "USDT" and trade["t"] > 0
        assert (await http.delete(f"{base}/api/v3/userDataStream?listenKey={spot_key}", headers=header)).json() == {}
        assert (await http.put(f"{base}/api/v3/userDataStream?listenKey={spot_key}", headers=header)).json()[
            "code"] == -1125

        fut_key = (await http.post(f"{base}/fapi/v1/listenKey", headers=header)).json()["listenKey"]
        assert fut_key != spot_key
        async with websockets.connect(f"ws://127.0.0.1:{emulator.port}/fstream/private/ws?listenKey={fut_key}") as ws:
            placed = await http.post(f"{base}/fapi/v1/order", headers=header, content=signed(
                {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.002",
                 "newClientOrderId": "ud-2", "timestamp": now()}))
            assert placed.json()["status"] == "FILLED" and placed.json()["positionSide"] == "BOTH"
            new, trade = await _next_event(ws, "ORDER_TRADE_UPDATE"), await _next_event(ws, "ORDER_TRADE_UPDATE")
            assert (new["o"]["c"], new["o"]["x"], trade["o"]["x"], trade["o"]["X"]) == ("ud-2", "NEW", "TRADE",
                                                                                        "FILLED")
            assert trade["o"]["z"] == "0.00200000" and trade["o"]["ps"] == "BOTH" and float(trade["o"]["n"]) > 0
        risk = await http.get(f"{base}/fapi/v3/positionRisk?{signed({'timestamp': now()})}", headers=header)
        btc = next(p for p in risk.json() if p["symbol"] == "BTCUSDT")
        assert btc["positionAmt"] == "-0.00200000"
        bad = await http.get(f"{base}/fapi/v2/account?{signed({'timestamp': now()}, 'nope')}", headers=header)
        assert bad.status_code == 400 and bad.json()["code"] == -1022
        assert (await http.get(f"{base}/fapi/v9/time")).status_code == 404


async def test_the_websocket_api_subscribes_user_data_with_a_signature(emulator: EmulatorServer) -> None:
    def subscribe(secret: str) -> str:
        fields = {"apiKey": KEY, "timestamp": str(time.time_ns() // 1_000_000)}
        payload = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
        signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return json.dumps({"id": "s1", "method": "userDataStream.subscribe.signature",
                           "params": {**fields, "signature": signature}})

    async with websockets.connect(emulator.ws_api_url) as ws:
        await ws.send("not json")
        assert json.loads(await ws.recv())["status"] == 400
        await ws.send(subscribe("wrong-secret"))
        assert json.loads(await ws.recv())["error"]["code"] == -1022
        await ws.send(subscribe(SECRET))
        assert json.loads(await ws.recv()) == {"id": "s1", "status": 200, "result": {"subscriptionId": 0}}
        async with httpx.AsyncClient() as http:
            await http.post(f"{emulator.rest_url}/order", headers={"X-MBX-APIKEY": KEY}, content=signed(
                {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "1000",
                 "quantity": "0.001", "newClientOrderId": "wsapi-1", "timestamp": str(time.time_ns() // 1_000_000)}))
        event = await _next_event(ws, "executionReport")
        assert (event["c"], event["x"], event["X"], event["p"]) == ("wsapi-1", "NEW", "NEW", "1000.00000000")


def _order(cid: str, **kw: Any) -> FinalizedOrder:
    fields: dict[str, Any] = {"client_order_id": cid, "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
                              "quantity": 0.002, "limit_price": 1000.0, "time_in_force": "gtc",
                              "ts_ns": time.time_ns(), "deadline_ns": 0}
    fields.update(kw)
    return FinalizedOrder(**fields)


async def test_the_binance_spot_plugin_signs_orders_the_emulator_accepts(emulator: EmulatorServer, make_host: Any,
                                                                         built: Any) -> None:
    signer = MemorySigner({"main": (KEY, SECRET.encode()), "wrong": (KEY, b"not-the-secret")})
    host = make_host(signer=signer)
    plugin = host.exchange(host.load(built["binance_spot"]))
    plugin.configure({"testnet": True, "recv_window_ms": 5000})

    request = plugin.encode_order(_order("wasm-1"), "main")
    assert "{{api-key}}" in dict(request.headers)["X-MBX-APIKEY"] and SECRET not in repr(request)
    reply = await send_plugin_request(request, signer, "main", base_url=emulator.base_url)
    assert reply.status_code == 200, reply.text
    assert reply.json()["clientOrderId"] == "wasm-1" and reply.json()["status"] == "NEW"

    market = plugin.encode_order(_order("wasm-2", order_type="market", limit_price=None, time_in_force="ioc"),
                                 "main")
    filled = await send_plugin_request(market, signer, "main", base_url=emulator.base_url)
    assert filled.status_code == 200 and filled.json()["status"] == "FILLED" and filled.json()["fills"]

    refused = await send_plugin_request(plugin.encode_order(_order("wasm-3"), "wrong"), signer, "wrong",
                                        base_url=emulator.base_url)
    assert refused.status_code == 400 and refused.json()["code"] == -1022
    method, url, headers, _ = resolve_request(request, signer, "main", base_url=emulator.base_url)
    assert (method, url, headers["X-MBX-APIKEY"]) == ("POST", f"{emulator.rest_url}/order", KEY)
    assert sorted(o.client_order_id for o in emulator.state.orders.values()) == ["wasm-1", "wasm-2"]


# --- fuzzing the request parsing: whatever arrives, the answer is a reply, never an exception ---------------

_STATE = EmulatorState(accounts={KEY: Account(SECRET, {"USDT": 1000.0, "BTC": 1.0})},
                       clock=lambda: 1_700_000_000_000_000_000)
_text = st.text(max_size=40)
_param_values = st.one_of(_text, st.sampled_from(["BTCUSDT", "BUY", "SELL", "LIMIT", "MARKET", "LIMIT_MAKER", "GTC",
                                                  "IOC", "FOK", "0.001", "1e400", "-1", "NaN", "1000", "0",
                                                  "1700000000000", "99999999999999999999999"]))
_params = st.dictionaries(st.sampled_from(["symbol", "side", "type", "timeInForce", "quantity", "price",
                                           "newClientOrderId", "orderId", "origClientOrderId", "timestamp",
                                           "recvWindow", "limit", "quoteOrderQty"]) | _text, _param_values,
                          max_size=10)


@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
       path=st.sampled_from(["order", "openOrders", "allOrders", "account", "myTrades", "order/test", "x"]) | _text,
       params=_params, api_key=st.none() | st.just(KEY) | _text, sign_it=st.booleans())
def test_fuzz_private_requests_always_get_a_binance_reply(method: str, path: str, params: dict[str, str],
                                                          api_key: str | None, sign_it: bool) -> None:
    payload = urlencode(params)
    signature = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest() if sign_it else "0" * 64
    status, body = _STATE.private(method, path, params, api_key, payload, signature)
    assert status in (200, 400, 401, 404, 429)
    if status != 200:
        assert isinstance(body["code"], int) and body["code"] < 0 and body["msg"]


@given(path=st.sampled_from(["ping", "time", "exchangeInfo", "depth", "trades", "aggTrades", "ticker/24hr",
                             "ticker/bookTicker", "ticker/price"]) | _text, params=_params)
def test_fuzz_public_requests_always_get_a_binance_reply(path: str, params: dict[str, str]) -> None:
    status, body = _STATE.public(path, params)
    assert status in (200, 400, 404)
    json.dumps(body)


_FUTURES = FuturesState(accounts={KEY: Account(SECRET, {"USDT": 1000.0})})
_FUTURES.step_market()


@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
       path=st.sampled_from(["order", "openOrders", "allOrders", "account", "balance", "positionRisk", "userTrades",
                             "leverageBracket", "listenKey"]) | _text,
       params=st.dictionaries(st.sampled_from(["reduceOnly", "positionSide", "listenKey"]) | _text,
                              _param_values, max_size=3) | _params, api_key=st.none() | st.just(KEY) | _text,
       sign_it=st.booleans())
def test_fuzz_futures_requests_always_get_a_binance_reply(method: str, path: str, params: dict[str, str],
                                                          api_key: str | None, sign_it: bool) -> None:
    payload = urlencode(params)
    signature = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest() if sign_it else "0" * 64
    for status, body in (_FUTURES.private(method, path, params, api_key, payload, signature),
                         _FUTURES.user_data_stream(method, api_key, params), _FUTURES.public(path, params)):
        assert status in (200, 400, 401, 404, 405, 429)
        json.dumps(body)
        if status != 200:
            assert isinstance(body["code"], int) and body["code"] < 0 and body["msg"]
    for (_, symbol), position in _FUTURES.positions.items():
        assert symbol in _FUTURES.specs and math.isfinite(position.qty) and math.isfinite(position.entry)


@given(frame=st.one_of(st.text(max_size=100), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["id", "method", "params", "apiKey",
                                                                          "signature", "timestamp"]) | st.text(
        max_size=8), c, max_size=4), max_leaves=10).map(json.dumps)))
def test_fuzz_websocket_api_requests_get_an_answer(frame: str) -> None:
    reply = StreamHub(_STATE).ws_api_command(_Connection(ws_api=True), frame)
    assert reply["status"] == 200 or reply["error"]["code"] < 0
    json.dumps(reply)


@given(query=st.text(max_size=80), body=st.text(max_size=80))
def test_fuzz_signed_payload_never_raises_and_strips_the_signature(query: str, body: str) -> None:
    payload, signature = signed_payload(query, body)
    if signature is not None:
        assert f"signature={signature}" in query + body and "signature=" + signature not in payload


def test_signed_payload_reads_query_body_and_both() -> None:
    assert signed_payload("a=1&b=2&signature=ff", "") == ("a=1&b=2", "ff")
    assert signed_payload("", "a=1&signature=ee") == ("a=1", "ee")
    assert signed_payload("a=1", "b=2&signature=dd") == ("a=1b=2", "dd")
    assert signed_payload("a=1&xsignature=1", "") == ("a=1&xsignature=1", None)


@given(frame=st.one_of(st.text(max_size=100), st.binary(max_size=50).map(lambda b: b.decode("latin-1")),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                         max_size=4),
                                    max_leaves=10).map(json.dumps)))
def test_fuzz_websocket_commands_get_an_answer(frame: str) -> None:
    hub = StreamHub(_STATE)
    reply = hub.command(_Connection(), frame)
    assert ("result" in reply) != ("error" in reply)
    json.dumps(reply)


def test_the_cli_runs_the_emulator_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    allele = Path(sys.executable).parent / "allele"
    env = {**os.environ, "ALLELE_EMULATOR_SECRET": "cli-secret", "ALLELE_HOME": str(tmp_path)}
    proc = subprocess.Popen([str(allele), "venue", "emulator", "--port", "0", "--api-key", "cli-key", "--symbols",
                             "SOLUSDT:150", "--balances", "USDT:500,SOL:2", "--tick", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while not lines[-1].startswith("Ctrl-C") and lines[-1]:
            lines.append(proc.stdout.readline())
        rest = lines[1].split()[-1]
        assert lines[0].startswith("venue emulator") and rest.startswith("http://127.0.0.1:")
        assert "cli-secret" not in "".join(lines)
        # The config snippet it prints is TOML that points ccxt at it, spot and perpetuals.
        snippet = "".join(line[2:] for line in lines if line.startswith("  ") and "=" in line)
        exchange = tomllib.loads("[exchange]\n" + snippet)["exchange"]
        assert exchange["symbols"] == ["SOL-USDT"] and exchange["account"] == "emulator"
        assert exchange["urls"]["public"] == rest and exchange["urls"]["fapiPublic"].endswith("/fapi/v1")
        with httpx.Client(base_url=rest) as http:
            assert [s["symbol"] for s in http.get("/exchangeInfo").json()["symbols"]] == ["SOLUSDT"]
            now = str(time.time_ns() // 1_000_000)
            ok = http.get(f"/account?{signed({'timestamp': now}, 'cli-secret')}", headers={"X-MBX-APIKEY": "cli-key"})
            assert {b["asset"]: b["free"] for b in ok.json()["balances"]} == {"SOL": "2.00000000",
                                                                              "USDT": "500.00000000"}
            bad = http.get(f"/account?{signed({'timestamp': now}, 'nope')}", headers={"X-MBX-APIKEY": "cli-key"})
            assert bad.json()["code"] == -1022
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "venue emulator stopped" in stderr


def test_the_cli_refuses_bad_symbols_without_starting() -> None:
    allele = Path(sys.executable).parent / "allele"
    done = subprocess.run([str(allele), "venue", "emulator", "--symbols", "FOO:1"], capture_output=True, text=True,
                          timeout=60, input="")
    assert done.returncode == 2 and "symbol 'FOO:1' is not BASEQUOTE" in done.stderr
