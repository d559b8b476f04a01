"""kill -9 in the middle of a paper session: the ledger is intact, a restart reconciles and never duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from allele.kernel.ledger import Ledger

ALLELE = Path(sys.executable).parent / "allele"


def count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_session_then_restart(built, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ALLELE_HOME": str(home), "ALLELE_ENGINE__LEDGER_SYNC": "full"}
    # --no-watchdog: this test is about the engine's own crash (a watchdog would restart it; test_watchdog.py)
    engine = subprocess.Popen([str(ALLELE), "start", "--no-watchdog", "--speed", "0", "--bars", "100000"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = home / "trading.db"
    try:
        deadline = time.monotonic() + 240
        while count(db, "SELECT COUNT(*) FROM fills") < 20:
            assert engine.poll() is None, engine.stderr.read() if engine.stderr else ""
            assert time.monotonic() < deadline, "no fills within 240 s"
            time.sleep(0.05)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(30)
    assert engine.returncode == -signal.SIGKILL

    async def check() -> tuple[int, list[object], str]:
        ledger = await Ledger.open(db)
        try:
            return len(await ledger.orders()), await ledger.rebuild_positions(), await ledger.integrity_check()
        finally:
            await ledger.close()

    orders_before, mismatches, integrity = asyncio.run(check())
    assert integrity == "ok" and mismatches == [] and orders_before >= 20

    restart = subprocess.run([str(ALLELE), "start", "--speed", "0", "--bars", "40", "--json"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert restart.returncode == 0, restart.stderr
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT client_order_id FROM orders")]
        open_now = conn.execute("SELECT COUNT(*) FROM orders WHERE status IN ('new', 'accepted', "
                                "'partially-filled')").fetchone()[0]
        cash = sum(float(r[0]) for r in conn.execute("SELECT amount FROM cash"))
        held = sum(float(q) * float(p) for q, p in conn.execute("SELECT quantity, avg_price FROM positions"))
    assert len(ids) == len(set(ids)) > orders_before  # the restart traded, and no id was used twice
    assert open_now == 0  # orders the killed session left open were closed by the restart, or filled
    # Funded once: the default organisms share the 100 USD cap, and a few hundred bars move it by cents.
    assert 90 < cash + held < 110
    _, mismatches, integrity = asyncio.run(check())
    assert integrity == "ok" and mismatches == []
