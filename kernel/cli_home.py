"""`allele backup`: a consistent copy of the Allele home while the engine runs.

    allele backup [--to DIR] [--no-recordings] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allele.kernel import cli as _cli
from allele.kernel.backup import BackupError, backup_home
from allele.kernel.cli import JsonFlag, _fail, _print_json, err, out
from allele.kernel.paths import allele_home

app: typer.Typer = _cli.app  # annotated: mypy sees the cross-package import as Any


@app.command()
def backup(to: Annotated[Path | None, typer.Option("--to", help="where to put the backup folder (default: "
                                                               "<home>/backups)")] = None,
           no_recordings: Annotated[bool, typer.Option("--no-recordings",
                                                       help="leave out historical/ (market recordings)")] = False,
           as_json: JsonFlag = False) -> None:
    """Back up the home while the engine runs: every SQLite database with SQLite's online backup (checked),
    then config, vault, deployed plugins, recordings and logs with their permissions. Copy the result off
    the machine; the vault in it is still encrypted with your passphrase."""
    home = allele_home()
    try:
        with err.status(f"backing up {home}"):
            report = backup_home(home, to, recordings=not no_recordings)
    except BackupError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json(report.to_json())
        return
    dbs = ", ".join(f"{name} ({size / 2**20:.1f} MiB, integrity ok)" for name, size in report.databases.items())
    out.print(f"backed up {home} into {report.path}: {dbs or 'no database'}; {report.files} other files, "
              f"{report.bytes / 2**20:.1f} MiB in {report.seconds:.1f} s")
    out.print("copy it off this machine; restore by copying it back as the home while no engine runs")
