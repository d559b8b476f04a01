"""BarVenue: orders trade on the bar after the one they were sent on, at its open (or their limit)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allele.kernel.backtest.data import Bars, SyntheticSpec, synthetic_bars
from allele.kernel.backtest.venue import BarVenue
from allele.kernel.domain import FinalizedOrder, OrderUpdate, Side, TimeInForce, VenueEvent
from allele.kernel.engine.ports import Venue

T = 1_000_000_000
# bar:     0      1      2      3      4
TS = (10 * T, 20 * T, 30 * T, 40 * T, 50 * T)
OPEN = (100.0, 102.0, 98.0, 95.0, 110.0)
HIGH = (101.0, 104.0, 99.0, 97.0, 112.0)
LOW = (99.0, 100.0, 94.0, 93.0, 108.0)
CLOSE = (100.5, 101.0, 95.0, 96.0, 111.0)
VOLUME = (1.0, 2.0, 3.0, 4.0, 5.0)
BARS = Bars("SPY", TS, OPEN, HIGH, LOW, CLOSE, VOLUME)


def order(cid: str, side: Side = "buy", quantity: float = 10.0, limit: float | None = None,
          tif: TimeInForce = "gtc", deadline_ns: int = 0, symbol: str = "SPY", ts_ns: int = 0) -> FinalizedOrder:
    return FinalizedOrder(cid, symbol, side, "market" if limit is None else "limit", quantity, limit, tif, ts_ns,
                          deadline_ns)


def updates(events: list[VenueEvent]) -> list[OrderUpdate]:
    out = [e for e in events if isinstance(e, OrderUpdate)]
    assert len(out) == len(events), "the bar venue publishes no market events"
    return out


def statuses(events: list[VenueEvent]) -> list[tuple[str, str]]:
    return [(u.client_order_id, u.status) for u in updates(events)]


def venue(commission: float = 0.0, lot_size: float = 1.0) -> BarVenue:
    v = BarVenue(BARS, commission=commission, lot_size=lot_size)
    assert v.advance(TS[0]) == []  # the engine sees bar 0
    return v


def test_implements_the_venue_protocol() -> None:
    v = BarVenue(BARS, commission=0.001, lot_size=0.5, tick_size=0.01)
    assert isinstance(v, Venue)
    assert v.name == "backtest"
    assert v.symbols() == ("SPY",)
    inst = v.instrument("SPY")
    assert (inst.symbol, inst.tick_size, inst.lot_size, inst.maker_fee, inst.taker_fee) == \
        ("SPY", 0.01, 0.5, 0.001, 0.001)
    with pytest.raises(KeyError):
        v.instrument("QQQ")


def test_market_order_fills_at_the_next_bars_open_not_the_current_one() -> None:
    v = venue(commission=0.001)
    v.submit(order("a", quantity=10), sent_ns=TS[0])
    # Nothing happens until the engine advances to the next bar, even at the same timestamp.
    assert v.advance(TS[0]) == []
    assert v.advance(TS[1] - 1) == []
    ups = updates(v.advance(TS[1]))
    assert [u.status for u in ups] == ["accepted", "filled"]
    accepted, filled = ups
    assert accepted.venue_order_id == filled.venue_order_id == "bt-1"
    assert accepted.ts_ns == TS[1]
    assert filled.fill_price == OPEN[1] == 102.0
    assert filled.fill_price != CLOSE[0]
    assert filled.fill_quantity == 10.0
    assert filled.fee == pytest.approx(0.001 * 102.0 * 10.0)
    assert filled.fee_currency == "USD"
    assert filled.ts_ns == TS[1]
    assert filled.symbol == "SPY"
    assert v.advance(TS[2]) == []


def test_sell_order_and_zero_commission() -> None:
    v = venue()
    v.advance(TS[1])
    v.submit(order("s", side="sell", quantity=3), sent_ns=TS[1])
    filled = updates(v.advance(TS[2]))[-1]
    assert (filled.status, filled.fill_price, filled.fee, filled.ts_ns) == ("filled", OPEN[2], 0.0, TS[2])


def test_order_sent_between_bars_trades_on_the_next_bar() -> None:
    v = venue()
    v.submit(order("a"), sent_ns=TS[0] + 5)
    assert updates(v.advance(TS[1]))[-1].fill_price == OPEN[1]


def test_one_advance_over_several_bars_trades_each_order_on_its_own_next_bar() -> None:
    v = BarVenue(BARS, commission=0.0)
    v.submit(order("early"), sent_ns=TS[0])
    v.submit(order("late"), sent_ns=TS[2])
    ups = updates(v.advance(TS[4]))
    fills = {u.client_order_id: u for u in ups if u.status == "filled"}
    assert fills["early"].fill_price == OPEN[1] and fills["early"].ts_ns == TS[1]
    assert fills["late"].fill_price == OPEN[3] and fills["late"].ts_ns == TS[3]
    assert [u.ts_ns for u in ups] == sorted(u.ts_ns for u in ups)


def test_limit_buy_fills_at_limit_when_low_reaches_it() -> None:
    v = venue(commission=0.01)
    v.submit(order("b", limit=101.0), sent_ns=TS[0])  # bar 1: open 102, low 100
    ups = updates(v.advance(TS[1]))
    assert [u.status for u in ups] == ["accepted", "filled"]
    assert ups[1].fill_price == 101.0
    assert ups[1].fee == pytest.approx(0.01 * 101.0 * 10)


def test_limit_buy_above_the_open_fills_at_the_open() -> None:
    v = venue()
    v.submit(order("b", limit=103.0), sent_ns=TS[0])  # bar 1 opens at 102: a better price than the limit
    assert updates(v.advance(TS[1]))[-1].fill_price == 102.0


def test_limit_sell_fills_at_max_of_open_and_limit() -> None:
    v = venue()
    v.submit(order("s1", side="sell", limit=103.5), sent_ns=TS[0])  # bar 1: high 104
    v.submit(order("s2", side="sell", limit=101.0), sent_ns=TS[0])  # below the open 102 -> the open
    fills = {u.client_order_id: u.fill_price for u in updates(v.advance(TS[1])) if u.status == "filled"}
    assert fills == {"s1": 103.5, "s2": 102.0}


def test_limit_that_is_not_reached_keeps_working_until_it_fills() -> None:
    v = venue()
    v.submit(order("b", limit=96.0), sent_ns=TS[0])  # bar 1 low 100: no; bar 2 low 94: yes, open 98
    assert statuses(v.advance(TS[1])) == [("b", "accepted")]
    assert [o.client_order_id for o in v.working()] == ["b"]
    ups = updates(v.advance(TS[2]))
    assert [(u.status, u.fill_price, u.ts_ns) for u in ups] == [("filled", 96.0, TS[2])]
    assert v.working() == ()


def test_gap_through_a_resting_limit_fills_at_the_open() -> None:
    v = venue()
    v.submit(order("s", side="sell", limit=105.0), sent_ns=TS[0])  # bars 1-3 never reach 105; bar 4 opens 110
    v.advance(TS[3])
    ups = updates(v.advance(TS[4]))
    assert [(u.status, u.fill_price) for u in ups] == [("filled", 110.0)]


def test_limit_expires_after_its_deadline() -> None:
    v = venue()
    v.submit(order("b", limit=90.0, deadline_ns=TS[2] + 1), sent_ns=TS[0])
    assert statuses(v.advance(TS[2])) == [("b", "accepted")]  # bars 1 and 2: not reached, deadline not passed
    ups = updates(v.advance(TS[3]))
    assert [(u.status, u.ts_ns, u.venue_order_id) for u in ups] == [("expired", TS[3], "bt-1")]
    assert "deadline" in ups[0].reason
    assert v.working() == ()


def test_market_order_whose_deadline_passes_before_the_next_bar_expires() -> None:
    v = venue()
    v.submit(order("m", deadline_ns=TS[0] + 5), sent_ns=TS[0])
    assert statuses(v.advance(TS[1])) == [("m", "accepted"), ("m", "expired")]


@pytest.mark.parametrize("tif", ["ioc", "fok"])
def test_ioc_and_fok_limits_that_do_not_fill_at_the_next_bar_are_cancelled(tif: TimeInForce) -> None:
    v = venue()
    v.submit(order("x", limit=99.0, tif=tif), sent_ns=TS[0])  # bar 1 low 100
    ups = updates(v.advance(TS[1]))
    assert [u.status for u in ups] == ["accepted", "cancelled"]
    assert ups[1].reason
    assert updates(v.advance(TS[2])) == []  # not working any more, although bar 2 would have filled it
    v.submit(order("y", limit=99.0, tif=tif), sent_ns=TS[2])  # bar 3 opens 95 below the limit: fills at 95
    assert [(u.status, u.fill_price) for u in updates(v.advance(TS[3]))] == [("accepted", 0.0), ("filled", 95.0)]


def test_post_only_that_would_trade_at_the_open_is_cancelled_else_rests() -> None:
    v = venue()
    v.submit(order("p1", limit=103.0, tif="post-only"), sent_ns=TS[0])  # bar 1 opens 102 <= 103: would take
    v.submit(order("p2", limit=101.0, tif="post-only"), sent_ns=TS[0])  # rests, low 100 reaches it
    ups = updates(v.advance(TS[1]))
    assert [(u.client_order_id, u.status, u.fill_price) for u in ups] == [
        ("p1", "accepted", 0.0), ("p2", "accepted", 0.0), ("p1", "cancelled", 0.0), ("p2", "filled", 101.0)]


def test_cancel_before_the_next_bar_wins_and_unknown_cancel_is_rejected() -> None:
    v = venue()
    v.submit(order("b", limit=96.0), sent_ns=TS[0])
    assert statuses(v.advance(TS[1])) == [("b", "accepted")]
    v.cancel("b", sent_ns=TS[1])
    assert v.working() != ()  # only sent: reported at the next advance
    ups = updates(v.advance(TS[2]))  # bar 2 would have filled it (low 94)
    assert [(u.status, u.ts_ns, u.venue_order_id) for u in ups] == [("cancelled", TS[2], "bt-1")]
    v.cancel("b", sent_ns=TS[2])
    v.cancel("never", sent_ns=TS[2])
    ups = updates(v.advance(TS[3]))
    assert [(u.client_order_id, u.status, u.reason) for u in ups] == [
        ("b", "rejected", "unknown order"), ("never", "rejected", "unknown order")]


def test_cancel_sent_with_the_order_cancels_it_before_it_trades() -> None:
    v = venue()
    v.submit(order("m"), sent_ns=TS[0])
    v.cancel("m", sent_ns=TS[0])
    assert statuses(v.advance(TS[1])) == [("m", "accepted"), ("m", "cancelled")]


def test_amend_changes_price_and_quantity_of_a_working_limit() -> None:
    v = venue(commission=0.001)
    v.submit(order("b", limit=90.0, quantity=10), sent_ns=TS[0])
    v.advance(TS[1])
    v.amend("b", sent_ns=TS[1], limit_price=99.0, quantity=4)
    ups = updates(v.advance(TS[2]))  # bar 2: open 98 <= 99 -> filled at the open 98
    assert [(u.status, u.reason) for u in ups] == [("accepted", "amended"), ("filled", "")]
    assert (ups[1].fill_quantity, ups[1].fill_price) == (4.0, 98.0)
    assert ups[1].fee == pytest.approx(0.001 * 98.0 * 4)


def test_amend_errors() -> None:
    v = venue(lot_size=2.0)
    v.amend("ghost", sent_ns=TS[0], quantity=2)
    v.submit(order("b", limit=90.0, quantity=4), sent_ns=TS[0])
    v.amend("b", sent_ns=TS[0], quantity=3)  # not a multiple of 2
    v.submit(order("m", quantity=2), sent_ns=TS[0])
    v.amend("m", sent_ns=TS[0], quantity=4)  # market orders are not amendable
    ups = updates(v.advance(TS[1]))
    rejected = [(u.client_order_id, u.reason) for u in ups if u.status == "rejected"]
    assert rejected[0] == ("ghost", "amend: unknown order")
    assert rejected[1][0] == "b" and "lot size" in rejected[1][1]
    assert rejected[2][0] == "m" and "limit" in rejected[2][1]
    assert [o.quantity for o in v.working()] == [4.0]  # b untouched


@pytest.mark.parametrize(("quantity", "why"), [(1.5, "lot size"), (0.0, "lot size"), (-2.0, "lot size")])
def test_bad_lots_are_rejected_with_a_reason(quantity: float, why: str) -> None:
    v = venue()
    v.submit(order("bad", quantity=quantity), sent_ns=TS[0])
    ups = updates(v.advance(TS[1]))
    assert [(u.status, u.venue_order_id) for u in ups] == [("rejected", "")]
    assert why in ups[0].reason


def test_fractional_lots_and_other_rejections() -> None:
    v = BarVenue(BARS, commission=0.0, lot_size=0.01, tick_size=0.01)
    v.submit(order("ok", quantity=0.3), sent_ns=TS[0])
    v.submit(order("off-tick", limit=100.005), sent_ns=TS[0])
    v.submit(order("other", symbol="QQQ"), sent_ns=TS[0])
    v.submit(FinalizedOrder("nolimit", "SPY", "buy", "limit", 1.0, None, "gtc", 0, 0), sent_ns=TS[0])
    v.submit(order("market-post", tif="post-only"), sent_ns=TS[0])
    v.submit(order("neg", limit=-1.0), sent_ns=TS[0])
    ups = updates(v.advance(TS[1]))
    by_id = {u.client_order_id: u for u in ups}
    assert by_id["ok"].status == "filled" and by_id["ok"].fill_quantity == 0.3
    for cid, phrase in (("off-tick", "tick"), ("other", "unknown symbol"), ("nolimit", "without a limit"),
                        ("market-post", "post-only"), ("neg", "not positive")):
        assert by_id[cid].status == "rejected" and phrase in by_id[cid].reason, cid


def test_two_decimal_limit_prices_are_on_the_default_tick_grid() -> None:
    """1e-8 ticks: 12345.67 is 1.2e12 ticks, and not exactly representable; it must still be accepted."""
    big = Bars("BTC", TS[:2], (12345.0, 12000.0), (12400.0, 12500.0), (12300.0, 9000.0), (12345.0, 12000.0),
               (1.0, 1.0))
    v = BarVenue(big, commission=0.0)
    prices = [12345.67, 11111.11, 10000.01, 12222.29, 11234.57, 12345.678901]
    for k, price in enumerate(prices):
        v.submit(order(f"b{k}", limit=price, symbol="BTC", quantity=1), sent_ns=TS[0])
    v.submit(order("off", limit=12345.670000004, symbol="BTC"), sent_ns=TS[0])
    ups = updates(v.advance(TS[1]))
    fills = {u.client_order_id: u.fill_price for u in ups if u.status == "filled"}
    assert fills == {f"b{k}": min(12000.0, p) for k, p in enumerate(prices)}
    assert [u.client_order_id for u in ups if u.status == "rejected"] == ["off"]


def test_duplicate_working_client_id_is_rejected() -> None:
    v = venue()
    v.submit(order("b", limit=90.0), sent_ns=TS[0])
    v.submit(order("b", limit=91.0), sent_ns=TS[0])
    assert statuses(v.advance(TS[1])) == [("b", "accepted"), ("b", "rejected")]


def test_drain_cancels_working_orders_and_answers_requests_in_flight() -> None:
    v = venue()
    v.submit(order("rest", limit=50.0), sent_ns=TS[0])
    v.advance(TS[4])
    v.submit(order("late"), sent_ns=TS[4])  # sent on the last bar: there is no next bar to trade on
    v.submit(order("bad", quantity=0.5), sent_ns=TS[4])
    ups = updates(v.drain())
    assert [(u.client_order_id, u.status, u.reason) for u in ups] == [
        ("late", "accepted", ""), ("bad", "rejected", ups[1].reason),
        ("rest", "cancelled", "end of data"), ("late", "cancelled", "end of data")]
    assert all(u.ts_ns == TS[4] for u in ups)
    assert v.working() == ()
    assert v.drain() == []


def test_venue_order_ids_count_up() -> None:
    v = venue()
    for i in range(3):
        v.submit(order(f"o{i}"), sent_ns=TS[0])
    ups = updates(v.advance(TS[1]))
    assert [u.venue_order_id for u in ups if u.status == "accepted"] == ["bt-1", "bt-2", "bt-3"]


@settings(max_examples=30)
@given(seed=st.integers(0, 1000), plan=st.lists(
    st.tuples(st.integers(0, 38), st.sampled_from(["buy", "sell"]), st.integers(1, 5),
              st.one_of(st.none(), st.floats(-0.03, 0.03))), max_size=12))
def test_no_look_ahead_and_one_outcome_per_order(seed: int, plan: list[tuple[int, Side, int, float | None]]) -> None:
    """Any orders sent on bar i: every fill is on a later bar, at a price inside that bar, and deterministic."""
    bars = synthetic_bars(SyntheticSpec(bars=40, seed=seed))

    def run() -> list[OrderUpdate]:
        v = BarVenue(bars, commission=0.002)
        out: list[OrderUpdate] = []
        sent_bar: dict[str, int] = {}
        for i, ts in enumerate(bars.ts_ns):
            out += updates(v.advance(ts))
            for k, (bar, side, qty, offset) in enumerate(plan):
                if bar == i:
                    limit = None if offset is None else round(bars.close[i] * (1 + offset), 2)
                    v.submit(order(f"o{k}", side=side, quantity=qty, limit=limit, symbol=bars.symbol), sent_ns=ts)
                    sent_bar[f"o{k}"] = i
        out += updates(v.drain())
        for u in out:
            if u.status == "filled":
                j = bars.ts_ns.index(u.ts_ns)
                assert j > sent_bar[u.client_order_id]
                assert bars.low[j] <= u.fill_price <= bars.high[j]
                assert u.fee == pytest.approx(0.002 * u.fill_price * u.fill_quantity)
        return out

    first = run()
    assert first == run()
    for k in range(len(plan)):
        mine = [u.status for u in first if u.client_order_id == f"o{k}"]
        assert mine[0] == "accepted"
        assert len(mine) == 2 and mine[1] in ("filled", "cancelled")
