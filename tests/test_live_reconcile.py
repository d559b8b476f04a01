"""Reconciliation at the start of a live session: a ledger file left by an earlier session, a venue (the emulator on
127.0.0.1, real ccxt) whose orders moved on while no session ran, and what the new session makes of the two."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import running_emulator
from test_live_session import KEY, ORGANISMS, SECRET, answers, settings, venue_port

from allele.kernel.domain import FinalizedOrder
from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.engine.live import CLIENT_ID_PREFIX, open_live_session
from allele.kernel.engine.session import ledger_path
from allele.kernel.ledger import Ledger
from allele.vault.signing import MemorySigner

OTHER = "other-key"


def order(cid: str, side: str, quantity: float, price: float) -> FinalizedOrder:
    return FinalizedOrder(cid, "ETH-USDT", "buy" if side == "buy" else "sell", "limit", quantity, price, "gtc",
                          time.time_ns(), 0)


def other_trades(server: EmulatorServer, side: str, quantity: str, price: str) -> None:
    """Another account's order on the venue: it trades with ours while no session is running."""
    server.call(lambda: server.state.new_order(OTHER, {"symbol": "ETHUSDT", "side": side, "type": "LIMIT",
                                                       "timeInForce": "GTC", "quantity": quantity, "price": price}))


async def earlier_session(home: Path, server: EmulatorServer) -> None:
    """What a live session leaves behind: orders in the ledger, recorded with the venue's answers, resting on the
    venue; one it recorded but never got to send; one it sent but did not record (it crashed in between);
    and an order someone placed by hand."""
    ledger = await Ledger.open(ledger_path(home))
    old = {"al-old-1": order("al-old-1", "sell", 0.004, 3100.0), "al-old-2": order("al-old-2", "sell", 0.01, 3050.0),
           "al-old-3": order("al-old-3", "buy", 0.01, 2000.0), "al-old-4": order("al-old-4", "buy", 0.01, 2100.0)}
    try:
        for o in old.values():
            await ledger.record_order(o, "sma", "USDT")
        with venue_port(server) as (_, venue):
            for cid in ("al-old-1", "al-old-2", "al-old-3"):
                venue.submit(old[cid], old[cid].ts_ns)
                [accepted] = answers(venue, cid, lambda got: bool(got))
                assert accepted.status == "accepted"
                await ledger.record_order_update(accepted)
            for o in (order("al-old-9", "sell", 0.01, 3300.0), order("manual-1", "sell", 0.01, 3400.0)):
                venue.submit(o, o.ts_ns)
                answers(venue, o.client_order_id, lambda got: bool(got))
    finally:
        await ledger.close()


def venue_status(server: EmulatorServer, cid: str) -> str:
    return str(server.call(lambda: [o.status for o in server.state.orders.values() if o.client_order_id == cid][-1]))


async def test_a_live_session_reconciles_the_ledger_with_the_venue_before_trading(
        built: Any, make_host: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # A still market (no background liquidity): our orders trade only with the other account's.
    accounts = {KEY: (SECRET, {"USDT": 10_000.0, "ETH": 10.0}), OTHER: ("other-secret", {"USDT": 10_000.0})}
    with running_emulator(accounts, tick_s=0) as server:
        await earlier_session(home, server)
        # While no session runs: al-old-1 fills in part, al-old-2 in full, al-old-3 is cancelled by hand.
        other_trades(server, "BUY", "0.01", "3050")
        other_trades(server, "BUY", "0.002", "3100")
        server.call(lambda: server.state.cancel_order(KEY, {"symbol": "ETHUSDT", "origClientOrderId": "al-old-3"}))

        session = await open_live_session(home, credentials=MemorySigner({"main": (KEY, SECRET.encode())}),
                                          settings=settings(server), organisms=ORGANISMS, host=make_host())
        try:
            engine, ledger = session.engine, session.engine.ledger
            assert session.header["session"].startswith(CLIENT_ID_PREFIX)
            statuses = {o.client_order_id: (o.status, float(o.filled_quantity)) for o in await ledger.orders()}
            assert statuses == {"al-old-1": ("partially-filled", 0.002), "al-old-2": ("filled", 0.01),
                                "al-old-3": ("cancelled", 0.0), "al-old-4": ("cancelled", 0.0)}
            assert sorted(session.closed) == ["al-old-2", "al-old-3", "al-old-4"]
            # The fills made while no session ran are in the ledger, and so in the books the engine starts from.
            fills = [(f.client_order_id, float(f.quantity), float(f.price)) for f in await ledger.fills()]
            assert fills == [("al-old-1", 0.002, 3100.0), ("al-old-2", 0.01, 3050.0)]
            assert engine.portfolio.position("sma", "ETH-USDT") == pytest.approx(-0.012)
            # Every decision has its reason, in the order's events and in the audit log.
            for cid in ("al-old-1", "al-old-2", "al-old-3", "al-old-4"):
                new = [e for e in await ledger.order_events(cid) if e.reason and e.reason.startswith("reconcile: ")]
                assert new, cid
            never = (await ledger.order_events("al-old-4"))[-1].reason
            assert "never got there" in never
            audit = [(a["action"], a["details"]["client_order_id"]) for a in await ledger.audit_log()
                     if a["actor"] == "reconcile"]
            assert audit == [("adopted", "al-old-1"), ("resolved", "al-old-2"), ("resolved", "al-old-3"),
                             ("resolved", "al-old-4"), ("cancelled unknown order", "al-old-9")]
            # Ours but unknown to the ledger: cancelled. Someone else's: left alone.
            assert venue_status(server, "al-old-9") == "CANCELED" and venue_status(server, "manual-1") == "NEW"

            # The engine took al-old-1 over: its order kernel and portfolio hold it, its later fill moves them.
            assert engine.orders.is_open("al-old-1")
            assert engine.portfolio.open_orders["al-old-1"].remaining == pytest.approx(0.002)
            other_trades(server, "BUY", "0.002", "3100")
            await engine.finish()  # the venue's answers so far, through the engine's update path
            adopted = await ledger.order("al-old-1")
            assert adopted is not None and adopted.status == "filled"
            assert "al-old-1" not in engine.portfolio.open_orders and not engine.orders.is_open("al-old-1")
            assert engine.portfolio.position("sma", "ETH-USDT") == pytest.approx(-0.014)
            assert [float(p.quantity) for p in await ledger.positions("sma")] == [pytest.approx(-0.014)]
            assert session.errors == []
        finally:
            await session.close()


async def test_an_adopted_order_can_be_cancelled_by_the_new_session(built: Any, make_host: Any,
                                                                       tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_emulator({KEY: (SECRET, {"USDT": 10_000.0, "ETH": 10.0})}, tick_s=0) as server:
        ledger = await Ledger.open(ledger_path(home))
        resting = order("al-old-5", "sell", 0.01, 3500.0)
        await ledger.record_order(resting, "sma", "USDT")
        with venue_port(server) as (_, venue):
            venue.submit(resting, resting.ts_ns)
            [accepted] = answers(venue, "al-old-5", lambda got: bool(got))
        await ledger.record_order_update(accepted)
        await ledger.close()

        session = await open_live_session(home, credentials=MemorySigner({"main": (KEY, SECRET.encode())}),
                                          settings=settings(server), organisms=ORGANISMS, host=make_host())
        try:
            assert session.closed == [] and session.engine.orders.is_open("al-old-5")
            await session.engine.cancel("al-old-5", time.time_ns())
            await session.engine.finish()
            events = await session.engine.ledger.order_events("al-old-5")
            assert [e.status for e in events] == ["new", "accepted", "cancelled"]
            assert venue_status(server, "al-old-5") == "CANCELED"
            audit = [(a["action"], a["details"]["reason"]) for a in await session.engine.ledger.audit_log()
                     if a["actor"] == "reconcile"]
            assert audit == [("adopted", "still open on the venue: adopted")]
        finally:
            await session.close()
