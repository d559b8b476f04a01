"""`allele backup` of a home whose engine is trading: consistent databases, permissions kept, restorable."""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from test_cli import WIDE, allele, as_json, assert_ok, assert_refused

from allele.kernel.ledger import Ledger
from allele.vault import ScryptParams, Vault, default_vault_dir


def count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


async def test_a_backup_taken_while_the_engine_trades_is_consistent_and_restorable(built: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[engine]\nspeed = 50\n\n[api]\nenabled = false\n")
    Vault.create(default_vault_dir(home), passphrase="backup test", scrypt=ScryptParams(n=2**10)).add(
        "main", exchange="binance", api_key="k", secret="s3cret-backup")
    assert_ok(allele("start", "--detach", "--no-watchdog", home=home, columns=WIDE))
    try:
        deadline = time.monotonic() + 120
        while not (home / "trading.db").is_file() or count(home / "trading.db", "fills") < 3:
            assert time.monotonic() < deadline, "the engine made no fills"
            time.sleep(0.5)
        report = as_json(allele("backup", "--to", tmp_path / "backups", "--json", home=home))
        second = as_json(allele("backup", "--no-recordings", "--json", home=home))  # into <home>/backups
    finally:
        assert_ok(allele("stop", home=home))

    copy = Path(report["path"])
    assert copy.parent == tmp_path / "backups" and stat.S_IMODE(copy.stat().st_mode) == 0o700
    assert set(report["databases"]) == {"trading.db"} and report["files"] > 0
    assert count(copy / "trading.db", "fills") >= 3 and count(copy / "trading.db", "orders") >= 3
    vault_files = sorted(p.name for p in (copy / "vault").iterdir())
    assert "vault.json" in vault_files
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (copy / "vault").iterdir() if p.is_file())
    assert (copy / "config.toml").is_file() and any((copy / "historical").rglob("*"))
    for transient in ("cache", "backups", "engine.pid", "trading.db-wal"):
        assert not (copy / transient).exists(), transient
    assert Path(second["path"]).parent == home / "backups" and not (Path(second["path"]) / "historical").exists()

    # Restorable: the copied ledger rebuilds its positions from its fills with no mismatch, and the copied
    # vault opens with the same passphrase.
    async with await Ledger.open(copy / "trading.db") as ledger:
        assert await ledger.integrity_check() == "ok"
        assert await ledger.rebuild_positions() == []
    assert Vault.open(copy / "vault", passphrase="backup test").api_key("main") == "k"


def test_backing_up_a_missing_home_is_refused(tmp_path: Path) -> None:
    assert_refused(allele("backup", home=tmp_path / "nowhere", columns=WIDE), "is not an Allele home")
