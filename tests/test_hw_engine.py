"""A paper session through the Verilog order kernel (order_kernel = "rtl-sim") against the same
session through the software model: identical orders and fills in the ledger. Plus the bridge's
own contract: model-equal answers, FrameError on bad frames, a clean shutdown, clear errors.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from allele.kernel.engine.config import EngineConfig
from allele.kernel.engine.session import open_paper_session
from allele.kernel.orders.frames import (
    Cancel,
    FrameError,
    Limits,
    NewOrder,
    OrderType,
    RefPrice,
    Side,
    TimeInForce,
    VenueFill,
    encode,
)
from allele.kernel.orders.port import OrderKernelPort, SoftwareOrderKernel
from allele.kernel.orders.rtl_sim import RtlSimError, RtlSimOrderKernel

START_NS = 1_800_000_000_000_000_000
SLOTS = 16


async def _session_books(home: Path, kind: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    cfg = EngineConfig(bars=60, speed=0, ledger_sync="normal", order_kernel=kind, order_kernel_slots=SLOTS)
    s = await open_paper_session(home, config=cfg, session="hw", start_ns=START_NS)
    try:
        await s.run()
        ledger = s.engine.ledger
        orders = [(o.client_order_id, o.organism, o.symbol, o.side, o.order_type, o.quantity, o.limit_price,
                   o.time_in_force, o.ts_ns, o.deadline_ns, o.status, o.filled_quantity)
                  for o in await ledger.orders()]
        fills = [(f.client_order_id, f.symbol, f.side, f.quantity, f.price, f.fee, f.ts_ns)
                 for f in await ledger.fills()]
        port = s.engine.orders.port
        if kind == "rtl-sim":
            assert isinstance(port, RtlSimOrderKernel)
        else:
            assert isinstance(port, SoftwareOrderKernel)
        return orders, fills, s.engine.counters.kernel_rejects
    finally:
        await s.close()
        if kind == "rtl-sim":
            rtl_port = s.engine.orders.port
            assert isinstance(rtl_port, RtlSimOrderKernel)
            proc = rtl_port._proc
            assert proc.poll() is not None, "closing the session must end the simulation"


async def test_a_paper_session_through_the_rtl_kernel_matches_the_software_kernel(built: Any, tmp_path: Path) -> None:
    sw = await _session_books(tmp_path / "software", "software")
    rtl = await _session_books(tmp_path / "rtl", "rtl-sim")
    sw_orders, sw_fills, _ = sw
    assert len(sw_orders) > 0 and len(sw_fills) > 0
    assert rtl == sw


def test_the_bridge_answers_like_the_model_and_shuts_down() -> None:
    frames = [encode(RefPrice(1, 1000)), encode(Limits(1, 100, 10**9, 500, 1000, 10, 0))]
    frames += [encode(NewOrder(k, 1, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 1000, 3, 10 * k, 10 * k + 25))
               for k in range(1, 6)]
    frames += [encode(VenueFill(2, 3, 1000)), encode(Cancel(9, 100)), encode(Cancel(4, 101))]
    model: OrderKernelPort = SoftwareOrderKernel(4)
    with RtlSimOrderKernel(4, 2) as rtl:
        assert isinstance(rtl, OrderKernelPort)
        for frame in frames:
            assert rtl.submit(frame) == model.submit(frame)
        with pytest.raises(FrameError, match="expected 64"):
            rtl.submit(b"\x01" * 10)
        with pytest.raises(FrameError, match="outbound"):
            rtl.submit(bytes([0x85]) + bytes(63))
        proc = rtl._proc
    assert proc.returncode is not None
    with pytest.raises(RtlSimError, match="closed"):
        rtl.submit(frames[0])
    rtl.close()  # idempotent


def test_a_missing_simulator_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RtlSimError, match="iverilog"):
        RtlSimOrderKernel(4, 2)


def test_a_simulation_that_dies_is_reported_with_its_log() -> None:
    with pytest.raises(ValueError, match="symbols"):
        RtlSimOrderKernel(4, 0)
    rtl = RtlSimOrderKernel(2, 1)
    try:
        os.killpg(rtl._proc.pid, signal.SIGKILL)  # the launcher and the simulator it started
        rtl._proc.wait()
        with pytest.raises(RtlSimError, match=r"RTL simulation .*exited with code"):
            rtl.submit(encode(RefPrice(1, 5)))
    finally:
        rtl.close()
