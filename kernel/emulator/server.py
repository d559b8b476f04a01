"""The venue emulator over HTTP and WebSocket: a local stand-in for Binance spot, on 127.0.0.1 only.

    server = EmulatorServer(EmulatorState(accounts={"key": Account("secret", {"USDT": 10_000.0})}))
    server.start()                      # a background thread; port 0 = any free port
    server.rest_url                     # http://127.0.0.1:<port>/api/v3   (ccxt urls['api']['public'/'private'])
    server.ws_url                       # ws://127.0.0.1:<port>/stream/ws   (ccxt.pro urls['api']['ws']['spot'])
    server.stop()

REST: GET /api/v3/{ping,time,exchangeInfo,depth,trades,aggTrades,ticker/24hr,ticker/bookTicker,ticker/price} without
a key; GET/POST/DELETE /api/v3/order, GET /api/v3/{openOrders,allOrders,account,myTrades} signed (see
`allele.kernel.emulator.state` for the checks and error codes).

WebSocket (`/ws`, `/ws/<n>`, `/stream/ws/<n>`): Binance's raw-stream protocol. A client sends
`{"method": "SUBSCRIBE", "params": ["btcusdt@trade", ...], "id": 1}` and gets `{"result": null, "id": 1}`,
then every frame of those streams; UNSUBSCRIBE and LIST_SUBSCRIPTIONS work the same way. A frame that is
not such a request is answered with `{"error": {"code": 2|3, "msg": ...}, "id": ...}` and the connection
stays open. A client that cannot keep up (more than `QUEUE_LIMIT` frames waiting) is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from .state import JSON, ApiError, EmulatorState, signed_payload, stream_names

log = logging.getLogger("allele.emulator")

QUEUE_LIMIT = 10_000
PRIVATE_GET = frozenset({"order", "openOrders", "allOrders", "account", "myTrades"})
LOCALHOST = "127.0.0.1"
T = TypeVar("T")


@dataclass(eq=False)
class _Connection:
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    streams: set[str] = field(default_factory=set)


class StreamHub:
    """WebSocket connections and their subscriptions; `publish` is the state's listener."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.known = stream_names(state)
        self.connections: set[_Connection] = set()
        self.bad_requests = 0

    def publish(self, stream: str, frame: JSON) -> None:
        text: str | None = None
        for conn in list(self.connections):
            if stream in conn.streams:
                text = text or json.dumps(frame, separators=(",", ":"))
                self._put(conn, text)

    def broadcast_raw(self, text: str) -> None:
        """Send `text` as it is to every connection (a test's way to inject a garbled frame)."""
        for conn in list(self.connections):
            self._put(conn, text)

    def _put(self, conn: _Connection, text: str) -> None:
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("emulator: a WebSocket client fell %d frames behind; disconnecting it", QUEUE_LIMIT)
            self.connections.discard(conn)
            with contextlib.suppress(asyncio.QueueFull):
                conn.queue.get_nowait()
                conn.queue.put_nowait(None)

    def command(self, conn: _Connection, text: str) -> JSON:
        """The reply to one client frame (a request, or garbage)."""
        try:
            request = json.loads(text)
        except ValueError:
            self.bad_requests += 1
            return {"error": {"code": 3, "msg": "Invalid JSON: the frame is not JSON"}, "id": None}
        if not isinstance(request, dict):
            self.bad_requests += 1
            return {"error": {"code": 2, "msg": "Invalid request: the frame is not a JSON object"}, "id": None}
        rid = request.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
            self.bad_requests += 1
            return {"error": {"code": 2, "msg": "Invalid request: 'id' must be an integer or a string"}, "id": None}
        method = request.get("method")
        params = request.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.streams), "id": rid}
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            self.bad_requests += 1
            return {"error": {"code": 2, "msg": f"Invalid request: unknown method {str(method)[:40]!r}"}, "id": rid}
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            self.bad_requests += 1
            return {"error": {"code": 2, "msg": "Invalid request: 'params' must be a list of stream names"},
                    "id": rid}
        unknown = [p for p in params if p not in self.known]
        if unknown:
            self.bad_requests += 1
            return {"error": {"code": 2, "msg": f"Invalid request: unknown stream(s) {unknown[:5]}"}, "id": rid}
        if method == "SUBSCRIBE":
            conn.streams.update(params)
        else:
            conn.streams.difference_update(params)
        return {"result": None, "id": rid}

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        conn = _Connection()
        self.connections.add(conn)

        async def sender() -> None:
            while True:
                text = await conn.queue.get()
                if text is None:
                    await websocket.close(code=1008)
                    return
                await websocket.send_text(text)

        task = asyncio.create_task(sender())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:  # a binary frame: answered like any other garbage
                    text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
                self._put(conn, json.dumps(self.command(conn, text), separators=(",", ":")))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.connections.discard(conn)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _params(query: str, body: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for text in (query, body):
        for key, value in parse_qsl(text, keep_blank_values=True):
            params.setdefault(key, value)
    return params


def create_app(state: EmulatorState, *, tick_s: float = 0.25) -> FastAPI:
    """The FastAPI app: REST under /api/v3, WebSocket streams, and a market task stepping every `tick_s`."""
    hub = StreamHub(state)
    state.listeners.append(hub.publish)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def market() -> None:
            while True:
                try:
                    state.step_market()
                except Exception:  # the venue keeps running; the failure is in its log
                    log.exception("emulator: the synthetic market failed to step")
                await asyncio.sleep(tick_s)

        task = asyncio.create_task(market()) if tick_s > 0 else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="Allele venue emulator (Binance spot subset)", lifespan=lifespan)
    app.state.hub = hub
    app.state.emulator = state

    def reply(result: tuple[int, Any]) -> JSONResponse:
        status, body = result
        headers = {"Retry-After": "60"} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    async def private(request: Request, path: str) -> JSONResponse:
        query = request.url.query
        body = (await request.body()).decode("utf-8", errors="replace")
        payload, signature = signed_payload(query, body)
        return reply(state.private(request.method, path, _params(query, body),
                                   request.headers.get("X-MBX-APIKEY"), payload, signature))

    @app.get("/api/v3/{path:path}")
    async def get(request: Request, path: str) -> JSONResponse:
        if path in PRIVATE_GET:
            return await private(request, path)
        try:
            state.charge(request.client.host if request.client else "unknown", 1)
        except ApiError as exc:
            return reply(exc.reply())
        return reply(state.public(path, _params(request.url.query, "")))

    @app.post("/api/v3/{path:path}")
    async def post(request: Request, path: str) -> JSONResponse:
        return await private(request, path)

    @app.delete("/api/v3/{path:path}")
    async def delete(request: Request, path: str) -> JSONResponse:
        return await private(request, path)

    @app.websocket("/ws")
    async def ws_root(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    @app.websocket("/ws/{stream_id}")
    async def ws_numbered(websocket: WebSocket, stream_id: str) -> None:
        await hub.serve(websocket)

    @app.websocket("/stream/ws/{stream_id}")
    async def ws_stream(websocket: WebSocket, stream_id: str) -> None:
        # ccxt.pro tells spot from futures connections by "/stream" in the URL.
        await hub.serve(websocket)

    return app


class EmulatorServer:
    """The emulator app under uvicorn on 127.0.0.1: in a background thread (`start`) or the foreground (`serve`)."""

    def __init__(self, state: EmulatorState, *, port: int = 0, tick_s: float = 0.25) -> None:
        self.state = state
        self.app = create_app(state, tick_s=tick_s)
        self.hub: StreamHub = self.app.state.hub
        # Bound to the loopback address only: the emulator accepts any order from anyone who can reach it.
        self._config = uvicorn.Config(self.app, host=LOCALHOST, port=port, log_level="warning", log_config=None,
                                      ws="websockets-sansio", lifespan="on")
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOCALHOST}:{self.port}/stream/ws"

    def ccxt_urls(self) -> dict[str, Any]:
        """The `urls['api']` entries that point ccxt's `binance` (and ccxt.pro's) at this emulator."""
        return {"public": self.rest_url, "private": self.rest_url, "v1": f"{self.base_url}/api/v1",
                "ws": {"spot": self.ws_url}}

    async def serve(self) -> None:
        """Run in the current loop until stopped (`allele venue emulator`)."""
        self._loop = asyncio.get_running_loop()
        await self._server.serve()

    def _bound_port(self) -> int:
        for server in getattr(self._server, "servers", []):
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError("the emulator's server has no listening socket")

    def start(self, timeout_s: float = 10.0) -> None:
        """Serve in a daemon thread; returns once the socket listens (`port` is then the bound one)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve_flagging(started))
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="allele-emulator", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s) or failure or not self._server.started:
            raise RuntimeError(f"the venue emulator did not start on {LOCALHOST}:{self._config.port}: "
                               f"{failure[0] if failure else 'timed out'}")
        self.port = self._bound_port()

    async def _serve_flagging(self, started: threading.Event) -> None:
        async def watch() -> None:
            while not self._server.started and not self._server.should_exit:
                await asyncio.sleep(0.01)
            started.set()

        watcher = asyncio.create_task(watch())
        await self._server.serve()
        await watcher

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the server's loop (the state is single-threaded) and return its result."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
