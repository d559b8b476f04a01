"""Where things live: runtime state under ALLELE_HOME, and the source tree's own files."""

from __future__ import annotations

import os
from pathlib import Path

# This file is kernel/paths.py in the source tree (installed editable).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
WIT_DIR = SOURCE_ROOT / "wit"
GUEST_SDK_DIR = Path(__file__).resolve().parent / "sdk" / "guest"
BUNDLED_PLUGINS_DIR = SOURCE_ROOT / "plugins"


def allele_home() -> Path:
    """Runtime state: `$ALLELE_HOME`, else `.allele/` in the working directory."""
    env = os.environ.get("ALLELE_HOME")
    return Path(env).expanduser().resolve() if env else Path.cwd() / ".allele"


def compile_cache_dir(home: Path | None = None) -> Path:
    """Compiled components, keyed by wasm sha256 and wasmtime version.

    `$ALLELE_COMPILE_CACHE` overrides it, so test runs with throwaway homes
    can share one cache.
    """
    env = os.environ.get("ALLELE_COMPILE_CACHE")
    return Path(env) if env else (home or allele_home()) / "cache" / "compiled"


def live_allele_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` if that process is alive and is an Allele process, else None.

    A stale pid file is ignored; so is a pid reused after a crash by an unrelated process: only one whose
    command line mentions allele counts (Linux /proc; elsewhere a live pid is trusted)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid
    return pid if b"allele" in cmdline else None
