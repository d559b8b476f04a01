"""allele.kernel.ledger: the SQLite ledger (WAL, synchronous=FULL). Everything is written here before it is acted on."""

from .ledger import (
    OPEN_STATUSES,
    DuplicateOrderError,
    EquitySample,
    Fill,
    Ledger,
    LedgerError,
    LedgerOrder,
    OrderEvent,
    OverfillError,
    Position,
    PositionMismatch,
    RecordedUpdate,
    UnknownOrderError,
    apply_fill,
)
from .schema import MIGRATIONS, Migration, apply_migrations

__all__ = [
    "MIGRATIONS",
    "OPEN_STATUSES",
    "DuplicateOrderError",
    "EquitySample",
    "Fill",
    "Ledger",
    "LedgerError",
    "LedgerOrder",
    "Migration",
    "OrderEvent",
    "OverfillError",
    "Position",
    "PositionMismatch",
    "RecordedUpdate",
    "UnknownOrderError",
    "apply_fill",
    "apply_migrations",
]
