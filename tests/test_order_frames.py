"""The order kernel's binary frame contract: round trips, the documented layout, garbled frames."""

from __future__ import annotations

import re
import struct
from dataclasses import FrozenInstanceError, fields, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.orders import frames as fr
from allele.kernel.orders.frames import (
    FRAME_LEN,
    Accepted,
    Amend,
    AmendToVenue,
    Cancel,
    CancelToVenue,
    Expired,
    FrameError,
    KillSwitch,
    Limits,
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
)

u16 = st.integers(0, 2**16 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)

STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    NewOrder: st.builds(NewOrder, u64, u16, st.sampled_from(Side), st.sampled_from(OrderType),
                        st.sampled_from(TimeInForce), i64, i64, u64, u64),
    Amend: st.builds(Amend, u64, i64, i64, u64),
    Cancel: st.builds(Cancel, u64, u64),
    VenueAck: st.builds(VenueAck, u64),
    VenueFill: st.builds(VenueFill, u64, i64, i64),
    VenueReject: st.builds(VenueReject, u64),
    VenueCancelled: st.builds(VenueCancelled, u64),
    RefPrice: st.builds(RefPrice, u16, i64),
    Limits: st.builds(Limits, u16, i64, i64, i64, i64, i64, u64),
    KillSwitch: st.builds(KillSwitch, st.booleans()),
    Tick: st.builds(Tick, u64),
    Accepted: st.builds(Accepted, u64, st.sampled_from([MsgType.NEW_ORDER, MsgType.AMEND]), u64, u64),
    Rejected: st.builds(Rejected, u64, st.sampled_from(MsgType), st.sampled_from(Reason), u64),
    SubmitToVenue: st.builds(SubmitToVenue, u64, u16, st.sampled_from(Side), st.sampled_from(OrderType),
                             st.sampled_from(TimeInForce), i64, i64),
    AmendToVenue: st.builds(AmendToVenue, u64, u16, i64, i64),
    CancelToVenue: st.builds(CancelToVenue, u64, u16),
    StateChange: st.builds(StateChange, u64, u64, u16, st.sampled_from(OrderState), st.sampled_from(OrderState),
                           i64, i64, i64),
    Expired: st.builds(Expired, u64, u16, u64, i64),
}
any_message = st.one_of(*STRATEGIES.values())

# One hand-made instance per message type (every field non-zero where it can be).
EXAMPLES: list[Any] = [
    NewOrder(11, 3, Side.SELL, OrderType.LIMIT, TimeInForce.IOC, 101, 7, 1_000, 2_000),
    Amend(11, 102, 8, 1_001),
    Cancel(11, 1_002),
    VenueAck(11),
    VenueFill(11, 3, 101),
    VenueReject(11),
    VenueCancelled(11),
    RefPrice(3, 100),
    Limits(3, 1, 2, 3, 4, 5, 6),
    KillSwitch(True),
    Tick(5_000),
    Accepted(11, MsgType.NEW_ORDER, 4, 1_000),
    Rejected(11, MsgType.AMEND, Reason.RATE_LIMIT, 1_000),
    SubmitToVenue(11, 3, Side.BUY, OrderType.MARKET, TimeInForce.POST_ONLY, 1, 7),
    AmendToVenue(11, 3, 102, 8),
    CancelToVenue(11, 3),
    StateChange(11, 4, 3, OrderState.PENDING, OrderState.SUBMITTED, 1, 2, 3),
    Expired(11, 3, 2_000, 3),
]


def test_every_message_type_has_a_strategy_an_example_and_a_code() -> None:
    assert {fr.msg_type_of(m) for m in EXAMPLES} == set(MsgType)
    assert {type(m) for m in EXAMPLES} == set(STRATEGIES)
    assert fr.INBOUND_TYPES | fr.OUTBOUND_TYPES == set(MsgType)


@given(any_message)
def test_round_trip_and_fixed_length(msg: Any) -> None:
    frame = encode(msg)
    assert len(frame) == FRAME_LEN == 64
    assert frame[0] == fr.msg_type_of(msg)
    back = decode(frame)
    assert back == msg
    assert type(back) is type(msg)
    assert encode(back) == frame


@given(any_message)
def test_unused_bytes_are_zero(msg: Any) -> None:
    frame = encode(msg)
    used: set[int] = {0}
    for offset, char in fr.field_offsets(fr.msg_type_of(msg)).values():
        used.update(range(offset, offset + struct.calcsize("<" + char)))
    assert all(frame[i] == 0 for i in range(FRAME_LEN) if i not in used)


def test_new_order_offsets_match_the_table() -> None:
    frame = bytearray(64)
    frame[0] = 0x01
    frame[1] = 2  # side SELL
    frame[2] = 2  # LIMIT
    frame[3] = 3  # FOK
    frame[6:8] = (0x0102).to_bytes(2, "little")
    frame[8:16] = (0x1122334455667788).to_bytes(8, "little")
    frame[16:24] = (1_700_000_000_000_000_000).to_bytes(8, "little")
    frame[24:32] = (-5).to_bytes(8, "little", signed=True)
    frame[32:40] = (42).to_bytes(8, "little", signed=True)
    frame[40:48] = (2**64 - 1).to_bytes(8, "little")
    assert decode(bytes(frame)) == NewOrder(
        client_order_id=0x1122334455667788, symbol=0x0102, side=Side.SELL, order_type=OrderType.LIMIT,
        tif=TimeInForce.FOK, price=-5, qty=42, ts_ns=1_700_000_000_000_000_000, deadline_ns=2**64 - 1,
    )


def test_limits_offsets_match_the_table() -> None:
    frame = bytearray(64)
    frame[0] = 0x08
    frame[6:8] = (7).to_bytes(2, "little")
    for offset, value in zip(range(16, 64, 8), (10, 20, 30, 40, 50, 60), strict=True):
        frame[offset:offset + 8] = value.to_bytes(8, "little")
    assert decode(bytes(frame)) == Limits(7, 10, 20, 30, 40, 50, 60)


def test_outbound_offsets_match_the_table() -> None:
    frame = bytearray(64)
    frame[0] = 0x86
    frame[1], frame[2] = 3, 4  # PARTIALLY_FILLED -> FILLED
    frame[6:8] = (9).to_bytes(2, "little")
    frame[8:16] = (77).to_bytes(8, "little")
    frame[16:24] = (5).to_bytes(8, "little")
    frame[24:32] = (100).to_bytes(8, "little")
    frame[32:40] = (60).to_bytes(8, "little")
    frame[40:48] = (12345).to_bytes(8, "little")
    assert decode(bytes(frame)) == StateChange(77, 5, 9, OrderState.PARTIALLY_FILLED, OrderState.FILLED, 100, 60, 12345)
    rej = encode(Rejected(3, MsgType.AMEND, Reason.PRICE_BAND, 99))
    assert rej[:3] == bytes([0x82, 0x02, 0x07]) and rej[8:16] == (3).to_bytes(8, "little")
    assert rej[16:24] == (99).to_bytes(8, "little") and rej[24:] == bytes(40)


def test_documented_field_offsets() -> None:
    assert fr.field_offsets(MsgType.NEW_ORDER) == {
        "side": (1, "B"), "order_type": (2, "B"), "tif": (3, "B"), "symbol": (6, "H"), "client_order_id": (8, "Q"),
        "ts_ns": (16, "Q"), "price": (24, "q"), "qty": (32, "q"), "deadline_ns": (40, "Q"),
    }
    for msg_type in MsgType:
        offsets = fr.field_offsets(msg_type)
        if "client_order_id" in offsets:
            assert offsets["client_order_id"] == (8, "Q")
        if "symbol" in offsets:
            assert offsets["symbol"] == (6, "H")


@pytest.mark.parametrize("length", [0, 1, 63, 65, 128])
def test_wrong_length_refused(length: int) -> None:
    with pytest.raises(FrameError, match=rf"frame is {length} bytes, expected 64"):
        decode(b"\x0a" + bytes(max(0, length - 1)) if length else b"")


@pytest.mark.parametrize("code", [0x00, 0x0C, 0x80, 0x88, 0xFF])
def test_unknown_type_refused(code: int) -> None:
    with pytest.raises(FrameError, match=f"unknown message type 0x{code:02x}"):
        decode(bytes([code]) + bytes(63))


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_reserved_byte_is_checked(msg: Any) -> None:
    frame = encode(msg)
    used: set[int] = {0}
    for offset, char in fr.field_offsets(fr.msg_type_of(msg)).values():
        used.update(range(offset, offset + struct.calcsize("<" + char)))
    for i in set(range(FRAME_LEN)) - used:
        garbled = bytearray(frame)
        garbled[i] = 0x5A
        with pytest.raises(FrameError, match=r"reserved .* must be 0"):
            decode(bytes(garbled))


def test_bad_enum_and_bool_refused() -> None:
    good = encode(NewOrder(1, 1, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 10, 1, 1))
    for offset, name in ((1, "side"), (2, "order_type"), (3, "tif")):
        for bad in (0, 9):
            garbled = bytearray(good)
            garbled[offset] = bad
            with pytest.raises(FrameError, match=rf"NEW_ORDER\.{name}={bad} is not a valid"):
                decode(bytes(garbled))
    kill = bytearray(encode(KillSwitch(True)))
    kill[1] = 2
    with pytest.raises(FrameError, match="engaged=2 must be 0 or 1"):
        decode(bytes(kill))


def test_encode_refuses_out_of_range_fields() -> None:
    order = NewOrder(1, 1, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 10, 1, 1)
    with pytest.raises(FrameError, match=r"NewOrder\.symbol=65536 is out of range for u16"):
        encode(replace(order, symbol=2**16))
    with pytest.raises(FrameError, match=r"NewOrder\.price=.* out of range for i64"):
        encode(replace(order, price=2**63))
    with pytest.raises(FrameError, match=r"NewOrder\.client_order_id=-1 is out of range for u64"):
        encode(replace(order, client_order_id=-1))
    with pytest.raises(FrameError, match=r"NewOrder\.side=7 is not a Side"):
        encode(replace(order, side=7))
    with pytest.raises(FrameError, match=r"NewOrder\.qty='1' is not an integer"):
        encode(replace(order, qty="1"))
    not_a_message: Any = "hello"
    with pytest.raises(FrameError, match="cannot encode str"):
        encode(not_a_message)


def test_decode_refuses_non_bytes() -> None:
    not_bytes: Any = "x" * 64
    with pytest.raises(FrameError, match="frame must be bytes, got str"):
        decode(not_bytes)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_all_messages_are_frozen_dataclasses_with_slots(msg: Any) -> None:
    assert not hasattr(msg, "__dict__") and fields(msg)
    with pytest.raises(FrozenInstanceError):
        setattr(msg, fields(msg)[0].name, 1)


def _documented_layouts() -> dict[MsgType, dict[str, tuple[int, str]]]:
    """Parse the per-message field map out of the frames module docstring."""
    chars = {"u8": "B", "u16": "H", "u64": "Q", "i64": "q"}
    layouts: dict[MsgType, dict[str, tuple[int, str]]] = {}
    current: dict[str, tuple[int, str]] | None = None
    for line in (fr.__doc__ or "").splitlines():
        head = re.match(r"\s+0x([0-9A-F]{2}) (\w+)\s", line)
        if head:
            msg_type = MsgType(int(head.group(1), 16))
            assert msg_type.name == head.group(2)
            current = layouts[msg_type] = {}
        elif not line.startswith("      ") or not line.strip():
            current = None
            continue
        if current is not None:
            for offset, kind, name in re.findall(r"(\d+):(u8|u16|u64|i64) (\w+)", line):
                current[name] = (int(offset), chars[kind])
    return layouts


def test_docstring_table_is_the_layout() -> None:
    documented = _documented_layouts()
    assert set(documented) == set(MsgType)
    for msg_type, layout in documented.items():
        assert layout == fr.field_offsets(msg_type), msg_type.name
