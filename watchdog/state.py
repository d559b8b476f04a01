"""Where the watchdog keeps its state, and how others (the CLI, the API) read it.

Files under the Allele home:

- `watchdog.pid`: the watchdog's pid while it runs (what `allele stop` signals first);
- `watchdog.json`: its state, rewritten atomically on every change and about once a second;
- `watchdog.sock`: the Unix datagram socket the engine's heartbeats arrive on (a short path under
  the temp dir when the home's path is too long for a socket name, see `socket_path`);
- `logs/watchdog.log`: one line per event (start, heartbeat lost, restart with its cause, stop).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from allele.kernel.paths import live_allele_pid

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), terminating NUL included.
_MAX_SOCKET_PATH = 100


def state_path(home: Path) -> Path:
    return home / "watchdog.json"


def pid_path(home: Path) -> Path:
    return home / "watchdog.pid"


def log_path(home: Path) -> Path:
    return home / "logs" / "watchdog.log"


def socket_path(home: Path) -> Path:
    """The heartbeat socket of `home`: `<home>/watchdog.sock`, or, when that path is too long to be a socket
    name, `<tmp>/allele-<uid>/<hash of home>.sock` (the engine and the watchdog compute the same one)."""
    path = home / "watchdog.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"allele-{os.getuid()}" / f"{digest}.sock"


def running_watchdog(home: Path) -> int | None:
    """The pid of a live watchdog for this home, or None (a stale pid file, or a reused pid, is ignored)."""
    pid: int | None = live_allele_pid(pid_path(home))
    return pid


def read_state(home: Path) -> dict[str, Any] | None:
    """The watchdog's state for `home`, or None if no watchdog ever ran there.

    Keys (`watchdog.json` as written by the supervisor, plus two computed when read):

    - `state`: "starting" (waiting for the engine's first heartbeat), "running", "restarting"
      (waiting out the backoff, or for a restarted engine's first heartbeat), "stopping",
      "stopped", or "gave-up" (too many restarts in the window; the engine is left down);
    - `pid`: the watchdog's pid; `alive` (computed): whether that process still runs;
    - `mode`: "spawn" (the watchdog runs the engine as its child) or "command" (container mode:
      it runs `restart_command` and only watches heartbeats); `restart_command`: that command or null;
    - `engine_pid`: the pid of the engine it watches (from the last heartbeat in command mode), or null;
    - `started_at`: when the watchdog started (Unix seconds); `engine_started_at`: when the current engine
      was (re)started; `updated_at`: when the file was written;
    - `last_heartbeat_at`: Unix seconds of the last heartbeat, or null; `last_heartbeat_age_s`
      (recomputed when read): seconds since then, or null; `heartbeat`: the last heartbeat itself
      (`pid`, `session`, `seq`, `ts`, `counters`);
    - `restart_count`: restarts since the watchdog started; `restarts`: the latest 100, oldest first,
      each `{"ts": Unix seconds, "cause": "crashed: killed by SIGKILL" | "hung: no heartbeat for 10.0 s" |
      "exited with status 3" | ..., "backoff_s": the wait before the restart, "engine_pid": the old pid}`;
    - `gave_up`: why it gave up (null unless state is "gave-up");
    - `heartbeat_interval_s`, `hang_timeout_s`: the settings in force.
    """
    try:
        data: dict[str, Any] = json.loads(state_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    pid = data.get("pid")
    data["alive"] = isinstance(pid, int) and running_watchdog(home) == pid
    last = data.get("last_heartbeat_at")
    data["last_heartbeat_age_s"] = round(time.time() - last, 3) if isinstance(last, int | float) else None
    return data


def write_state(home: Path, data: dict[str, Any]) -> None:
    """Replace `watchdog.json` atomically (a reader never sees half a file)."""
    path = state_path(home)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def remove_pid_file(home: Path, pid: int) -> None:
    """Remove `watchdog.pid` if it still names `pid` (not a newer watchdog's)."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        if int(pid_path(home).read_text().strip()) == pid:
            pid_path(home).unlink()
