"""The ledger on real SQLite files: WAL durability, order/fill bookkeeping, idempotency, crash recovery."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.domain import FinalizedOrder, OrderUpdate
from allele.kernel.ledger import (
    MIGRATIONS,
    DuplicateOrderError,
    Ledger,
    OverfillError,
    Position,
    UnknownOrderError,
    apply_fill,
)


def order(coid: str, side: str = "buy", qty: float = 2.0, symbol: str = "BTC-USD") -> FinalizedOrder:
    return FinalizedOrder(coid, symbol, side, "limit", qty, 100.0, "gtc", 1_000, 2_000)  # type: ignore[arg-type]


def update(coid: str, status: str, qty: float = 0.0, price: float = 0.0, fee: float = 0.0, ts: int = 0) -> OrderUpdate:
    return OrderUpdate(coid, "V-" + coid, "BTC-USD", status, qty, price, fee, "", ts)  # type: ignore[arg-type]


async def test_wal_mode_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    async with await Ledger.open(path) as ledger:
        assert await ledger.pragma("journal_mode") == "wal"
        assert await ledger.pragma("synchronous") == 2  # FULL
        assert await ledger.pragma("foreign_keys") == 1
        await ledger.record_order(order("o1"), "org")
        assert (tmp_path / "trading.db-wal").exists()
    # journal_mode=WAL is persistent in the file: a plain connection sees it too.
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


async def test_order_lifecycle_positions_and_cash(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.db") as ledger:
        await ledger.record_order(order("b1", "buy", 2.0), "org")
        assert [o.status for o in await ledger.open_orders()] == ["new"]
        await ledger.record_order_update(update("b1", "accepted", ts=1))
        r1 = await ledger.record_order_update(update("b1", "partially-filled", 1.0, 100.0, 0.1, ts=2))
        assert not r1.duplicate and r1.fill is not None
        r2 = await ledger.record_order_update(update("b1", "filled", 1.0, 110.0, 0.1, ts=3))
        assert r2.seq == 3

        (o,) = await ledger.orders()
        assert o.status == "filled" and o.filled_quantity == Decimal(2) and o.venue_order_id == "V-b1"
        assert await ledger.open_orders() == []
        events = await ledger.order_events("b1")
        assert [e.status for e in events] == ["new", "accepted", "partially-filled", "filled"]
        assert [e.seq for e in events] == [0, 1, 2, 3]
        fills = await ledger.fills("b1")
        assert [(f.quantity, f.price) for f in fills] == [(Decimal(1), Decimal(100)), (Decimal(1), Decimal(110))]
        (p,) = await ledger.positions()
        assert (p.quantity, p.avg_price, p.realized_pnl) == (Decimal(2), Decimal(105), Decimal(0))
        # cash: -100 - 110 - fees 0.2, exactly (Decimal, not float)
        assert await ledger.cash() == {("org", "USD"): Decimal("-210.2")}

        # a reducing sell realizes (120 - 105) * 1.5 and keeps the average
        await ledger.record_order(order("s1", "sell", 1.5), "org")
        await ledger.record_order_update(update("s1", "filled", 1.5, 120.0, ts=4))
        (p,) = await ledger.positions()
        assert (p.quantity, p.avg_price, p.realized_pnl) == (Decimal("0.5"), Decimal(105), Decimal("22.5"))
        assert await ledger.cash() == {("org", "USD"): Decimal("-30.2")}

        # selling through zero: closes 0.5 at 90 (realize -7.5), opens a 1.5 short at 90
        await ledger.record_order(order("s2", "sell", 2.0), "org")
        await ledger.record_order_update(update("s2", "filled", 2.0, 90.0, ts=5))
        (p,) = await ledger.positions()
        assert (p.quantity, p.avg_price, p.realized_pnl) == (Decimal("-1.5"), Decimal(90), Decimal(15))
        assert await ledger.rebuild_positions() == []


async def test_duplicate_client_order_id_refused(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.db") as ledger:
        await ledger.record_order(order("dup"), "org")
        with pytest.raises(DuplicateOrderError, match="'dup' is already in the ledger"):
            await ledger.record_order(order("dup", "sell"), "other")
        (o,) = await ledger.orders()
        assert (o.side, o.organism) == ("buy", "org")
        assert len(await ledger.order_events("dup")) == 1


async def test_duplicate_fill_ignored_and_reported(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.db") as ledger:
        await ledger.record_order(order("f1", qty=3.0), "org")
        u = update("f1", "partially-filled", 1.0, 100.0, ts=7)
        assert not (await ledger.record_order_update(u)).duplicate
        again = await ledger.record_order_update(u)
        assert again.duplicate and again.fill is None and again.seq is None
        # an explicit venue fill id is the key when given
        await ledger.record_order_update(update("f1", "partially-filled", 1.0, 100.0, ts=8), fill_id="X1")
        assert (await ledger.record_order_update(update("f1", "filled", 1.0, 100.0, ts=9), fill_id="X1")).duplicate
        assert len(await ledger.fills("f1")) == 2
        assert len(await ledger.order_events("f1")) == 3
        (p,) = await ledger.positions()
        assert p.quantity == Decimal(2)
        assert (await ledger.order("f1")).filled_quantity == Decimal(2)  # type: ignore[union-attr]


async def test_bad_updates_write_nothing(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.db") as ledger:
        with pytest.raises(UnknownOrderError, match="'ghost'"):
            await ledger.record_order_update(update("ghost", "accepted"))
        await ledger.record_order(order("o", qty=1.0), "org")
        with pytest.raises(OverfillError):
            await ledger.record_order_update(update("o", "filled", 2.0, 100.0))
        assert await ledger.fills() == [] and await ledger.positions() == [] and await ledger.cash() == {}
        assert len(await ledger.order_events("o")) == 1
        assert (await ledger.order("o")).status == "new"  # type: ignore[union-attr]


async def test_everything_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as ledger:
        await ledger.record_order(order("a"), "org")
        await ledger.record_order_update(update("a", "partially-filled", 1.0, 100.0, 0.5))
        await ledger.record_risk_decision("org", "BTC-USD", False, "max-position", "too big", ts_ns=5)
        await ledger.record_plugin("ab" * 32, "momo", "strategy", "1.0", "/p/momo.wasm", deployed_ns=9)
        await ledger.record_organism("org", {"genes": [1, 2]}, "live")
        await ledger.audit("cli", "deploy", {"plugin": "momo"})
        before = (await ledger.orders(), await ledger.fills(), await ledger.positions(), await ledger.cash())
    async with await Ledger.open(path) as ledger:
        after = (await ledger.orders(), await ledger.fills(), await ledger.positions(), await ledger.cash())
        assert after == before
        assert [o.client_order_id for o in await ledger.open_orders()] == ["a"]
        assert await ledger.risk_decisions() == [
            {
                "ts_ns": 5,
                "organism": "org",
                "symbol": "BTC-USD",
                "client_order_id": None,
                "accepted": False,
                "rule": "max-position",
                "reason": "too big",
            }
        ]
        (plugin,) = await ledger.plugins()
        assert plugin["name"] == "momo" and plugin["deployed_ns"] == 9
        (entry,) = await ledger.audit_log()
        assert entry["details"] == {"plugin": "momo"} and entry["action"] == "deploy"
        with pytest.raises(DuplicateOrderError):
            await ledger.record_order(order("a"), "org")


async def test_migrations_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    for _ in range(3):
        async with await Ledger.open(path) as ledger:
            assert await ledger.integrity_check() == "ok"
    con = sqlite3.connect(path)
    versions = [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")]
    con.close()
    assert versions == [m.version for m in MIGRATIONS]


async def test_rebuild_detects_and_repairs_tampering(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as ledger:
        await ledger.record_order(order("a"), "org")
        await ledger.record_order_update(update("a", "filled", 2.0, 100.0))
    con = sqlite3.connect(path)
    con.execute("UPDATE positions SET quantity = '5'")
    con.commit()
    con.close()
    async with await Ledger.open(path) as ledger:
        (m,) = await ledger.rebuild_positions(repair=True)
        assert m.stored is not None and m.stored.quantity == 5
        assert m.rebuilt is not None and m.rebuilt.quantity == 2
        assert await ledger.rebuild_positions() == []


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from allele.kernel.domain import FinalizedOrder, OrderUpdate
    from allele.kernel.ledger import Ledger

    async def main(path, run):
        ledger = await Ledger.open(path)
        print("ready", flush=True)
        i = 0
        while True:  # runs until the parent SIGKILLs it
            coid = f"r{run}-{i}"
            side = "buy" if i % 3 != 2 else "sell"
            await ledger.record_order(
                FinalizedOrder(coid, "SYM", side, "limit", 1.5, 10.0, "gtc", i, i + 1), "org")
            print(coid, flush=True)  # acknowledged: record_order returned
            await ledger.record_order_update(
                OrderUpdate(coid, "v" + coid, "SYM", "filled", 1.5, 10.0 + (i % 7) * 0.25, 0.01, "", i))
            i += 1

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def check_after_crash(path: Path, acknowledged: list[str]) -> None:
    async with await Ledger.open(path) as ledger:
        assert await ledger.integrity_check() == "ok"
        present = {o.client_order_id for o in await ledger.orders()}
        missing = [c for c in acknowledged if c not in present]
        assert missing == [], f"acknowledged orders lost after SIGKILL: {missing}"
        assert await ledger.rebuild_positions() == []
        # each order's filled quantity is exactly the sum of its fills (fill and order moved together)
        for o in await ledger.orders():
            filled = sum((f.quantity for f in await ledger.fills(o.client_order_id)), Decimal(0))
            assert filled == o.filled_quantity


def test_crash_recovery_sigkill(tmp_path: Path) -> None:
    """SIGKILL a real writer process 5 times at random moments; nothing acknowledged is lost."""
    path = tmp_path / "trading.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1234)
    acknowledged: list[str] = []
    for run in range(5):
        child = subprocess.Popen([sys.executable, str(script), str(path), str(run)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        # Lines already flushed were written before the kill; the pipe keeps them.
        ids = [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        acknowledged += ids

        asyncio.run(check_after_crash(path, acknowledged))
    assert len(acknowledged) > 5  # the children got real work done between kills


async def test_concurrent_writers_on_one_ledger(tmp_path: Path) -> None:
    """Many coroutines share one connection: transactions serialize, no update is lost."""
    async with await Ledger.open(tmp_path / "l.db") as ledger:

        async def trade(k: int) -> None:
            await ledger.record_order(order(f"c{k}", "buy", 1.0), "org")
            await ledger.record_order_update(update(f"c{k}", "filled", 1.0, 100.0 + k, ts=k))
            await ledger.positions()

        await asyncio.gather(*(trade(k) for k in range(20)))
        (p,) = await ledger.positions()
        assert p.quantity == Decimal(20)
        assert p.avg_price == Decimal(sum(100 + k for k in range(20))) / 20
        assert await ledger.cash() == {("org", "USD"): -Decimal(sum(100 + k for k in range(20)))}
        assert await ledger.rebuild_positions() == []


@given(
    st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 500), st.integers(1, 10_000)),
        max_size=40,
    )
)
def test_apply_fill_conserves_value(trades: list[tuple[str, int, int]]) -> None:
    """Cash spent equals realized P&L minus the cost basis still held: nothing created or lost."""
    pos = Position("o", "s", Decimal(0), Decimal(0), Decimal(0))
    cash = Decimal(0)
    for side, q, p in trades:
        qty, price = Decimal(q) / 100, Decimal(p) / 100
        pos = apply_fill(pos, side, qty, price)
        cash += -qty * price if side == "buy" else qty * price
    assert pos.quantity == sum((Decimal(q) / 100 * (1 if s == "buy" else -1) for s, q, _ in trades), Decimal(0))
    assert abs(cash - (pos.realized_pnl - pos.quantity * pos.avg_price)) < Decimal("1e-12")
    if pos.quantity == 0:
        assert pos.avg_price == 0


def test_the_ledger_arithmetic_ignores_the_threads_decimal_context() -> None:
    """ccxt sets ROUND_HALF_UP on the context of the thread that formats its amounts; a position computed
    there must still equal the one rebuilt elsewhere, to the last digit."""
    import decimal

    fills = [("buy", "3", "10"), ("buy", "4", "11"), ("sell", "2", "12.5")]  # avg 74/7: no finite decimal

    def run() -> Position:
        pos = Position("o", "S", Decimal(0), Decimal(0), Decimal(0))
        for side, qty, price in fills:
            pos = apply_fill(pos, side, Decimal(qty), Decimal(price))
        return pos

    plain = run()
    with decimal.localcontext(decimal.Context(prec=12, rounding=decimal.ROUND_HALF_UP)):
        skewed = run()
    assert skewed == plain and len(str(plain.avg_price).replace(".", "")) == 28  # every digit of the context
