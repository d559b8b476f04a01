"""Directed tests: every lifecycle transition and every reject reason, each checked twice —
against an explicit expectation written here, and frame by frame against the Python model.

The last test fails if the directed suite left a coverage bin empty.
"""

from __future__ import annotations

import os
import random
from typing import Any

import cocotb
from okbench import compare, coverage_report, model_outputs, reset, restart, run_frames, sample_coverage

from allele.kernel.orders.frames import (
    Accepted,
    Amend,
    Cancel,
    CancelToVenue,
    Expired,
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

SLOTS = int(os.environ.get("OK_SLOTS", "8"))
S = OrderState
R = Reason
SYM = 7
BASE: list[Message] = [RefPrice(SYM, 1000), Limits(SYM, 100, 1_000_000, 500, 1000, 1000, 0)]


def new(cid: int, price: int = 1000, qty: int = 10, side: Side = Side.BUY, ts: int = 0, deadline: int = 0,
        market: bool = False, sym: int = SYM) -> NewOrder:
    """A GTC order on this bench's symbol (the builders are frames.limit_order / market_order)."""
    if market:
        return market_order(cid, sym, qty, side=side, tif=TimeInForce.GTC, ts_ns=ts, deadline_ns=deadline)
    return limit_order(cid, sym, price, qty, side=side, ts_ns=ts, deadline_ns=deadline)


async def scenario(dut: Any, msgs: list[Message], base: bool = True) -> list[list[Message]]:
    """Run `msgs` (after the BASE limits) on a fresh RTL kernel; check every frame against the model.

    The stream runs twice: with out_ready always high, then again from reset with out_ready low in
    40% of the clocks (back-pressure); both answers must be the model's.
    """
    await reset(dut)  # each cocotb test starts its own clock (a test's tasks end with it)
    stream = (BASE if base else []) + msgs
    frames = [encode(m) for m in stream]
    expected = model_outputs(frames, SLOTS)
    got = await run_frames(dut, frames)
    compare(frames, expected, got)
    await restart(dut)
    compare(frames, expected, await run_frames(dut, frames, stall=0.4, rng=random.Random(len(frames))),
            context="out_ready back-pressure: ")
    sample_coverage(got)
    return [[decode(f) for f in g] for g in got[len(stream) - len(msgs):]]


def rejected(outs: list[Message], request: MsgType, reason: Reason) -> bool:
    return any(isinstance(m, Rejected) and m.request == request and m.reason == reason for m in outs)


def moved(outs: list[Message], old: OrderState, new_state: OrderState) -> bool:
    return any(isinstance(m, StateChange) and m.old == old and m.new == new_state for m in outs)


@cocotb.test()
async def lifecycle_pending_submitted_partial_filled(dut: Any) -> None:
    o = await scenario(dut, [new(1, ts=10), VenueAck(1), VenueFill(1, 3, 1001), VenueFill(1, 3, 1002),
                             VenueFill(1, 4, 999)])
    assert o[0] == [Accepted(1, MsgType.NEW_ORDER, 0, 10),
                    SubmitToVenue(1, SYM, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 1000, 10)]
    assert o[1] == [StateChange(1, 0, SYM, S.PENDING, S.SUBMITTED, 0)]
    assert o[2] == [StateChange(1, 0, SYM, S.SUBMITTED, S.PARTIALLY_FILLED, 3, 3, 1001)]
    assert moved(o[3], S.PARTIALLY_FILLED, S.PARTIALLY_FILLED)
    assert o[4] == [StateChange(1, 0, SYM, S.PARTIALLY_FILLED, S.FILLED, 10, 4, 999)]


@cocotb.test()
async def fills_overtaking_the_ack(dut: Any) -> None:
    o = await scenario(dut, [new(1), new(2), VenueFill(1, 10, 1000), VenueFill(2, 5, 1000), VenueAck(2),
                             new(3), VenueAck(3), VenueFill(3, 10, 1000)])
    assert moved(o[2], S.PENDING, S.FILLED)
    assert moved(o[3], S.PENDING, S.PARTIALLY_FILLED)
    assert o[4] == []  # an ack of an order past PENDING changes nothing
    assert moved(o[7], S.SUBMITTED, S.FILLED)


@cocotb.test()
async def cancels_venue_rejects_and_venue_cancels(dut: Any) -> None:
    o = await scenario(dut, [
        new(1), Cancel(1, 5),                                   # PENDING -> CANCELLED
        new(2), VenueAck(2), Cancel(2, 6),                      # SUBMITTED -> CANCELLED
        new(3), VenueFill(3, 2, 1000), Cancel(3, 7),            # PARTIALLY_FILLED -> CANCELLED
        new(4), VenueReject(4),                                 # PENDING -> REJECTED
        new(5), VenueAck(5), VenueReject(5),                    # SUBMITTED -> REJECTED
        new(6), VenueFill(6, 1, 1000), VenueReject(6),          # BAD_STATE
        new(7), VenueCancelled(7), new(8), VenueAck(8), VenueCancelled(8),
        Cancel(99, 8), VenueReject(99), VenueCancelled(99), VenueAck(99), VenueFill(99, 1, 1),
    ])
    assert o[1] == [CancelToVenue(1, SYM), StateChange(1, 0, SYM, S.PENDING, S.CANCELLED, 0)]
    assert moved(o[4], S.SUBMITTED, S.CANCELLED)
    assert moved(o[7], S.PARTIALLY_FILLED, S.CANCELLED)
    assert moved(o[9], S.PENDING, S.REJECTED)
    assert moved(o[12], S.SUBMITTED, S.REJECTED)
    assert rejected(o[15], MsgType.VENUE_REJECT, R.BAD_STATE)
    assert o[17] == [StateChange(7, 1, SYM, S.PENDING, S.CANCELLED, 0)]  # no CANCEL_TO_VENUE
    assert moved(o[20], S.SUBMITTED, S.CANCELLED)
    for k, req in zip(range(21, 26), (MsgType.CANCEL, MsgType.VENUE_REJECT, MsgType.VENUE_CANCELLED,
                                      MsgType.VENUE_ACK, MsgType.VENUE_FILL), strict=True):
        assert rejected(o[k], req, R.UNKNOWN_ORDER), (k, o[k])


@cocotb.test()
async def venue_fill_rejects(dut: Any) -> None:
    o = await scenario(dut, [new(1), VenueFill(1, 0, 1000), VenueFill(1, 2, 0), VenueFill(1, 11, 1000),
                             VenueFill(1, 10, 1000)])
    assert rejected(o[1], MsgType.VENUE_FILL, R.INVALID_ORDER)
    assert rejected(o[2], MsgType.VENUE_FILL, R.INVALID_ORDER)
    assert rejected(o[3], MsgType.VENUE_FILL, R.OVERFILL)
    assert moved(o[4], S.PENDING, S.FILLED)


@cocotb.test()
async def expiry_sweep_by_ascending_slot(dut: Any) -> None:
    o = await scenario(dut, [
        new(1, ts=100, deadline=500), new(2, ts=110, deadline=400), VenueAck(2),
        new(3, ts=120, deadline=450), VenueFill(3, 4, 1000), new(4, ts=130),
        Tick(300), Tick(600), new(5, ts=610, deadline=600),
    ])
    assert o[6] == []
    assert o[7] == [
        CancelToVenue(1, SYM), StateChange(1, 0, SYM, S.PENDING, S.EXPIRED, 0), Expired(1, SYM, 600, 0),
        CancelToVenue(2, SYM), StateChange(2, 1, SYM, S.SUBMITTED, S.EXPIRED, 0), Expired(2, SYM, 600, 0),
        CancelToVenue(3, SYM), StateChange(3, 2, SYM, S.PARTIALLY_FILLED, S.EXPIRED, 4), Expired(3, SYM, 600, 4),
    ]
    assert rejected(o[8], MsgType.NEW_ORDER, R.INVALID_ORDER)  # a deadline already passed


@cocotb.test()
async def expiry_before_the_order_that_brings_the_time(dut: Any) -> None:
    o = await scenario(dut, [new(1, ts=10, deadline=20), new(2, ts=30)])
    assert [type(m).__name__ for m in o[1]] == ["CancelToVenue", "StateChange", "Expired", "Accepted", "SubmitToVenue"]
    assert o[1][3] == Accepted(2, MsgType.NEW_ORDER, 0, 30)  # slot 0 was freed by the sweep


@cocotb.test()
async def new_order_rejects_every_reason(dut: Any) -> None:
    await _reject_run(dut)


async def _reject_run(dut: Any) -> list[list[Message]]:
    lim = Limits(SYM, 100, 100_000, 500, 150, 1000, 0)
    msgs: list[Message] = [
        RefPrice(SYM, 1000), lim,
        new(1, ts=1000), new(1, ts=1000),                                            # 3 DUPLICATE_ID
        new(2, qty=0), new(3, price=0), new(4, price=-5),
        NewOrder(5, SYM, Side.BUY, OrderType.MARKET, TimeInForce.IOC, 7, 1, 1000, 0),
        new(6, deadline=1000, ts=1000),                                              # 4..8 INVALID_ORDER
        new(7, qty=101),                                                             # 9 MAX_QTY
        new(8, qty=100, price=1040),                                                 # 10 MAX_NOTIONAL
        new(9, price=1051),                                                          # 11 PRICE_BAND
        new(10, sym=9),                                                              # 12 MAX_QTY (no limits)
        RefPrice(9, 0), Limits(9, 100, 10**9, 500, 1000, 1, 0), new(11, sym=9),      # 15 PRICE_BAND (no ref)
        new(12, qty=95, price=990), new(13, qty=95, side=Side.BUY),                  # 17 POSITION_LIMIT
        new(14, qty=95, side=Side.SELL, price=1000),                                 # 18 sell side fits
        Limits(SYM, 100, 100_000, 500, 10_000, 2, 1000),
        new(15, ts=1000), new(16, ts=1000), new(17, ts=1000), new(18, ts=1999), new(19, ts=2000),  # 20..24
        KillSwitch(True), new(20), KillSwitch(False), new(21, ts=5000),              # 25..28
    ]
    o = await scenario(dut, msgs, base=False)
    assert rejected(o[3], MsgType.NEW_ORDER, R.DUPLICATE_ID)
    for k in range(4, 9):
        assert rejected(o[k], MsgType.NEW_ORDER, R.INVALID_ORDER), (k, o[k])
    assert rejected(o[9], MsgType.NEW_ORDER, R.MAX_QTY)
    assert rejected(o[10], MsgType.NEW_ORDER, R.MAX_NOTIONAL)
    assert rejected(o[11], MsgType.NEW_ORDER, R.PRICE_BAND)
    assert rejected(o[12], MsgType.NEW_ORDER, R.MAX_QTY)
    assert rejected(o[15], MsgType.NEW_ORDER, R.PRICE_BAND)
    assert isinstance(o[16][0], Accepted)
    assert rejected(o[17], MsgType.NEW_ORDER, R.POSITION_LIMIT)
    assert isinstance(o[18][0], Accepted)
    # the symbol's bucket already existed (interval 0), so the new LIMITS refills it by the elapsed
    # 1000 ns only: one token, then one more per 1000 ns
    assert [isinstance(o[k][0], Accepted) for k in range(20, 25)] == [True, False, False, False, True]
    for k in (21, 22, 23):
        assert rejected(o[k], MsgType.NEW_ORDER, R.RATE_LIMIT), (k, o[k])
    assert rejected(o[26], MsgType.NEW_ORDER, R.KILL_SWITCH)
    assert isinstance(o[28][0], Accepted)
    return o


@cocotb.test()
async def table_full_and_slot_reuse(dut: Any) -> None:
    msgs: list[Message] = [new(100 + k, qty=1) for k in range(SLOTS)]
    msgs += [new(999, qty=1), Cancel(103, 1), new(999, qty=1)]
    o = await scenario(dut, msgs)
    assert rejected(o[SLOTS], MsgType.NEW_ORDER, R.TABLE_FULL)
    assert o[SLOTS + 2][0] == Accepted(999, MsgType.NEW_ORDER, 3, 1)


@cocotb.test()
async def amend_accepts_and_rejects_every_reason(dut: Any) -> None:
    msgs: list[Message] = [
        RefPrice(SYM, 1000), Limits(SYM, 100, 100_000, 500, 150, 1000, 0),
        new(1, qty=10, ts=10),                                   # 2
        Amend(1, 1010, 0, 11), Amend(1, 0, 20, 12),              # 3, 4 accepted
        Amend(42, 1000, 5, 13),                                  # 5 UNKNOWN_ORDER
        Amend(1, 0, 0, 14), Amend(1, -1, 5, 15), Amend(1, 5, -1, 16),  # 6..8 INVALID_ORDER
        VenueFill(1, 5, 1000), Amend(1, 0, 5, 17),               # 10 INVALID: new qty <= filled
        Amend(1, 0, 101, 18),                                    # 11 MAX_QTY
        Amend(1, 1000, 100, 19),                                 # 12 MAX_NOTIONAL (100*1000 ok) -> accepted
        Amend(1, 1001, 100, 20),                                 # 13 MAX_NOTIONAL
        Amend(1, 1060, 50, 21),                                  # 14 PRICE_BAND
        new(2, qty=50, ts=22), Amend(2, 0, 60, 23),              # 16 POSITION_LIMIT (5 + 95 + 60 > 150)
        new(3, market=True, qty=1, side=Side.SELL, ts=24), Amend(3, 5, 0, 25),  # 18 INVALID: market price
        Amend(3, 0, 2, 26),                                      # 19 accepted (market keeps price 0)
        Limits(SYM, 100, 100_000, 500, 150, 1, 1000),
        Amend(2, 0, 40, 1000), Amend(2, 0, 45, 1001),            # 21 accepted, 22 RATE_LIMIT
        KillSwitch(True), Amend(42, 1, 1, 1002),                 # 24 KILL_SWITCH (before UNKNOWN_ORDER)
    ]
    o = await scenario(dut, msgs, base=False)
    assert o[3][0] == Accepted(1, MsgType.AMEND, 0, 11)
    assert [type(m).__name__ for m in o[4]] == ["Accepted", "AmendToVenue"]
    assert rejected(o[5], MsgType.AMEND, R.UNKNOWN_ORDER)
    for k in (6, 7, 8, 10, 18):
        assert rejected(o[k], MsgType.AMEND, R.INVALID_ORDER), (k, o[k])
    assert rejected(o[11], MsgType.AMEND, R.MAX_QTY)
    assert isinstance(o[12][0], Accepted)
    assert rejected(o[13], MsgType.AMEND, R.MAX_NOTIONAL)
    assert rejected(o[14], MsgType.AMEND, R.PRICE_BAND)
    assert rejected(o[16], MsgType.AMEND, R.POSITION_LIMIT)
    assert isinstance(o[19][0], Accepted)
    assert isinstance(o[21][0], Accepted)
    assert rejected(o[22], MsgType.AMEND, R.RATE_LIMIT)
    assert rejected(o[24], MsgType.AMEND, R.KILL_SWITCH)


@cocotb.test()
async def kill_switch_cancels_every_open_order(dut: Any) -> None:
    o = await scenario(dut, [new(1), new(2), VenueAck(2), new(3), VenueFill(3, 1, 1000), Cancel(1, 1),
                             KillSwitch(True), KillSwitch(True), KillSwitch(False), new(4)])
    assert o[6] == [CancelToVenue(2, SYM), StateChange(2, 1, SYM, S.SUBMITTED, S.CANCELLED, 0),
                    CancelToVenue(3, SYM), StateChange(3, 2, SYM, S.PARTIALLY_FILLED, S.CANCELLED, 1)]
    assert o[7] == [] and o[8] == []
    assert isinstance(o[9][0], Accepted)


@cocotb.test()
async def wide_arithmetic_beyond_64_bits(dut: Any) -> None:
    big = 2**63 - 1
    o = await scenario(dut, [
        RefPrice(3, 2**40), Limits(3, big, big, 10_000, big, big, 2**64 - 1),
        new(1, sym=3, price=2**40, qty=2**23, ts=1),     # notional 2^63 > 2^63-1: a 64-bit wrap would pass it
        new(2, sym=3, price=2**40, qty=2**22, ts=2),     # 2^62: accepted (bucket capacity ~2^127)
        new(3, sym=3, price=2**41, qty=1, ts=3),         # band: |2^41-2^40|*1e4 vs 1e4*2^40: equal, accepted
        new(4, sym=3, price=2**41 + 1, qty=1, ts=4),     # just outside the band
        Tick(2**63), Tick(5),                            # time is the max seen, never back
        new(5, sym=3, price=2**40, qty=1, ts=6),
    ], base=False)
    assert rejected(o[2], MsgType.NEW_ORDER, R.MAX_NOTIONAL)
    assert isinstance(o[3][0], Accepted) and isinstance(o[4][0], Accepted)
    assert rejected(o[5], MsgType.NEW_ORDER, R.PRICE_BAND)
    assert isinstance(o[8][0], Accepted) and o[8][0] == Accepted(5, MsgType.NEW_ORDER, 2, 2**63)


@cocotb.test()
async def directed_coverage_complete(dut: Any) -> None:
    summary, missing = coverage_report()
    dut._log.info("directed coverage: %s", summary)
    assert not missing, f"the directed tests leave coverage bins empty: {missing}"
