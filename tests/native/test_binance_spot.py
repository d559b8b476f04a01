"""binance_spot exchange adapter, natively: decoding, symbols, and signed order encoding."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from allele.kernel.sdk.testing import NativeHost, load_native
from allele_guest import FinalizedOrder, MarketEvent, OrderUpdate, PluginError, VenueRequest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "exchanges" / "binance_spot"
SECRET = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TS_NS = 1_700_000_123_456_789_012


def adapter(host: NativeHost | None = None, **params):
    mod = load_native(PLUGIN, host or NativeHost(secrets={"main": SECRET}))
    ex = mod.BinanceSpot()
    if params:
        ex.configure(params)
    return ex


def order(**fields) -> FinalizedOrder:
    base = dict(client_order_id="allele-42", symbol="BTC-USDT", side="buy", order_type="limit", quantity=0.005,
                limit_price=43000.1, time_in_force="gtc", ts_ns=TS_NS, deadline_ns=TS_NS + 60_000_000_000)
    base.update(fields)
    return FinalizedOrder(**base)


def split_signed(body: str) -> tuple[str, str]:
    head, sep, signature = body.rpartition("&signature=")
    assert sep, f"no signature in {body!r}"
    return head, signature


def check_signature(body: str, secret: bytes = SECRET) -> list[tuple[str, str]]:
    head, signature = split_signed(body)
    assert signature == hmac.new(secret, head.encode(), hashlib.sha256).hexdigest()
    return parse_qsl(head, strict_parsing=True)


# -- symbols ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("venue, normalized", [
    ("BTCUSDT", "BTC-USDT"), ("ETHBTC", "ETH-BTC"), ("BTCFDUSD", "BTC-FDUSD"), ("BTCTUSD", "BTC-TUSD"),
    ("USDCUSDT", "USDC-USDT"), ("BNBETH", "BNB-ETH"), ("BTCEUR", "BTC-EUR"), ("SOLTRY", "SOL-TRY"),
    ("ethusdc", "ETH-USDC"), ("1000SATSUSDT", "1000SATS-USDT"),
])
def test_normalize_symbol(venue: str, normalized: str) -> None:
    mod = load_native(PLUGIN)
    assert mod.normalize_symbol(venue) == normalized


@pytest.mark.parametrize("bad", ["BTCXYZ", "USDT", "", "BTC-USDT", "BTC USDT"])
def test_unknown_symbol_is_an_error(bad: str) -> None:
    mod = load_native(PLUGIN)
    with pytest.raises(PluginError, match="symbol"):
        mod.normalize_symbol(bad)


# -- subscribe --------------------------------------------------------------------------------------------------

def test_subscribe_frame() -> None:
    ex = adapter()
    frames = ex.subscribe(["BTC-USDT", "ETH-BTC"])
    assert len(frames) == 1
    assert json.loads(frames[0]) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@trade", "btcusdt@bookTicker", "ethbtc@trade", "ethbtc@bookTicker"],
        "id": 1,
    }
    assert json.loads(ex.subscribe(["SOL-USDT"])[0])["id"] == 2
    assert ex.subscribe([]) == []


def test_subscribe_skips_unreadable_symbols_with_a_warning() -> None:
    host = NativeHost()
    ex = adapter(host)
    frames = ex.subscribe(["BTC-USDT", "NOT A SYMBOL"])
    assert json.loads(frames[0])["params"] == ["btcusdt@trade", "btcusdt@bookTicker"]
    assert any(level == "warn" and "NOT A SYMBOL" in msg for level, msg in host.logs)


# -- decode -----------------------------------------------------------------------------------------------------

TRADE = {"e": "trade", "E": 1700000000001, "s": "BTCUSDT", "t": 12345, "p": "43000.10", "q": "0.005",
         "T": 1700000000000, "m": True, "M": True}
BOOK = {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000", "a": "25.36520000",
        "A": "40.66000000"}
EXEC_NEW = {"e": "executionReport", "E": 1700000000100, "s": "ETHBTC", "c": "allele-7", "S": "BUY", "o": "LIMIT",
            "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000", "F": "0.00000000", "g": -1,
            "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": 4293153, "l": "0.00000000", "z": "0.00000000",
            "L": "0.00000000", "n": "0", "N": None, "T": 1700000000099, "t": -1, "I": 8641984, "w": True,
            "m": False, "M": False, "O": 1700000000099, "Z": "0.00000000", "Y": "0.00000000", "Q": "0.00000000"}


def test_decode_trade() -> None:
    events = adapter().decode(json.dumps(TRADE))
    assert events == [MarketEvent("trade", "binance", "BTC-USDT", 1_700_000_000_000_000_000, 43000.10, 0.005)]
    assert isinstance(events[0].ts_ns, int)


def test_decode_book_ticker() -> None:
    (ev,) = adapter().decode(json.dumps(BOOK))
    assert ev == MarketEvent("quote", "binance", "BNB-USDT", 0, (25.3519 + 25.3652) / 2, 0.0, 25.3519, 25.3652,
                             31.21, 40.66)


def test_decode_combined_stream_wrapper() -> None:
    ex = adapter()
    frame = json.dumps({"stream": "btcusdt@trade", "data": TRADE})
    assert ex.decode(frame) == ex.decode(json.dumps(TRADE))
    (quote,) = ex.decode(json.dumps({"stream": "bnbusdt@bookTicker", "data": BOOK}))
    assert quote.kind == "quote" and quote.bid == 25.3519


def test_decode_subscription_ack() -> None:
    ex = adapter()
    assert ex.decode('{"result":null,"id":1}') == []
    assert ex.decode('{"result":["btcusdt@trade"],"id":3}') == []


def test_decode_execution_new() -> None:
    (u,) = adapter().decode(json.dumps(EXEC_NEW))
    assert u == OrderUpdate("allele-7", "4293153", "ETH-BTC", "accepted", 0.0, 0.0, 0.0, "",
                            1_700_000_000_099_000_000, "")


def test_decode_execution_partial_fill() -> None:
    frame = dict(EXEC_NEW, x="TRADE", X="PARTIALLY_FILLED", l="0.25000000", L="0.10264000", n="0.00025000",
                 N="ETH", t=998877)
    (u,) = adapter().decode(json.dumps(frame))
    assert u == OrderUpdate("allele-7", "4293153", "ETH-BTC", "partially-filled", 0.25, 0.10264, 0.00025, "ETH",
                            1_700_000_000_099_000_000, "")


def test_decode_execution_filled_via_user_data_event_wrapper() -> None:
    frame = dict(EXEC_NEW, x="TRADE", X="FILLED", l="0.75000000", L="0.10264410", n="0.00075", N="BNB")
    (u,) = adapter().decode(json.dumps({"subscriptionId": 0, "event": frame}))
    assert (u.status, u.fill_quantity, u.fill_price, u.fee, u.fee_currency) == ("filled", 0.75, 0.1026441, 0.00075,
                                                                                "BNB")


def test_decode_execution_cancel_uses_original_client_id() -> None:
    frame = dict(EXEC_NEW, x="CANCELED", X="CANCELED", c="cancel-req-1", C="allele-7")
    (u,) = adapter().decode(json.dumps(frame))
    assert (u.client_order_id, u.status, u.reason) == ("allele-7", "cancelled", "")


@pytest.mark.parametrize("x_status, status", [("REJECTED", "rejected"), ("EXPIRED", "expired")])
def test_decode_execution_rejected_expired(x_status: str, status: str) -> None:
    frame = dict(EXEC_NEW, x=x_status, X=x_status, r="INSUFFICIENT_BALANCES")
    (u,) = adapter().decode(json.dumps(frame))
    assert (u.status, u.reason) == (status, "INSUFFICIENT_BALANCES")


def test_decode_execution_time_falls_back_to_event_time() -> None:
    frame = dict(EXEC_NEW)
    del frame["T"]
    (u,) = adapter().decode(json.dumps(frame))
    assert u.ts_ns == 1_700_000_000_100_000_000


def test_decode_balance_pushes_are_ignored() -> None:
    ex = adapter()
    assert ex.decode(json.dumps({"e": "outboundAccountPosition", "E": 1, "u": 1, "B": []})) == []
    assert ex.decode(json.dumps({"e": "balanceUpdate", "E": 1, "a": "BTC", "d": "0.1", "T": 1})) == []


@pytest.mark.parametrize("frame, message", [
    ("not json at all", r"frame is not JSON"),
    ("", r"frame is not JSON"),
    ('{"e": "trade", "s": "BTCUSDT"', r"frame is not JSON"),
    ("[1, 2, 3]", r"not a JSON object"),
    ('"trade"', r"not a JSON object"),
    ('{"stream": "x", "data": [1]}', r"'data' is not an object"),
    ('{"e": "aggTrade", "s": "BTCUSDT"}', r"unknown event type 'aggTrade'"),
    ('{"foo": 1}', r"no event type 'e'"),
    ('{"error": {"code": 2, "msg": "Invalid request"}, "id": 1}', r"venue error: .*Invalid request"),
    (json.dumps(dict(TRADE, p="-1.5")), r"trade field 'p' = '-1.5' must be positive"),
    (json.dumps(dict(TRADE, p="0")), r"trade field 'p' = '0' must be positive"),
    (json.dumps(dict(TRADE, p="NaN")), r"trade field 'p' = 'NaN' is not finite"),
    (json.dumps(dict(TRADE, q="lots")), r"trade field 'q' = 'lots' is not a number"),
    (json.dumps(dict(TRADE, p=None)), r"trade field 'p' must be a decimal string"),
    (json.dumps({k: v for k, v in TRADE.items() if k != "T"}), r"trade frame has no 'T' field"),
    (json.dumps(dict(TRADE, T="1700000000000")), r"trade field 'T' must be a positive integer"),
    (json.dumps(dict(TRADE, s="BTCXYZ")), r"'BTCXYZ' does not end in a known quote asset"),
    (json.dumps(dict(BOOK, b="-25")), r"bookTicker field 'b' = '-25' must be positive"),
    (json.dumps({k: v for k, v in BOOK.items() if k != "A"}), r"bookTicker frame has no 'A' field"),
    (json.dumps(dict(BOOK, b="26", a="25")), r"crossed"),
    (json.dumps(dict(EXEC_NEW, X="PENDING_NEW")), r"order status 'X' = 'PENDING_NEW'"),
    (json.dumps({k: v for k, v in EXEC_NEW.items() if k != "c"}), r"executionReport frame has no 'c' field"),
    (json.dumps({k: v for k, v in EXEC_NEW.items() if k != "i"}), r"executionReport frame has no 'i' field"),
    (json.dumps(dict(EXEC_NEW, X="FILLED", l="1", L="0")), r"fill of 1.0 with no price"),
])
def test_decode_garbled_frames_are_clear_errors(frame: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        adapter().decode(frame)


# -- encode_order -----------------------------------------------------------------------------------------------

def test_encode_limit_gtc() -> None:
    req = adapter().encode_order(order(), "main")
    assert isinstance(req, VenueRequest)
    assert req.method == "POST"
    assert req.url == "https://api.binance.com/api/v3/order"
    assert ("X-MBX-APIKEY", "{{api-key}}") in req.headers
    assert ("Content-Type", "application/x-www-form-urlencoded") in req.headers
    assert SECRET.decode() not in req.body
    head, _ = split_signed(req.body)
    assert head == ("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.005&price=43000.1"
                    "&newClientOrderId=allele-42&recvWindow=5000&timestamp=1700000123456")
    check_signature(req.body)


def test_encode_market_sell() -> None:
    req = adapter().encode_order(order(side="sell", order_type="market", limit_price=None, time_in_force="ioc",
                                       quantity=1.5), "main")
    fields = dict(check_signature(req.body))
    assert fields == {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "1.5",
                      "newClientOrderId": "allele-42", "recvWindow": "5000", "timestamp": "1700000123456"}


def test_encode_post_only_is_limit_maker() -> None:
    req = adapter().encode_order(order(time_in_force="post-only", symbol="ETH-BTC", limit_price=0.05123), "main")
    fields = check_signature(req.body)
    assert [k for k, _ in fields] == ["symbol", "side", "type", "quantity", "price", "newClientOrderId",
                                      "recvWindow", "timestamp"]
    assert dict(fields)["type"] == "LIMIT_MAKER" and dict(fields)["price"] == "0.05123"


@pytest.mark.parametrize("tif, venue_tif", [("ioc", "IOC"), ("fok", "FOK")])
def test_encode_ioc_fok(tif: str, venue_tif: str) -> None:
    fields = dict(check_signature(adapter().encode_order(order(time_in_force=tif), "main").body))
    assert (fields["type"], fields["timeInForce"]) == ("LIMIT", venue_tif)


def test_encode_decimals_have_no_float_noise_or_exponent() -> None:
    req = adapter().encode_order(order(quantity=0.1 + 0.2, limit_price=1e-05), "main")
    fields = dict(check_signature(req.body))
    assert fields["quantity"] == "0.3"
    assert fields["price"] == "0.00001"
    req = adapter().encode_order(order(quantity=2e-08, limit_price=123456789.0), "main")
    fields = dict(check_signature(req.body))
    assert (fields["quantity"], fields["price"]) == ("0.00000002", "123456789")


def test_encode_testnet_and_recv_window() -> None:
    req = adapter(testnet=True, recv_window_ms=2500).encode_order(order(), "main")
    assert req.url == "https://testnet.binance.vision/api/v3/order"
    assert dict(check_signature(req.body))["recvWindow"] == "2500"


def test_encode_signature_depends_on_account_secret() -> None:
    other = b"another-secret"
    host = NativeHost(secrets={"main": SECRET, "alt": other})
    req = adapter(host).encode_order(order(), "alt")
    check_signature(req.body, other)


@pytest.mark.parametrize("fields, message", [
    (dict(limit_price=None), r"limit order allele-42 has no limit price"),
    (dict(quantity=0.0), r"quantity must be positive"),
    (dict(quantity=-1.0), r"quantity must be positive"),
    (dict(quantity=float("nan")), r"quantity must be a finite number"),
    (dict(quantity=1e-10), r"rounds to 0"),
    (dict(limit_price=-5.0), r"limit price must be positive"),
    (dict(order_type="market", limit_price=None, time_in_force="post-only"), r"post-only order must be a limit"),
    (dict(client_order_id="has space"), r"client order id 'has space'"),
    (dict(client_order_id="x" * 37), r"client order id"),
    (dict(symbol="BTC/USDT"), r"symbol 'BTC/USDT'"),
    (dict(side="hold"), r"order side must be buy or sell"),
])
def test_encode_bad_orders_are_clear_errors(fields: dict, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        adapter().encode_order(order(**fields), "main")


def test_signing_refused_surfaces_as_plugin_error() -> None:
    ex = adapter(NativeHost(secrets={"main": SECRET}, signing_allowed=False))
    with pytest.raises(PluginError, match="signing refused"):
        ex.encode_order(order(), "main")


def test_unknown_account_surfaces_as_plugin_error() -> None:
    with pytest.raises(PluginError, match="no secret for account 'nobody'"):
        adapter().encode_order(order(), "nobody")


def test_manifest() -> None:
    m = load_native(PLUGIN).BinanceSpot.manifest
    assert m.kind == "exchange"
    assert set(m.allowed_hosts) == {"api.binance.com", "testnet.binance.vision", "stream.binance.com"}
    assert {p.name for p in m.parameters} == {"testnet", "recv_window_ms"}
