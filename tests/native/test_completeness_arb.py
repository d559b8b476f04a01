"""completeness_arb strategy, natively: when a basket fires, what it holds, and when it must not fire."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from allele.kernel.sdk.testing import load_native
from allele_guest import UNITS, MarketEvent, PluginError, Reading, Signal, Strategy, decode_batch, encode_signals

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "strategies" / "completeness_arb"
app = load_native(PLUGIN)


def make(**params: Any) -> Any:
    """A configured strategy; max_edge is lifted to 1.0 unless given, so large test edges are not filtered."""
    s = app.CompletenessArb()
    s.configure({"max_edge": 1.0, **params})
    return s


def quote(symbol: str, ask: float, ask_size: float = 100.0, bid: float | None = None, ts: int = 0) -> MarketEvent:
    bid = max(ask - 0.02, 0.0) if bid is None else bid
    return MarketEvent("quote", "", symbol, ts, (bid + ask) / 2, 0.0, bid, ask, 50.0, ask_size)


def send(s: Any, quotes: list[MarketEvent]) -> list[list[Signal]]:
    return [s.on_event(q) for q in quotes]


def basket(s: Any, event: str, asks: list[float], sizes: list[float] | None = None) -> list[Signal]:
    """Quote every outcome ("O0", "O1", ...): what the last quote emitted (the earlier ones must emit nothing)."""
    sizes = sizes or [100.0] * len(asks)
    out = send(s, [quote(f"{event}:O{i}", a, z) for i, (a, z) in enumerate(zip(asks, sizes, strict=True))])
    assert all(not o for o in out[:-1])
    return out[-1]


def should_fire(asks: list[float], fee_rate: float, min_margin: float) -> bool:
    total = math.fsum(asks)
    return total + fee_rate * total < 1.0 - min_margin


# ---------------------------------------------------------------- the condition


def test_defaults_and_manifest() -> None:
    s = app.CompletenessArb()
    assert s.params == {"outcomes": 2, "min_margin": 0.01, "fee_rate": 0.01, "basket_units": 10.0, "max_ask": 0.9,
                        "max_edge": 0.1}
    m = s.manifest
    assert m.name == "completeness_arb" and m.kind == "strategy"
    assert m.proof == "docs/strategies/completeness_arb.md"
    assert (PLUGIN.parents[2] / m.proof).is_file()


def test_fires_below_the_limit_with_one_leg_per_outcome() -> None:
    s = make(outcomes=3, fee_rate=0.0, min_margin=0.01, basket_units=10.0)
    legs = basket(s, "ELECTION-2028", [0.30, 0.31, 0.32])
    assert sorted(sig.symbol for sig in legs) == ["ELECTION-2028:O0", "ELECTION-2028:O1", "ELECTION-2028:O2"]
    assert {sig.sizing for sig in legs} == {UNITS}
    assert [sig.amount for sig in legs] == [10.0, 10.0, 10.0]
    assert {sig.symbol: sig.limit_price for sig in legs} == {
        "ELECTION-2028:O0": 0.30, "ELECTION-2028:O1": 0.31, "ELECTION-2028:O2": 0.32}
    assert {sig.group for sig in legs} == {"ELECTION-2028#1"}
    note = legs[0].note
    assert "sum asks 0.930000" in note and "0.990000" in note and "margin 0.01" in note and "edge 0.070000" in note


def test_exactly_at_the_limit_does_not_fire() -> None:
    # Dyadic numbers, so every operation is exact: asks 0.875 in total, fee 1/16 of it,
    # cost 0.9296875 = 1 - 0.0703125.
    asks = [0.25, 0.25, 0.25, 0.125]
    assert basket(make(outcomes=4, fee_rate=0.0625, min_margin=0.0703125), "E", asks) == []
    assert basket(make(outcomes=4, fee_rate=0.0625, min_margin=0.075), "E", asks) == []  # above the limit
    assert len(basket(make(outcomes=4, fee_rate=0.0625, min_margin=0.07), "E", asks)) == 4  # just below
    # Without fees the same asks fire against a margin of up to 0.125 (exclusive).
    assert basket(make(outcomes=4, fee_rate=0.0, min_margin=0.125), "E", asks) == []
    assert len(basket(make(outcomes=4, fee_rate=0.0, min_margin=0.12), "E", asks)) == 4


def test_fee_is_charged_on_every_leg_notional() -> None:
    asks = [0.45, 0.5]  # 0.95: 5 cents of gross edge
    assert len(basket(make(fee_rate=0.0, min_margin=0.04), "E", asks)) == 2
    assert len(basket(make(fee_rate=0.01, min_margin=0.04), "E", asks)) == 2  # cost 0.9595 < 0.96
    assert basket(make(fee_rate=0.02, min_margin=0.04), "E", asks) == []  # cost 0.969 >= 0.96


def test_fires_exactly_when_cost_is_below_one_minus_margin() -> None:
    rng = random.Random(3)
    fired = quiet = 0
    for i in range(3000):
        n = rng.randint(2, 6)
        fee, margin = rng.choice([0.0, 0.005, 0.01, 0.02, 0.07]), rng.choice([0.0, 0.01, 0.02, 0.05])
        asks = [round(rng.uniform(0.01, 0.9), 2) for _ in range(n)]
        scale = rng.uniform(0.85, 1.1) / sum(asks)  # put the total near 1, where the decision is
        asks = [min(max(round(a * scale, 3), 0.001), 0.9) for a in asks]
        legs = basket(make(outcomes=n, fee_rate=fee, min_margin=margin), f"E{i}", asks)
        if should_fire(asks, fee, margin):
            fired += 1
            assert len(legs) == n
        else:
            quiet += 1
            assert legs == []
    assert fired > 300 and quiet > 300


def test_never_with_an_incomplete_outcome_set() -> None:
    s = make(outcomes=3, fee_rate=0.0, min_margin=0.0)
    out = send(s, [quote("E:A", 0.01), quote("E:B", 0.01), quote("E:A", 0.02), quote("E:B", 0.015)])
    assert out == [[], [], [], []]  # two of three outcomes, however cheap
    assert len(s.on_event(quote("E:C", 0.01))) == 3  # the third completes the set


def test_never_when_more_outcomes_appear_than_declared() -> None:
    s = make(outcomes=3, fee_rate=0.0, min_margin=0.0)
    # C has no offer yet, so A, B, C is not a tradable set; then a fourth outcome D appears.
    assert send(s, [quote("E:A", 0.2), quote("E:B", 0.2), quote("E:C", 0.0), quote("E:D", 0.2)]) == [[], [], [], []]
    # The event is not the 3-outcome set the genome describes: never traded, however cheap.
    assert send(s, [quote("E:C", 0.1), quote("E:A", 0.1), quote("E:B", 0.1)]) == [[], [], []]
    assert len(basket(make(outcomes=4, fee_rate=0.0, min_margin=0.0), "E", [0.1, 0.1, 0.1, 0.1])) == 4


def test_fourth_outcome_stops_an_event_that_had_fired() -> None:
    s = make(outcomes=3, fee_rate=0.0, min_margin=0.0)
    assert len(basket(s, "E", [0.2, 0.2, 0.2])) == 3
    assert s.on_event(quote("E:O3", 0.2)) == []
    assert s.on_event(quote("E:O0", 0.1)) == []


def test_unusable_offer_makes_the_set_incomplete() -> None:
    s = make(outcomes=2, fee_rate=0.0, min_margin=0.0)
    assert send(s, [quote("E:A", 0.4), quote("E:B", 0.0)]) == [[], []]  # no offer on B
    assert s.on_event(quote("E:B", 0.4, ask_size=0.0)) == []  # a price but no size
    assert s.on_event(quote("E:B", math.nan)) == []
    assert len(s.on_event(quote("E:B", 0.4))) == 2
    # An offer that disappears and comes back is a change: a new basket.
    assert s.on_event(quote("E:A", 0.0)) == []
    assert {sig.group for sig in s.on_event(quote("E:A", 0.4))} == {"E#2"}


# ---------------------------------------------------------------- the basket


def test_equal_quantities_capped_by_the_thinnest_leg() -> None:
    legs = basket(make(outcomes=3, basket_units=10.0), "E", [0.2, 0.3, 0.3], sizes=[50.0, 7.5, 100.0])
    assert [sig.amount for sig in legs] == [7.5, 7.5, 7.5]
    legs = basket(make(outcomes=3, basket_units=25.0), "E", [0.2, 0.3, 0.3], sizes=[50.0, 70.0, 100.0])
    assert [sig.amount for sig in legs] == [25.0, 25.0, 25.0]


def test_all_legs_in_the_completing_return_with_one_group() -> None:
    s = make(outcomes=4, fee_rate=0.0, min_margin=0.0)
    legs = basket(s, "CUP:2026", [0.2, 0.2, 0.2, 0.2])  # the event name may itself contain ':'
    assert len(legs) == 4
    assert {sig.group for sig in legs} == {"CUP:2026#1"}
    assert {sig.symbol for sig in legs} == {f"CUP:2026:O{i}" for i in range(4)}
    assert all(sig.amount > 0 and sig.limit_price is not None for sig in legs)


def test_no_re_emit_until_quotes_change() -> None:
    s = make(outcomes=2, fee_rate=0.0, min_margin=0.0)
    assert [sig.group for sig in basket(s, "E", [0.4, 0.5])] == ["E#1", "E#1"]
    assert s.on_event(quote("E:O1", 0.5)) == []  # the same offer again
    assert s.on_event(quote("E:O0", 0.4, bid=0.1)) == []  # only the bid moved
    assert s.on_event(MarketEvent("trade", "", "E:O0", 0, 0.4, 3.0)) == []
    legs = s.on_event(quote("E:O1", 0.49))  # a better ask: a new basket
    assert [sig.group for sig in legs] == ["E#2", "E#2"]
    assert {sig.symbol: sig.limit_price for sig in legs} == {"E:O0": 0.4, "E:O1": 0.49}
    legs = s.on_event(quote("E:O1", 0.49, ask_size=60.0))  # same price, different size: a new book
    assert [sig.group for sig in legs] == ["E#3", "E#3"]
    assert s.on_event(quote("E:O0", 0.6)) == []  # no longer an arb
    assert [sig.group for sig in s.on_event(quote("E:O0", 0.4))] == ["E#4", "E#4"]


def test_events_are_independent() -> None:
    s = make(outcomes=2, fee_rate=0.0, min_margin=0.0)
    out = send(s, [quote("A:Y", 0.4), quote("B:Y", 0.4), quote("B:N", 0.7), quote("A:N", 0.5)])
    assert out[:3] == [[], [], []]
    assert {sig.symbol for sig in out[3]} == {"A:Y", "A:N"} and {sig.group for sig in out[3]} == {"A#1"}


def test_max_ask_skips_baskets_the_risk_gate_would_block() -> None:
    asks = [0.95, 0.02]
    assert basket(make(fee_rate=0.0, min_margin=0.0), "E", asks) == []  # default max_ask 0.90
    assert len(basket(make(fee_rate=0.0, min_margin=0.0, max_ask=0.95), "E", asks)) == 2
    assert len(basket(make(fee_rate=0.0, min_margin=0.0), "E", [0.9, 0.05])) == 2  # 0.90 itself is allowed


def test_max_edge_skips_too_good_to_be_true_baskets() -> None:
    # Three of four outcomes quoted at 0.3 look like a 10-cent arb if the fourth is missing from the feed.
    assert basket(make(outcomes=3, fee_rate=0.0, min_margin=0.0, max_edge=0.05), "E", [0.3, 0.3, 0.3]) == []
    assert len(basket(make(outcomes=3, fee_rate=0.0, min_margin=0.0, max_edge=0.05), "E", [0.3, 0.3, 0.36])) == 3
    # The edge may equal max_edge (dyadic: exact): 1 - 0.875 = 0.125.
    assert len(basket(make(outcomes=2, fee_rate=0.0, min_margin=0.0, max_edge=0.125), "E", [0.5, 0.375])) == 2
    assert basket(make(outcomes=2, fee_rate=0.0, min_margin=0.0, max_edge=0.12), "E", [0.5, 0.375]) == []
    # Defaults: margin 0.01, fee 1 %, max_edge 0.10.
    s = app.CompletenessArb()
    assert basket(s, "A", [0.4, 0.4]) == []  # cost 0.808: edge 0.192 > 0.10
    assert len(basket(s, "B", [0.45, 0.45])) == 2  # cost 0.909: edge 0.091


def test_max_edge_not_above_min_margin_is_refused() -> None:
    s = make(min_margin=0.02, max_edge=0.1)
    with pytest.raises(PluginError, match="max_edge"):
        s.configure({"max_edge": 0.02})
    with pytest.raises(PluginError, match="max_edge"):
        s.configure({"min_margin": 0.15})
    assert (s.params["min_margin"], s.params["max_edge"]) == (0.02, 0.1)


def test_ignores_other_events_and_symbols() -> None:
    s = make(outcomes=2, fee_rate=0.0, min_margin=0.0)
    assert s.on_event(Reading("poly", "prob", "E:A", 0, 0.1)) == []
    assert s.on_event(MarketEvent("trade", "", "E:A", 0, 0.1, 5.0)) == []
    assert s.on_event(MarketEvent("bar", "", "E:B", 0, 0.1, 5.0)) == []
    assert s.on_event(quote("BTC-USDT", 0.1)) == []
    assert s.on_event(quote(":A", 0.1)) == [] and s.on_event(quote("E:", 0.1)) == []
    assert s.on_event(quote("E:A", 0.1)) == []  # the first quote of the event: incomplete
    assert len(s.on_event(quote("E:B", 0.1))) == 2


@pytest.mark.parametrize("bad", [{"outcomes": 1}, {"outcomes": 17}, {"min_margin": -0.01}, {"fee_rate": 0.2},
                                 {"basket_units": 0.0}, {"max_ask": 1.01}, {"max_edge": 0.0},
                                 {"slippage": 0.1}])
def test_out_of_range_values_are_refused_and_previous_kept(bad: dict[str, Any]) -> None:
    s = make(outcomes=3)
    with pytest.raises(PluginError):
        s.configure(bad)
    assert s.params["outcomes"] == 3


def test_configure_resets_state() -> None:
    s = make(outcomes=2, fee_rate=0.0, min_margin=0.0)
    assert len(basket(s, "E", [0.4, 0.5])) == 2
    s.configure({"basket_units": 5.0})
    assert s.on_event(quote("E:O1", 0.5)) == []  # the old O0 quote was forgotten
    assert [sig.group for sig in s.on_event(quote("E:O0", 0.4))] == ["E#1", "E#1"]


# ---------------------------------------------------------------- batch == live


def random_quotes(n: int, seed: int) -> list[tuple[int, str, float, float, float, float, float]]:
    """Rows (kind, symbol, price, bid, ask, bid_size, ask_size) for three 3-outcome events."""
    rng = random.Random(seed)
    symbols = [f"EV{e}:{o}" for e in range(3) for o in ("A", "B", "C")]
    rows = []
    for _ in range(n):
        sym = rng.choice(symbols)
        if rng.random() < 0.1:
            rows.append((0, sym, 0.3, 0.0, 0.0, 0.0, 0.0))  # a trade: ignored
            continue
        ask = rng.choice([0.0, *(round(rng.uniform(0.2, 0.4), 2) for _ in range(8))])
        size = rng.choice([5.0, 10.0, 40.0])
        rows.append((1, sym, ask, max(ask - 0.01, 0.0), ask, 20.0, size))
    return rows


def test_batch_path_equals_event_path() -> None:
    rows = random_quotes(4000, seed=9)
    symbols = sorted({r[1] for r in rows})
    params = {"outcomes": 3, "fee_rate": 0.01, "min_margin": 0.02, "basket_units": 20.0}

    live = make(**params)
    expected = [(i, sig) for i, (k, sym, p, b, a, bs, az) in enumerate(rows)
                for sig in live.on_event(MarketEvent(("trade", "quote")[k], "", sym, i, p, 0.0, b, a, bs, az))]
    assert len({sig.group for _, sig in expected}) > 30

    s = make(**params)
    got = []
    cuts = [0, 1, 2, 700, 701, 2500, len(rows)]
    for lo, hi in itertools.pairwise(cuts):
        part = rows[lo:hi]
        cols = {"symbols": symbols, "sym": [symbols.index(r[1]) for r in part], "ts": {"start": lo, "step": 1},
                "kind": [r[0] for r in part], "price": [r[2] for r in part], "bid": [r[3] for r in part],
                "ask": [r[4] for r in part], "bid_size": [r[5] for r in part], "ask_size": [r[6] for r in part]}
        batch = decode_batch(json.dumps(cols))
        emitted = s.on_batch(batch)
        assert type(s).on_batch is Strategy.on_batch  # the SDK's replay: no override to drift
        encoded = json.loads(encode_signals(batch, emitted))
        assert encoded["group"] == [sig.group for _, sig in emitted]
        assert set(encoded["sizing"]) <= {1}
        got += [(lo + r, sig) for r, sig in emitted]
    assert got == expected
    # Every basket: all legs on one row, one per outcome, equal quantities.
    by_group: dict[str, list[tuple[int, Signal]]] = {}
    for r, sig in got:
        by_group.setdefault(sig.group, []).append((r, sig))
    for legs in by_group.values():
        assert len(legs) == 3 and len({r for r, _ in legs}) == 1 and len({sig.amount for _, sig in legs}) == 1
        assert should_fire([sig.limit_price for _, sig in legs], 0.01, 0.02)
