"""The arena's tables in the ledger file (`trading.db`; schema migration 2): the evaluation cache,
lineage, each organism's standing (status, allocation, fitness, deflated Sharpe), lifecycle events
and runs. Synchronous: the arena runs outside the engine's event loop.

The evaluation cache is keyed by (organism fingerprint, data fingerprint): an organism already
evaluated on the same data is read back, never run again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from allele.kernel.ledger.ledger import immediate_transaction
from allele.kernel.ledger.schema import apply_migrations

from .allocator import Transition
from .evaluate import Evaluation
from .organism import OrganismSpec


class ArenaStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # arena results can be recomputed; orders cannot
        apply_migrations(self._db, time.time_ns())

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        tx: AbstractContextManager[sqlite3.Connection] = immediate_transaction(self._db)
        return tx

    # --- the evaluation cache -----------------------------------------------------------------------

    def evaluation(self, fingerprint: str, data_fingerprint: str) -> Evaluation | None:
        row = self._db.execute("SELECT result, returns, trade_bars FROM arena_evaluations WHERE fingerprint = ? "
                               "AND data_fingerprint = ?", (fingerprint, data_fingerprint)).fetchone()
        if row is None:
            return None
        r = json.loads(row[0])
        return Evaluation(r["fingerprint"], r["data_fingerprint"], r["ok"], r["error"],
                          tuple(np.frombuffer(row[1], dtype="<f8").tolist()), r["fills"], r["trades"], r["fees"],
                          r["final_equity"], r["refused"], r["behaviour"],
                          tuple(np.frombuffer(row[2], dtype="<i8").tolist()))

    def put_evaluations(self, items: list[tuple[OrganismSpec, Evaluation]]) -> None:
        now = time.time_ns()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO arena_evaluations (fingerprint, data_fingerprint, spec, result, returns, "
                "trade_bars, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.fingerprint, e.data_fingerprint, spec.canonical(), json.dumps(e.to_json()),
                  np.asarray(e.returns, dtype="<f8").tobytes(), np.asarray(e.trade_bars, dtype="<i8").tobytes(), now)
                 for spec, e in items])

    def evaluated_count(self, data_fingerprint: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM arena_evaluations WHERE data_fingerprint = ?",
                               (data_fingerprint,)).fetchone()
        return int(row[0])

    # --- lineage, standing, events, runs ------------------------------------------------------------

    def put_lineage(self, records: Sequence[Mapping[str, Any]], run_id: str) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO arena_lineage (fingerprint, parents, operator, generation, run_id, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r["fingerprint"], json.dumps(r["parents"]), r["operator"], r["generation"], run_id,
                  json.dumps(r["detail"], sort_keys=True)) for r in records])

    def put_standing(self, rows: Sequence[Mapping[str, Any]]) -> None:
        now = time.time_ns()
        with self._tx() as db:
            db.executemany(
                """INSERT INTO arena_standing (fingerprint, spec, status, allocation, fitness, sortino, dsr, oos_sharpe,
                   trades, protected, funded, reason, run_id, generation, updated_ns)
                   VALUES (:fingerprint, :spec, :status, :allocation, :fitness, :sortino, :dsr, :oos_sharpe, :trades,
                   :protected, :funded, :reason, :run_id, :generation, :now)
                   ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, allocation = excluded.allocation,
                   fitness = excluded.fitness, sortino = excluded.sortino, dsr = excluded.dsr,
                   oos_sharpe = excluded.oos_sharpe, trades = excluded.trades, protected = excluded.protected,
                   funded = excluded.funded, reason = excluded.reason, run_id = excluded.run_id,
                   generation = excluded.generation, updated_ns = excluded.updated_ns""",
                [{**r, "now": now} for r in rows])

    def add_events(self, transitions: list[Transition]) -> None:
        now = time.time_ns()
        with self._tx() as db:
            db.executemany("INSERT INTO arena_events (fingerprint, old, new, reason, generation, ts_ns) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(t.fingerprint, t.old, t.new, t.reason, t.generation, now) for t in transitions])

    def start_run(self, run_id: str, config: Mapping[str, Any], data_fingerprint: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO arena_runs (run_id, config, data_fingerprint, trials, summary, started_ns) "
                       "VALUES (?, ?, ?, 0, '[]', ?)", (run_id, json.dumps(config, sort_keys=True), data_fingerprint,
                                                        time.time_ns()))

    def finish_run(self, run_id: str, trials: int, summary: Sequence[Mapping[str, Any]],
                   archive: Mapping[str, Any] | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE arena_runs SET trials = ?, summary = ?, finished_ns = ?, archive = ? WHERE run_id = ?",
                       (trials, json.dumps(summary), time.time_ns(), None if archive is None else json.dumps(archive),
                        run_id))

    def latest_archive(self) -> dict[str, Any] | None:
        """The MAP-Elites grid (`Archive.grid()`) of the most recently finished run, or None."""
        row = self._db.execute("SELECT run_id, archive, finished_ns FROM arena_runs WHERE archive IS NOT NULL "
                               "ORDER BY finished_ns DESC LIMIT 1").fetchone()
        if row is None:
            return None
        grid: dict[str, Any] = json.loads(row[1])
        return {"run_id": row[0], "finished_ns": row[2], **grid}

    # --- queries --------------------------------------------------------------------------------------

    def standing(self, fingerprint: str | None = None) -> list[dict[str, Any]]:
        cols = ("fingerprint", "spec", "status", "allocation", "fitness", "sortino", "dsr", "oos_sharpe", "trades",
                "protected", "funded", "reason", "run_id", "generation")
        where = "WHERE fingerprint LIKE ?" if fingerprint else ""
        rows = self._db.execute(f"SELECT {', '.join(cols)} FROM arena_standing {where} "
                                "ORDER BY funded DESC, fitness IS NULL, fitness DESC, fingerprint",
                                (fingerprint + "%",) if fingerprint else ()).fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r, strict=True))
            d["spec"] = json.loads(d["spec"])
            d["protected"], d["funded"] = bool(d["protected"]), bool(d["funded"])
            d["allocation"] = float(d["allocation"])
            out.append(d)
        return out

    def lineage(self, fingerprint: str) -> list[dict[str, Any]]:
        """The organism's ancestry, itself first, then parents, grandparents, ... (breadth first)."""
        seen: set[str] = set()
        queue, out = [fingerprint], []
        while queue:
            fp = queue.pop(0)
            if fp in seen:
                continue
            seen.add(fp)
            row = self._db.execute("SELECT parents, operator, generation, run_id, detail FROM arena_lineage "
                                   "WHERE fingerprint = ?", (fp,)).fetchone()
            if row is None:
                continue
            parents = json.loads(row[0])
            out.append({"fingerprint": fp, "parents": parents, "operator": row[1], "generation": row[2],
                        "run_id": row[3], "detail": json.loads(row[4])})
            queue.extend(parents)
        return out

    def events(self, fingerprint: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT old, new, reason, generation, ts_ns FROM arena_events WHERE fingerprint = ? "
                                "ORDER BY id", (fingerprint,)).fetchall()
        return [{"old": r[0], "new": r[1], "reason": r[2], "generation": r[3], "ts_ns": r[4]} for r in rows]

    def equity_samples(self, organism: str) -> list[tuple[str, int, float]]:
        """(session, ts_ns, equity) samples the engine recorded for `organism`, in session then time order."""
        rows = self._db.execute("SELECT session, ts_ns, equity FROM equity_history WHERE organism = ? "
                                "ORDER BY session, ts_ns", (organism,)).fetchall()
        return [(r[0], int(r[1]), float(r[2])) for r in rows]

    def fill_count(self, organism: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM fills WHERE organism = ?", (organism,)).fetchone()
        return int(row[0]) if row else 0

    def set_status(self, fingerprint: str, status: str, allocation: float, funded: bool, reason: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE arena_standing SET status = ?, allocation = ?, funded = ?, reason = ?, updated_ns = ? "
                       "WHERE fingerprint = ?", (status, repr(allocation), int(funded), reason, time.time_ns(),
                                                 fingerprint))
