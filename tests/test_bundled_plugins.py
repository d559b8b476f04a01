"""The bundled plugins, built and run through the PluginHost, against their native selves.

A component must behave exactly like its app.py run natively (`load_native`): same manifest, same signals on
the live path, and the batch path must agree with the live path however the rows are split. momentum_c has no
Python source, so it is checked against its README's contract and an independent reference of its rule."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import math
import random
from typing import Any
from urllib.parse import parse_qsl

import pytest
from conftest import TEST_SECRET
from klines_venue import MINUTE_MS, T0_MS, Venue, klines

from allele.kernel.domain import BatchSignal, FinalizedOrder, MarketEvent, OrderUpdate, Reading, Signal, VenueRequest
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin import ExchangePlugin, PluginCallError, PluginHost, SensorPlugin, StrategyPlugin
from allele.kernel.sdk.testing import NativeHost, load_native
from allele.vault.signing import MemorySigner
from allele_guest import MarketEvent as GuestMarketEvent
from allele_guest import PluginError as GuestPluginError

PLUGINS = SOURCE_ROOT / "plugins"
NATIVE_DIRS = {
    "sma_cross": PLUGINS / "strategies" / "sma_cross",
    "mean_reversion": PLUGINS / "strategies" / "mean_reversion",
    "completeness_arb": PLUGINS / "strategies" / "completeness_arb",
    "realized_vol": PLUGINS / "sensors" / "realized_vol",
    "binance_spot": PLUGINS / "exchanges" / "binance_spot",
}
NATIVE_CLASSES = {"sma_cross": "SmaCross", "mean_reversion": "MeanReversion",
                  "completeness_arb": "CompletenessArb", "realized_vol": "RealizedVol", "binance_spot": "BinanceSpot"}
STRATEGIES = ("sma_cross", "mean_reversion", "completeness_arb", "momentum_c")
T0 = 1_700_000_000_000_000_000
STEP = 60_000_000_000

# Parameters each strategy is exercised with (chosen so that each emits plenty of signals).
PARAMS: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 4, "slow": 15},
    "mean_reversion": {"window": 15, "entry_z": 1.5, "exit_z": 0.2, "allow_short": True, "band": "zscore"},
    "completeness_arb": {"outcomes": 3, "min_margin": 0.01, "fee_rate": 0.01, "basket_units": 25.0,
                         "max_ask": 0.9, "max_edge": 0.2},
    "momentum_c": {"lookback": 8, "threshold": 0.002},
}
# A value the host refuses by the manifest, and a combination the plugin itself refuses (None: the host's
# checks already cover everything the plugin would refuse).
BAD_VALUE = {"sma_cross": ("fast", 1), "mean_reversion": ("band", "keltner"),
             "completeness_arb": ("outcomes", 17), "momentum_c": ("lookback", 0)}
BAD_COMBINATION = {"sma_cross": ({"fast": 30, "slow": 20}, "fast"),
                   "mean_reversion": ({"entry_z": 1.0, "exit_z": 1.5}, "exit_z"),
                   "completeness_arb": ({"min_margin": 0.1, "max_edge": 0.05}, "max_edge"),
                   "momentum_c": None}


# -- helpers ---------------------------------------------------------------------------------------------------


def native(name: str, host: NativeHost | None = None, params: dict[str, Any] | None = None) -> Any:
    plugin = getattr(load_native(NATIVE_DIRS[name], host), NATIVE_CLASSES[name])()
    if params:
        plugin.configure(params)
    return plugin


def configured(host: PluginHost, built, name: str, params: dict[str, Any] | None = None) -> StrategyPlugin:
    strategy = host.strategy(host.load(built[name]))
    strategy.configure(PARAMS[name] if params is None else params)
    return strategy


def random_walk(n: int, seed: int, start: float = 100.0, vol: float = 0.004) -> list[float]:
    rng = random.Random(seed)
    out, p = [], start
    for _ in range(n):
        p *= math.exp(rng.gauss(0.0, vol))
        out.append(p)
    return out


def walk_rows(n: int, symbols: list[str], seed: int) -> list[MarketEvent]:
    """Bars of several symbols, interleaved at random, each symbol its own seeded random walk."""
    rng = random.Random(seed)
    walks = {s: iter(random_walk(n, seed * 100 + i, start=20.0 * (i + 1))) for i, s in enumerate(symbols)}
    return [MarketEvent("bar", "sim", s, T0 + i * STEP, next(walks[s]))
            for i, s in enumerate(rng.choice(symbols) for _ in range(n))]


def quote_rows(n: int, seed: int) -> list[MarketEvent]:
    """Quotes (and some trades) on 3 events of 3 outcomes each; now and then one leg is offered cheap enough
    for the whole set to cost less than its payout."""
    rng = random.Random(seed)
    fair = {"ELECTION": (0.5, 0.3, 0.2), "CUP": (0.6, 0.25, 0.15), "RACE": (0.34, 0.33, 0.33)}
    out = []
    for i in range(n):
        event = rng.choice(list(fair))
        k = rng.randrange(3)
        symbol = f"{event}:{'ABC'[k]}"
        ts = T0 + i * 1_000_000
        if rng.random() < 0.1:
            out.append(MarketEvent("trade", "sim", symbol, ts, fair[event][k], 3.0))
            continue
        ask = round(fair[event][k] + (rng.choice((-0.05, -0.04)) if rng.random() < 0.12 else 0.015)
                    + rng.choice((0.0, 0.001, 0.002)), 3)
        ask_size = float(rng.choice((5, 12, 40, 100)))
        bid = round(ask - 0.02, 3)
        out.append(MarketEvent("quote", "sim", symbol, ts, (bid + ask) / 2, 0.0, bid, ask, 50.0, ask_size))
    return out


def rows_for(name: str, n: int, symbols: list[str], seed: int) -> list[MarketEvent]:
    return quote_rows(n, seed) if name == "completeness_arb" else walk_rows(n, symbols, seed)


def as_native_event(e: MarketEvent) -> GuestMarketEvent:
    return GuestMarketEvent(e.kind, e.venue, e.symbol, e.ts_ns, e.price, e.size, e.bid, e.ask, e.bid_size,
                                    e.ask_size)


def as_signal(s: Any) -> Signal:
    """A native allele_guest signal as the host's domain type."""
    return Signal(s.symbol, s.sizing, s.amount, s.limit_price, s.group, s.note)


def momentum_reference(rows: list[MarketEvent], lookback: int, threshold: float) -> list[tuple[int, Signal]]:
    """momentum_c's documented rule, written independently: compare each price with the one `lookback` bars
    earlier (same symbol); above +threshold long, below -threshold short, signal when the side changes."""
    history: dict[str, list[float]] = {}
    side: dict[str, int] = {}
    out = []
    for row, e in enumerate(rows):
        h = history.setdefault(e.symbol, [])
        if len(h) >= lookback and h[-lookback] > 0:
            r = e.price / h[-lookback] - 1.0
            new = 1 if r > threshold else -1 if r < -threshold else side.get(e.symbol, 0)
            if new != side.get(e.symbol, 0):
                side[e.symbol] = new
                out.append((row, Signal(e.symbol, "exposure", float(new), None, "",
                                        "momentum up" if new > 0 else "momentum down")))
        h.append(e.price)
    return out


def expected_live(name: str, rows: list[MarketEvent], params: dict[str, Any]) -> list[tuple[int, Signal]]:
    """What the plugin must emit on the live path: its native self (or, for momentum_c, the reference)."""
    if name == "momentum_c":
        return momentum_reference(rows, params["lookback"], params["threshold"])
    plugin = native(name, params=params)
    return [(row, as_signal(s)) for row, e in enumerate(rows) for s in plugin.on_event(as_native_event(e))]


def live(strategy: StrategyPlugin, rows: list[MarketEvent]) -> list[tuple[int, Signal]]:
    return [(row, s) for row, e in enumerate(rows) for s in strategy.on_event(e)]


def columns(rows: list[MarketEvent], symbols: list[str], *, sym: bool = True, spaced: bool = False,
            quotes: bool = False) -> dict[str, Any]:
    """The batch format of wit/worlds.wit for `rows`."""
    index = {s: i for i, s in enumerate(symbols)}
    cols: dict[str, Any] = {"symbols": symbols, "price": [e.price for e in rows]}
    if sym:
        cols["sym"] = [index[e.symbol] for e in rows]
    if spaced:
        assert all(b.ts_ns - a.ts_ns == STEP for a, b in itertools.pairwise(rows))
        cols["ts"] = {"start": rows[0].ts_ns if rows else T0, "step": STEP}
    else:
        cols["ts"] = [e.ts_ns for e in rows]
    if quotes:
        cols["kind"] = [("trade", "quote", "bar").index(e.kind) for e in rows]
        for field in ("size", "bid", "ask", "bid_size", "ask_size"):
            cols[field] = [getattr(e, field) for e in rows]
    return cols


def without_note(s: Signal) -> tuple[Any, ...]:
    return (s.symbol, s.sizing, s.amount, s.limit_price, s.group)


def batched(strategy: StrategyPlugin, rows: list[MarketEvent], symbols: list[str], cuts: list[int], *,
            quotes: bool = False, sym: bool = True) -> list[tuple[int, tuple[Any, ...]]]:
    """Run `rows` as consecutive batches split at `cuts`; rows renumbered to the whole series."""
    out = []
    for k, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        spaced = k % 2 == 1 and not quotes
        result = strategy.on_batch(columns(rows[lo:hi], symbols, sym=sym, spaced=spaced, quotes=quotes))
        assert all(isinstance(b, BatchSignal) for b in result)
        assert all(b.signal.note == "" for b in result)  # the batch format carries no note
        out += [(lo + b.row, without_note(b.signal)) for b in result]
    return out


# -- manifests and parameters ----------------------------------------------------------------------------------


def _param(p: Any) -> tuple[Any, ...]:
    return (p.name, p.type, p.default, p.min, p.max, p.step, tuple(p.choices), p.description)


@pytest.mark.parametrize("name", [n for n in NATIVE_DIRS])
def test_manifest_through_the_host_equals_the_native_manifest(host: PluginHost, built, name: str) -> None:
    got = host.load(built[name]).manifest
    want = getattr(load_native(NATIVE_DIRS[name]), NATIVE_CLASSES[name]).manifest
    assert (got.name, got.version, got.kind, got.author, got.description) == \
        (want.name, want.version, want.kind, want.author, want.description)
    assert [_param(p) for p in got.parameters] == [_param(p) for p in want.parameters]
    assert all(type(a.default) is type(b.default) for a, b in zip(got.parameters, want.parameters, strict=True))
    assert (got.symbols, got.sensor_inputs, got.allowed_hosts, got.proof) == \
        (tuple(want.symbols), tuple(want.sensor_inputs), tuple(want.allowed_hosts), want.proof)


def test_momentum_c_manifest_is_the_documented_one(host: PluginHost, built) -> None:
    m = host.load(built["momentum_c"]).manifest
    assert (m.name, m.kind, m.symbols, m.allowed_hosts) == ("momentum_c", "strategy", ("*",), ())
    assert m.proof == "docs/strategies/momentum_c.md" and (SOURCE_ROOT / m.proof).is_file()
    lookback, threshold = m.parameters
    assert (lookback.name, lookback.type, lookback.default, lookback.min, lookback.max) == \
        ("lookback", "int", 20, 1, 1000)
    assert (threshold.name, threshold.type, threshold.default, threshold.min, threshold.max) == \
        ("threshold", "float", 0.0, 0.0, 0.5)
    assert type(lookback.default) is int and type(threshold.default) is float


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_bad_value_is_refused_naming_the_parameter_and_the_instance_serves_on(host: PluginHost, built,
                                                                                  name: str) -> None:
    strategy = configured(host, built, name)
    rows = rows_for(name, 400, ["AAA"], seed=3)
    before = dict(strategy.params)
    param, value = BAD_VALUE[name]
    with pytest.raises(PluginCallError) as info:
        strategy.configure({param: value})
    assert info.value.call == "configure" and f"'{param}'" in str(info.value)
    assert info.value.quarantined is False and strategy.quarantine_reason is None
    assert strategy.params == before
    assert live(strategy, rows) == expected_live(name, rows, PARAMS[name])  # still serving, old values


@pytest.mark.parametrize("name", [n for n in STRATEGIES if BAD_COMBINATION[n]])
def test_a_combination_the_plugin_refuses_leaves_it_serving_with_its_old_values(host: PluginHost, built,
                                                                                 name: str) -> None:
    strategy = configured(host, built, name)
    rows = rows_for(name, 400, ["AAA"], seed=4)
    half = len(rows) // 2
    first = live(strategy, rows[:half])
    values, named = BAD_COMBINATION[name]
    with pytest.raises(PluginCallError) as info:
        strategy.configure(values)
    assert info.value.quarantined is False and strategy.quarantine_reason is None
    assert "the plugin reported" in info.value.reason and named in info.value.reason
    assert strategy.params == {**strategy.loaded.manifest.defaults(), **PARAMS[name]}
    # The refused configure kept the old values and reset the state, as the native plugin does.
    reference = native(name, params=PARAMS[name])
    with pytest.raises(GuestPluginError):
        reference.configure(values)
    second = live(strategy, rows[half:])
    assert second == [(r, as_signal(s)) for r, e in enumerate(rows[half:])
                      for s in reference.on_event(as_native_event(e))]
    assert first and second  # both halves were real runs


# -- live path = native ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_on_event_equals_the_native_plugin(host: PluginHost, built, name: str) -> None:
    rows = rows_for(name, 2500, ["BTC-USDT", "ETH-USDT"], seed=7)
    expected = expected_live(name, rows, PARAMS[name])
    assert len(expected) > 40
    got = live(configured(host, built, name), rows)
    assert got == expected  # every field, note included, in the same order
    assert all(isinstance(s, Signal) for _, s in got)


@pytest.mark.parametrize("name", STRATEGIES)
def test_readings_produce_no_signals(host: PluginHost, built, name: str) -> None:
    strategy = configured(host, built, name)
    assert strategy.on_event(Reading("deribit", "dvol", "BTC-USDT", T0, 54.2)) == []


def test_completeness_arb_baskets_through_the_host(host: PluginHost, built) -> None:
    rows = quote_rows(1500, seed=11)
    got = live(configured(host, built, "completeness_arb"), rows)
    baskets: dict[str, list[Signal]] = {}
    for _, s in got:
        baskets.setdefault(s.group, []).append(s)
    assert len(baskets) >= 5
    events_seen = set()
    for group, legs in baskets.items():
        event, _, n = group.partition("#")
        events_seen.add(event)
        assert int(n) >= 1
        assert sorted(s.symbol for s in legs) == [f"{event}:A", f"{event}:B", f"{event}:C"]
        assert len({s.amount for s in legs}) == 1 and all(s.sizing == "units" and s.amount <= 25 for s in legs)
        cost = math.fsum(s.limit_price for s in legs) * 1.01
        assert cost < 0.99 and 1 - cost <= 0.2
    assert len(events_seen) >= 2


# -- batch path = live path ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_on_batch_equals_on_event_in_one_batch_and_split(host: PluginHost, built, name: str) -> None:
    quotes = name == "completeness_arb"
    symbols = ["ELECTION:A", "ELECTION:B", "ELECTION:C", "CUP:A", "CUP:B", "CUP:C", "RACE:A", "RACE:B",
               "RACE:C"] if quotes else ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    rows = rows_for(name, 2400, symbols, seed=21)
    expected = [(r, without_note(s)) for r, s in live(configured(host, built, name), rows)]
    assert len(expected) > 40

    whole = batched(configured(host, built, name), rows, symbols, [0, len(rows)], quotes=quotes)
    assert whole == expected
    cuts = [0, 1, 9, 10, 700, 1333, 2399, 2400]  # batches of 1, 8, 1, 690, ... rows
    split = batched(configured(host, built, name), rows, symbols, cuts, quotes=quotes)
    assert split == expected

    # live and batch calls interleave on one instance and continue one run
    mixed = configured(host, built, name)
    got = [(r, without_note(s)) for r, s in live(mixed, rows[:500])]
    got += batched(mixed, rows, symbols, [500, 1800], quotes=quotes)
    got += [(1800 + r, without_note(s)) for r, s in live(mixed, rows[1800:])]
    assert got == expected


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n != "completeness_arb"])
def test_one_symbol_batches_with_and_without_sym_and_either_ts(host: PluginHost, built, name: str) -> None:
    rows = walk_rows(1500, ["BTC-USDT"], seed=5)
    expected = [(r, without_note(s)) for r, s in expected_live(name, rows, PARAMS[name])]
    assert len(expected) > 20
    results = []
    for sym, spaced in itertools.product((True, False), (True, False)):
        result = configured(host, built, name).on_batch(columns(rows, ["BTC-USDT"], sym=sym, spaced=spaced))
        results.append([(b.row, without_note(b.signal)) for b in result])
    assert results == [expected] * 4
    split = batched(configured(host, built, name), rows, ["BTC-USDT"], [0, 2, 300, 301, 1500], sym=False)
    assert split == expected


@pytest.mark.parametrize("name", STRATEGIES)
def test_several_symbols_need_the_sym_column(host: PluginHost, built, name: str) -> None:
    strategy = configured(host, built, name)
    rows = walk_rows(50, ["AAA", "BBB"], seed=2)
    with pytest.raises(PluginCallError) as info:
        strategy.on_batch(columns(rows, ["AAA", "BBB"], sym=False))
    assert info.value.quarantined is False and strategy.quarantine_reason is None
    assert info.value.call == "on-batch" and "'sym'" in info.value.reason
    assert strategy.on_batch(columns(rows[:3], ["AAA", "BBB"])) == []  # still serving


@pytest.mark.parametrize("name", STRATEGIES)
def test_an_empty_batch_gives_no_signals(host: PluginHost, built, name: str) -> None:
    strategy = configured(host, built, name)
    assert strategy.on_batch({"symbols": ["X"], "ts": [], "price": []}) == []
    assert strategy.on_batch({"symbols": ["X"], "ts": {"start": T0, "step": STEP}, "price": []}) == []


# -- on_batch_async --------------------------------------------------------------------------------------------


async def test_on_batch_async_leaves_the_event_loop_running(host: PluginHost, built) -> None:
    strategy = configured(host, built, "sma_cross", {"fast": 5, "slow": 20})
    prices = random_walk(300_000, seed=99, vol=0.001)
    batch = {"symbols": ["BTC-USDT"], "ts": {"start": T0, "step": STEP}, "price": prices}

    ticks = 0
    started = asyncio.Event()
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            started.set()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await started.wait()
    before = ticks
    result = await strategy.on_batch_async(batch)
    during = ticks - before  # read before this coroutine yields again
    stop = True
    await task
    assert during > 0

    reference = native("sma_cross", params={"fast": 5, "slow": 20})
    expected = [(row, without_note(as_signal(s))) for row, p in enumerate(prices)
                for s in reference.on_event(GuestMarketEvent("bar", "", "BTC-USDT", T0 + row * STEP, p))]
    assert len(expected) > 1000
    assert [(b.row, without_note(b.signal)) for b in result] == expected


# -- realized_vol ----------------------------------------------------------------------------------------------

def sensor(host: PluginHost, built, venue: Venue, **params: Any) -> SensorPlugin:
    s = host.sensor(host.load(built["realized_vol"]))
    s.configure({"source": "local", "local_port": venue.port, **params})
    return s


def closes(n: int, seed: int = 8) -> list[float]:
    return [round(p, 2) for p in random_walk(n, seed, start=43000.0, vol=0.002)]


def independent_vol(closes: list[float]) -> float:
    logs = [math.log(c) for c in closes]
    return math.sqrt(math.fsum((b - a) ** 2 for a, b in itertools.pairwise(logs)) / (len(logs) - 1) * 525600)


def test_realized_vol_reading_equals_an_independent_computation(host: PluginHost, built, venue: Venue) -> None:
    series = closes(61)
    venue.status, venue.body = 200, json.dumps(klines(series))
    s = sensor(host, built, venue)
    readings = s.poll()
    assert len(readings) == 1 and isinstance(readings[0], Reading)
    r = readings[0]
    assert (r.sensor, r.name, r.symbol) == ("realized_vol", "rv_1m_annualized", "BTC-USDT")
    assert r.ts_ns == (T0_MS + 61 * MINUTE_MS - 1) * 1_000_000
    assert r.value == pytest.approx(independent_vol(series), rel=1e-12)
    assert venue.requests == [("/api/v3/klines", {"symbol": ["BTCUSDT"], "interval": ["1m"], "limit": ["61"]})]
    # and the component agrees with the native plugin to the last bit
    reference = native("realized_vol", NativeHost(allowed_hosts=("127.0.0.1",)),
                       {"source": "local", "local_port": venue.port})
    (want,) = reference.poll()
    assert (r.ts_ns, r.value) == (want.ts_ns, want.value)


async def test_realized_vol_poll_async(host: PluginHost, built, venue: Venue) -> None:
    series = closes(11, seed=9)
    venue.status, venue.body = 200, json.dumps(klines(series))
    s = sensor(host, built, venue, window=10, symbol="ETHUSDT")
    (r,) = await s.poll_async()
    assert r.symbol == "ETH-USDT" and r.value == pytest.approx(independent_vol(series), rel=1e-12)
    assert venue.requests[-1][1]["limit"] == ["11"] and venue.requests[-1][1]["symbol"] == ["ETHUSDT"]


def test_realized_vol_status_500_is_a_call_error_not_a_quarantine(host: PluginHost, built, venue: Venue) -> None:
    venue.status, venue.body = 500, '{"code":-1000,"msg":"internal"}'
    s = sensor(host, built, venue)
    with pytest.raises(PluginCallError) as info:
        s.poll()
    assert info.value.quarantined is False and s.quarantine_reason is None
    assert info.value.call == "poll" and "status 500" in info.value.reason
    assert f"http://127.0.0.1:{venue.port}/api/v3/klines" in info.value.reason
    series = closes(61)
    venue.status, venue.body = 200, json.dumps(klines(series))
    (r,) = s.poll()  # the venue recovered, so does the sensor
    assert r.value == pytest.approx(independent_vol(series), rel=1e-12)


def test_realized_vol_garbage_is_a_call_error(host: PluginHost, built, venue: Venue) -> None:
    venue.status, venue.body = 200, "<html>gateway timeout</html>"
    s = sensor(host, built, venue)
    with pytest.raises(PluginCallError, match="not JSON") as info:
        s.poll()
    assert info.value.quarantined is False
    venue.body = json.dumps(klines(closes(20)))
    with pytest.raises(PluginCallError, match="returned 20 klines, need 61"):
        s.poll()


# -- binance_spot ----------------------------------------------------------------------------------------------

TRADE = {"e": "trade", "E": 1700000000001, "s": "BTCUSDT", "t": 12345, "p": "43000.10", "q": "0.005",
         "T": 1700000000000, "m": True, "M": True}
BOOK = {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000", "a": "25.36520000",
        "A": "40.66000000"}
EXEC = {"e": "executionReport", "E": 1700000000100, "s": "ETHBTC", "c": "allele-7", "S": "BUY", "o": "LIMIT",
        "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000", "F": "0.00000000", "g": -1,
        "C": "", "x": "TRADE", "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.25000000",
        "z": "0.25000000", "L": "0.10264000", "n": "0.00025000", "N": "ETH", "T": 1700000000099, "t": 998877,
        "I": 8641984, "w": False, "m": False, "M": True, "O": 1700000000000, "Z": "0.02566", "Y": "0.02566",
        "Q": "0.00000000"}
TS_NS = 1_700_000_123_456_789_012


def order(**fields: Any) -> FinalizedOrder:
    base: dict[str, Any] = dict(client_order_id="allele-42", symbol="BTC-USDT", side="buy", order_type="limit",
                                quantity=0.005, limit_price=43000.1, time_in_force="gtc", ts_ns=TS_NS,
                                deadline_ns=TS_NS + 60_000_000_000)
    base.update(fields)
    return FinalizedOrder(**base)


@pytest.fixture
def exchange(host: PluginHost, built) -> ExchangePlugin:
    assert host.signer is not None
    return host.exchange(host.load(built["binance_spot"]))


def test_decode_trade_book_ticker_and_execution_report(exchange: ExchangePlugin) -> None:
    assert exchange.decode(json.dumps(TRADE)) == [
        MarketEvent("trade", "binance", "BTC-USDT", 1_700_000_000_000_000_000, 43000.10, 0.005)]
    assert exchange.decode(json.dumps(BOOK)) == [
        MarketEvent("quote", "binance", "BNB-USDT", 0, (25.3519 + 25.3652) / 2, 0.0, 25.3519, 25.3652, 31.21,
                    40.66)]
    (update,) = exchange.decode(json.dumps({"subscriptionId": 0, "event": EXEC}))
    assert update == OrderUpdate("allele-7", "4293153", "ETH-BTC", "partially-filled", 0.25, 0.10264, 0.00025,
                                 "ETH", 1_700_000_000_099_000_000, "")
    assert isinstance(update, OrderUpdate) and type(update.ts_ns) is int
    (trade,) = exchange.decode(json.dumps({"stream": "btcusdt@trade", "data": TRADE}))
    assert isinstance(trade, MarketEvent) and type(trade.ts_ns) is int
    assert exchange.decode('{"result":null,"id":1}') == []


def test_decode_equals_the_native_adapter(exchange: ExchangePlugin) -> None:
    reference = native("binance_spot")
    frames = [TRADE, BOOK, EXEC, dict(EXEC, X="CANCELED", x="CANCELED", c="cancel-1", C="allele-7"),
              dict(EXEC, X="REJECTED", r="INSUFFICIENT_BALANCES", l="0", L="0", n="0", N=None)]
    for frame in frames:
        text = json.dumps(frame)
        assert [tuple(getattr(e, f) for f in e.__slots__) for e in exchange.decode(text)] == \
            [tuple(e) for e in reference.decode(text)]


@pytest.mark.parametrize("frame, message", [
    ("not json at all", "frame is not JSON"),
    ("[1, 2, 3]", "not a JSON object"),
    ('{"e": "aggTrade", "s": "BTCUSDT"}', "unknown event type 'aggTrade'"),
    (json.dumps(dict(TRADE, p="-1.5")), "trade field 'p' = '-1.5' must be positive"),
    (json.dumps(dict(BOOK, b="26", a="25")), "crossed"),
    (json.dumps(dict(EXEC, X="PENDING_NEW")), "order status 'X' = 'PENDING_NEW'"),
])
def test_a_garbled_frame_is_a_call_error_and_the_next_frame_decodes(exchange: ExchangePlugin, frame: str,
                                                                    message: str) -> None:
    with pytest.raises(PluginCallError) as info:
        exchange.decode(frame)
    assert info.value.quarantined is False and exchange.quarantine_reason is None
    assert info.value.call == "decode" and message in info.value.reason
    assert exchange.decode(json.dumps(TRADE))[0].price == 43000.10


def test_subscribe_frames(exchange: ExchangePlugin, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="allele.plugin")
    (frame,) = exchange.subscribe(["BTC-USDT", "not a symbol", "ETH-BTC"])
    assert json.loads(frame) == {"method": "SUBSCRIBE", "id": 1,
                                 "params": ["btcusdt@trade", "btcusdt@bookTicker", "ethbtc@trade", "ethbtc@bookTicker"]}
    assert any(r.levelno == logging.WARNING and exchange.instance_id in r.getMessage()
               and "not a symbol" in r.getMessage() for r in caplog.records)


def split_signed(body: str) -> tuple[str, str]:
    head, sep, signature = body.rpartition("&signature=")
    assert sep, body
    return head, signature


def test_encode_limit_order_is_signed_by_the_host(exchange: ExchangePlugin, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    req = exchange.encode_order(order(), "main")
    assert isinstance(req, VenueRequest)
    assert (req.method, req.url) == ("POST", "https://api.binance.com/api/v3/order")
    head, signature = split_signed(req.body)
    assert head == ("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.005&price=43000.1"
                    "&newClientOrderId=allele-42&recvWindow=5000&timestamp=1700000123456")
    assert signature == hmac.new(TEST_SECRET, head.encode(), hashlib.sha256).hexdigest()
    assert ("X-MBX-APIKEY", "{{api-key}}") in req.headers
    assert ("Content-Type", "application/x-www-form-urlencoded") in req.headers
    assert dict(parse_qsl(req.body, strict_parsing=True))["signature"] == signature
    request_text = repr(req)
    for secret in (TEST_SECRET.decode(), TEST_SECRET.hex(), "test-api-key"):  # no secret, and no key either
        assert secret not in request_text


def test_orders_are_signed_for_the_account_named(make_host, built) -> None:
    other = b"another-secret-for-alt"
    host = make_host(signer=MemorySigner({"main": ("k1", TEST_SECRET), "alt": ("k2", other)}))
    ex = host.exchange(host.load(built["binance_spot"]))
    ex.configure({"testnet": True, "recv_window_ms": 2500})
    req = ex.encode_order(order(order_type="market", limit_price=None, time_in_force="ioc", side="sell"), "alt")
    head, signature = split_signed(req.body)
    assert req.url == "https://testnet.binance.vision/api/v3/order"
    assert dict(parse_qsl(head)) == {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.005",
                                     "newClientOrderId": "allele-42", "recvWindow": "2500",
                                     "timestamp": "1700000123456"}
    assert signature == hmac.new(other, head.encode(), hashlib.sha256).hexdigest()


def test_an_unknown_account_is_a_call_error_naming_it(exchange: ExchangePlugin) -> None:
    with pytest.raises(PluginCallError) as info:
        exchange.encode_order(order(), "nobody")
    assert info.value.quarantined is False and exchange.quarantine_reason is None
    assert info.value.call == "encode-order"
    assert "the vault holds no credentials for account 'nobody'" in info.value.reason
    head, signature = split_signed(exchange.encode_order(order(), "main").body)  # still serving
    assert signature == hmac.new(TEST_SECRET, head.encode(), hashlib.sha256).hexdigest()


def test_a_host_without_a_vault_cannot_sign(make_host, built) -> None:
    host = make_host(signer=None)
    ex = host.exchange(host.load(built["binance_spot"]))
    with pytest.raises(PluginCallError, match="no vault is attached") as info:
        ex.encode_order(order(), "main")
    assert info.value.quarantined is False


def test_a_bad_order_is_a_call_error(exchange: ExchangePlugin) -> None:
    with pytest.raises(PluginCallError, match="limit order allele-42 has no limit price") as info:
        exchange.encode_order(order(limit_price=None), "main")
    assert info.value.quarantined is False


def test_the_secret_never_reaches_a_log_record_or_a_request(exchange: ExchangePlugin, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    seen += map(repr, exchange.subscribe(["BTC-USDT", "???"]))
    seen += map(repr, exchange.decode(json.dumps(TRADE)))
    for frame in ("garbage", json.dumps(dict(TRADE, p="0"))):
        with pytest.raises(PluginCallError) as info:
            exchange.decode(frame)
        seen.append(str(info.value))
    for account in ("main", "nobody"):
        try:
            seen.append(repr(exchange.encode_order(order(), account)))
        except PluginCallError as exc:
            seen.append(str(exc))
    with pytest.raises(PluginCallError) as info:
        exchange.encode_order(order(quantity=-1.0), "main")
    seen.append(str(info.value))
    assert caplog.records  # the calls above did log
    seen += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    text = "\n".join(seen)
    assert "signature=" in text
    for secret in (TEST_SECRET.decode(), TEST_SECRET.hex()):
        assert secret not in text
    assert exchange.quarantine_reason is None
