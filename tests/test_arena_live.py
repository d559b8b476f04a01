"""Live fitness: the arena judges the organisms it funded on their paper/live record in the ledger."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import fund_an_arena_organism

from allele.kernel.arena.fitness import FitnessConfig, fitness
from allele.kernel.arena.live import live_fitness, organism_id, review_lifecycle
from allele.kernel.arena.organism import OrganismSpec as ArenaSpec
from allele.kernel.arena.store import ArenaStore
from allele.kernel.domain import FinalizedOrder, OrderUpdate
from allele.kernel.engine.firehose import read_recording
from allele.kernel.ledger import Ledger

SPEC = {"strategy": "sma_cross", "plugin_sha256": "0" * 64, "genome": {}, "exchange": "sim", "sensors": []}


def standing_row(fp: str, status: str, allocation: float) -> dict[str, object]:
    return {"fingerprint": fp, "spec": json.dumps(SPEC), "status": status, "allocation": repr(allocation),
            "fitness": 1.0, "sortino": 1.0, "dsr": 0.99, "oos_sharpe": 0.1, "trades": 10, "protected": 0, "funded": 1,
            "reason": "test", "run_id": "r", "generation": 3}


async def record_track(path: Path, organism: str, equity: list[float], fills: int, session: str = "s1") -> None:
    """A real ledger file with `fills` filled orders and one equity sample a minute for `organism`."""
    async with await Ledger.open(path) as ledger:
        for i in range(fills):
            coid = f"{organism}-{session}-{i}"
            await ledger.record_order(FinalizedOrder(coid, "BTC-USD", "buy", "limit", 1.0, 100.0, "gtc", i, i + 1),
                                      organism)
            await ledger.record_order_update(OrderUpdate(coid, "V" + coid, "BTC-USD", "filled", 1.0, 100.0, 0.0,
                                                         "", i))
        for k, value in enumerate(equity):
            await ledger.record_equity(session, 1_000_000_000_000 + k * 60_000_000_000, {organism: value, "*": value})


def test_live_fitness_is_the_arena_fitness_of_the_recorded_equity(tmp_path: Path) -> None:
    fp = "ab" * 32
    rng = np.random.default_rng(4)
    equity = list(100.0 * np.cumprod(1.0 + rng.normal(0.0005, 0.002, 120)))
    asyncio.run(record_track(tmp_path / "trading.db", organism_id(fp), equity, fills=7))
    store = ArenaStore(tmp_path / "trading.db")
    try:
        [record] = live_fitness(store, [fp]).values()
    finally:
        store.close()
    returns = np.diff(equity) / np.asarray(equity[:-1])
    expected = fitness(returns, 7, FitnessConfig(periods_per_year=365.25 * 24 * 60))
    assert record.fitness is not None and record.trades == 7 and record.returns == 119
    assert record.periods_per_year == 365.25 * 24 * 60
    assert np.isclose(record.fitness.value, expected.value, rtol=1e-9)


def test_a_restart_is_not_a_return(tmp_path: Path) -> None:
    """Capital added between sessions must not show up as profit."""
    fp = "cd" * 32
    oid = organism_id(fp)
    asyncio.run(record_track(tmp_path / "trading.db", oid, [100.0] * 40, fills=5, session="s1"))
    asyncio.run(record_track(tmp_path / "trading.db", oid, [200.0] * 40, fills=0, session="s2"))
    store = ArenaStore(tmp_path / "trading.db")
    try:
        [record] = live_fitness(store, [fp]).values()
    finally:
        store.close()
    assert record.returns == 78 and record.fitness is not None and record.fitness.sortino == 0.0


def test_review_defunds_a_losing_live_organism_and_promotes_a_winning_paper_one(tmp_path: Path) -> None:
    loser, winner, fresh = "11" * 32, "22" * 32, "33" * 32
    falling = [100.0 * (1 - 0.001 * k) for k in range(60)]
    rising = [100.0 * (1 + 0.001 * k + 0.002 * (k % 3 == 1)) for k in range(60)]  # up, with dips
    asyncio.run(record_track(tmp_path / "trading.db", organism_id(loser), falling, fills=9))
    asyncio.run(record_track(tmp_path / "trading.db", organism_id(winner), rising, fills=9))
    asyncio.run(record_track(tmp_path / "trading.db", organism_id(fresh), rising[:10], fills=1))  # too short
    store = ArenaStore(tmp_path / "trading.db")
    try:
        store.put_standing([standing_row(loser, "live", 30.0), standing_row(winner, "paper", 20.0),
                            standing_row(fresh, "paper", 10.0)])
        moves, records = review_lifecycle(store, generation=3)
        assert {(m.fingerprint, m.old, m.new) for m in moves} == {(loser, "live", "hibernating"),
                                                                   (winner, "paper", "live")}
        assert records[fresh].fitness is None and "unmeasured" in records[fresh].reason
        after = {r["fingerprint"]: r for r in store.standing()}
        assert after[loser]["status"] == "hibernating" and after[loser]["allocation"] == 0.0
        assert not after[loser]["funded"] and after[loser]["reason"].startswith("defunded: live fitness -")
        assert after[winner]["status"] == "live" and after[winner]["allocation"] == 20.0 and after[winner]["funded"]
        assert after[fresh]["status"] == "paper"
        assert [e["new"] for e in store.events(loser)] == ["hibernating"]
        assert review_lifecycle(store, generation=3)[0] == []  # judged once: nothing left to move
    finally:
        store.close()


def test_a_paper_session_feeds_the_review(built, tmp_path: Path) -> None:
    """Arena run -> funded organism paper-trades in the engine -> `allele arena review` reads its record."""
    from allele.kernel.engine.config import EngineConfig
    from allele.kernel.engine.session import open_paper_session

    row = fund_an_arena_organism(tmp_path)

    async def paper() -> list[str]:
        session = await open_paper_session(tmp_path, config=EngineConfig(bars=300, speed=0, record=False,
                                                                         equity_interval_s=5),
                                           session="live-fitness", start_ns=1_800_000_000_000_000_000)
        try:
            await session.run()
            return [s.organism for s in await session.engine.ledger.equity_history()]
        finally:
            await session.close()

    sampled = asyncio.run(paper())
    oid = organism_id(row["fingerprint"])
    assert sampled.count(oid) >= 60 and sampled.count("*") == sampled.count(oid)

    allele = Path(sys.executable).parent / "allele"
    proc = subprocess.run([str(allele), "arena", "review", "--min-trades", "0", "--min-returns", "30", "--json"],
                          env={**os.environ, "ALLELE_HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [record] = [r for r in report["records"] if r["fingerprint"] == row["fingerprint"]]
    assert record["organism"] == oid and record["returns"] >= 59 and record["fitness"] is not None
    expected = ("paper", "live") if record["fitness"] > 0 else ("paper", "hibernating")
    assert [(m["old"], m["new"]) for m in report["moves"] if m["fingerprint"] == row["fingerprint"]] == [expected]


def test_a_running_engine_retires_the_organism_the_arena_defunds_and_a_replay_does_the_same(built,
                                                                                           tmp_path: Path) -> None:
    """Defunded mid-session (as `allele arena defund` or a review in another process does): at the next chunk
    the engine cancels the organism's orders, closes its position, and sends nothing more for it."""
    from allele.kernel.engine.config import EngineConfig
    from allele.kernel.engine.runner import retire_defunded
    from allele.kernel.engine.session import open_paper_session, open_replay_session

    home = tmp_path / "home"
    home.mkdir()
    fund_an_arena_organism(home)  # the arena's tables, with a real run in them
    # ...and a quick sma_cross the arena funds, so that it holds a position when it is defunded
    sma_cross = hashlib.sha256(built.wasm["sma_cross"].read_bytes()).hexdigest()
    spec = ArenaSpec(strategy="sma_cross", plugin_sha256=sma_cross, genome={"fast": 2, "slow": 3})
    row = {**standing_row(spec.fingerprint, "paper", 40.0), "spec": spec.canonical()}
    store = ArenaStore(home / "trading.db")
    try:
        store.put_standing([row])
        for other in store.standing():  # only this one trades
            if other["fingerprint"] != spec.fingerprint:
                store.set_status(other["fingerprint"], "paper", 0.0, False, "test: not this one")
    finally:
        store.close()
    oid = organism_id(spec.fingerprint)

    async def trade() -> tuple[list[tuple[str, ...]], list[dict[str, object]], int]:
        session = await open_paper_session(home, config=EngineConfig(bars=400, speed=0, firehose_max_mb=1),
                                           session="retire", start_ns=1_800_000_000_000_000_000)
        engine = session.engine
        queued: list[str] = []

        async def arena_defunds_midway(run: asyncio.Task[None]) -> None:
            while engine.counters.events < 300 or not any(engine.portfolio.positions.get(oid, {}).values()):
                assert not run.done(), "the organism never held a position: nothing to retire"
                await asyncio.sleep(0)  # the engine yields between chunks
            store = ArenaStore(home / "trading.db")
            try:
                store.set_status(spec.fingerprint, "hibernating", 0.0, False, "test: live fitness <= 0")
            finally:
                store.close()
            queued.extend(await retire_defunded(session, home))

        try:
            run = asyncio.create_task(session.run())
            await asyncio.wait_for(asyncio.gather(run, arena_defunds_midway(run)), 600)
            orders = await engine.ledger.orders()
            audit = [a for a in await engine.ledger.audit_log() if a["action"] == "retire"]
            position = sum(float(p.quantity) for p in await engine.ledger.positions() if p.organism == oid)
            retired_at = engine.counters.events
            assert queued == [oid] and not engine.organisms[oid].active and position == 0.0
            return [(o.client_order_id, o.side, str(o.quantity), o.status) for o in orders], audit, retired_at
        finally:
            await session.close()

    orders, audit, _ = asyncio.run(trade())
    assert [a["details"]["organism"] for a in audit] == [oid]
    assert "hibernating: test: live fitness <= 0" in str(audit[0]["details"]["reason"])
    recording = home / "historical" / "retire"
    [control] = [r for r in read_recording(recording) if r.get("retire")]
    assert control["retire"] == oid

    async def replay() -> list[tuple[str, ...]]:
        r = await open_replay_session(home, recording, tmp_path / "replay.db")
        try:
            await r.run()
            assert not r.engine.organisms[oid].active
            return [(o.client_order_id, o.side, str(o.quantity), o.status) for o in await r.engine.ledger.orders()]
        finally:
            await r.close()

    assert asyncio.run(replay()) == orders
