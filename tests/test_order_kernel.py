"""The order kernel reference model: lifecycle, pre-trade checks, timers, and stream invariants."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allele.kernel.orders.frames import (
    FRAME_LEN,
    OUTBOUND_TYPES,
    Accepted,
    Amend,
    AmendToVenue,
    Cancel,
    CancelToVenue,
    Expired,
    FrameError,
    InboundMessage,
    KillSwitch,
    Limits,
    Message,
    MsgType,
    NewOrder,
    OrderState,
    OrderType,
    Reason,
    RefPrice,
    Rejected,
    Side,
    StateChange,
    SubmitToVenue,
    Tick,
    TimeInForce,
    VenueAck,
    VenueCancelled,
    VenueFill,
    VenueReject,
    decode,
    encode,
    limit_order,
    market_order,
)
from allele.kernel.orders.kernel import TERMINAL, TRANSITIONS, IllegalTransition, OrderKernel, transition
from allele.kernel.orders.port import OrderKernelPort, SoftwareOrderKernel

SYM = 1
REF = 1_000
S = OrderState
LIMITS = Limits(SYM, max_qty=100, max_notional=1_000_000, band_bps=500, position_limit=200, rate_burst=0,
                rate_interval_ns=0)


def send(kernel: OrderKernel, msg: InboundMessage) -> list[Message]:
    frames = kernel.step(encode(msg))
    assert all(len(f) == FRAME_LEN for f in frames)
    return [decode(f) for f in frames]


def make(slots: int = 4, limits: Limits = LIMITS, ref: int | None = REF) -> OrderKernel:
    kernel = OrderKernel(slots=slots)
    assert send(kernel, limits) == []
    if ref is not None:
        assert send(kernel, RefPrice(limits.symbol, ref)) == []
    return kernel


def buy(cid: int, qty: int = 10, price: int = REF, ts: int = 0, deadline: int = 0, side: Side = Side.BUY,
        symbol: int = SYM) -> NewOrder:
    return limit_order(cid, symbol, price, qty, side=side, ts_ns=ts, deadline_ns=deadline)


def sell(cid: int, qty: int = 10, price: int = REF, ts: int = 0) -> NewOrder:
    return buy(cid, qty, price, ts, side=Side.SELL)


def market(cid: int, qty: int = 10, ts: int = 0) -> NewOrder:
    return market_order(cid, SYM, qty, ts_ns=ts)


def rejected(kernel: OrderKernel, msg: InboundMessage) -> Reason:
    out = send(kernel, msg)
    assert len(out) == 1 and isinstance(out[0], Rejected), out
    return out[0].reason


def state_of(kernel: OrderKernel, cid: int) -> OrderState | None:
    return next((o.state for o in kernel.orders() if o.client_order_id == cid), None)


# ------------------------------------------------------------------ lifecycle, one transition at a time


def test_accept_emits_accepted_then_submit_and_order_is_pending() -> None:
    kernel = make()
    out = send(kernel, buy(7, qty=10, price=1_010, ts=500))
    assert out == [
        Accepted(7, MsgType.NEW_ORDER, slot=0, ts_ns=500),
        SubmitToVenue(7, SYM, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 1_010, 10),
    ]
    (order,) = kernel.orders()
    assert (order.slot, order.client_order_id, order.state, order.qty, order.filled) == (0, 7, S.PENDING, 10, 0)


def to_pending(kernel: OrderKernel) -> None:
    send(kernel, buy(1, qty=10))


def to_submitted(kernel: OrderKernel) -> None:
    to_pending(kernel)
    assert send(kernel, VenueAck(1)) == [StateChange(1, 0, SYM, S.PENDING, S.SUBMITTED, 0)]


def to_partial(kernel: OrderKernel) -> None:
    to_submitted(kernel)
    assert send(kernel, VenueFill(1, qty=4, price=999)) == [
        StateChange(1, 0, SYM, S.SUBMITTED, S.PARTIALLY_FILLED, 4, 4, 999)
    ]


START: dict[OrderState, Callable[[OrderKernel], None]] = {
    S.PENDING: to_pending, S.SUBMITTED: to_submitted, S.PARTIALLY_FILLED: to_partial,
}

# (start state, inbound, the new state, the frames expected around the STATE_CHANGE)
CASES: list[tuple[OrderState, InboundMessage, OrderState]] = [
    (S.PENDING, VenueAck(1), S.SUBMITTED),
    (S.PENDING, VenueFill(1, 3, 1_000), S.PARTIALLY_FILLED),
    (S.PENDING, VenueFill(1, 10, 1_000), S.FILLED),
    (S.PENDING, Cancel(1, 0), S.CANCELLED),
    (S.PENDING, VenueReject(1), S.REJECTED),
    (S.SUBMITTED, VenueFill(1, 3, 1_000), S.PARTIALLY_FILLED),
    (S.SUBMITTED, VenueFill(1, 10, 1_000), S.FILLED),
    (S.SUBMITTED, Cancel(1, 0), S.CANCELLED),
    (S.SUBMITTED, VenueReject(1), S.REJECTED),
    (S.PARTIALLY_FILLED, VenueFill(1, 1, 1_000), S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, VenueFill(1, 6, 1_000), S.FILLED),
    (S.PARTIALLY_FILLED, Cancel(1, 0), S.CANCELLED),
    (S.PENDING, VenueCancelled(1), S.CANCELLED),
    (S.SUBMITTED, VenueCancelled(1), S.CANCELLED),
    (S.PARTIALLY_FILLED, VenueCancelled(1), S.CANCELLED),
]


@pytest.mark.parametrize(("start", "msg", "new"), CASES, ids=lambda x: getattr(x, "name", type(x).__name__))
def test_transition(start: OrderState, msg: InboundMessage, new: OrderState) -> None:
    kernel = make()
    START[start](kernel)
    filled_before = kernel.orders()[0].filled
    out = send(kernel, msg)
    change = [m for m in out if isinstance(m, StateChange)]
    assert len(change) == 1 and (change[0].old, change[0].new, change[0].slot) == (start, new, 0)
    if isinstance(msg, Cancel):
        assert out == [CancelToVenue(1, SYM), change[0]]
    else:
        assert out == change
    if isinstance(msg, VenueFill):
        assert (change[0].filled_qty, change[0].last_qty, change[0].last_price) == (
            filled_before + msg.qty, msg.qty, msg.price,
        )
    assert state_of(kernel, 1) == (None if new in TERMINAL else new)


@pytest.mark.parametrize("start", list(START), ids=lambda s: s.name)
def test_expiry_transition(start: OrderState) -> None:
    kernel = make()
    send(kernel, buy(1, qty=10, deadline=1_000))
    if start != S.PENDING:
        send(kernel, VenueAck(1))
    if start == S.PARTIALLY_FILLED:
        send(kernel, VenueFill(1, 4, 999))
    assert send(kernel, Tick(999)) == []
    assert send(kernel, Tick(1_000)) == [
        CancelToVenue(1, SYM),
        StateChange(1, 0, SYM, start, S.EXPIRED, 4 if start == S.PARTIALLY_FILLED else 0),
        Expired(1, SYM, 1_000, 4 if start == S.PARTIALLY_FILLED else 0),
    ]
    assert kernel.orders() == ()
    assert send(kernel, Tick(5_000)) == []


def test_every_legal_transition_is_exercised() -> None:
    legal = {(old, new) for old, nexts in TRANSITIONS.items() for new in nexts}
    covered = {(start, new) for start, _, new in CASES} | {(s, S.EXPIRED) for s in START}
    assert covered == legal


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)), ids=lambda s: s.name)
def test_transition_table_is_enforced(old: OrderState, new: OrderState) -> None:
    if new in TRANSITIONS[old]:
        assert transition(old, new) is new
    else:
        with pytest.raises(IllegalTransition, match=f"illegal order state transition {old.name} -> {new.name}"):
            transition(old, new)


def test_terminal_states_have_no_exit_and_free_the_slot() -> None:
    assert TERMINAL == {S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED}
    kernel = make(slots=1)
    send(kernel, buy(1))
    send(kernel, VenueFill(1, 10, 1_000))
    assert kernel.orders() == ()
    assert send(kernel, buy(1))[0] == Accepted(1, MsgType.NEW_ORDER, 0, 0)  # id reusable once terminal


def test_ack_after_fill_and_duplicate_ack_change_nothing() -> None:
    kernel = make()
    send(kernel, buy(1))
    send(kernel, VenueFill(1, 2, 1_000))
    assert send(kernel, VenueAck(1)) == []
    assert state_of(kernel, 1) == S.PARTIALLY_FILLED
    send(kernel, buy(2))
    send(kernel, VenueAck(2))
    assert send(kernel, VenueAck(2)) == []
    assert state_of(kernel, 2) == S.SUBMITTED


def test_venue_reject_of_partially_filled_order_is_refused() -> None:
    kernel = make()
    to_partial(kernel)
    assert rejected(kernel, VenueReject(1)) == Reason.BAD_STATE
    assert state_of(kernel, 1) == S.PARTIALLY_FILLED


def test_fills_move_the_position() -> None:
    kernel = make()
    send(kernel, buy(1, qty=10))
    send(kernel, sell(2, qty=4))
    send(kernel, VenueFill(1, 10, 1_000))
    send(kernel, VenueFill(2, 3, 1_001))
    assert kernel.position(SYM) == 7
    assert kernel.position(99) == 0


# ------------------------------------------------------------------ reject reasons, one directed test each


def test_reject_kill_switch() -> None:
    kernel = make()
    send(kernel, KillSwitch(True))
    assert rejected(kernel, buy(1)) == Reason.KILL_SWITCH


def test_reject_duplicate_id() -> None:
    kernel = make()
    send(kernel, buy(1))
    assert rejected(kernel, buy(1, ts=5)) == Reason.DUPLICATE_ID
    assert len(kernel.orders()) == 1


def test_reject_table_full() -> None:
    kernel = make(slots=2)
    send(kernel, buy(1))
    send(kernel, buy(2))
    assert rejected(kernel, buy(3)) == Reason.TABLE_FULL
    send(kernel, Cancel(1, 0))
    assert send(kernel, buy(3))[0] == Accepted(3, MsgType.NEW_ORDER, 0, 0)  # the lowest free slot is reused
    assert [o.slot for o in kernel.orders()] == [0, 1]


@pytest.mark.parametrize(
    "msg",
    [
        buy(1, qty=0),
        buy(1, qty=-5),
        buy(1, price=0),
        buy(1, price=-1),
        NewOrder(1, SYM, Side.BUY, OrderType.MARKET, TimeInForce.IOC, 1_000, 5, 0),
        buy(1, ts=100, deadline=100),
    ],
    ids=["qty0", "qty-neg", "price0", "price-neg", "market-with-price", "deadline-not-after-ts"],
)
def test_reject_invalid_order(msg: NewOrder) -> None:
    assert rejected(make(), msg) == Reason.INVALID_ORDER


def test_reject_max_qty() -> None:
    kernel = make()
    assert rejected(kernel, buy(1, qty=101)) == Reason.MAX_QTY
    assert isinstance(send(kernel, buy(1, qty=100))[0], Accepted)


def test_reject_max_notional() -> None:
    kernel = make(limits=Limits(SYM, 100, 50_000, 500, 200, 0, 0))
    assert rejected(kernel, buy(1, qty=51, price=1_000)) == Reason.MAX_NOTIONAL
    assert isinstance(send(kernel, buy(1, qty=50, price=1_000))[0], Accepted)
    assert rejected(kernel, market(2, qty=51)) == Reason.MAX_NOTIONAL  # market orders priced at the reference


def test_reject_price_band() -> None:
    kernel = make()  # 500 bps around 1000: [950, 1050]
    assert rejected(kernel, buy(1, price=1_051)) == Reason.PRICE_BAND
    assert rejected(kernel, buy(1, price=949)) == Reason.PRICE_BAND
    assert isinstance(send(kernel, buy(1, price=1_050))[0], Accepted)
    assert isinstance(send(kernel, buy(2, price=950))[0], Accepted)
    send(kernel, RefPrice(SYM, 2_000))
    assert rejected(kernel, buy(3, price=1_050)) == Reason.PRICE_BAND


def test_reject_price_band_without_reference_price() -> None:
    kernel = make(ref=None)
    assert rejected(kernel, buy(1)) == Reason.PRICE_BAND
    assert rejected(kernel, market(2)) == Reason.PRICE_BAND


def test_reject_position_limit_counts_open_orders() -> None:
    kernel = make()  # position limit 200
    assert isinstance(send(kernel, buy(1, qty=100))[0], Accepted)
    assert isinstance(send(kernel, buy(2, qty=100))[0], Accepted)
    assert rejected(kernel, buy(3, qty=1)) == Reason.POSITION_LIMIT  # nothing filled: the open orders count
    # the other side is independent of open buys
    assert isinstance(send(kernel, sell(4, qty=100))[0], Accepted)


def test_position_limit_counts_position_and_lets_sells_reduce_it() -> None:
    kernel = make(slots=8)
    send(kernel, buy(1, qty=100))
    send(kernel, VenueFill(1, 100, 1_000))  # position +100
    send(kernel, buy(2, qty=60))
    assert rejected(kernel, buy(3, qty=41)) == Reason.POSITION_LIMIT  # 100 + 60 + 41 > 200
    assert isinstance(send(kernel, buy(3, qty=40))[0], Accepted)
    # selling: open sells + qty - position <= 200 -> up to 300 of sells
    send(kernel, sell(4, qty=100))
    send(kernel, sell(5, qty=100))
    assert isinstance(send(kernel, sell(6, qty=100))[0], Accepted)
    assert rejected(kernel, sell(7, qty=1)) == Reason.POSITION_LIMIT


def test_reject_rate_limit_and_refill_by_event_time() -> None:
    kernel = make(slots=8, limits=Limits(SYM, 100, 1_000_000, 500, 10_000, rate_burst=2, rate_interval_ns=1_000))
    assert isinstance(send(kernel, buy(1, ts=0))[0], Accepted)
    assert isinstance(send(kernel, buy(2, ts=0))[0], Accepted)
    assert rejected(kernel, buy(3, ts=0)) == Reason.RATE_LIMIT
    assert rejected(kernel, buy(3, ts=999)) == Reason.RATE_LIMIT
    assert isinstance(send(kernel, buy(3, ts=1_000))[0], Accepted)  # one token per 1000 ns
    assert rejected(kernel, buy(4, ts=1_500)) == Reason.RATE_LIMIT
    assert isinstance(send(kernel, buy(4, ts=10**9))[0], Accepted)  # refill is capped at the burst: 2
    assert isinstance(send(kernel, buy(5, ts=10**9))[0], Accepted)
    assert rejected(kernel, buy(6, ts=10**9)) == Reason.RATE_LIMIT
    assert isinstance(send(kernel, Amend(5, 0, 20, 10**9 + 1_000))[0], Accepted)  # amends take a token too
    assert rejected(kernel, Amend(5, 0, 30, 10**9 + 1_000)) == Reason.RATE_LIMIT


def test_refused_orders_do_not_consume_tokens() -> None:
    kernel = make(limits=Limits(SYM, 100, 1_000_000, 500, 10_000, rate_burst=1, rate_interval_ns=1_000))
    for _ in range(5):
        assert rejected(kernel, buy(1, qty=101)) == Reason.MAX_QTY
    assert isinstance(send(kernel, buy(1))[0], Accepted)


def test_symbol_without_limits_fails_closed() -> None:
    kernel = make()
    send(kernel, RefPrice(2, REF))
    assert rejected(kernel, buy(1, symbol=2)) == Reason.MAX_QTY


def test_check_priority_order() -> None:
    # Make every check fail at once, then lift them one at a time in the documented priority order.
    kernel = make(slots=1)
    send(kernel, Limits(SYM, 0, 0, 0, 0, 0, 1_000))  # rate bucket capacity 0
    send(kernel, RefPrice(SYM, 0))
    send(kernel, KillSwitch(True))
    assert rejected(kernel, buy(8, qty=-1)) == Reason.KILL_SWITCH
    send(kernel, KillSwitch(False))
    send(kernel, LIMITS)
    send(kernel, RefPrice(SYM, REF))
    assert isinstance(send(kernel, buy(9, qty=1))[0], Accepted)  # the only slot, id 9
    send(kernel, Limits(SYM, 0, 0, 0, 0, 0, 1_000))
    send(kernel, RefPrice(SYM, 0))
    assert rejected(kernel, buy(9, qty=-1)) == Reason.DUPLICATE_ID
    assert rejected(kernel, buy(8, qty=-1)) == Reason.TABLE_FULL
    send(kernel, Cancel(9, 0))
    assert rejected(kernel, buy(8, qty=-1)) == Reason.INVALID_ORDER
    assert rejected(kernel, buy(8, qty=10, price=5)) == Reason.MAX_QTY
    send(kernel, Limits(SYM, 100, 0, 0, 0, 0, 1_000))
    assert rejected(kernel, buy(8, qty=10, price=5)) == Reason.MAX_NOTIONAL
    send(kernel, Limits(SYM, 100, 1_000_000, 0, 0, 0, 1_000))
    assert rejected(kernel, buy(8, qty=10, price=5)) == Reason.PRICE_BAND
    send(kernel, RefPrice(SYM, 5))
    assert rejected(kernel, buy(8, qty=10, price=5)) == Reason.POSITION_LIMIT
    send(kernel, Limits(SYM, 100, 1_000_000, 0, 200, 0, 1_000))
    assert rejected(kernel, buy(8, qty=10, price=5)) == Reason.RATE_LIMIT
    send(kernel, Limits(SYM, 100, 1_000_000, 0, 200, 0, 0))
    assert isinstance(send(kernel, buy(8, qty=10, price=5))[0], Accepted)


@pytest.mark.parametrize("msg_type", [MsgType.CANCEL, MsgType.VENUE_ACK, MsgType.VENUE_FILL, MsgType.VENUE_REJECT,
                                      MsgType.AMEND, MsgType.VENUE_CANCELLED])
def test_reject_unknown_order(msg_type: MsgType) -> None:
    kernel = make()
    msg: InboundMessage = {
        MsgType.CANCEL: Cancel(5, 0), MsgType.VENUE_ACK: VenueAck(5), MsgType.VENUE_FILL: VenueFill(5, 1, 1),
        MsgType.VENUE_REJECT: VenueReject(5), MsgType.AMEND: Amend(5, 1_000, 0, 0),
        MsgType.VENUE_CANCELLED: VenueCancelled(5),
    }[msg_type]
    assert send(kernel, msg) == [Rejected(5, msg_type, Reason.UNKNOWN_ORDER, 0)]


def test_reject_overfill_and_bad_fills_apply_nothing() -> None:
    kernel = make()
    to_partial(kernel)  # 4 of 10
    assert rejected(kernel, VenueFill(1, 7, 1_000)) == Reason.OVERFILL
    assert rejected(kernel, VenueFill(1, 0, 1_000)) == Reason.INVALID_ORDER
    assert rejected(kernel, VenueFill(1, 1, 0)) == Reason.INVALID_ORDER
    (order,) = kernel.orders()
    assert order.filled == 4 and kernel.position(SYM) == 4


# ------------------------------------------------------------------ amend


def test_amend_keeps_the_order() -> None:
    kernel = make()
    send(kernel, buy(1))
    send(kernel, buy(2, qty=5, price=990))
    send(kernel, VenueAck(2))
    send(kernel, VenueFill(2, 2, 990))
    out = send(kernel, Amend(2, price=1_020, qty=8, ts_ns=50))
    assert out == [Accepted(2, MsgType.AMEND, 1, 50), AmendToVenue(2, SYM, 1_020, 8)]
    order = kernel.orders()[1]
    assert (order.slot, order.client_order_id, order.price, order.qty, order.filled, order.state) == (
        1, 2, 1_020, 8, 2, S.PARTIALLY_FILLED,
    )
    assert send(kernel, Amend(2, price=0, qty=6, ts_ns=51))[1] == AmendToVenue(2, SYM, 1_020, 6)  # 0 keeps price
    assert send(kernel, Amend(2, price=1_000, qty=0, ts_ns=52))[1] == AmendToVenue(2, SYM, 1_000, 6)  # 0 keeps qty


@pytest.mark.parametrize(
    "amend",
    [Amend(1, 0, 0, 0), Amend(1, -1, 0, 0), Amend(1, 0, -1, 0), Amend(1, 0, 4, 0), Amend(1, 0, 3, 0)],
    ids=["nothing", "neg-price", "neg-qty", "qty-equals-filled", "qty-below-filled"],
)
def test_amend_invalid_leaves_the_order_alone(amend: Amend) -> None:
    kernel = make()
    to_partial(kernel)
    before = kernel.orders()
    assert rejected(kernel, amend) == Reason.INVALID_ORDER
    assert kernel.orders() == before


def test_amend_market_order_price_is_invalid() -> None:
    kernel = make()
    send(kernel, market(1))
    assert rejected(kernel, Amend(1, 1_000, 0, 0)) == Reason.INVALID_ORDER
    assert isinstance(send(kernel, Amend(1, 0, 20, 0))[0], Accepted)


def test_amend_runs_the_risk_checks() -> None:
    kernel = make(limits=Limits(SYM, 1_000, 10**9, 500, 200, 0, 0))
    send(kernel, buy(1, qty=150))
    send(kernel, Limits(SYM, 180, 10**9, 500, 200, 0, 0))
    assert rejected(kernel, Amend(1, 0, 181, 0)) == Reason.MAX_QTY
    send(kernel, Limits(SYM, 1_000, 10**9, 500, 200, 0, 0))
    # the order's own remaining is replaced, not added: 150 -> 200 fits the 200 position limit
    assert isinstance(send(kernel, Amend(1, 0, 200, 0))[0], Accepted)
    assert rejected(kernel, Amend(1, 0, 201, 0)) == Reason.POSITION_LIMIT
    assert rejected(kernel, Amend(1, 1_100, 0, 0)) == Reason.PRICE_BAND
    send(kernel, Limits(SYM, 1_000, 150_000, 500, 200, 0, 0))
    assert rejected(kernel, Amend(1, 0, 160, 0)) == Reason.MAX_NOTIONAL
    assert kernel.orders()[0].qty == 200
    send(kernel, KillSwitch(True))
    assert rejected(kernel, Amend(1, 0, 10, 0)) == Reason.KILL_SWITCH
    assert kernel.orders() == ()


def test_rejected_amend_keeps_the_old_terms() -> None:
    kernel = make()
    send(kernel, buy(1, qty=10, price=1_000))
    before = kernel.orders()
    assert rejected(kernel, Amend(1, 2_000, 20, 0)) == Reason.PRICE_BAND
    assert kernel.orders() == before


# ------------------------------------------------------------------ deadlines, kill switch, time


def test_expiry_sweeps_before_the_frame_and_by_slot() -> None:
    kernel = make()
    send(kernel, buy(1, deadline=300))
    send(kernel, buy(2, deadline=200))
    send(kernel, buy(3))  # no deadline
    out = send(kernel, buy(4, ts=300))
    assert out == [
        CancelToVenue(1, SYM), StateChange(1, 0, SYM, S.PENDING, S.EXPIRED, 0), Expired(1, SYM, 300, 0),
        CancelToVenue(2, SYM), StateChange(2, 1, SYM, S.PENDING, S.EXPIRED, 0), Expired(2, SYM, 300, 0),
        Accepted(4, MsgType.NEW_ORDER, 0, 300), SubmitToVenue(4, SYM, Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                                                              REF, 10),
    ]
    assert [o.client_order_id for o in kernel.orders()] == [4, 3]
    assert send(kernel, Tick(10**15)) == []


def test_expired_order_cannot_be_filled_or_cancelled() -> None:
    kernel = make()
    send(kernel, buy(1, deadline=10))
    send(kernel, Tick(10))
    assert rejected(kernel, VenueFill(1, 1, REF)) == Reason.UNKNOWN_ORDER
    assert rejected(kernel, Cancel(1, 10)) == Reason.UNKNOWN_ORDER


def test_cancel_after_the_deadline_sees_the_expiry_first() -> None:
    kernel = make()
    send(kernel, buy(1, deadline=100))
    assert send(kernel, Cancel(1, 150)) == [
        CancelToVenue(1, SYM), StateChange(1, 0, SYM, S.PENDING, S.EXPIRED, 0), Expired(1, SYM, 150, 0),
        Rejected(1, MsgType.CANCEL, Reason.UNKNOWN_ORDER, 150),
    ]


def test_kill_switch_cancels_open_orders_and_refuses_until_cleared() -> None:
    kernel = make()
    send(kernel, buy(1))
    send(kernel, sell(2))
    send(kernel, VenueAck(2))
    send(kernel, buy(3))
    send(kernel, Cancel(1, 0))
    assert send(kernel, KillSwitch(True)) == [
        CancelToVenue(2, SYM), StateChange(2, 1, SYM, S.SUBMITTED, S.CANCELLED, 0),
        CancelToVenue(3, SYM), StateChange(3, 2, SYM, S.PENDING, S.CANCELLED, 0),
    ]
    assert kernel.orders() == () and kernel.kill_switch
    assert rejected(kernel, buy(4)) == Reason.KILL_SWITCH
    assert send(kernel, KillSwitch(True)) == []
    assert send(kernel, KillSwitch(False)) == []
    assert isinstance(send(kernel, buy(4))[0], Accepted)


def test_time_never_goes_backwards() -> None:
    kernel = make()
    send(kernel, Tick(1_000))
    send(kernel, Tick(10))
    assert kernel.now_ns == 1_000
    assert rejected(kernel, buy(1, ts=5, deadline=500)) == Reason.INVALID_ORDER  # deadline already past
    assert send(kernel, buy(1, ts=5))[0] == Accepted(1, MsgType.NEW_ORDER, 0, 1_000)


# ------------------------------------------------------------------ frames in, port


def test_step_refuses_garbled_and_outbound_frames_without_changing_state() -> None:
    kernel = make()
    send(kernel, buy(1))
    before = kernel.orders()
    with pytest.raises(FrameError, match="frame is 10 bytes"):
        kernel.step(b"\x01" * 10)
    with pytest.raises(FrameError, match="ACCEPTED is an outbound message"):
        kernel.step(encode(Accepted(1, MsgType.NEW_ORDER, 0, 0)))
    assert kernel.orders() == before


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="slots must be >= 1"):
        OrderKernel(slots=0)


def test_software_kernel_behind_the_port() -> None:
    port: OrderKernelPort = SoftwareOrderKernel(slots=2)
    assert isinstance(port, OrderKernelPort)
    reference = make(slots=2)
    port.submit(encode(LIMITS))
    port.submit(encode(RefPrice(SYM, REF)))
    for msg in (buy(1), VenueAck(1), VenueFill(1, 3, REF), Cancel(1, 5)):
        assert port.submit(encode(msg)) == reference.step(encode(msg))


# ------------------------------------------------------------------ random inbound streams

cids = st.integers(1, 5)
syms = st.sampled_from([SYM, 2])
times = st.integers(0, 5_000)
def new_orders() -> st.SearchStrategy[NewOrder]:
    return st.builds(
    NewOrder, cids, syms, st.sampled_from(Side), st.sampled_from([OrderType.LIMIT] * 3 + [OrderType.MARKET]),
        st.sampled_from(TimeInForce), st.sampled_from([1_000, 1_000, 990, 1_049, 1_100]),
        st.integers(1, 35) | st.just(-1), times, st.sampled_from([0, 0, 1_000, 3_000, 6_000]),
    ).map(lambda o: o if o.order_type == OrderType.LIMIT else NewOrder(
        o.client_order_id, o.symbol, o.side, o.order_type, o.tif, 0, o.qty, o.ts_ns, o.deadline_ns))


def fills() -> st.SearchStrategy[VenueFill]:
    return st.builds(VenueFill, cids, st.integers(1, 12) | st.just(0), st.just(1_000) | st.just(0))


def acks() -> st.SearchStrategy[VenueAck]:
    return st.builds(VenueAck, cids)


# Repeats (distinct strategy objects) weight the draw towards orders, acks and fills.
inbound: st.SearchStrategy[Any] = st.one_of(
    new_orders(), new_orders(), new_orders(), new_orders(), fills(), fills(), fills(), acks(), acks(),
    st.builds(Amend, cids, st.sampled_from([0, 990, 1_010, 2_000]), st.integers(-1, 45), times),
    st.builds(Cancel, cids, times),
    st.builds(VenueReject, cids),
    st.builds(VenueCancelled, cids),
    st.builds(Tick, st.integers(0, 10_000)),
    st.builds(RefPrice, syms, st.sampled_from([0, 1_000, 1_030])),
    st.builds(Limits, syms, st.sampled_from([30, 100]), st.sampled_from([10_000, 10**9]),
              st.sampled_from([0, 500]), st.sampled_from([20, 200]), st.integers(0, 3),
              st.sampled_from([0, 100, 1_000])),
    st.just(KillSwitch(True)) | st.just(KillSwitch(False)),
)


def run(stream: list[Any], slots: int) -> list[list[bytes]]:
    kernel = OrderKernel(slots=slots)
    for msg in (LIMITS, Limits(2, 100, 10**9, 500, 200, 5, 100), RefPrice(SYM, REF), RefPrice(2, REF)):
        kernel.step(encode(msg))
    sides: dict[int, Side] = {}
    fills: dict[int, int] = {SYM: 0, 2: 0}
    outputs = []
    for msg in stream:
        frames = kernel.step(encode(msg))
        outputs.append(frames)
        for frame in frames:
            assert len(frame) == FRAME_LEN
            out = decode(frame)
            assert frame[0] in OUTBOUND_TYPES and encode(out) == frame
            if isinstance(out, SubmitToVenue):
                sides[out.client_order_id] = out.side
            if isinstance(out, StateChange):
                assert out.new in TRANSITIONS[out.old]
                assert 0 <= out.slot < slots
                if out.last_qty:
                    fills[out.symbol] += out.last_qty if sides[out.client_order_id] == Side.BUY else -out.last_qty
        orders = kernel.orders()
        assert len(orders) <= slots
        assert len({o.slot for o in orders}) == len(orders) and all(0 <= o.slot < slots for o in orders)
        assert len({o.client_order_id for o in orders}) == len(orders)
        assert all(0 <= o.filled < o.qty for o in orders)  # open orders are never fully (or over) filled
        assert all(o.state not in TERMINAL for o in orders)
        if kernel.kill_switch:
            assert orders == ()
        assert {s: kernel.position(s) for s in fills} == fills
    return outputs


@settings(max_examples=300, deadline=None)
@given(st.lists(inbound, min_size=10, max_size=80), st.integers(1, 4))
def test_random_streams_keep_the_invariants_and_are_deterministic(stream: list[Any], slots: int) -> None:
    first = run(stream, slots)
    assert run(stream, slots) == first
