"""`allele start`: run a paper session until stopped, with the things an operator needs around it.

- `<home>/engine.pid` while running (what `allele stop` signals), removed on exit;
- `<home>/engine.json`, rewritten every `status_interval_s`: the engine's status (organisms,
  positions, P&L, counters, kill switch), what `allele status` prints;
- hot swap: a deployed strategy (`allele deploy`) whose name an organism trades is loaded and
  configured with the organism's genome off the event loop, then handed to the engine, which swaps it
  in at the start of the next chunk of events: the old instance stops receiving events (its open
  orders stay managed and its position stays with the organism). A plugin that fails to load or
  configure is refused, logged, and the old instance keeps trading. Each swap is recorded in the
  ledger's audit log and the firehose, where a replay applies it at the same place.
- retirement: every few seconds, arena organisms the arena no longer funds (a review in another process
  hibernated or defunded them) are retired at the next chunk: working orders cancelled, positions closed
  through the risk gate, no further signals acted on; recorded in the ledger's audit log and the firehose.
- SIGTERM / SIGINT stop the session cleanly: the firehose is closed (compressed) and the ledger closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from allele.kernel.paths import live_allele_pid
from allele.kernel.plugin.errors import PluginError
from allele.watchdog.heartbeat import start_heartbeat, stop_heartbeat

from .engine import Organism
from .ports import TradingSession
from .session import SessionError, arena_defunded, start_strategy, strategy_catalog

log = logging.getLogger("allele.engine")


ARENA_CHECK_S = 5.0  # how often a running engine looks for arena organisms the arena stopped funding


def pid_path(home: Path) -> Path:
    return home / "engine.pid"


def status_path(home: Path) -> Path:
    return home / "engine.json"


def running_pid(home: Path) -> int | None:
    """The pid of a live engine for this home, or None (a stale or reused pid is ignored)."""
    pid: int | None = live_allele_pid(pid_path(home))
    return pid


def read_status(home: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(status_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


async def hot_swap(session: TradingSession, home: Path) -> list[str]:
    """Queue newly deployed strategies for organisms that trade them by name; returns the organisms queued."""
    engine = session.engine
    catalog = strategy_catalog(home)
    swapped = []
    for org in list(engine.organisms.values()):
        if org.spec.strategy.endswith(".wasm") or org.spec.strategy not in catalog:
            continue
        path = catalog[org.spec.strategy]
        try:
            loaded = await asyncio.to_thread(session.host.load, path)
        except PluginError as exc:
            log.error("hot swap of %s for organism %s refused: %s", path.name, org.id, exc)
            continue
        if loaded.sha256 == org.plugin_sha256:
            continue
        try:
            instance = await asyncio.to_thread(start_strategy, session.host, loaded, org.spec)
        except SessionError as exc:
            log.error("hot swap of %s refused: %s; the old instance keeps trading", path.name, exc)
            continue
        engine.queue_swap(org.id, instance)
        swapped.append(org.id)
    return swapped


async def retire_defunded(session: TradingSession, home: Path) -> list[str]:
    """Queue the retirement of every arena organism the arena has stopped funding (an `allele arena review`
    or `arena run` in another process hibernated or defunded it); returns the organisms queued."""
    engine = session.engine
    trading = [o.id for o in engine.organisms.values() if not o.retiring]  # a quarantined one too: it may hold
    try:
        defunded = await asyncio.to_thread(arena_defunded, home, trading)
    except sqlite3.Error as exc:  # the arena's tables busy or missing: look again next time
        log.debug("arena standing not readable now: %s", exc)
        return []
    for organism, reason in defunded.items():
        engine.queue_retire(organism, reason)
    return sorted(defunded)


def _organism_row(org: Organism) -> dict[str, Any]:
    return {"id": org.id, "strategy": org.strategy.name, "symbols": sorted(org.symbols),
            "allocation": org.allocation, "sha256": org.plugin_sha256}


async def serve(session: TradingSession, home: Path, *, status_interval_s: float = 1.0,
                on_ready: Callable[[TradingSession], None] | None = None, serve_api: bool = True) -> None:
    """Run `session` until its events end or SIGTERM/SIGINT; keep engine.json and engine.pid current.
    `serve_api`: also serve the operator's API (`[api]` of config.toml) from this loop while it runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    home.mkdir(parents=True, exist_ok=True)
    pid_path(home).write_text(str(os.getpid()))
    deployed = home / "plugins" / "strategies"

    def write_status(state: str) -> None:
        _write_json_atomic(status_path(home), {"state": state, "pid": os.getpid(), **session.engine.status(),
                                               "organism_specs": [_organism_row(o) for o in
                                                                  session.engine.organisms.values()]})

    async def housekeeping() -> None:
        seen = _dir_stamp(deployed)
        last_arena_check = 0.0
        while not stop.is_set():
            write_status("running")
            stamp = _dir_stamp(deployed)
            if stamp != seen:
                seen = stamp
                await hot_swap(session, home)
            if loop.time() - last_arena_check >= ARENA_CHECK_S:
                last_arena_check = loop.time()
                await retire_defunded(session, home)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), status_interval_s)

    write_status("running")
    if on_ready is not None:
        on_ready(session)
    keeper = asyncio.create_task(housekeeping())
    api = await _start_api(session, home, stop) if serve_api else None
    # Heartbeats to the watchdog, from this loop: a blocked loop or a stopped process stops them.
    beat = start_heartbeat(home, lambda: {"session": session.engine.session,
                                          "counters": session.engine.counters.to_json()})
    try:
        await session.run(stop=stop)
    finally:
        await stop_heartbeat(beat)
        stop.set()
        with contextlib.suppress(Exception):
            await keeper
        if api is not None:
            await api.stop()
        write_status("stopped")
        await session.close()
        pid_path(home).unlink(missing_ok=True)


async def _start_api(session: TradingSession, home: Path, stop: asyncio.Event) -> Any:
    """The API server, or None when it is disabled or cannot start (the engine trades on; the error is logged)."""
    from allele.kernel.api.server import start_api  # imported here: the API's web stack loads only when served
    from allele.kernel.config import ConfigError

    try:
        return await start_api(session, home, running=lambda: not stop.is_set())
    except (OSError, ConfigError, RuntimeError) as exc:  # RuntimeError: a token file others can read
        log.error("the operator's API is not served: %s", exc)
        return None


def _dir_stamp(directory: Path) -> tuple[tuple[str, int], ...]:
    if not directory.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("*.wasm")))
