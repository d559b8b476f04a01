"""The engine's side of the watchdog: a heartbeat datagram every `heartbeat_interval_s`.

The sender is a task on the engine's event loop, so heartbeats stop when the loop is blocked or the
process is stopped (SIGSTOP) or dead: exactly the states the watchdog must notice. A heartbeat is one
JSON datagram on the Unix socket `allele.watchdog.state.socket_path(home)`:

    {"pid": 1234, "session": "paper-...", "seq": 17, "ts": 1763770000.5, "counters": {...}}

Sending never blocks and never fails the engine: with no watchdog listening (`--no-watchdog`, or the
watchdog restarting) the datagram is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from allele.kernel.config import ConfigError

from .config import load_watchdog_config
from .state import socket_path

log = logging.getLogger("allele.engine.heartbeat")


def send_heartbeat(sock: socket.socket, target: Path, message: dict[str, Any]) -> bool:
    """One datagram to `target`; False (and nothing raised) when nobody listens or its queue is full."""
    try:
        sock.sendto(json.dumps(message, separators=(",", ":"), default=str).encode(), os.fsencode(target))
    except (FileNotFoundError, ConnectionRefusedError, BlockingIOError, PermissionError):
        return False
    except OSError as exc:
        log.debug("heartbeat to %s not sent: %s", target, exc)
        return False
    return True


async def heartbeats(home: Path, payload: Callable[[], dict[str, Any]], interval_s: float) -> None:
    """Send `{"pid", "seq", "ts", **payload()}` to the home's watchdog socket every `interval_s`, until cancelled."""
    target = socket_path(home)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    seq = 0
    try:
        while True:
            seq += 1
            send_heartbeat(sock, target, {"pid": os.getpid(), "seq": seq, "ts": time.time(), **payload()})
            await asyncio.sleep(interval_s)
    finally:
        sock.close()


def start_heartbeat(home: Path, payload: Callable[[], dict[str, Any]]) -> asyncio.Task[None]:
    """Start the heartbeat task on the running loop, at `[watchdog] heartbeat_interval_s` (1 s if that
    table cannot be read: the engine has already validated what it needs, and a watchdog with a bad
    config refuses to start on its own)."""
    try:
        interval = load_watchdog_config(home).heartbeat_interval_s
    except ConfigError as exc:
        log.warning("heartbeats every 1 s: %s", exc)
        interval = 1.0
    return asyncio.create_task(heartbeats(home, payload, interval), name="allele-heartbeat")


async def stop_heartbeat(task: asyncio.Task[None]) -> None:
    """Cancel the heartbeat task and wait for it (its socket is closed)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
