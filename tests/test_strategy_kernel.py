"""The strategy kernel: signals to intents (sizing, flips, amends, cancels) and intents to finalized orders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.domain import Signal
from allele.kernel.engine.portfolio import OpenOrder, Portfolio
from allele.kernel.engine.strategy_kernel import finalize, instrument_kind, plan
from allele.kernel.risk import RiskDecision
from allele.kernel.venue.book import Instrument

BTC = Instrument("BTC-USD", tick_size=0.01, lot_size=0.001, maker_fee=0.0002, taker_fee=0.0005)


def book(position: float = 0.0, cash: float = 100.0, *orders: OpenOrder) -> Portfolio:
    p = Portfolio()
    p.deposit("o", cash)
    p.positions["o"]["BTC-USD"] = position
    p.mark("BTC-USD", 100.0)
    for order in orders:
        p.order_sent(order, 0)
    return p


def test_exposure_sizes_from_capital_in_whole_lots_leaving_room_for_the_fee() -> None:
    [intent] = plan("o", Signal("BTC-USD", "exposure", 1.0), 5, book(), BTC, 100.0, 100.0).intents
    # 100 / (100 * 1.0005) = 0.9995 -> 0.999 lots of 0.001
    assert (intent.side, intent.quantity, intent.reduces, intent.limit_price) == ("buy", 0.999, False, None)
    assert intent.notional * (1 + BTC.taker_fee) <= 100.0


def test_a_flip_is_a_reduction_then_an_opening() -> None:
    p = plan("o", Signal("BTC-USD", "exposure", -1.0), 5, book(position=0.5), BTC, 100.0, 100.0)
    assert [(i.side, i.quantity, i.reduces) for i in p.intents] == [("sell", 0.5, True), ("sell", 0.999, False)]


def test_already_at_target_sends_nothing_and_in_flight_orders_count() -> None:
    assert plan("o", Signal("BTC-USD", "exposure", 0.5), 5, book(position=0.499), BTC, 100.0, 100.0).intents == ()
    flying = OpenOrder("c1", "o", "BTC-USD", "buy", "market", 0.499, None)
    p = plan("o", Signal("BTC-USD", "exposure", 0.5), 5, book(0.0, 100.0, flying), BTC, 100.0, 100.0)
    assert p.intents == () and p.cancels == ()


def test_an_opposite_order_is_cancelled_first() -> None:
    resting = OpenOrder("c1", "o", "BTC-USD", "buy", "limit", 0.3, 99.0)
    p = plan("o", Signal("BTC-USD", "exposure", -0.2), 5, book(0.0, 100.0, resting), BTC, 100.0, 100.0)
    assert p.cancels == ("c1",) and [i.side for i in p.intents] == ["sell"]


def test_a_new_limit_on_the_same_side_re_parameterizes_the_live_order() -> None:
    resting = OpenOrder("c1", "o", "BTC-USD", "buy", "limit", 0.3, 99.0)
    p = plan("o", Signal("BTC-USD", "exposure", 0.5, limit_price=99.5), 5, book(0.0, 100.0, resting), BTC, 100.0,
             100.0)
    assert p.amend_of == "c1" and p.cancels == ()
    [intent] = p.intents
    assert (intent.side, intent.limit_price) == ("buy", 99.5)
    assert intent.quantity == pytest.approx(0.502)  # sized at its limit price: 50 / (99.5 * 1.0005)


def test_units_are_a_signed_quantity() -> None:
    [intent] = plan("o", Signal("BTC-USD", "units", -0.25, limit_price=101.0), 5, book(), BTC, 100.0, 100.0).intents
    assert (intent.side, intent.quantity, intent.limit_price, intent.reduces) == ("sell", 0.25, 101.0, False)


def test_finalize_resolves_every_field_and_rounds_prices_away_from_the_market() -> None:
    [buy] = plan("o", Signal("BTC-USD", "units", 0.25, limit_price=100.005), 7, book(), BTC, 100.0, 100.0).intents
    order = finalize(buy, RiskDecision(True, "accepted", "ok", 0.25), "s-1", BTC, 60_000_000_000)
    assert order is not None
    assert (order.client_order_id, order.order_type, order.limit_price, order.time_in_force, order.ts_ns,
            order.deadline_ns) == ("s-1", "limit", 100.0, "gtc", 7, 60_000_000_007)
    [mkt] = plan("o", Signal("BTC-USD", "exposure", 1.0), 7, book(), BTC, 100.0, 100.0).intents
    market = finalize(mkt, RiskDecision(True, "drawdown_derisk", "scaled", 0.4997), "s-2", BTC, 1)
    assert market is not None and (market.order_type, market.time_in_force, market.quantity) == ("market", "ioc", 0.499)
    assert finalize(mkt, RiskDecision(True, "drawdown_derisk", "scaled", 0.0004), "s-3", BTC, 1) is None


def test_binary_outcomes_are_recognized() -> None:
    assert instrument_kind("ELECTION:RED") == "binary" and instrument_kind("BTC-USD") == "spot"


@given(st.floats(-1, 1), st.floats(-2, 2).map(lambda x: round(x, 3)), st.floats(10, 1000))
def test_exposure_never_overshoots_its_target(amount: float, held: float, capital: float) -> None:
    p = plan("o", Signal("BTC-USD", "exposure", amount), 5, book(position=held, cash=capital), BTC, capital, 100.0)
    after = held + sum(i.quantity if i.side == "buy" else -i.quantity for i in p.intents)
    target = amount * capital / (100.0 * (1 + BTC.taker_fee))
    assert abs(after) <= abs(target) + 1e-9 or after == pytest.approx(held)
    assert abs(after - target) < BTC.lot_size + 1e-9 or p.intents == ()
    reductions = [i for i in p.intents if i.reduces]
    assert all(i.quantity <= abs(held) + 1e-12 for i in reductions)
