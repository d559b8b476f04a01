"""Backing up an Allele home while the engine runs (`allele backup`).

Copying `trading.db` with `cp` while the engine writes can capture a torn database: SQLite keeps recent
commits in `trading.db-wal`. Every database of the home is therefore copied with SQLite's online backup
(a consistent snapshot, taken while the engine keeps trading) and checked with `PRAGMA integrity_check`.
The rest of the home is copied file by file with its permissions (the vault and the API token stay 0600),
leaving out what is rebuilt or transient: the compile cache, earlier backups, replays, sockets and pid
files. The backup folder itself is 0700: it holds the (encrypted) vault and the API token.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BackupError", "BackupReport", "backup_home"]

SKIPPED_DIRS = frozenset({"cache", "backups", "replays"})
SKIPPED_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".sock", ".pid", ".tmp")


class BackupError(RuntimeError):
    """The backup could not be made as asked; the message says what and where."""


@dataclass
class BackupReport:
    """Where the backup went and what it holds."""

    path: Path
    databases: dict[str, int] = field(default_factory=dict)  # name -> bytes
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "databases": self.databases, "files": self.files, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def _copy_database(source: Path, target: Path) -> int:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    out = sqlite3.connect(target)
    try:
        with out:
            src.backup(out)  # page by page; the engine's writers wait at most a moment
        check = out.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        src.close()
        out.close()
    if check != "ok":
        raise BackupError(f"the copy of {source} failed its integrity check ({check}); nothing was kept")
    os.chmod(target, 0o600)
    return target.stat().st_size


def backup_home(home: Path, destination: Path | None = None, *, recordings: bool = True) -> BackupReport:
    """Back up `home` into a new folder `<destination>/<UTC timestamp>` (default destination:
    `<home>/backups`). `recordings=False` leaves out `historical/` (it can be large). Raises BackupError."""
    started = time.monotonic()
    if not home.is_dir():
        raise BackupError(f"{home} is not an Allele home (no such folder); set ALLELE_HOME or --home")
    root = (destination or home / "backups") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if root.exists():
        raise BackupError(f"{root} already exists; wait a second or choose another destination")
    root.mkdir(parents=True, mode=0o700)
    os.chmod(root, 0o700)
    report = BackupReport(root)
    try:
        for db in sorted(home.glob("*.db")):
            report.databases[db.name] = _copy_database(db, root / db.name)
            report.bytes += report.databases[db.name]
        for dirpath, dirnames, filenames in os.walk(home):
            here = Path(dirpath)
            rel = here.relative_to(home)
            if rel == Path("."):
                dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS and (recordings or d != "historical")]
            dirnames[:] = [d for d in dirnames if (here / d).resolve() != root.parent.resolve()]
            for name in filenames:
                path = here / name
                if name.endswith(SKIPPED_SUFFIXES) or not stat.S_ISREG(path.lstat().st_mode):
                    continue
                target = root / rel / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copy2(path, target)  # with its mode: 0600 stays 0600
                except FileNotFoundError:  # rotated away while we walked (a firehose file, a log)
                    continue
                report.files += 1
                report.bytes += target.stat().st_size
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise BackupError(f"backing up {home} into {root} failed: {exc}; nothing was kept") from None
    report.seconds = time.monotonic() - started
    return report
