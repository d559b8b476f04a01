"""The order kernel: a pure, deterministic reference model of the hardware order path.

``OrderKernel(slots=N).step(frame) -> [frames]`` consumes one inbound frame (see
`frames`) and returns the outbound frames it causes, in a fixed order. There is no wall
clock: time is the largest ``ts_ns`` seen on NEW_ORDER, AMEND, CANCEL and TICK frames
(time never goes backwards; an older ts is clamped to the current time).

Order table: N slots; a new order takes the lowest free slot; a slot is freed the moment
its order reaches a terminal state (FILLED, CANCELLED, REJECTED, EXPIRED). Client order
ids must be unique among *open* orders (the RTL looks them up with a CAM over the slots);
an id may be reused once its order is terminal.

Lifecycle (``TRANSITIONS``; anything else raises `IllegalTransition`)::

    PENDING          -> SUBMITTED | PARTIALLY_FILLED | FILLED | CANCELLED | REJECTED | EXPIRED
    SUBMITTED        -> PARTIALLY_FILLED | FILLED | CANCELLED | REJECTED | EXPIRED
    PARTIALLY_FILLED -> PARTIALLY_FILLED | FILLED | CANCELLED | EXPIRED
    FILLED, CANCELLED, REJECTED, EXPIRED: terminal

PENDING = accepted by the kernel and sent to the venue, not yet acknowledged; VENUE_ACK
moves it to SUBMITTED. A fill may overtake the ack (PENDING -> PARTIALLY_FILLED/FILLED).

Pre-trade checks, in this fixed priority order (the first failing one is the reason):

    NEW_ORDER                                   AMEND
    1 KILL_SWITCH    kill switch engaged        1 KILL_SWITCH
    2 DUPLICATE_ID   cl id already open         10 UNKNOWN_ORDER  no open order with that id
    3 TABLE_FULL     no free slot               4 INVALID_ORDER   both fields 0, negative, price on a
    4 INVALID_ORDER  qty <= 0; limit price <= 0;                  market order, new qty <= filled qty
                     market price != 0; deadline != 0 and <= now
    5 MAX_QTY        qty > max_qty              5..9 as for NEW_ORDER, on the amended order
    6 MAX_NOTIONAL   qty * price > max_notional (market orders: price = reference price)
    7 PRICE_BAND     no reference price (<= 0), or |price - ref| * 10000 > band_bps * ref (limit orders)
    8 POSITION_LIMIT buy:  position + open buy remaining + qty  > position_limit
                     sell: open sell remaining + qty - position > position_limit
                     (for AMEND the order's own remaining is replaced by its new remaining)
    9 RATE_LIMIT     token bucket of the symbol is empty (only this check consumes a token)

Limits are per symbol (LIMITS frame). A symbol without LIMITS has all limits 0, so every
order on it fails MAX_QTY: the kernel fails closed. Token bucket, division-free for the RTL:
a level in ns, capacity ``rate_burst * rate_interval_ns``, refilled by the elapsed event time
(capped at capacity), an order needs and consumes ``rate_interval_ns``; so up to
``rate_burst`` orders at once and one more per ``rate_interval_ns``. ``rate_interval_ns`` 0
disables the rate check. A LIMITS frame fills a new bucket; for an existing bucket it
refills to now and caps the level at the new capacity.

Outbound sequence per inbound frame (the contract; the RTL emits the same frames in order):

    any frame with ts_ns  first: the expiry sweep, for each open order with
                          0 < deadline_ns <= now, by ascending slot:
                          CANCEL_TO_VENUE, STATE_CHANGE(old->EXPIRED), EXPIRED
    NEW_ORDER  accepted:  ACCEPTED(request=NEW_ORDER, slot), SUBMIT_TO_VENUE        (state PENDING)
               refused:   REJECTED(request=NEW_ORDER, reason)
    AMEND      accepted:  ACCEPTED(request=AMEND, slot), AMEND_TO_VENUE           (same slot, same id, same state)
               refused:   REJECTED(request=AMEND, reason)                         (order unchanged)
    CANCEL     open:      CANCEL_TO_VENUE, STATE_CHANGE(old->CANCELLED)
               unknown:   REJECTED(request=CANCEL, UNKNOWN_ORDER)
    VENUE_ACK  PENDING:   STATE_CHANGE(PENDING->SUBMITTED); other open states: nothing
    VENUE_FILL            STATE_CHANGE(old->PARTIALLY_FILLED | FILLED, filled, last qty/price);
                          position += qty (buy) or -= qty (sell)
               refused:   REJECTED(request=VENUE_FILL, INVALID_ORDER if qty or price <= 0,
                          OVERFILL if filled + qty > qty; nothing is applied)
    VENUE_REJECT          PENDING/SUBMITTED: STATE_CHANGE(old->REJECTED);
                          PARTIALLY_FILLED: REJECTED(request=VENUE_REJECT, BAD_STATE)
    VENUE_CANCELLED       any open state: STATE_CHANGE(old->CANCELLED) (no CANCEL_TO_VENUE: the venue
                          already closed it)
    venue frame, unknown id: REJECTED(request=<that type>, UNKNOWN_ORDER)
    KILL_SWITCH on:       for each open order by ascending slot: CANCEL_TO_VENUE, STATE_CHANGE(old->CANCELLED)
    KILL_SWITCH off, REF_PRICE, LIMITS, TICK: nothing (besides the expiry sweep for TICK)

REJECTED and ACCEPTED carry ts_ns = the kernel's current time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .frames import (
    Accepted,
    Amend,
    AmendToVenue,
    Cancel,
    CancelToVenue,
    Expired,
    FrameError,
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
    msg_type_of,
)

S = OrderState
TRANSITIONS: Final[dict[OrderState, frozenset[OrderState]]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED}),
    S.SUBMITTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL: Final = frozenset(s for s, nexts in TRANSITIONS.items() if not nexts)
BPS: Final = 10_000


class IllegalTransition(RuntimeError):
    """An order state change the lifecycle does not allow."""


def transition(old: OrderState, new: OrderState) -> OrderState:
    """Return ``new`` if old -> new is in the transition table, else raise IllegalTransition."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"illegal order state transition {old.name} -> {new.name}")
    return new


@dataclass(slots=True)
class _Order:
    slot: int
    client_order_id: int
    symbol: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    deadline_ns: int
    filled: int = 0
    state: OrderState = S.PENDING

    @property
    def remaining(self) -> int:
        return self.qty - self.filled


@dataclass(frozen=True, slots=True)
class OrderView:
    """A read-only snapshot of one occupied slot."""

    slot: int
    client_order_id: int
    symbol: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    filled: int
    state: OrderState
    deadline_ns: int


@dataclass(slots=True)
class _Bucket:
    level: int
    last_ns: int


class OrderKernel:
    """The order table, limits and pre-trade checks; one inbound frame in, outbound frames out."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots: Final = slots
        self._table: list[_Order | None] = [None] * slots
        self._by_id: dict[int, int] = {}
        self._limits: dict[int, Limits] = {}
        self._ref: dict[int, int] = {}
        self._position: dict[int, int] = {}
        self._buckets: dict[int, _Bucket] = {}
        self.now_ns = 0
        self.kill_switch = False

    # ------------------------------------------------------------ inspection

    def orders(self) -> tuple[OrderView, ...]:
        """The open orders, by ascending slot."""
        return tuple(
            OrderView(
                o.slot, o.client_order_id, o.symbol, o.side, o.order_type, o.tif, o.price, o.qty, o.filled, o.state,
                o.deadline_ns,
            )
            for o in self._table
            if o is not None
        )

    def position(self, symbol: int) -> int:
        return self._position.get(symbol, 0)

    # ------------------------------------------------------------ the step

    def step(self, frame_in: bytes) -> list[bytes]:
        """Process one inbound frame; FrameError (state untouched) if it is malformed or not inbound."""
        msg = decode(frame_in)
        if msg_type_of(msg) >= 0x80:
            raise FrameError(f"{msg_type_of(msg).name} is an outbound message; the kernel takes inbound frames only")
        return [encode(m) for m in self.step_message(msg)]

    def step_message(self, msg: Message) -> list[Message]:
        """The same as `step`, on a decoded message (the frames are the contract; this is its model)."""
        out: list[Message] = []
        if isinstance(msg, NewOrder | Amend | Cancel | Tick):
            self.now_ns = max(self.now_ns, msg.ts_ns)
            self._sweep(out)
        match msg:
            case NewOrder():
                self._new_order(msg, out)
            case Amend():
                self._amend(msg, out)
            case Cancel():
                self._cancel(msg, out)
            case VenueAck():
                self._ack(msg, out)
            case VenueFill():
                self._fill(msg, out)
            case VenueReject():
                self._venue_reject(msg, out)
            case VenueCancelled():
                self._venue_cancelled(msg, out)
            case RefPrice():
                self._ref[msg.symbol] = msg.price
            case Limits():
                self._set_limits(msg)
            case KillSwitch():
                self._kill(msg, out)
            case Tick():
                pass
            case _:
                raise FrameError(f"{type(msg).__name__} is not an inbound message")
        return out

    # ------------------------------------------------------------ helpers

    def _reject(self, out: list[Message], cid: int, request: MsgType, reason: Reason) -> None:
        out.append(Rejected(cid, request, reason, self.now_ns))

    def _move(self, order: _Order, new: OrderState, out: list[Message], last_qty: int = 0, last_price: int = 0) -> None:
        old = order.state
        order.state = transition(old, new)
        out.append(StateChange(order.client_order_id, order.slot, order.symbol, old, new, order.filled, last_qty,
                               last_price))
        if new in TERMINAL:
            self._table[order.slot] = None
            del self._by_id[order.client_order_id]

    def _open(self, cid: int) -> _Order | None:
        slot = self._by_id.get(cid)
        return None if slot is None else self._table[slot]

    def _sweep(self, out: list[Message]) -> None:
        for order in list(self._table):
            if order is not None and 0 < order.deadline_ns <= self.now_ns:
                out.append(CancelToVenue(order.client_order_id, order.symbol))
                self._move(order, S.EXPIRED, out)
                out.append(Expired(order.client_order_id, order.symbol, self.now_ns, order.filled))

    def _limits_of(self, symbol: int) -> Limits:
        return self._limits.get(symbol) or Limits(symbol, 0, 0, 0, 0, 0, 0)

    def _refill(self, symbol: int, lim: Limits) -> _Bucket:
        cap = lim.rate_burst * lim.rate_interval_ns
        bucket = self._buckets.get(symbol)
        if bucket is None:
            bucket = self._buckets[symbol] = _Bucket(cap, self.now_ns)
        bucket.level = min(cap, bucket.level + (self.now_ns - bucket.last_ns))
        bucket.last_ns = self.now_ns
        return bucket

    def _set_limits(self, msg: Limits) -> None:
        self._limits[msg.symbol] = msg
        self._refill(msg.symbol, msg)

    def _open_same_side(self, symbol: int, side: Side, excluding: int | None = None) -> int:
        return sum(
            o.remaining
            for o in self._table
            if o is not None and o.symbol == symbol and o.side == side and o.slot != excluding
        )

    def _risk(self, symbol: int, side: Side, order_type: OrderType, price: int, qty: int, remaining: int,
              excluding: int | None) -> Reason | None:
        """Checks 5..9; consumes a rate token only if all pass."""
        lim = self._limits_of(symbol)
        ref = self._ref.get(symbol, 0)
        if qty > lim.max_qty:
            return Reason.MAX_QTY
        eff_price = price if order_type == OrderType.LIMIT else ref
        if qty * eff_price > lim.max_notional:
            return Reason.MAX_NOTIONAL
        if ref <= 0:
            return Reason.PRICE_BAND
        if order_type == OrderType.LIMIT and abs(price - ref) * BPS > lim.band_bps * ref:
            return Reason.PRICE_BAND
        pos = self.position(symbol)
        same = self._open_same_side(symbol, side, excluding) + remaining
        exposure = pos + same if side == Side.BUY else same - pos
        if exposure > lim.position_limit:
            return Reason.POSITION_LIMIT
        if lim.rate_interval_ns > 0:
            bucket = self._refill(symbol, lim)
            if bucket.level < lim.rate_interval_ns:
                return Reason.RATE_LIMIT
            bucket.level -= lim.rate_interval_ns
        return None

    # ------------------------------------------------------------ handlers

    def _new_order(self, msg: NewOrder, out: list[Message]) -> None:
        cid = msg.client_order_id
        free = next((i for i, o in enumerate(self._table) if o is None), None)
        reason: Reason | None
        if self.kill_switch:
            reason = Reason.KILL_SWITCH
        elif cid in self._by_id:
            reason = Reason.DUPLICATE_ID
        elif free is None:
            reason = Reason.TABLE_FULL
        elif (
            msg.qty <= 0
            or (msg.order_type == OrderType.LIMIT and msg.price <= 0)
            or (msg.order_type == OrderType.MARKET and msg.price != 0)
            or (msg.deadline_ns != 0 and msg.deadline_ns <= self.now_ns)
        ):
            reason = Reason.INVALID_ORDER
        else:
            reason = self._risk(msg.symbol, msg.side, msg.order_type, msg.price, msg.qty, msg.qty, None)
        if reason is not None or free is None:
            self._reject(out, cid, MsgType.NEW_ORDER, reason or Reason.TABLE_FULL)
            return
        order = _Order(free, cid, msg.symbol, msg.side, msg.order_type, msg.tif, msg.price, msg.qty, msg.deadline_ns)
        self._table[free] = order
        self._by_id[cid] = free
        out.append(Accepted(cid, MsgType.NEW_ORDER, free, self.now_ns))
        out.append(SubmitToVenue(cid, msg.symbol, msg.side, msg.order_type, msg.tif, msg.price, msg.qty))

    def _amend(self, msg: Amend, out: list[Message]) -> None:
        cid = msg.client_order_id
        order = self._open(cid)
        reason: Reason | None
        if self.kill_switch:
            reason = Reason.KILL_SWITCH
        elif order is None:
            reason = Reason.UNKNOWN_ORDER
        else:
            new_price = msg.price or order.price
            new_qty = msg.qty or order.qty
            if (
                msg.price < 0
                or msg.qty < 0
                or (msg.price == 0 and msg.qty == 0)
                or (order.order_type == OrderType.MARKET and msg.price != 0)
                or new_qty <= order.filled
            ):
                reason = Reason.INVALID_ORDER
            else:
                reason = self._risk(order.symbol, order.side, order.order_type, new_price, new_qty,
                                    new_qty - order.filled, order.slot)
        if reason is not None or order is None:
            self._reject(out, cid, MsgType.AMEND, reason or Reason.UNKNOWN_ORDER)
            return
        order.price, order.qty = new_price, new_qty
        out.append(Accepted(cid, MsgType.AMEND, order.slot, self.now_ns))
        out.append(AmendToVenue(cid, order.symbol, order.price, order.qty))

    def _cancel(self, msg: Cancel, out: list[Message]) -> None:
        order = self._open(msg.client_order_id)
        if order is None:
            self._reject(out, msg.client_order_id, MsgType.CANCEL, Reason.UNKNOWN_ORDER)
            return
        out.append(CancelToVenue(order.client_order_id, order.symbol))
        self._move(order, S.CANCELLED, out)

    def _ack(self, msg: VenueAck, out: list[Message]) -> None:
        order = self._open(msg.client_order_id)
        if order is None:
            self._reject(out, msg.client_order_id, MsgType.VENUE_ACK, Reason.UNKNOWN_ORDER)
        elif order.state == S.PENDING:
            self._move(order, S.SUBMITTED, out)

    def _fill(self, msg: VenueFill, out: list[Message]) -> None:
        order = self._open(msg.client_order_id)
        if order is None:
            self._reject(out, msg.client_order_id, MsgType.VENUE_FILL, Reason.UNKNOWN_ORDER)
            return
        if msg.qty <= 0 or msg.price <= 0:
            self._reject(out, msg.client_order_id, MsgType.VENUE_FILL, Reason.INVALID_ORDER)
            return
        if order.filled + msg.qty > order.qty:
            self._reject(out, msg.client_order_id, MsgType.VENUE_FILL, Reason.OVERFILL)
            return
        order.filled += msg.qty
        signed = msg.qty if order.side == Side.BUY else -msg.qty
        self._position[order.symbol] = self.position(order.symbol) + signed
        new = S.FILLED if order.filled == order.qty else S.PARTIALLY_FILLED
        self._move(order, new, out, msg.qty, msg.price)

    def _venue_reject(self, msg: VenueReject, out: list[Message]) -> None:
        order = self._open(msg.client_order_id)
        if order is None:
            self._reject(out, msg.client_order_id, MsgType.VENUE_REJECT, Reason.UNKNOWN_ORDER)
        elif order.state == S.PARTIALLY_FILLED:
            self._reject(out, msg.client_order_id, MsgType.VENUE_REJECT, Reason.BAD_STATE)
        else:
            self._move(order, S.REJECTED, out)

    def _venue_cancelled(self, msg: VenueCancelled, out: list[Message]) -> None:
        order = self._open(msg.client_order_id)
        if order is None:
            self._reject(out, msg.client_order_id, MsgType.VENUE_CANCELLED, Reason.UNKNOWN_ORDER)
        else:
            self._move(order, S.CANCELLED, out)

    def _kill(self, msg: KillSwitch, out: list[Message]) -> None:
        self.kill_switch = msg.engaged
        if msg.engaged:
            for order in list(self._table):
                if order is not None:
                    out.append(CancelToVenue(order.client_order_id, order.symbol))
                    self._move(order, S.CANCELLED, out)
