"""Latency and throughput of the RTL kernel, in clock cycles, written to OK_PERF (JSON).

Latency: from the rising edge that takes a NEW_ORDER to the rising edge at which its decision
frame (ACCEPTED / REJECTED) is consumed. Throughput: orders taken per clock over a stream (the
symbol's REF_PRICE and LIMITS are sent first, in their own run, so the stream starts on a settled
kernel). Every stream is also scoreboarded against the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cocotb
from okbench import CLOCK_NS, RunStats, compare, model_outputs, reset, restart, run_frames

from allele.kernel.orders.frames import (
    Amend,
    Limits,
    Message,
    NewOrder,
    RefPrice,
    Side,
    VenueFill,
    encode,
    limit_order,
)

SLOTS = int(os.environ.get("OK_SLOTS", "8"))
SYM = 1
SETUP: list[Message] = [RefPrice(SYM, 1000), Limits(SYM, 1000, 10**12, 1000, 10**9, 1, 0)]


def order(cid: int, qty: int = 1) -> NewOrder:
    side = Side.BUY if cid % 2 else Side.SELL
    return limit_order(cid, SYM, 1000, qty, side=side, ts_ns=cid)


async def measure(dut: Any, body: list[Message]) -> dict[str, float]:
    await restart(dut)
    setup = [encode(m) for m in SETUP]
    frames = [encode(m) for m in body]
    stats = RunStats()
    got = await run_frames(dut, setup) + await run_frames(dut, frames, stats)
    compare(setup + frames, model_outputs(setup + frames, SLOTS), got)
    lat = [stats.first_out_at[k] - stats.taken_at[k] for k in range(len(frames)) if frames[k][0] == 0x01]
    orders = len(lat)
    span = stats.taken_at[-1] - stats.taken_at[0] + 1  # clocks from the first frame taken to the last
    return {"orders": orders, "frames": len(body), "cycles": span,
            "orders_per_clock": round(orders / span, 4), "frames_per_clock": round(len(body) / span, 4),
            "decision_latency_cycles_min": min(lat), "decision_latency_cycles_max": max(lat)}


@cocotb.test()
async def perf(dut: Any) -> None:
    await reset(dut)
    results = {
        # orders that are all accepted, back to back, until the table is full
        "accepted_burst": await measure(dut, [order(k) for k in range(1, SLOTS + 1)]),
        # orders that are all rejected (MAX_QTY): one decision frame each
        "rejected_stream": await measure(dut, [order(k, qty=5000) for k in range(1, 2001)]),
        # a sustained flow: each accepted order is filled (and its slot freed) by the next frame
        "order_fill_pairs": await measure(dut, [m for k in range(1, 1001) for m in (order(k), VenueFill(k, 1, 1000))]),
        # the same client id twice back to back (the second is a DUPLICATE_ID: the first one's slot
        # is forwarded to it), then the fill that closes the order
        "duplicate_id_back_to_back": await measure(
            dut, [m for k in range(1, 1001) for m in (order(k), order(k), VenueFill(k, 1, 1000))]),
        # AMEND runs alone (see the RTL header): what an order + amend + fill flow costs
        "order_amend_fill": await measure(
            dut, [m for k in range(1, 501) for m in (order(k), Amend(k, 0, 2, 10**6 + k), VenueFill(k, 2, 1000))]),
    }
    report = {
        "clock_ns_in_sim": CLOCK_NS,
        "definition": "latency: edge that takes the NEW_ORDER -> edge that consumes its ACCEPTED/REJECTED frame",
        "slots": SLOTS,
        **results,
    }
    dut._log.info("perf: %s", json.dumps(report))
    path = os.environ.get("OK_PERF")
    if path:
        Path(path).write_text(json.dumps(report, indent=2))
