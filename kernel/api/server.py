"""Running the API inside the engine's process and asyncio loop:

    server = await start_api(session, home)     # None when [api] enabled = false
    ...
    await server.stop()

uvicorn serves in a task of the running loop (`uvicorn.Server(config).serve()`), so handlers see the
engine's memory directly. It binds `[api] host` (127.0.0.1 by default) and `port` (0 = any free one).
Where it listens is written to `<home>/api.json` (what `allele ui` reads), removed on stop. uvicorn's
signal handlers are disabled: the engine's own SIGTERM/SIGINT handling stops everything. Access logs are
off: nothing about requests (tokens included) reaches the log files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from allele.kernel.engine.ports import TradingSession

from .apitoken import ensure_token
from .app import ApiContext, create_app
from .config import ApiConfig, load_api_config
from .hub import Hub

log = logging.getLogger("allele.api")


def info_path(home: Path) -> Path:
    return home / "api.json"


def read_info(home: Path) -> dict[str, Any] | None:
    """`<home>/api.json` of a running API: host, port, pid, url; None when no API runs there."""
    try:
        data: dict[str, Any] = json.loads(info_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The engine's loop owns SIGTERM/SIGINT (and stops the API); uvicorn must not replace its handlers.
        yield


async def publish_periodic(session: TradingSession, hub: Hub, interval_s: float = 1.0, health_every: int = 5) -> None:
    """What the engine does not publish itself: `organism` messages `{"ranking": [ids, best first], "equity":
    {...}}` whenever the organisms' order by equity changes (checked every `interval_s`), and a `health`
    message every `health_every` intervals (events, event time, kill switch, stream clients and drops)."""
    engine = session.engine
    last: list[str] = []
    tick = 0
    while True:
        equity = {o: engine.portfolio.equity(o) for o in engine.organisms}
        ranking = sorted(equity, key=lambda o: (-equity[o], o))
        if ranking != last:
            last = ranking
            engine.bus.publish("organism", {"ranking": ranking, "equity": equity, "ts_ns": engine.now_ns})
        if tick % health_every == 0:
            engine.bus.publish("health", {"events": engine.counters.events, "event_time_ns": engine.now_ns,
                                          "kill_switch": engine.kill_switch, "stream_clients": hub.clients,
                                          "stream_dropped": hub.dropped, "pid": os.getpid()})
        tick += 1
        await asyncio.sleep(interval_s)


@dataclass
class ApiServer:
    """A started API: its address, its uvicorn server and task."""

    host: str
    port: int
    context: ApiContext
    server: uvicorn.Server
    task: asyncio.Task[None]
    home: Path
    rankings: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.rankings.cancel()
        self.server.should_exit = True
        self.context.hub.close()  # wakes the stream clients' senders
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(self.task), 5.0)
        if not self.task.done():
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self.context.close()
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, ValueError):
            if json.loads(info_path(self.home).read_text()).get("pid") == os.getpid():
                info_path(self.home).unlink()


async def start_api(session: TradingSession, home: Path, *, config: ApiConfig | None = None,
                    running: Callable[[], bool] = lambda: True) -> ApiServer | None:
    """Start serving `session`'s API in the running loop; returns once it listens (None if disabled).

    Raises OSError when the address is taken, ConfigError for a bad [api] table."""
    cfg = config or load_api_config(home)
    if not cfg.enabled:
        return None
    token = ensure_token(home)
    hub = Hub(session.engine.bus, cfg.ws_buffer, cfg.ws_flush_ms / 1000)
    context = ApiContext(home, session, hub, token, cfg, running)
    app = create_app(context)
    uv_config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                               lifespan="off", ws="websockets-sansio", ws_max_size=1 << 20,
                               # Compression would cost CPU per client per frame in the engine's process.
                               ws_per_message_deflate=False)
    # Bound here, not by uvicorn: uvicorn answers a bind failure with sys.exit, which would end the engine.
    try:
        sock = socket.create_server((cfg.host, cfg.port), family=socket.AF_INET6 if ":" in cfg.host else
                                    socket.AF_INET, reuse_port=False)
    except OSError as exc:
        hub.close()
        raise OSError(f"the API cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}; set [api] port in "
                      "config.toml (or ALLELE_API__PORT) to a free port, or 0 for any free port") from None
    sock.setblocking(False)
    sockname = sock.getsockname()
    server = _Server(uv_config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="allele-api")
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        hub.close()
        raise OSError(f"the API did not start: {task.exception() or 'uvicorn exited'}")
    rankings = asyncio.create_task(publish_periodic(session, hub), name="allele-api-periodic")
    api = ApiServer(str(sockname[0]), int(sockname[1]), context, server, task, home, rankings)
    tmp = info_path(home).with_name(".api.json.tmp")
    tmp.write_text(json.dumps({"host": api.host, "port": api.port, "pid": os.getpid(), "url": api.url}))
    os.replace(tmp, info_path(home))
    log.warning("API listening on %s (token in %s)", api.url, home / "api.token")
    return api
