"""The kill switch as a file flag, `<home>/KILL_SWITCH`, whose content is the reason.

A file so that the CLI, the API and a person with `touch` all engage the same switch, and it
survives a restart. The gate itself never reads it (it is pure): the engine reads `engaged`
into each `RiskState` snapshot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "KILL_SWITCH"


def kill_switch_path(home: Path) -> Path:
    return home / FILE_NAME


def engaged(home: Path) -> bool:
    """True while the flag file exists, whatever it contains (an empty `touch`ed file counts)."""
    return kill_switch_path(home).exists()


def reason(home: Path) -> str | None:
    """The recorded reason, "" for a file without one, None when the switch is off."""
    try:
        return kill_switch_path(home).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def engage(home: Path, why: str) -> None:
    """Engage (or re-engage with a new reason). Written to a temporary file and renamed, so a
    reader sees either no switch or the whole reason, never half of it."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{FILE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(why, encoding="utf-8")
    os.replace(tmp, kill_switch_path(home))


def clear(home: Path) -> None:
    """Disengage; clearing a switch that is off is not an error."""
    kill_switch_path(home).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """The same operations bound to one home directory."""

    home: Path

    @property
    def engaged(self) -> bool:
        return engaged(self.home)

    @property
    def reason(self) -> str | None:
        return reason(self.home)

    def engage(self, why: str) -> None:
        engage(self.home, why)

    def clear(self) -> None:
        clear(self.home)
