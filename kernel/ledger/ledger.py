"""The ledger: every order, fill and decision, in SQLite, before it is acted on.

Contract:
- `await Ledger.open(path)` (or `async with await Ledger.open(path) as ledger`) creates the
  file and its parent directory if needed, applies pending migrations, and returns a ledger.
- Every write method is one transaction (BEGIN IMMEDIATE ... COMMIT): when it returns the
  change is durable (WAL + synchronous=FULL); when it raises, nothing of it was written.
- `record_order` refuses a client order id it has already seen (`DuplicateOrderError`).
  After a restart that is what stops an order being sent twice: the caller records first,
  sends second, and a replay of the same decision fails here instead of at the venue.
- `record_order_update` appends an event and moves the order's status; a fill also inserts
  into `fills` and moves the position and cash in the same transaction. A fill already
  recorded (same client order id and fill id) is ignored and reported via
  `RecordedUpdate.duplicate` - nothing of that update is written again.
- `rebuild_positions` recomputes positions from the fills and returns where the positions
  table differs (crash recovery; with `repair=True` it also overwrites the table).

The methods are coroutines, but the SQLite calls run on the caller's thread, not in a worker
thread: a transaction costs ~20 µs that way against 300-580 µs through aiosqlite, whose per-
statement thread hand-offs dominated the engine's time (bench/pipeline.py). The price: with
synchronous=FULL the event loop waits for the disk's fsync at each commit (that wait is what
"in the ledger before it is acted on" means); and another process holding the write lock can
stall the loop for up to busy_timeout (5 s).

Numbers are `Decimal` in Python and canonical decimal TEXT in SQLite (see schema.py). A
float from the domain objects enters via `repr`, so 0.1 is Decimal('0.1'), not the binary
expansion. Realized P&L excludes fees; fees are debited from cash in their own currency.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from allele.kernel.domain import FinalizedOrder, OrderUpdate

from .schema import apply_migrations

# Orders that may still trade. "new" is recorded but not yet acknowledged by the venue:
# after a crash these are exactly the ones to reconcile against the venue.
OPEN_STATUSES: tuple[str, ...] = ("new", "accepted", "partially-filled")
ZERO = Decimal(0)


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the body raises (the connection is in autocommit mode)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class LedgerError(Exception):
    """Base class of the ledger's own errors."""


class DuplicateOrderError(LedgerError):
    """A client order id was recorded twice; the second order must not be sent."""


class UnknownOrderError(LedgerError):
    """An update names a client order id the ledger never recorded."""


class OverfillError(LedgerError):
    """A fill would take an order's filled quantity above its quantity."""


def dec(value: float | int | str | Decimal) -> Decimal:
    """A Decimal from a domain number; floats via repr so they keep their shortest form."""
    if isinstance(value, float):
        return Decimal(float.__repr__(value))  # float.__repr__: numpy floats repr as "np.float64(...)"
    return Decimal(value)


def text(value: Decimal) -> str:
    """Canonical TEXT for a Decimal: no exponent, no trailing zeros, no '-0'."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class LedgerOrder:
    client_order_id: str
    organism: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: str
    ts_ns: int
    deadline_ns: int
    currency: str
    status: str
    filled_quantity: Decimal
    venue_order_id: str


@dataclass(frozen=True, slots=True)
class OrderEvent:
    client_order_id: str
    seq: int
    status: str
    venue_order_id: str
    fill_quantity: Decimal
    fill_price: Decimal
    fee: Decimal
    fee_currency: str
    reason: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    fill_id: str
    organism: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Position:
    """Signed quantity (negative = short), its average entry price, and realized P&L (no fees)."""

    organism: str
    symbol: str
    quantity: Decimal
    avg_price: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class EquitySample:
    """An organism's (or, organism '*', the portfolio's) marked-to-market equity at event time `ts_ns`."""

    session: str
    organism: str
    ts_ns: int
    equity: Decimal


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    """Where the positions table (`stored`) and the replay of fills (`rebuilt`) disagree."""

    organism: str
    symbol: str
    stored: Position | None
    rebuilt: Position | None


@dataclass(frozen=True, slots=True)
class RecordedUpdate:
    """What `record_order_update` did: `duplicate` means a fill seen before, nothing written."""

    client_order_id: str
    seq: int | None
    duplicate: bool
    fill: Fill | None


# The ledger's arithmetic runs in this context, never the thread's ambient one: a library may change that
# (ccxt sets ROUND_HALF_UP on the context of whatever thread formats its amounts), and a position rebuilt
# from fills must equal the stored one to the last digit, whichever process or thread computed either.
LEDGER_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN,
                                 traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])


def apply_fill(position: Position, side: str, quantity: Decimal, price: Decimal) -> Position:
    """The position after a fill. Pure, so the incremental path and the rebuild are one code.

    Adding to a position moves the average price (volume-weighted); reducing it realizes
    (price - avg) * closed quantity (sign-adjusted for shorts) and keeps the average;
    crossing through zero closes the old side and opens the remainder at the fill price.
    Computed in LEDGER_CONTEXT.
    """
    with decimal.localcontext(LEDGER_CONTEXT):
        return _apply_fill(position, side, quantity, price)


def _apply_fill(position: Position, side: str, quantity: Decimal, price: Decimal) -> Position:
    delta = quantity if side == "buy" else -quantity
    old = position.quantity
    new = old + delta
    avg = position.avg_price
    realized = position.realized_pnl
    if old == 0 or (old > 0) == (delta > 0):
        avg = (abs(old) * avg + quantity * price) / abs(new)
    else:
        closed = min(abs(old), quantity)
        direction = 1 if old > 0 else -1
        realized += (price - avg) * closed * direction
        if new == 0:
            avg = ZERO
        elif (new > 0) != (old > 0):
            avg = price
    return Position(position.organism, position.symbol, new, avg, realized)


def _fill_key(update: OrderUpdate) -> str:
    # OrderUpdate carries no venue fill id; a venue that resends an update resends the same
    # venue order id, timestamp, quantity and price, so together they identify the fill.
    return f"{update.venue_order_id}|{update.ts_ns}|{text(dec(update.fill_quantity))}|{text(dec(update.fill_price))}"


def _opt(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


_EMPTY_IMAGE: bytes | None = None  # see Ledger._in_memory


class Ledger:
    """An open ledger database. Not shared across processes' writers: one kernel owns it."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: Literal["full", "normal", "off"] = "full") -> Ledger:
        """Open (creating if needed) the ledger at `path` and apply pending migrations.

        `synchronous` is SQLite's: keep "full" for anything that trades; "off" suits a throwaway
        ledger (a backtest's), where a power cut only loses the run."""
        if str(path) == ":memory:":
            return cls._in_memory(synchronous)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is
        # taken at the start of a transaction and never upgraded half-way (no SQLITE_BUSY
        # surprises), and the transaction boundaries are exactly the method boundaries.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit. With NORMAL a commit can be lost on
            # power failure; an order recorded but then lost could be sent again on restart.
            db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA wal_autocheckpoint=0")  # see `checkpoint`
            apply_migrations(db, time.time_ns())
        except BaseException:
            db.close()
            raise
        return cls(db, path)

    @classmethod
    def _in_memory(cls, synchronous: str) -> Ledger:
        """A private in-memory ledger (the arena opens one per evaluation): a copy of an empty, migrated
        database image made once per process, since running the migrations each time cost ~2.5 ms."""
        global _EMPTY_IMAGE
        if _EMPTY_IMAGE is None:
            template = sqlite3.connect(":memory:", isolation_level=None)
            apply_migrations(template, time.time_ns())
            _EMPTY_IMAGE = template.serialize()
            template.close()
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.deserialize(_EMPTY_IMAGE)
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA foreign_keys=ON")
        return cls(db, Path(":memory:"))

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file (PASSIVE: never waits for readers). Automatic checkpoints
        are off, because one would land inside some commit and stall that order for milliseconds (it
        fsyncs the database file); the engine calls this between chunks of events instead."""
        with contextlib.suppress(sqlite3.OperationalError):  # busy: try again next time
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params)).fetchone()

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return self._db.execute(sql, tuple(params)).fetchall()

    async def pragma(self, name: str) -> Any:
        """The value of a PRAGMA (for checks and tests), e.g. 'journal_mode'."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        row = self._one(f"PRAGMA {name}")
        return None if row is None else row[0]

    # --- writes -------------------------------------------------------------------------

    async def record_order(self, order: FinalizedOrder, organism: str, currency: str = "USD") -> None:
        """Record an order before it is sent. Raises DuplicateOrderError on a known id.

        `currency` is the cash its fills move (the symbol's quote currency).
        """
        now = time.time_ns()
        try:
            with self._transaction() as db:
                db.execute(
                    """INSERT INTO orders (client_order_id, organism, symbol, side, type, quantity, limit_price,
                       tif, ts_ns, deadline_ns, currency, status, created_ns, updated_ns)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?)""",
                    (
                        order.client_order_id,
                        organism,
                        order.symbol,
                        order.side,
                        order.order_type,
                        text(dec(order.quantity)),
                        None if order.limit_price is None else text(dec(order.limit_price)),
                        order.time_in_force,
                        order.ts_ns,
                        order.deadline_ns,
                        currency,
                        now,
                        now,
                    ),
                )
                db.execute(
                    """INSERT INTO order_events (client_order_id, seq, status, venue_order_id, fill_quantity,
                       fill_price, fee, fee_currency, reason, ts_ns, recorded_ns)
                       VALUES (?, 0, 'new', '', '0', '0', '0', '', 'recorded', ?, ?)""",
                    (order.client_order_id, order.ts_ns, now),
                )
        except sqlite3.IntegrityError as e:
            if "orders.client_order_id" in str(e):
                raise DuplicateOrderError(
                    f"client order id {order.client_order_id!r} is already in the ledger; refusing to record "
                    "(and so to send) it twice"
                ) from e
            raise

    async def record_order_update(self, update: OrderUpdate, fill_id: str | None = None) -> RecordedUpdate:
        """Append the update as an event, move the order's status, and apply any fill.

        A fill (fill_quantity > 0) is keyed by `fill_id` if the venue gives one, else by
        (venue order id, ts_ns, quantity, price); a key already recorded for this order means
        the update is a replay: nothing is written and `duplicate=True` is returned.
        """
        now = time.time_ns()
        qty = dec(update.fill_quantity)
        price = dec(update.fill_price)
        fee = dec(update.fee)
        if qty < 0:
            raise LedgerError(f"order {update.client_order_id!r}: negative fill quantity {qty}")
        with self._transaction() as db:
            row = self._one(
                "SELECT organism, symbol, side, quantity, filled_quantity, currency FROM orders "
                "WHERE client_order_id = ?",
                (update.client_order_id,),
            )
            if row is None:
                raise UnknownOrderError(f"update for unknown client order id {update.client_order_id!r}")
            organism, symbol, side, quantity, filled, currency = row
            fill: Fill | None = None
            if qty > 0:
                key = fill_id if fill_id is not None else _fill_key(update)
                seen = self._one(
                    "SELECT 1 FROM fills WHERE client_order_id = ? AND fill_id = ?", (update.client_order_id, key)
                )
                if seen is not None:
                    return RecordedUpdate(update.client_order_id, None, True, None)
                new_filled = Decimal(filled) + qty
                if new_filled > Decimal(quantity):
                    raise OverfillError(
                        f"order {update.client_order_id!r}: fill of {qty} takes filled quantity to {new_filled}, "
                        f"above the order's {quantity}"
                    )
                fee_currency = update.fee_currency or currency
                fill = Fill(
                    update.client_order_id, key, organism, symbol, side, qty, price, fee, fee_currency, update.ts_ns
                )
                self._apply_fill(db, fill, currency, now)
                filled = text(new_filled)
            seq_row = self._one(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM order_events WHERE client_order_id = ?",
                (update.client_order_id,),
            )
            seq = int(seq_row[0])
            db.execute(
                """INSERT INTO order_events (client_order_id, seq, status, venue_order_id, fill_quantity, fill_price,
                   fee, fee_currency, reason, ts_ns, recorded_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    update.client_order_id,
                    seq,
                    update.status,
                    update.venue_order_id,
                    text(qty),
                    text(price),
                    text(fee),
                    update.fee_currency,
                    update.reason,
                    update.ts_ns,
                    now,
                ),
            )
            db.execute(
                """UPDATE orders SET status = ?, filled_quantity = ?,
                   venue_order_id = CASE WHEN ? != '' THEN ? ELSE venue_order_id END, updated_ns = ?
                   WHERE client_order_id = ?""",
                (update.status, filled, update.venue_order_id, update.venue_order_id, now, update.client_order_id),
            )
        return RecordedUpdate(update.client_order_id, seq, False, fill)

    def _apply_fill(self, db: sqlite3.Connection, fill: Fill, currency: str, now: int) -> None:
        db.execute(
            """INSERT INTO fills (client_order_id, fill_id, organism, symbol, side, quantity, price, fee,
               fee_currency, ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                fill.client_order_id,
                fill.fill_id,
                fill.organism,
                fill.symbol,
                fill.side,
                text(fill.quantity),
                text(fill.price),
                text(fill.fee),
                fill.fee_currency,
                fill.ts_ns,
            ),
        )
        pos_row = self._one(
            "SELECT quantity, avg_price, realized_pnl FROM positions WHERE organism = ? AND symbol = ?",
            (fill.organism, fill.symbol),
        )
        pos = Position(fill.organism, fill.symbol, ZERO, ZERO, ZERO)
        if pos_row is not None:
            pos = Position(fill.organism, fill.symbol, Decimal(pos_row[0]), Decimal(pos_row[1]), Decimal(pos_row[2]))
        pos = apply_fill(pos, fill.side, fill.quantity, fill.price)
        db.execute(
            """INSERT INTO positions (organism, symbol, quantity, avg_price, realized_pnl, updated_ns)
               VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (organism, symbol) DO UPDATE SET quantity = excluded.quantity,
               avg_price = excluded.avg_price, realized_pnl = excluded.realized_pnl,
               updated_ns = excluded.updated_ns""",
            (fill.organism, fill.symbol, text(pos.quantity), text(pos.avg_price), text(pos.realized_pnl), now),
        )
        with decimal.localcontext(LEDGER_CONTEXT):
            notional = fill.quantity * fill.price
        self._add_cash(db, fill.organism, currency, -notional if fill.side == "buy" else notional, now)
        if fill.fee:
            self._add_cash(db, fill.organism, fill.fee_currency, -fill.fee, now)

    def _add_cash(self, db: sqlite3.Connection, organism: str, currency: str, delta: Decimal, now: int) -> None:
        row = self._one("SELECT amount FROM cash WHERE organism = ? AND currency = ?", (organism, currency))
        with decimal.localcontext(LEDGER_CONTEXT):
            amount = (Decimal(row[0]) if row else ZERO) + delta
        db.execute(
            """INSERT INTO cash (organism, currency, amount, updated_ns) VALUES (?, ?, ?, ?)
               ON CONFLICT (organism, currency) DO UPDATE SET amount = excluded.amount,
               updated_ns = excluded.updated_ns""",
            (organism, currency, text(amount), now),
        )

    async def deposit(self, organism: str, currency: str, amount: Decimal | float | str) -> None:
        """Credit (or, negative, debit) an organism's cash outside of any fill: allocations."""
        with self._transaction() as db:
            self._add_cash(db, organism, currency, dec(amount), time.time_ns())

    async def record_risk_decision(
        self,
        organism: str,
        symbol: str,
        accepted: bool,
        rule: str,
        reason: str,
        ts_ns: int | None = None,
        client_order_id: str | None = None,
    ) -> None:
        """Record a risk gate verdict (accepted or not, which rule, why)."""
        with self._transaction() as db:
            db.execute(
                """INSERT INTO risk_decisions (ts_ns, organism, symbol, client_order_id, accepted, rule, reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (
                    time.time_ns() if ts_ns is None else ts_ns,
                    organism,
                    symbol,
                    client_order_id,
                    int(accepted),
                    rule,
                    reason,
                ),
            )

    async def record_plugin(
        self, sha256: str, name: str, kind: str, version: str, path: str | Path, deployed_ns: int | None = None
    ) -> None:
        """Record a deployed plugin by content hash; redeploying the same hash updates its row."""
        with self._transaction() as db:
            db.execute(
                """INSERT INTO plugins (sha256, name, kind, version, path, deployed_ns) VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (sha256) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                   version = excluded.version, path = excluded.path, deployed_ns = excluded.deployed_ns""",
                (sha256, name, kind, version, str(path), time.time_ns() if deployed_ns is None else deployed_ns),
            )

    async def record_organism(self, organism_id: str, spec: Mapping[str, Any], status: str) -> None:
        """Insert or update an organism (spec stored as JSON)."""
        now = time.time_ns()
        with self._transaction() as db:
            db.execute(
                """INSERT INTO organisms (id, spec, status, created_ns, updated_ns) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, status = excluded.status,
                   updated_ns = excluded.updated_ns""",
                (organism_id, json.dumps(spec, sort_keys=True), status, now, now),
            )

    async def record_equity(self, session: str, ts_ns: int, equity: Mapping[str, float]) -> None:
        """Record one equity sample per organism (and '*' for the portfolio) at event time `ts_ns`.

        A second sample for the same (session, organism, ts_ns) replaces the first."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO equity_history (session, organism, ts_ns, equity) VALUES (?, ?, ?, ?)",
                [(session, organism, ts_ns, text(dec(value))) for organism, value in sorted(equity.items())],
            )

    async def equity_history(self, organism: str | None = None, since_ns: int = 0) -> list[EquitySample]:
        """Equity samples in event-time order (session, then time), optionally of one organism ('*' = portfolio)."""
        rows = self._all(
            "SELECT session, organism, ts_ns, equity FROM equity_history WHERE (? IS NULL OR organism = ?) "
            "AND ts_ns >= ? ORDER BY ts_ns, session, organism",
            (organism, organism, since_ns),
        )
        return [EquitySample(r[0], r[1], r[2], Decimal(r[3])) for r in rows]

    async def audit(self, actor: str, action: str, details: Mapping[str, Any] | None = None) -> None:
        """Append to the audit log (details as JSON)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO audit_log (ts_ns, actor, action, details) VALUES (?, ?, ?, ?)",
                (time.time_ns(), actor, action, json.dumps(dict(details or {}), sort_keys=True, default=str)),
            )

    # --- queries ------------------------------------------------------------------------

    _ORDER_COLUMNS = (
        "client_order_id, organism, symbol, side, type, quantity, limit_price, tif, ts_ns, deadline_ns, currency, "
        "status, filled_quantity, venue_order_id"
    )

    @staticmethod
    def _order(r: Any) -> LedgerOrder:
        return LedgerOrder(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            Decimal(r[5]),
            _opt(r[6]),
            r[7],
            r[8],
            r[9],
            r[10],
            r[11],
            Decimal(r[12]),
            r[13],
        )

    async def orders(self, organism: str | None = None, status: str | None = None) -> list[LedgerOrder]:
        """Orders, optionally filtered by organism and/or status, in recording order."""
        rows = self._all(
            f"SELECT {self._ORDER_COLUMNS} FROM orders WHERE (? IS NULL OR organism = ?) AND (? IS NULL OR status = ?) "
            "ORDER BY created_ns, rowid",
            (organism, organism, status, status),
        )
        return [self._order(r) for r in rows]

    async def order(self, client_order_id: str) -> LedgerOrder | None:
        row = self._one(f"SELECT {self._ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return None if row is None else self._order(row)

    async def open_orders(self) -> list[LedgerOrder]:
        """Orders that may still trade (new, accepted, partially-filled): reconcile these on restart."""
        marks = ", ".join("?" for _ in OPEN_STATUSES)
        rows = self._all(
            f"SELECT {self._ORDER_COLUMNS} FROM orders WHERE status IN ({marks}) ORDER BY created_ns, rowid",
            OPEN_STATUSES,
        )
        return [self._order(r) for r in rows]

    async def order_events(self, client_order_id: str) -> list[OrderEvent]:
        rows = self._all(
            """SELECT client_order_id, seq, status, venue_order_id, fill_quantity, fill_price, fee, fee_currency,
               reason, ts_ns FROM order_events WHERE client_order_id = ? ORDER BY seq""",
            (client_order_id,),
        )
        return [
            OrderEvent(r[0], r[1], r[2], r[3], Decimal(r[4]), Decimal(r[5]), Decimal(r[6]), r[7], r[8], r[9])
            for r in rows
        ]

    async def fills(
        self, client_order_id: str | None = None, organism: str | None = None, symbol: str | None = None
    ) -> list[Fill]:
        """Fills in the order they were applied, optionally filtered."""
        rows = self._all(
            """SELECT client_order_id, fill_id, organism, symbol, side, quantity, price, fee, fee_currency, ts_ns
               FROM fills WHERE (? IS NULL OR client_order_id = ?) AND (? IS NULL OR organism = ?)
               AND (? IS NULL OR symbol = ?) ORDER BY id""",
            (client_order_id, client_order_id, organism, organism, symbol, symbol),
        )
        return [
            Fill(r[0], r[1], r[2], r[3], r[4], Decimal(r[5]), Decimal(r[6]), Decimal(r[7]), r[8], r[9]) for r in rows
        ]

    async def positions(self, organism: str | None = None) -> list[Position]:
        rows = self._all(
            "SELECT organism, symbol, quantity, avg_price, realized_pnl FROM positions "
            "WHERE (? IS NULL OR organism = ?) ORDER BY organism, symbol",
            (organism, organism),
        )
        return [Position(r[0], r[1], Decimal(r[2]), Decimal(r[3]), Decimal(r[4])) for r in rows]

    async def cash(self, organism: str | None = None) -> dict[tuple[str, str], Decimal]:
        """Cash by (organism, currency)."""
        rows = self._all(
            "SELECT organism, currency, amount FROM cash WHERE (? IS NULL OR organism = ?)", (organism, organism)
        )
        return {(r[0], r[1]): Decimal(r[2]) for r in rows}

    async def risk_decisions(self, organism: str | None = None) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT ts_ns, organism, symbol, client_order_id, accepted, rule, reason FROM risk_decisions "
            "WHERE (? IS NULL OR organism = ?) ORDER BY id",
            (organism, organism),
        )
        keys = ("ts_ns", "organism", "symbol", "client_order_id", "accepted", "rule", "reason")
        return [{**dict(zip(keys, r, strict=True)), "accepted": bool(r[4])} for r in rows]

    async def audit_log(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT ts_ns, actor, action, details FROM audit_log ORDER BY id")
        return [{"ts_ns": r[0], "actor": r[1], "action": r[2], "details": json.loads(r[3])} for r in rows]

    async def plugins(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT sha256, name, kind, version, path, deployed_ns FROM plugins ORDER BY deployed_ns"
        )
        keys = ("sha256", "name", "kind", "version", "path", "deployed_ns")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check` result ('ok' when sound)."""
        row = self._one("PRAGMA integrity_check")
        return str(row[0]) if row else ""

    # --- recovery -----------------------------------------------------------------------

    async def rebuild_positions(self, repair: bool = False) -> list[PositionMismatch]:
        """Replay every fill (in application order) and compare with the positions table.

        Returns the mismatches (empty when consistent). Since fills and positions are written
        in one transaction, a mismatch means something outside the ledger touched the table;
        `repair=True` then overwrites the table with the rebuilt positions.
        """
        with self._transaction() as db:
            rebuilt: dict[tuple[str, str], Position] = {}
            for f in await self.fills():
                key = (f.organism, f.symbol)
                pos = rebuilt.get(key, Position(f.organism, f.symbol, ZERO, ZERO, ZERO))
                rebuilt[key] = apply_fill(pos, f.side, f.quantity, f.price)
            stored = {(p.organism, p.symbol): p for p in await self.positions()}
            mismatches = [
                PositionMismatch(k[0], k[1], stored.get(k), rebuilt.get(k))
                for k in sorted(set(stored) | set(rebuilt))
                if stored.get(k) != rebuilt.get(k)
            ]
            if repair and mismatches:
                now = time.time_ns()
                db.execute("DELETE FROM positions")
                for p in rebuilt.values():
                    db.execute(
                        """INSERT INTO positions (organism, symbol, quantity, avg_price, realized_pnl, updated_ns)
                           VALUES (?, ?, ?, ?, ?, ?)""",
                        (p.organism, p.symbol, text(p.quantity), text(p.avg_price), text(p.realized_pnl), now),
                    )
        return mismatches
