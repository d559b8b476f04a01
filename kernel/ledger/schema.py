"""The ledger's SQL schema, as one ordered list of versioned migrations.

Contract: `MIGRATIONS[i]` has version `i + 1`. `schema_version` holds the versions applied;
`apply_migrations` runs, each in its own transaction, only those not yet recorded, so
applying them any number of times is the same as applying them once. A migration is never
edited once released: a change is a new entry at the end.

Numbers (quantities, prices, fees, cash, P&L) are stored as TEXT holding a canonical
`decimal.Decimal` string and computed on in Python with `Decimal`: REAL would make a
position rebuilt from fills differ from the incrementally maintained one by rounding, and
the crash-recovery check compares them exactly. Timestamps are INTEGER nanoseconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial ledger",
        (
            """CREATE TABLE organisms (
                id TEXT PRIMARY KEY,
                spec TEXT NOT NULL,            -- JSON
                status TEXT NOT NULL,
                created_ns INTEGER NOT NULL,
                updated_ns INTEGER NOT NULL
            )""",
            """CREATE TABLE orders (
                client_order_id TEXT PRIMARY KEY,
                organism TEXT NOT NULL,
                symbol TEXT NOT NULL,
                side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
                type TEXT NOT NULL CHECK (type IN ('market', 'limit')),
                quantity TEXT NOT NULL,
                limit_price TEXT,
                tif TEXT NOT NULL,
                ts_ns INTEGER NOT NULL,
                deadline_ns INTEGER NOT NULL,
                currency TEXT NOT NULL,        -- the cash a fill moves
                status TEXT NOT NULL,
                filled_quantity TEXT NOT NULL DEFAULT '0',
                venue_order_id TEXT NOT NULL DEFAULT '',
                created_ns INTEGER NOT NULL,
                updated_ns INTEGER NOT NULL
            )""",
            "CREATE INDEX orders_status ON orders (status)",
            "CREATE INDEX orders_organism ON orders (organism)",
            """CREATE TABLE order_events (
                client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
                seq INTEGER NOT NULL,
                status TEXT NOT NULL,
                venue_order_id TEXT NOT NULL,
                fill_quantity TEXT NOT NULL,
                fill_price TEXT NOT NULL,
                fee TEXT NOT NULL,
                fee_currency TEXT NOT NULL,
                reason TEXT NOT NULL,
                ts_ns INTEGER NOT NULL,
                recorded_ns INTEGER NOT NULL,
                PRIMARY KEY (client_order_id, seq)
            )""",
            # Append-only: history is evidence; a correction is a new event.
            """CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
               BEGIN SELECT RAISE(ABORT, 'order_events is append-only'); END""",
            """CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
               BEGIN SELECT RAISE(ABORT, 'order_events is append-only'); END""",
            """CREATE TABLE fills (
                id INTEGER PRIMARY KEY AUTOINCREMENT,  -- application order, replayed by rebuild
                client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
                fill_id TEXT NOT NULL,
                organism TEXT NOT NULL,
                symbol TEXT NOT NULL,
                side TEXT NOT NULL,
                quantity TEXT NOT NULL,
                price TEXT NOT NULL,
                fee TEXT NOT NULL,
                fee_currency TEXT NOT NULL,
                ts_ns INTEGER NOT NULL,
                UNIQUE (client_order_id, fill_id)  -- a replayed fill is not applied twice
            )""",
            "CREATE INDEX fills_organism_symbol ON fills (organism, symbol)",
            """CREATE TABLE positions (
                organism TEXT NOT NULL,
                symbol TEXT NOT NULL,
                quantity TEXT NOT NULL,        -- signed: negative is short
                avg_price TEXT NOT NULL,
                realized_pnl TEXT NOT NULL,
                updated_ns INTEGER NOT NULL,
                PRIMARY KEY (organism, symbol)
            )""",
            """CREATE TABLE cash (
                organism TEXT NOT NULL,
                currency TEXT NOT NULL,
                amount TEXT NOT NULL,
                updated_ns INTEGER NOT NULL,
                PRIMARY KEY (organism, currency)
            )""",
            """CREATE TABLE risk_decisions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts_ns INTEGER NOT NULL,
                organism TEXT NOT NULL,
                symbol TEXT NOT NULL,
                client_order_id TEXT,
                accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
                rule TEXT NOT NULL,
                reason TEXT NOT NULL
            )""",
            """CREATE TABLE plugins (
                sha256 TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                version TEXT NOT NULL,
                path TEXT NOT NULL,
                deployed_ns INTEGER NOT NULL
            )""",
            """CREATE TABLE audit_log (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ts_ns INTEGER NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                details TEXT NOT NULL          -- JSON
            )""",
        ),
    ),
    Migration(
        2,
        "the arena: evaluations, lineage, standing, lifecycle events, runs",
        (
            """CREATE TABLE arena_evaluations (
                fingerprint TEXT NOT NULL,
                data_fingerprint TEXT NOT NULL,
                spec TEXT NOT NULL,              -- JSON: the organism's canonical spec
                result TEXT NOT NULL,            -- JSON: Evaluation.to_json()
                returns BLOB NOT NULL,           -- float64 little-endian, one per bar step
                trade_bars BLOB NOT NULL,        -- int64 little-endian: bars where a trade opened
                created_ns INTEGER NOT NULL,
                PRIMARY KEY (fingerprint, data_fingerprint)
            )""",
            """CREATE TABLE arena_lineage (
                fingerprint TEXT PRIMARY KEY,
                parents TEXT NOT NULL,           -- JSON list of fingerprints
                operator TEXT NOT NULL,
                generation INTEGER NOT NULL,
                run_id TEXT NOT NULL,
                detail TEXT NOT NULL             -- JSON
            )""",
            """CREATE TABLE arena_standing (
                fingerprint TEXT PRIMARY KEY,
                spec TEXT NOT NULL,              -- JSON
                status TEXT NOT NULL,            -- candidate, paper, live, hibernating, retired
                allocation TEXT NOT NULL,        -- decimal USD
                fitness REAL,
                sortino REAL,
                dsr REAL,
                oos_sharpe REAL,
                trades INTEGER,
                protected INTEGER NOT NULL,
                funded INTEGER NOT NULL,
                reason TEXT NOT NULL,
                run_id TEXT NOT NULL,
                generation INTEGER NOT NULL,
                updated_ns INTEGER NOT NULL
            )""",
            "CREATE INDEX arena_standing_fitness ON arena_standing (fitness)",
            """CREATE TABLE arena_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                fingerprint TEXT NOT NULL,
                old TEXT NOT NULL,
                new TEXT NOT NULL,
                reason TEXT NOT NULL,
                generation INTEGER NOT NULL,
                ts_ns INTEGER NOT NULL
            )""",
            """CREATE TABLE arena_runs (
                run_id TEXT PRIMARY KEY,
                config TEXT NOT NULL,            -- JSON
                data_fingerprint TEXT NOT NULL,
                trials INTEGER NOT NULL,
                summary TEXT NOT NULL,           -- JSON: per generation
                started_ns INTEGER NOT NULL,
                finished_ns INTEGER
            )""",
        ),
    ),
    Migration(
        3,
        "equity history: marked-to-market equity per organism, sampled in event time",
        (
            """CREATE TABLE equity_history (
                session TEXT NOT NULL,
                organism TEXT NOT NULL,          -- an organism id, or '*' for the whole portfolio
                ts_ns INTEGER NOT NULL,          -- event time of the sample
                equity TEXT NOT NULL,            -- decimal USD: cash + positions at the marks
                PRIMARY KEY (organism, ts_ns, session)
            )""",
        ),
    ),
    Migration(
        4,
        "the arena's MAP-Elites archive of each run, for the dashboard's niche grid",
        ("ALTER TABLE arena_runs ADD COLUMN archive TEXT",),  # JSON: Archive.grid()
    ),
)


def current_version(db: sqlite3.Connection) -> int:
    """The highest applied migration version (0 for an empty database)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ns INTEGER)")
    row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def apply_migrations(db: sqlite3.Connection, now_ns: int) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied now.

    `db` must be in autocommit mode (isolation_level=None): each migration runs in its own
    BEGIN IMMEDIATE transaction together with its schema_version row, so a crash mid-way
    leaves either all of a migration or none of it.
    """
    applied: list[int] = []
    for migration in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            if current_version(db) >= migration.version:
                db.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version (version, applied_ns) VALUES (?, ?)", (migration.version, now_ns)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied
