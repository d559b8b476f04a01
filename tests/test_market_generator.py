"""The seeded synthetic market: determinism, ordering, regimes, binary-outcome books, sane prices."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allele.kernel.domain import FinalizedOrder, MarketEvent
from allele.kernel.market import REGIMES, BackgroundLiquidity, SyntheticMarket, arb_gap, quote_orders
from allele.kernel.venue import Instrument, MatchingEngine, market_data, updates_for

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


def take(market: SyntheticMarket, bars: int) -> list[MarketEvent]:
    return list(market.events(bars))


def test_same_seed_same_stream_different_seed_differs() -> None:
    a = take(SyntheticMarket(7, SYMBOLS, start_ns=5, bar_ns=1_000_000), 300)
    b = take(SyntheticMarket(7, SYMBOLS, start_ns=5, bar_ns=1_000_000), 300)
    c = take(SyntheticMarket(8, SYMBOLS, start_ns=5, bar_ns=1_000_000), 300)
    assert a == b
    assert a != c
    assert [e.price for e in a if e.symbol == "BTC-USD"] != [e.price for e in c if e.symbol == "BTC-USD"]


def test_adding_a_symbol_leaves_the_others_unchanged() -> None:
    two = take(SyntheticMarket(3, ["BTC-USD", "ETH-USD"], binary_events=()), 100)
    three = take(SyntheticMarket(3, ["BTC-USD", "ETH-USD", "SOL-USD"], binary_events=()), 100)
    strip = [(e.kind, e.symbol, e.price, e.bid, e.ask, e.size) for e in two]
    assert strip == [(e.kind, e.symbol, e.price, e.bid, e.ask, e.size) for e in three if e.symbol != "SOL-USD"]


def test_events_in_time_order_within_their_bars() -> None:
    market = SyntheticMarket(1, SYMBOLS, start_ns=1_000, bar_ns=60_000_000_000)
    events = take(market, 500)
    stamps = [e.ts_ns for e in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[0] == 1_000 and stamps[-1] < 1_000 + 500 * 60_000_000_000
    per_symbol = Counter((e.symbol, e.kind) for e in events)
    assert all(per_symbol[(s, k)] == 500 for s in SYMBOLS for k in ("trade", "quote"))
    assert all(per_symbol[(s, "quote")] == 500 for s in market.binary_symbols)
    assert {e.venue for e in events} == {"synthetic"}


def test_iteration_is_endless_and_matches_bars() -> None:
    endless = iter(SyntheticMarket(2, SYMBOLS))
    head = [next(endless) for _ in range(1000)]
    assert head == take(SyntheticMarket(2, SYMBOLS), 200)[:1000]


def test_every_regime_is_visited_and_regimes_persist() -> None:
    market = SyntheticMarket(11, SYMBOLS)
    path: dict[str, list[str]] = {s: [] for s in SYMBOLS}
    for _ in range(3000):
        market.step()
        for s in SYMBOLS:
            path[s].append(market.regime(s))
    for s in SYMBOLS:
        assert set(path[s]) == set(REGIMES)
        switches = sum(1 for x, y in zip(path[s], path[s][1:], strict=False) if x != y)
        assert 20 < switches < 120  # stay probability 0.98: about 60 switches in 3000 bars


def test_regimes_shape_returns() -> None:
    market = SyntheticMarket(5, ["X"], binary_events=(), start_prices={"X": 100.0})
    returns: dict[str, list[float]] = {r: [] for r in REGIMES}
    last = 100.0
    for _ in range(20_000):
        trade = market.step()[0]
        returns[market.regime("X")].append(math.log(trade.price / last))
        last = trade.price
    mean = {r: sum(v) / len(v) for r, v in returns.items()}
    spread = {r: math.sqrt(sum((x - mean[r]) ** 2 for x in v) / len(v)) for r, v in returns.items()}
    assert mean["trending-up"] > 0 > mean["trending-down"]
    assert spread["high-volatility"] > 2 * max(spread["trending-up"], spread["mean-reverting"])


def test_prices_positive_finite_and_quotes_not_crossed() -> None:
    market = SyntheticMarket(13, SYMBOLS, start_prices={"SOL-USD": 0.05}, tick_size=0.01)
    for e in take(market, 3000):
        values = (e.price, e.size, e.bid, e.ask, e.bid_size, e.ask_size)
        assert all(math.isfinite(v) for v in values)
        assert e.price > 0
        if e.kind == "trade":
            assert e.size > 0
        else:
            assert 0 < e.bid < e.ask and e.bid_size > 0 and e.ask_size > 0
            assert e.bid <= e.price <= e.ask
        if ":" in e.symbol:
            assert e.price < 1 and (e.kind == "trade" or e.ask < 1)


def _bar_sums(market: SyntheticMarket, bars: int) -> dict[str, list[float]]:
    """Per binary event, the sum of its outcomes' asks at the end of every bar."""
    asks: dict[str, float] = {}
    sums: dict[str, list[float]] = {name: [] for name in market.binary_events}
    for _ in range(bars):
        for e in market.step():
            if e.kind == "quote" and ":" in e.symbol:
                asks[e.symbol] = e.ask
        for name in market.binary_events:
            sums[name].append(sum(asks[f"{name}:{o}"] for o in market.outcomes(name)))
    return sums


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05])
def test_completeness_arb_windows_appear_at_the_configured_rate(rate: float) -> None:
    fee = 0.02
    bars = 20_000
    market = SyntheticMarket(17, [], arb_rate=rate, completeness_fee=fee, arb_window_bars=3)
    sums = _bar_sums(market, bars)
    for name, series in sums.items():
        arb = [s for s in series if s < 1 - fee]
        assert all(s > 1 for s in series if s >= 1 - fee)  # outside windows the asks always sum above 1
        assert all(1 - fee - s >= 0.002 - 1e-9 for s in arb)  # a window is a real gap after fees
        fraction = len(arb) / bars
        assert fraction == pytest.approx(rate, abs=0.3 * rate + 1e-12), name
        if rate:
            runs = sum(1 for prev, cur in zip([1.0, *series], series, strict=False) if cur < 1 - fee <= prev)
            assert len(arb) / runs == pytest.approx(3.0, abs=0.4)  # brief: windows last about arb_window_bars bars


def test_arb_gap_and_window_flag_agree() -> None:
    market = SyntheticMarket(4, [], arb_rate=0.2, completeness_fee=0.01)
    asks: dict[str, float] = {}
    seen = {True: 0, False: 0}
    for _ in range(500):
        for e in market.step():
            asks[e.symbol] = e.ask if e.kind == "quote" else asks.get(e.symbol, 0.0)
        for name in market.binary_events:
            book = {o: asks[f"{name}:{o}"] for o in market.outcomes(name)}
            window = market.in_arb_window(name)
            seen[window] += 1
            assert (arb_gap(book, 0.01) > 0) == window
    assert seen[True] and seen[False]


def test_exactly_one_outcome_settles_at_one() -> None:
    winners: Counter[tuple[str, str]] = Counter()
    for seed in range(200):
        market = SyntheticMarket(seed, [], binary_events=(("E", ("A", "B", "C")), ("F", ("X", "Y"))))
        for name in market.binary_events:
            assert sum(market.settlement(f"{name}:{o}") for o in market.outcomes(name)) == 1.0
            winners[(name, market.winner(name))] += 1
    assert len(winners) == 5  # every outcome wins for some seed


def test_bad_configuration_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="arb_rate"):
        SyntheticMarket(1, arb_rate=1.5)
    with pytest.raises(ValueError, match="at least two distinct outcomes"):
        SyntheticMarket(1, binary_events=(("E", ("ONLY",)),))
    with pytest.raises(ValueError, match="too short"):
        SyntheticMarket(1, bar_ns=3)
    with pytest.raises(KeyError):
        SyntheticMarket(1).regime("NOPE")


def test_quotes_rest_in_the_matching_engine_as_background_liquidity() -> None:
    market = SyntheticMarket(21, ["BTC-USD"], binary_events=(), start_prices={"BTC-USD": 30_000.0})
    engine = MatchingEngine([Instrument("BTC-USD", tick_size=0.01, lot_size=0.001)])
    liquidity = BackgroundLiquidity(engine)
    last_quote = None
    for e in take(market, 50):
        if e.kind == "quote":
            out = liquidity.on_quote(e)
            assert all(u.status != "rejected" for u in updates_for(out, "background"))
            last_quote = e
    assert last_quote is not None
    top = engine.book("BTC-USD").top()
    assert len(engine.book("BTC-USD")) == 2  # old pairs were cancelled
    assert (engine.instrument("BTC-USD").price(top.bid_ticks or 0), engine.instrument("BTC-USD").price(
        top.ask_ticks or 0)) == (last_quote.bid, last_quote.ask)
    assert quote_orders(last_quote, engine.instrument("BTC-USD"), "x")[0].quantity == last_quote.bid_size
    hit = engine.submit(FinalizedOrder("t", "BTC-USD", "buy", "market", 0.001, None, "ioc", 0, 0), owner="me")
    assert [u.fill_price for u in updates_for(hit, "me") if u.status == "filled"] == [last_quote.ask]
    assert market_data(hit)[0].kind == "trade"


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**63), st.integers(0, 10**18))
def test_any_seed_is_reproducible_and_sane(seed: int, start_ns: int) -> None:
    events = take(SyntheticMarket(seed, SYMBOLS, start_ns=start_ns), 30)
    assert events == take(SyntheticMarket(seed, SYMBOLS, start_ns=start_ns), 30)
    assert all(e.price > 0 and math.isfinite(e.price) and e.ts_ns >= start_ns for e in events)
