"""Shared bench code for the order-kernel RTL: the frame driver, the scoreboard, coverage and stimulus.

The driver follows the kernel's contract (hw/rtl/order_kernel.v): a frame is taken on a rising
edge with in_valid && in_ready; outbound beats (out_valid && out_ready, 0..2 frames each) leave in
inbound order and the beat with out_eor closes one inbound frame's answer. Inputs are driven and
outputs sampled on the falling edge, so one `await` per clock is all the Python work a cycle costs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from cocotb_coverage.coverage import CoverPoint, coverage_db

from allele.kernel.orders.frames import (
    Amend,
    Cancel,
    KillSwitch,
    Limits,
    Message,
    MsgType,
    NewOrder,
    OrderState,
    OrderType,
    Reason,
    RefPrice,
    Side,
    Tick,
    TimeInForce,
    VenueAck,
    VenueCancelled,
    VenueFill,
    VenueReject,
    decode,
    encode,
)
from allele.kernel.orders.kernel import TRANSITIONS, OrderKernel
from allele.kernel.orders.port import SoftwareOrderKernel

CLOCK_NS = 4  # 250 MHz, the target clock of the latency claims


# ------------------------------------------------------------------ driver


@dataclass
class RunStats:
    cycles: int = 0
    taken_at: list[int] = field(default_factory=list)      # cycle each frame was taken
    first_out_at: list[int] = field(default_factory=list)  # cycle of each frame's first outbound frame (-1: none)


async def reset(dut: Any) -> None:
    """Start the clock and hold reset for a few cycles."""
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.in_data.value = 0
    dut.out_ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def restart(dut: Any) -> None:
    """Reset the kernel to empty (between scenarios and seeds); the clock keeps running."""
    dut.rst.value = 1
    dut.in_valid.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_frames(dut: Any, frames: Sequence[bytes], stats: RunStats | None = None, stall: float = 0.0,
                     rng: random.Random | None = None) -> list[list[bytes]]:
    """Drive `frames` back to back; return each frame's outbound frames, in order.

    Answers leave in inbound order: the beats up to and including the k-th `out_eor` beat are the
    k-th frame's. `stall` is the probability that `out_ready` is low in a clock (back-pressure,
    drawn from `rng`); the frames must not change with it.
    """
    ints = [int.from_bytes(f, "little") for f in frames]
    n = len(ints)
    outs: list[list[bytes]] = [[] for _ in range(n)]
    fe = FallingEdge(dut.clk)
    ov, on, oeor, od, od2 = dut.out_valid, dut.out_n, dut.out_eor, dut.out_data, dut.out_data2
    ir, iv, idata, ordy = dut.in_ready, dut.in_valid, dut.in_data, dut.out_ready
    if stall and rng is None:
        raise ValueError("run_frames: a stall probability needs an rng (random.Random) to draw it from")
    i = 0
    resp = 0
    cycle = 0
    taken: list[int] = []
    first: list[int] = [-1] * n
    while True:
        # in_ready and the output beat depend on registers only: sample, then drive the next edge
        ready = not (stall and rng is not None and rng.random() < stall)
        ordy.value = int(ready)
        if ov.value and ready:
            if resp >= len(taken):
                raise AssertionError("the kernel emitted a beat for a frame it was not given")
            count = int(on.value)
            if count and first[resp] < 0:
                first[resp] = cycle
            if count >= 1:
                outs[resp].append(od.value.to_unsigned().to_bytes(64, "little"))
            if count == 2:  # lane 1: the second frame of a pair, after lane 0
                outs[resp].append(od2.value.to_unsigned().to_bytes(64, "little"))
            if oeor.value:
                resp += 1
        if ir.value:
            if i < n:
                idata.value = ints[i]
                iv.value = 1
                taken.append(cycle)
                i += 1
            else:
                iv.value = 0
        if resp == n and i == n:
            iv.value = 0
            await fe  # the last beat leaves at this rising edge; the next call starts after it
            cycle += 1
            break
        await fe
        cycle += 1
    if stats is not None:
        stats.cycles += cycle
        stats.taken_at.extend(taken)
        stats.first_out_at.extend(first)
    return outs


# ------------------------------------------------------------------ scoreboard


def describe(frame: bytes) -> str:
    try:
        return repr(decode(frame))
    except Exception as exc:
        return f"<undecodable {frame.hex()}: {exc}>"


def compare(frames: Sequence[bytes], expected: Sequence[Sequence[bytes]], got: Sequence[Sequence[bytes]],
            context: str = "") -> None:
    """Frame-by-frame check of the RTL against the model; AssertionError names the first difference."""
    for k, (exp, act) in enumerate(zip(expected, got, strict=True)):
        if list(exp) != list(act):
            lines = [f"{context}inbound frame #{k}: {describe(frames[k])}", "  model:"]
            lines += [f"    {describe(x)}" for x in exp]
            lines.append("  rtl:")
            lines += [f"    {describe(x)}" for x in act]
            raise AssertionError("\n".join(lines))


def model_outputs(frames: Sequence[bytes], slots: int) -> list[list[bytes]]:
    model = SoftwareOrderKernel(slots)
    return [model.submit(f) for f in frames]


# ------------------------------------------------------------------ coverage

TRANSITION_BINS = [(old, new) for old, nexts in TRANSITIONS.items() for new in sorted(nexts)]
REJECT_BINS = (
    [(MsgType.NEW_ORDER, r) for r in (Reason.KILL_SWITCH, Reason.DUPLICATE_ID, Reason.TABLE_FULL, Reason.INVALID_ORDER,
                                      Reason.MAX_QTY, Reason.MAX_NOTIONAL, Reason.PRICE_BAND, Reason.POSITION_LIMIT,
                                      Reason.RATE_LIMIT)]
    + [(MsgType.AMEND, r) for r in (Reason.KILL_SWITCH, Reason.UNKNOWN_ORDER, Reason.INVALID_ORDER, Reason.MAX_QTY,
                                    Reason.MAX_NOTIONAL, Reason.PRICE_BAND, Reason.POSITION_LIMIT, Reason.RATE_LIMIT)]
    + [(MsgType.CANCEL, Reason.UNKNOWN_ORDER), (MsgType.VENUE_ACK, Reason.UNKNOWN_ORDER),
       (MsgType.VENUE_FILL, Reason.UNKNOWN_ORDER), (MsgType.VENUE_FILL, Reason.INVALID_ORDER),
       (MsgType.VENUE_FILL, Reason.OVERFILL), (MsgType.VENUE_REJECT, Reason.UNKNOWN_ORDER),
       (MsgType.VENUE_REJECT, Reason.BAD_STATE), (MsgType.VENUE_CANCELLED, Reason.UNKNOWN_ORDER)]
)
OUTBOUND_BINS = [t for t in MsgType if t >= 0x80]


@CoverPoint("order_kernel.transition", xf=lambda old, new: (old, new), bins=TRANSITION_BINS)  # type: ignore[untyped-decorator]
def _cover_transition(old: OrderState, new: OrderState) -> None:
    pass


@CoverPoint("order_kernel.reject", xf=lambda req, reason: (req, reason), bins=REJECT_BINS)  # type: ignore[untyped-decorator]
def _cover_reject(req: MsgType, reason: Reason) -> None:
    pass


@CoverPoint("order_kernel.outbound", xf=lambda t: t, bins=OUTBOUND_BINS)  # type: ignore[untyped-decorator]
def _cover_outbound(t: MsgType) -> None:
    pass


def sample_coverage(outs: Sequence[Sequence[bytes]]) -> None:
    """Sample the RTL's outbound frames into the coverage model."""
    for group in outs:
        for frame in group:
            t = frame[0]
            _cover_outbound(MsgType(t))
            if t == MsgType.STATE_CHANGE:
                _cover_transition(OrderState(frame[1]), OrderState(frame[2]))
            elif t == MsgType.REJECTED:
                _cover_reject(MsgType(frame[1]), Reason(frame[2]))


def coverage_report() -> tuple[dict[str, tuple[int, int]], list[str]]:
    """({cover point: (hit bins, bins)}, [missing bin descriptions])."""
    summary: dict[str, tuple[int, int]] = {}
    missing: list[str] = []
    for name in ("order_kernel.transition", "order_kernel.reject", "order_kernel.outbound"):
        cp = coverage_db[name]
        summary[name] = (cp.coverage, cp.size)
        for b, hits in cp.detailed_coverage.items():
            if hits == 0:
                missing.append(f"{name}: {_bin_name(b)}")
    return summary, missing


def _bin_name(b: Any) -> str:
    if isinstance(b, tuple):
        return " / ".join(getattr(x, "name", str(x)) for x in b)
    return getattr(b, "name", str(b))


# ------------------------------------------------------------------ constrained-random stimulus

SYMBOLS = (1, 2, 3)


class Stimulus:
    """Builds a legal inbound stream step by step, steering by the model's state.

    The stream is biased so that every transition and reject reason occurs: a small order table
    (TABLE_FULL), a kill switch that flips now and then, short deadlines (expiry), ids reused while
    open (DUPLICATE_ID), fills that overshoot (OVERFILL), prices outside the band, a symbol whose
    limits arrive late, rare extreme 64-bit values (the wide arithmetic), and a token bucket tight
    enough to run dry.
    """

    def __init__(self, seed: int, slots: int) -> None:
        self.rng = random.Random(seed)
        self.model = OrderKernel(slots)
        self.now = 0
        self.next_id = 1
        self.ref = {s: 1000 + 100 * s for s in SYMBOLS}
        self.orders = 0

    def _open(self) -> list[Any]:
        return list(self.model.orders())

    def _pick_open_id(self, unknown_p: float) -> int:
        opens = self._open()
        if not opens or self.rng.random() < unknown_p:
            return self.rng.choice((self.next_id + 1000, self.rng.randrange(1, 2**64), 0))
        return int(self.rng.choice(opens).client_order_id)

    def _ts(self) -> int:
        r = self.rng.random()
        if r < 0.04:
            return max(0, self.now - self.rng.randrange(1, 500))  # an older ts: clamped by the kernel
        self.now += self.rng.randrange(0, 400)
        return self.now

    def preamble(self) -> list[Message]:
        msgs: list[Message] = []
        for s in SYMBOLS[:2]:
            msgs.append(RefPrice(s, self.ref[s]))
            msgs.append(self._limits(s))
        return msgs

    def _limits(self, s: int) -> Limits:
        rng = self.rng
        if rng.random() < 0.05:  # extreme values exercise the wide arithmetic
            return Limits(s, rng.choice((2**63 - 1, 2**62)), rng.choice((2**63 - 1, -(2**63))), rng.randrange(0, 2**63),
                          rng.choice((2**63 - 1, 0)), rng.choice((2**63 - 1, -(2**63), 0, 3)),
                          rng.choice((0, 2**64 - 1, 700)))
        return Limits(s, max_qty=rng.choice((40, 60, 25)), max_notional=rng.choice((40_000, 60_000, 30_000)),
                      band_bps=rng.choice((300, 500, 800)), position_limit=rng.choice((80, 150, 300)),
                      rate_burst=rng.choice((3, 6, 10)), rate_interval_ns=rng.choice((0, 300, 600, 1500)))

    def next_message(self) -> Message:
        rng = self.rng
        r = rng.random()
        kill = self.model.kill_switch
        if kill and rng.random() < 0.3:
            return KillSwitch(False)
        if r < 0.50:
            return self._new_order()
        if r < 0.58:
            return self._amend()
        if r < 0.62:
            return Cancel(self._pick_open_id(0.15), self._ts())
        if r < 0.72:
            opens = [o for o in self._open() if o.state == OrderState.PENDING]
            if opens and rng.random() < 0.9:
                return VenueAck(int(rng.choice(opens).client_order_id))
            return VenueAck(self._pick_open_id(0.3))
        if r < 0.85:
            return self._fill()
        if r < 0.88:
            return VenueReject(self._pick_open_id(0.15))
        if r < 0.91:
            return VenueCancelled(self._pick_open_id(0.15))
        if r < 0.94:
            s = rng.choice(SYMBOLS)
            self.ref[s] = max(1, self.ref[s] + rng.randrange(-30, 31))
            price = self.ref[s] if rng.random() > 0.03 else rng.choice((0, -5, 2**63 - 1))
            return RefPrice(s, price)
        if r < 0.95:
            return self._limits(rng.choice(SYMBOLS))
        if r < 0.953:
            return KillSwitch(True)
        self.now = self._ts() + rng.choice((0, 0, 2000, 20_000))
        return Tick(self.now)

    def _new_order(self) -> NewOrder:
        rng = self.rng
        self.orders += 1
        opens = self._open()
        if opens and rng.random() < 0.04:
            cid = int(rng.choice(opens).client_order_id)
        else:
            cid = self.next_id
            self.next_id += 1
        s = rng.choice(SYMBOLS)
        market = rng.random() < 0.15
        ref = self.ref[s]
        if market:
            price = 0 if rng.random() > 0.02 else ref
        else:
            price = ref + rng.randrange(-ref // 12, ref // 12 + 1)
            x = rng.random()
            if x < 0.02:
                price = rng.choice((0, -ref))
            elif x < 0.03:
                price = rng.choice((2**63 - 1, 2**62))
        qty = rng.randrange(1, 30) if rng.random() < 0.9 else rng.randrange(30, 70)
        x = rng.random()
        if x < 0.02:
            qty = rng.choice((0, -3))
        elif x < 0.03:
            qty = rng.choice((2**63 - 1, 2**40))
        ts = self._ts()
        d = rng.random()
        if d < 0.35:
            deadline = 0
        elif d < 0.37:
            deadline = max(1, self.now - rng.randrange(0, 100))
        else:
            deadline = self.now + rng.randrange(1, 30_000)
        tif = rng.choice(list(TimeInForce))
        return NewOrder(cid, s, rng.choice((Side.BUY, Side.SELL)), OrderType.MARKET if market else OrderType.LIMIT,
                        tif, price, qty, ts, deadline)

    def _amend(self) -> Amend:
        rng = self.rng
        cid = self._pick_open_id(0.1)
        order = next((o for o in self._open() if o.client_order_id == cid), None)
        ts = self._ts()
        if order is None:
            return Amend(cid, rng.randrange(1, 2000), rng.randrange(1, 50), ts)
        x = rng.random()
        if x < 0.04:
            return Amend(cid, 0, 0, ts)
        if x < 0.07:
            return Amend(cid, -1 if rng.random() < 0.5 else 0, -1 if rng.random() < 0.5 else order.filled, ts)
        if order.order_type == OrderType.MARKET:
            price = 0 if rng.random() > 0.1 else 10
        else:
            ref = self.ref[order.symbol]
            price = 0 if rng.random() < 0.3 else max(1, ref + rng.randrange(-ref // 12, ref // 12 + 1))
        qty = 0 if rng.random() < 0.3 else rng.randrange(max(1, order.filled), order.filled + 60)
        if price == 0 and qty == 0:
            qty = order.filled + 1
        return Amend(cid, price, qty, ts)

    def _fill(self) -> VenueFill:
        rng = self.rng
        opens = self._open()
        if not opens or rng.random() < 0.05:
            return VenueFill(self._pick_open_id(1.0), rng.randrange(1, 10), 1000)
        o = rng.choice(opens)
        rem = o.qty - o.filled
        x = rng.random()
        if x < 0.04:
            qty = rem + rng.randrange(1, 5)
        elif x < 0.06:
            qty = rng.choice((0, -1))
        elif x < 0.5:
            qty = rem
        else:
            qty = rng.randrange(1, rem + 1) if rem > 0 else 1
        price = rng.choice((0, -1)) if rng.random() < 0.02 else max(1, self.ref[o.symbol] + rng.randrange(-5, 6))
        return VenueFill(int(o.client_order_id), qty, price)

    def stream(self, n: int) -> tuple[list[bytes], list[list[bytes]]]:
        """`n` more inbound frames (after the preamble on the first call) and the model's answers."""
        msgs = self.preamble() if self.next_id == 1 and self.orders == 0 else []
        frames: list[bytes] = []
        expected: list[list[bytes]] = []
        for m in msgs:
            frames.append(encode(m))
            expected.append(self.model.step(frames[-1]))
        while len(frames) < n:
            frames.append(encode(self.next_message()))
            expected.append(self.model.step(frames[-1]))
        return frames, expected
