"""The binary message contract between the engine and the order kernel.

This module is THE one definition of the frames; the RTL in hw/ implements the same table.
Every frame is exactly ``FRAME_LEN`` = 64 bytes, little-endian, integers only:

- prices in ticks (int64), quantities in lots (int64), times in ns (uint64),
- symbols as a small integer id (uint16), client order ids as uint64,
- side / order type / time in force / reason / state as uint8 enums.

Common frame layout (a fixed 8-byte header, then seven 8-byte words)::

    offset width  slot   meaning
    ------ -----  -----  ---------------------------------------------
     0      1     type   message type (MsgType), always present
     1      1     b1     uint8 field, per message (else reserved, 0)
     2      1     b2     uint8 field, per message (else reserved, 0)
     3      1     b3     uint8 field, per message (else reserved, 0)
     4      1     b4     uint8 field, per message (else reserved, 0)
     5      1     b5     uint8 field, per message (else reserved, 0)
     6      2     sym    uint16 symbol id (else reserved, 0)
     8      8     w0     client order id (uint64) where the message has one
    16      8     w1     64-bit field, per message (else reserved, 0)
    24      8     w2     64-bit field, per message (else reserved, 0)
    32      8     w3     64-bit field, per message (else reserved, 0)
    40      8     w4     64-bit field, per message (else reserved, 0)
    48      8     w5     64-bit field, per message (else reserved, 0)
    56      8     w6     64-bit field, per message (else reserved, 0)

Every byte a message does not use is reserved and MUST be zero; ``decode`` refuses a frame
whose reserved bytes are not. Types: u8/u16/u64 unsigned, i64 two's complement.

Per-message field map: ``offset:type field``; every offset not listed is reserved (0).

Inbound (engine -> kernel), type codes 0x01..0x0B::

    0x01 NEW_ORDER     1:u8 side  2:u8 order_type  3:u8 tif  6:u16 symbol  8:u64 client_order_id
                       16:u64 ts_ns  24:i64 price  32:i64 qty  40:u64 deadline_ns
    0x02 AMEND         8:u64 client_order_id  16:u64 ts_ns  24:i64 price  32:i64 qty
    0x03 CANCEL        8:u64 client_order_id  16:u64 ts_ns
    0x04 VENUE_ACK     8:u64 client_order_id
    0x05 VENUE_FILL    8:u64 client_order_id  24:i64 price  32:i64 qty
    0x06 VENUE_REJECT  8:u64 client_order_id
    0x07 REF_PRICE     6:u16 symbol  24:i64 price
    0x08 LIMITS        6:u16 symbol  16:i64 max_qty  24:i64 max_notional  32:i64 band_bps
                       40:i64 position_limit  48:i64 rate_burst  56:u64 rate_interval_ns
    0x09 KILL_SWITCH   1:u8 engaged (0 off, 1 on)
    0x0A TICK          16:u64 ts_ns
    0x0B VENUE_CANCELLED 8:u64 client_order_id

AMEND: price 0 = keep the price, qty 0 = keep the quantity (qty is the new total order
quantity, including what has already filled). NEW_ORDER: deadline_ns 0 = no deadline;
market orders carry price 0. VENUE_CANCELLED: the venue closed the order's unfilled rest on its
own (an ioc/market remainder, an order that arrived after its deadline, a venue-side cancel).

Outbound (kernel -> engine), type codes 0x81..0x87::

    0x81 ACCEPTED         1:u8 request  8:u64 client_order_id  16:u64 slot  24:u64 ts_ns
    0x82 REJECTED         1:u8 request  2:u8 reason  8:u64 client_order_id  16:u64 ts_ns
    0x83 SUBMIT_TO_VENUE  1:u8 side  2:u8 order_type  3:u8 tif  6:u16 symbol  8:u64 client_order_id
                          24:i64 price  32:i64 qty
    0x84 AMEND_TO_VENUE   6:u16 symbol  8:u64 client_order_id  24:i64 price  32:i64 qty
    0x85 CANCEL_TO_VENUE  6:u16 symbol  8:u64 client_order_id
    0x86 STATE_CHANGE     1:u8 old  2:u8 new  6:u16 symbol  8:u64 client_order_id  16:u64 slot
                          24:i64 filled_qty  32:i64 last_qty  40:i64 last_price
    0x87 EXPIRED          6:u16 symbol  8:u64 client_order_id  16:u64 ts_ns  24:i64 filled_qty

``request`` is the inbound MsgType the ACCEPTED / REJECTED answers. Enum codes are those of
the IntEnums below (0 is never a valid enum value, so an all-zero field is always caught).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, Final, NoReturn

FRAME_LEN: Final = 64


class FrameError(ValueError):
    """A frame (or a message to encode) that does not fit the contract."""


class MsgType(IntEnum):
    NEW_ORDER = 0x01
    AMEND = 0x02
    CANCEL = 0x03
    VENUE_ACK = 0x04
    VENUE_FILL = 0x05
    VENUE_REJECT = 0x06
    REF_PRICE = 0x07
    LIMITS = 0x08
    KILL_SWITCH = 0x09
    TICK = 0x0A
    VENUE_CANCELLED = 0x0B
    ACCEPTED = 0x81
    REJECTED = 0x82
    SUBMIT_TO_VENUE = 0x83
    AMEND_TO_VENUE = 0x84
    CANCEL_TO_VENUE = 0x85
    STATE_CHANGE = 0x86
    EXPIRED = 0x87


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    MARKET = 1
    LIMIT = 2


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3
    POST_ONLY = 4


class Reason(IntEnum):
    """Reject reasons. Values 1..9 are the pre-trade checks, numbered in priority order."""

    KILL_SWITCH = 1
    DUPLICATE_ID = 2
    TABLE_FULL = 3
    INVALID_ORDER = 4
    MAX_QTY = 5
    MAX_NOTIONAL = 6
    PRICE_BAND = 7
    POSITION_LIMIT = 8
    RATE_LIMIT = 9
    UNKNOWN_ORDER = 10
    OVERFILL = 11
    BAD_STATE = 12


class OrderState(IntEnum):
    PENDING = 1
    SUBMITTED = 2
    PARTIALLY_FILLED = 3
    FILLED = 4
    CANCELLED = 5
    REJECTED = 6
    EXPIRED = 7


# ---------------------------------------------------------------- messages (inbound)


@dataclass(frozen=True, slots=True)
class NewOrder:
    client_order_id: int
    symbol: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    ts_ns: int
    deadline_ns: int = 0


def limit_order(client_order_id: int, symbol: int, price: int, qty: int, *, side: Side = Side.BUY,
                tif: TimeInForce = TimeInForce.GTC, ts_ns: int = 0, deadline_ns: int = 0) -> NewOrder:
    """A limit NEW_ORDER (the one builder the model tests and the RTL benches share)."""
    return NewOrder(client_order_id, symbol, side, OrderType.LIMIT, tif, price, qty, ts_ns, deadline_ns)


def market_order(client_order_id: int, symbol: int, qty: int, *, side: Side = Side.BUY,
                 tif: TimeInForce = TimeInForce.IOC, ts_ns: int = 0, deadline_ns: int = 0) -> NewOrder:
    """A market NEW_ORDER: price 0, the kernel prices it at the symbol's reference price."""
    return NewOrder(client_order_id, symbol, side, OrderType.MARKET, tif, 0, qty, ts_ns, deadline_ns)


@dataclass(frozen=True, slots=True)
class Amend:
    client_order_id: int
    price: int
    qty: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Cancel:
    client_order_id: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class VenueAck:
    client_order_id: int


@dataclass(frozen=True, slots=True)
class VenueFill:
    client_order_id: int
    qty: int
    price: int


@dataclass(frozen=True, slots=True)
class VenueReject:
    client_order_id: int


@dataclass(frozen=True, slots=True)
class VenueCancelled:
    client_order_id: int


@dataclass(frozen=True, slots=True)
class RefPrice:
    symbol: int
    price: int


@dataclass(frozen=True, slots=True)
class Limits:
    symbol: int
    max_qty: int
    max_notional: int
    band_bps: int
    position_limit: int
    rate_burst: int
    rate_interval_ns: int


@dataclass(frozen=True, slots=True)
class KillSwitch:
    engaged: bool


@dataclass(frozen=True, slots=True)
class Tick:
    ts_ns: int


# ---------------------------------------------------------------- messages (outbound)


@dataclass(frozen=True, slots=True)
class Accepted:
    client_order_id: int
    request: MsgType
    slot: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Rejected:
    client_order_id: int
    request: MsgType
    reason: Reason
    ts_ns: int


@dataclass(frozen=True, slots=True)
class SubmitToVenue:
    client_order_id: int
    symbol: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class AmendToVenue:
    client_order_id: int
    symbol: int
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class CancelToVenue:
    client_order_id: int
    symbol: int


@dataclass(frozen=True, slots=True)
class StateChange:
    client_order_id: int
    slot: int
    symbol: int
    old: OrderState
    new: OrderState
    filled_qty: int
    last_qty: int = 0
    last_price: int = 0


@dataclass(frozen=True, slots=True)
class Expired:
    client_order_id: int
    symbol: int
    ts_ns: int
    filled_qty: int


InboundMessage = (NewOrder | Amend | Cancel | VenueAck | VenueFill | VenueReject | RefPrice | Limits | KillSwitch | Tick
                  | VenueCancelled)
OutboundMessage = Accepted | Rejected | SubmitToVenue | AmendToVenue | CancelToVenue | StateChange | Expired
Message = InboundMessage | OutboundMessage

# ---------------------------------------------------------------- layout table

# The 14 slots of the common layout, in order: (name, offset, struct char of the slot when reserved).
_SLOTS: Final = (
    ("type", 0, "B"),
    ("b1", 1, "B"),
    ("b2", 2, "B"),
    ("b3", 3, "B"),
    ("b4", 4, "B"),
    ("b5", 5, "B"),
    ("sym", 6, "H"),
    ("w0", 8, "Q"),
    ("w1", 16, "Q"),
    ("w2", 24, "Q"),
    ("w3", 32, "Q"),
    ("w4", 40, "Q"),
    ("w5", 48, "Q"),
    ("w6", 56, "Q"),
)
_SLOT_INDEX: Final = {name: i for i, (name, _, _) in enumerate(_SLOTS)}
SLOT_OFFSETS: Final = {name: offset for name, offset, _ in _SLOTS}

# Field kinds: "u8" (plain byte), "bool", an IntEnum class, "u16", "u64", "i64".
_Kind = str | type[IntEnum]
_CHAR: Final = {"u8": "B", "bool": "B", "u16": "H", "u64": "Q", "i64": "q"}
_RANGE: Final = {
    "u8": (0, 0xFF),
    "bool": (0, 1),
    "u16": (0, 0xFFFF),
    "u64": (0, 2**64 - 1),
    "i64": (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    slot: str
    kind: _Kind


@dataclass(frozen=True, slots=True)
class _Spec:
    cls: type[Any]
    msg_type: MsgType
    fields: tuple[_Field, ...]
    struct: struct.Struct
    # Precomputed once per message type: the engine encodes and decodes ~15 frames per order.
    index: tuple[int, ...] = ()       # slot index of each field, in field order
    reserved: tuple[int, ...] = ()    # slot indexes the message does not use (must be 0)
    # The fast paths (see encode/decode): the types a well-formed message's fields have, in field order,
    # and per dataclass field (constructor order) its slot and, for an enum, its value -> member table.
    field_types: tuple[type[Any], ...] = ()
    plan: tuple[tuple[int, dict[int, Any] | None, bool], ...] = ()


def _f(name: str, slot: str, kind: _Kind) -> _Field:
    return _Field(name, slot, kind)


_LAYOUTS: Final[dict[MsgType, tuple[type[Any], tuple[_Field, ...]]]] = {
    MsgType.NEW_ORDER: (
        NewOrder,
        (
            _f("side", "b1", Side),
            _f("order_type", "b2", OrderType),
            _f("tif", "b3", TimeInForce),
            _f("symbol", "sym", "u16"),
            _f("client_order_id", "w0", "u64"),
            _f("ts_ns", "w1", "u64"),
            _f("price", "w2", "i64"),
            _f("qty", "w3", "i64"),
            _f("deadline_ns", "w4", "u64"),
        ),
    ),
    MsgType.AMEND: (
        Amend,
        (
            _f("client_order_id", "w0", "u64"),
            _f("ts_ns", "w1", "u64"),
            _f("price", "w2", "i64"),
            _f("qty", "w3", "i64"),
        ),
    ),
    MsgType.CANCEL: (Cancel, (_f("client_order_id", "w0", "u64"), _f("ts_ns", "w1", "u64"))),
    MsgType.VENUE_ACK: (VenueAck, (_f("client_order_id", "w0", "u64"),)),
    MsgType.VENUE_FILL: (
        VenueFill,
        (_f("client_order_id", "w0", "u64"), _f("price", "w2", "i64"), _f("qty", "w3", "i64")),
    ),
    MsgType.VENUE_REJECT: (VenueReject, (_f("client_order_id", "w0", "u64"),)),
    MsgType.REF_PRICE: (RefPrice, (_f("symbol", "sym", "u16"), _f("price", "w2", "i64"))),
    MsgType.LIMITS: (
        Limits,
        (
            _f("symbol", "sym", "u16"),
            _f("max_qty", "w1", "i64"),
            _f("max_notional", "w2", "i64"),
            _f("band_bps", "w3", "i64"),
            _f("position_limit", "w4", "i64"),
            _f("rate_burst", "w5", "i64"),
            _f("rate_interval_ns", "w6", "u64"),
        ),
    ),
    MsgType.KILL_SWITCH: (KillSwitch, (_f("engaged", "b1", "bool"),)),
    MsgType.TICK: (Tick, (_f("ts_ns", "w1", "u64"),)),
    MsgType.VENUE_CANCELLED: (VenueCancelled, (_f("client_order_id", "w0", "u64"),)),
    MsgType.ACCEPTED: (
        Accepted,
        (
            _f("request", "b1", MsgType),
            _f("client_order_id", "w0", "u64"),
            _f("slot", "w1", "u64"),
            _f("ts_ns", "w2", "u64"),
        ),
    ),
    MsgType.REJECTED: (
        Rejected,
        (
            _f("request", "b1", MsgType),
            _f("reason", "b2", Reason),
            _f("client_order_id", "w0", "u64"),
            _f("ts_ns", "w1", "u64"),
        ),
    ),
    MsgType.SUBMIT_TO_VENUE: (
        SubmitToVenue,
        (
            _f("side", "b1", Side),
            _f("order_type", "b2", OrderType),
            _f("tif", "b3", TimeInForce),
            _f("symbol", "sym", "u16"),
            _f("client_order_id", "w0", "u64"),
            _f("price", "w2", "i64"),
            _f("qty", "w3", "i64"),
        ),
    ),
    MsgType.AMEND_TO_VENUE: (
        AmendToVenue,
        (
            _f("symbol", "sym", "u16"),
            _f("client_order_id", "w0", "u64"),
            _f("price", "w2", "i64"),
            _f("qty", "w3", "i64"),
        ),
    ),
    MsgType.CANCEL_TO_VENUE: (CancelToVenue, (_f("symbol", "sym", "u16"), _f("client_order_id", "w0", "u64"))),
    MsgType.STATE_CHANGE: (
        StateChange,
        (
            _f("old", "b1", OrderState),
            _f("new", "b2", OrderState),
            _f("symbol", "sym", "u16"),
            _f("client_order_id", "w0", "u64"),
            _f("slot", "w1", "u64"),
            _f("filled_qty", "w2", "i64"),
            _f("last_qty", "w3", "i64"),
            _f("last_price", "w4", "i64"),
        ),
    ),
    MsgType.EXPIRED: (
        Expired,
        (
            _f("symbol", "sym", "u16"),
            _f("client_order_id", "w0", "u64"),
            _f("ts_ns", "w1", "u64"),
            _f("filled_qty", "w2", "i64"),
        ),
    ),
}


def _char(kind: _Kind) -> str:
    return "B" if isinstance(kind, type) else _CHAR[kind]


def _decode_step(fld: _Field) -> tuple[int, dict[int, Any] | None, bool]:
    """(slot index, value -> member table for an enum field, whether it is a bool)."""
    members = {int(m): m for m in fld.kind} if isinstance(fld.kind, type) else None
    return _SLOT_INDEX[fld.slot], members, fld.kind == "bool"


def _build_specs() -> tuple[dict[MsgType, _Spec], dict[type[Any], _Spec]]:
    by_type: dict[MsgType, _Spec] = {}
    by_cls: dict[type[Any], _Spec] = {}
    for msg_type, (cls, flds) in _LAYOUTS.items():
        chars = [c for _, _, c in _SLOTS]
        used: set[str] = set()
        for fld in flds:
            assert fld.slot not in used, f"{cls.__name__}: slot {fld.slot} used twice"
            used.add(fld.slot)
            reserved_char = _SLOTS[_SLOT_INDEX[fld.slot]][2]
            assert _char(fld.kind).upper() == reserved_char, f"{cls.__name__}.{fld.name} does not fit {fld.slot}"
            chars[_SLOT_INDEX[fld.slot]] = _char(fld.kind)
        assert {f.name for f in fields(cls)} == {f.name for f in flds}, f"{cls.__name__}: layout misses a field"
        st = struct.Struct("<" + "".join(chars))
        assert st.size == FRAME_LEN
        index = tuple(_SLOT_INDEX[f.slot] for f in flds)
        reserved = tuple(i for i in range(1, len(_SLOTS)) if i not in index)
        field_types = tuple(f.kind if isinstance(f.kind, type) else bool if f.kind == "bool" else int for f in flds)
        by_name = {f.name: f for f in flds}
        plan = tuple(_decode_step(by_name[d.name]) for d in fields(cls))
        spec = _Spec(cls, msg_type, flds, st, index, reserved, field_types, plan)
        by_type[msg_type] = spec
        by_cls[cls] = spec
    return by_type, by_cls


_BY_TYPE, _BY_CLS = _build_specs()

INBOUND_TYPES: Final = frozenset(t for t in MsgType if t < 0x80)
OUTBOUND_TYPES: Final = frozenset(t for t in MsgType if t >= 0x80)


def _kind_name(kind: _Kind) -> str:
    return kind.__name__ if isinstance(kind, type) else kind


def encode(msg: Message) -> bytes:
    """Encode a message into one FRAME_LEN-byte frame; FrameError if a field is out of range."""
    spec = _BY_CLS.get(type(msg))
    if spec is None:
        raise FrameError(f"cannot encode {type(msg).__name__}: not a frame message")
    # Fast path (the engine encodes ~8 frames per order): every field already has its proper type, so
    # struct.pack's own range checks are the only ones left; anything else takes the checked path,
    # which gives the precise error.
    raw = [getattr(msg, f.name) for f in spec.fields]
    if tuple(map(type, raw)) == spec.field_types:
        values = [0] * len(_SLOTS)
        values[0] = spec.msg_type
        for slot, value in zip(spec.index, raw, strict=True):
            values[slot] = value
        try:
            return spec.struct.pack(*values)
        except struct.error:
            pass
    return _encode_checked(msg, spec)


def _encode_checked(msg: Message, spec: _Spec) -> bytes:
    values: list[int] = [0] * len(_SLOTS)
    values[0] = spec.msg_type
    for fld, slot in zip(spec.fields, spec.index, strict=True):
        raw = getattr(msg, fld.name)
        if isinstance(fld.kind, type):
            try:
                value = int(fld.kind(raw))
            except (ValueError, TypeError):
                raise FrameError(f"{type(msg).__name__}.{fld.name}={raw!r} is not a {fld.kind.__name__}") from None
        else:
            if not isinstance(raw, int):  # bool is an int
                raise FrameError(f"{type(msg).__name__}.{fld.name}={raw!r} is not an integer")
            value = int(raw)
            lo, hi = _RANGE[fld.kind]
            if not lo <= value <= hi:
                raise FrameError(f"{type(msg).__name__}.{fld.name}={value} is out of range for {fld.kind} "
                                 f"[{lo}, {hi}]")
        values[slot] = value
    return spec.struct.pack(*values)


def decode(frame: bytes) -> Message:
    """Decode one frame; FrameError on a wrong length, an unknown type, a bad enum or non-zero reserved bytes."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise FrameError(f"frame must be bytes, got {type(frame).__name__}")
    if len(frame) != FRAME_LEN:
        raise FrameError(f"frame is {len(frame)} bytes, expected {FRAME_LEN}")
    spec = _BY_TYPE.get(frame[0])  # type: ignore[call-overload]
    if spec is None:
        raise FrameError(f"unknown message type 0x{frame[0]:02x}")
    values = spec.struct.unpack(frame)
    for i in spec.reserved:
        if values[i] != 0:
            slot, offset, char = _SLOTS[i]
            width = struct.calcsize(char)
            raise FrameError(
                f"{spec.msg_type.name}: reserved {slot} (offset {offset}, {width} bytes) is {values[i]:#x}, must be 0"
            )
    args: list[Any] = []
    for i, members, is_bool in spec.plan:
        value = values[i]
        if members is not None:
            member = members.get(value)
            if member is None:
                _decode_error(spec, values)
            value = member
        elif is_bool:
            if value > 1:
                _decode_error(spec, values)
            value = value == 1
        args.append(value)
    msg: Message = spec.cls(*args)
    return msg


def _decode_error(spec: _Spec, values: tuple[int, ...]) -> NoReturn:
    """Raise the FrameError naming the first field of `values` that is not valid."""
    for fld, i in zip(spec.fields, spec.index, strict=True):
        value = values[i]
        if isinstance(fld.kind, type) and value not in {int(m) for m in fld.kind}:
            raise FrameError(f"{spec.msg_type.name}.{fld.name}={value} is not a valid {_kind_name(fld.kind)}")
        if fld.kind == "bool" and value not in (0, 1):
            raise FrameError(f"{spec.msg_type.name}.{fld.name}={value} must be 0 or 1")
    raise AssertionError(f"{spec.msg_type.name}: no invalid field in {values}")  # decode found one


def msg_type_of(msg: Message) -> MsgType:
    """The message type code of a message object."""
    spec = _BY_CLS.get(type(msg))
    if spec is None:
        raise FrameError(f"{type(msg).__name__} is not a frame message")
    return spec.msg_type


def field_offsets(msg_type: MsgType) -> dict[str, tuple[int, str]]:
    """Each field of a message type: (byte offset, struct char). For tests and the RTL generator."""
    _, flds = _LAYOUTS[msg_type]
    return {f.name: (SLOT_OFFSETS[f.slot], _char(f.kind)) for f in flds}
