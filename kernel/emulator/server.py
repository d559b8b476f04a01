"""The venue emulator over HTTP and WebSocket: a local stand-in for Binance spot, on 127.0.0.1 only.

    server = EmulatorServer(EmulatorState(accounts={"key": Account("secret", {"USDT": 10_000.0})}))
    server.start()                      # a background thread; port 0 = any free port
    server.rest_url                     # http://127.0.0.1:<port>/api/v3   (ccxt urls['api']['public'/'private'])
    server.ws_url                       # ws://127.0.0.1:<port>/stream/ws   (ccxt.pro urls['api']['ws']['spot'])
    server.stop()

REST: GET /api/v3/{ping,time,exchangeInfo,depth,trades,aggTrades,ticker/24hr,ticker/bookTicker,ticker/price} without
a key; GET/POST/DELETE /api/v3/order, POST /api/v3/order/cancelReplace, GET
/api/v3/{openOrders,allOrders,account,myTrades} signed (see `allele.kernel.emulator.state`
for the checks and error codes).

WebSocket (`/ws`, `/ws/<n>`, `/stream/ws/<n>`): Binance's raw-stream protocol. A client sends
`{"method": "SUBSCRIBE", "params": ["btcusdt@trade", ...], "id": 1}` and gets `{"result": null, "id": 1}`,
then every frame of those streams; UNSUBSCRIBE and LIST_SUBSCRIPTIONS work the same way. A frame that is
not such a request is answered with `{"error": {"code": 2|3, "msg": ...}, "id": ...}` and the connection
stays open. A client that cannot keep up (more than `QUEUE_LIMIT` frames waiting) is disconnected.

User data: POST/PUT/DELETE /api/v3/userDataStream (API key header, no signature) opens, extends and closes a
listenKey; `/ws/<listenKey>` then streams that account's `executionReport`s. ccxt.pro subscribes over the
WebSocket API instead (`/ws-api/v3`, `userDataStream.subscribe.signature`, HMAC-signed like REST), and gets the
same events as `{"subscriptionId": 0, "event": {...}}`.

Perpetuals (`futures`, on by default: `allele.kernel.emulator.futures`): /fapi/v1, v2, v3 REST, the listenKey
at /fapi/v1/listenKey, market streams at `/fstream/{public,market}/ws/<n>` and `ORDER_TRADE_UPDATE` user data at
`/fstream/private/ws?listenKey=<key>` (ccxt.pro's `urls['api']['ws']['linear']` is `<base>/fstream/ws`).
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

from .futures import FuturesState
from .state import JSON, USER_STREAM, ApiError, EmulatorState, signed_payload, stream_names

log = logging.getLogger("allele.emulator")

QUEUE_LIMIT = 10_000
PRIVATE_GET = frozenset({"order", "openOrders", "allOrders", "account", "myTrades"})
FAPI_PRIVATE_GET = frozenset({"order", "openOrder", "openOrders", "allOrders", "account", "balance", "positionRisk",
                              "leverageBracket", "userTrades"})
LOCALHOST = "127.0.0.1"
T = TypeVar("T")


@dataclass(eq=False)
class _Connection:
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    streams: set[str] = field(default_factory=set)
    ws_api: bool = False
    """A WebSocket API connection: user data arrives as `{"subscriptionId": 0, "event": ...}`."""


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
                if conn.ws_api:
                    self._put(conn, json.dumps({"subscriptionId": 0, "event": frame}, separators=(",", ":")))
                    continue
                text = text or json.dumps(frame, separators=(",", ":"))
                self._put(conn, text)

    def broadcast_raw(self, text: str) -> None:
        """Send `text` as it is to every connection (a test's way to inject a garbled frame)."""
        for conn in list(self.connections):
            self._put(conn, text)

    def drop_connections(self) -> None:
        """Close every client's connection (a test's way to cut a stream off, as a venue's restart would)."""
        for conn in list(self.connections):
            self.connections.discard(conn)
            with contextlib.suppress(asyncio.QueueFull):
                conn.queue.put_nowait(None)

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

    def ws_api_command(self, conn: _Connection, text: str) -> JSON:
        """The reply to one WebSocket API request: `userDataStream.subscribe.signature` (what ccxt.pro's binance
        uses for spot user data; params apiKey, timestamp, recvWindow, signature over the sorted others),
        `userDataStream.unsubscribe`, `ping`; anything else is an error reply and the connection stays open."""
        try:
            request = json.loads(text)
        except ValueError:
            self.bad_requests += 1
            return {"id": None, "status": 400, "error": {"code": -1102, "msg": "the request is not JSON"}}
        if not isinstance(request, dict) or not isinstance(request.get("params", {}), dict):
            self.bad_requests += 1
            return {"id": None, "status": 400, "error": {"code": -1102, "msg": "the request is not a JSON object "
                                                                                "with object params"}}
        rid, method, params = request.get("id"), request.get("method"), request.get("params", {})
        if method == "ping":
            return {"id": rid, "status": 200, "result": {}}
        if method == "userDataStream.unsubscribe":
            conn.streams = {s for s in conn.streams if not s.startswith(USER_STREAM)}
            return {"id": rid, "status": 200, "result": {}}
        if method != "userDataStream.subscribe.signature":
            self.bad_requests += 1
            return {"id": rid, "status": 400, "error": {"code": -1000, "msg": f"unknown method {str(method)[:40]!r} "
                                                        "(the emulator's WebSocket API serves userDataStream only)"}}
        fields = {str(k): str(v) for k, v in params.items()}
        signature = fields.pop("signature", None)
        payload = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
        try:
            api_key = self.state.authenticate(fields.get("apiKey"), payload, signature, fields)
        except ApiError as exc:
            return {"id": rid, "status": exc.http, "error": {"code": exc.code, "msg": exc.msg}}
        conn.streams.add(f"{USER_STREAM}{api_key}")
        return {"id": rid, "status": 200, "result": {"subscriptionId": 0}}

    async def serve(self, websocket: WebSocket, *, user: str | None = None, ws_api: bool = False) -> None:
        """One client until it leaves: `user` (an API key) subscribes it to that account's user data (a
        listenKey URL); `ws_api` makes it a WebSocket API connection (`ws_api_command` answers its frames)."""
        await websocket.accept()
        conn = _Connection(ws_api=ws_api)
        if user is not None:
            conn.streams.add(f"{USER_STREAM}{user}")
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
                reply = self.ws_api_command(conn, text) if ws_api else self.command(conn, text)
                self._put(conn, json.dumps(reply, separators=(",", ":")))
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


def create_app(state: EmulatorState, *, tick_s: float = 0.25, futures: FuturesState | None = None) -> FastAPI:
    """The FastAPI app: REST under /api/v3 (and /fapi/v1..v3 with `futures`), WebSocket streams, the WebSocket
    API's user data, and a market task stepping every `tick_s`."""
    hub = StreamHub(state)
    state.listeners.append(hub.publish)
    futures_hub = StreamHub(futures) if futures is not None else None
    if futures is not None and futures_hub is not None:
        futures.listeners.append(futures_hub.publish)
    venues: list[EmulatorState] = [state] if futures is None else [state, futures]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def market() -> None:
            while True:
                for venue in venues:
                    try:
                        venue.step_market()
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
    app.state.futures_hub = futures_hub
    app.state.emulator = state

    def reply(result: tuple[int, Any]) -> JSONResponse:
        status, body = result
        headers = {"Retry-After": "60"} if status == 429 else None
        return JSONResponse(body, status_code=status, headers=headers)

    async def private(request: Request, path: str, venue: EmulatorState = state) -> JSONResponse:
        query = request.url.query
        body = (await request.body()).decode("utf-8", errors="replace")
        if path in ("userDataStream", "listenKey"):
            return reply(venue.user_data_stream(request.method, request.headers.get("X-MBX-APIKEY"),
                                                _params(query, body)))
        payload, signature = signed_payload(query, body)
        return reply(venue.private(request.method, path, _params(query, body),
                                   request.headers.get("X-MBX-APIKEY"), payload, signature))

    async def public(request: Request, path: str, venue: EmulatorState) -> JSONResponse:
        try:
            venue.charge(request.client.host if request.client else "unknown", 1)
        except ApiError as exc:
            return reply(exc.reply())
        return reply(venue.public(path, _params(request.url.query, "")))

    @app.get("/api/v3/{path:path}")
    async def get(request: Request, path: str) -> JSONResponse:
        if path in PRIVATE_GET:
            return await private(request, path)
        return await public(request, path, state)

    @app.api_route("/api/v3/{path:path}", methods=["POST", "PUT", "DELETE"])
    async def write(request: Request, path: str) -> JSONResponse:
        return await private(request, path)

    @app.api_route("/fapi/{version}/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def fapi(request: Request, version: str, path: str) -> JSONResponse:
        if futures is None or version not in ("v1", "v2", "v3"):
            return reply((404, {"code": -1000, "msg": f"unknown endpoint /fapi/{version}/{path} (this emulator "
                                                      "serves /fapi/v1, v2 and v3 only when futures are on)"}))
        if request.method == "GET" and path not in FAPI_PRIVATE_GET:
            return await public(request, path, futures)
        return await private(request, path, futures)

    @app.websocket("/ws")
    async def ws_root(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    @app.websocket("/ws/{stream_id}")
    async def ws_numbered(websocket: WebSocket, stream_id: str) -> None:
        # Binance spot: wss://.../ws/<listenKey> is that account's user data stream.
        await hub.serve(websocket, user=state.listen_key_owner(stream_id))

    @app.websocket("/ws-api/v3")
    async def ws_api(websocket: WebSocket) -> None:
        await hub.serve(websocket, ws_api=True)

    if futures is not None and futures_hub is not None:
        # ccxt.pro puts linear streams under <base>/{public,market,private}/ws[/<n>]; the private one carries
        # the user data of `?listenKey=`.
        @app.websocket("/fstream/{category}/ws")
        async def fws_root(websocket: WebSocket, category: str) -> None:
            key = websocket.query_params.get("listenKey")
            await futures_hub.serve(websocket, user=futures.listen_key_owner(key) if key else None)

        @app.websocket("/fstream/{category}/ws/{stream_id}")
        async def fws_numbered(websocket: WebSocket, category: str, stream_id: str) -> None:
            await futures_hub.serve(websocket, user=futures.listen_key_owner(stream_id))

    @app.websocket("/stream/ws/{stream_id}")
    async def ws_stream(websocket: WebSocket, stream_id: str) -> None:
        # ccxt.pro tells spot from futures connections by "/stream" in the URL.
        await hub.serve(websocket)

    return app


def _toml_inline(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_inline(v)}' for k, v in value.items()) + " }"
    return json.dumps(value)  # a string: JSON's form is TOML's


class EmulatorServer:
    """The emulator app under uvicorn on 127.0.0.1: in a background thread (`start`) or the foreground (`serve`)."""

    def __init__(self, state: EmulatorState, *, port: int = 0, tick_s: float = 0.25,
                 futures: FuturesState | None = None) -> None:
        """`futures` is the USD-M perpetuals venue beside the spot one; by default one for the spot venue's API
        keys and USDT-quoted symbols (`FuturesState.beside`), each futures wallet funded with the account's
        spot USDT."""
        self.state = state
        self.futures = futures if futures is not None else FuturesState.beside(state)
        self.app = create_app(state, tick_s=tick_s, futures=self.futures)
        self.hub: StreamHub = self.app.state.hub
        self.futures_hub: StreamHub | None = self.app.state.futures_hub
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

    @property
    def ws_api_url(self) -> str:
        return f"ws://{LOCALHOST}:{self.port}/ws-api/v3"

    @property
    def futures_ws_url(self) -> str:
        return f"ws://{LOCALHOST}:{self.port}/fstream/ws"

    def ccxt_urls(self) -> dict[str, Any]:
        """The `urls['api']` entries that point ccxt's `binance` (and ccxt.pro's) at this emulator: spot, and the
        USD-M futures used with `defaultType` "swap"."""
        fapi = {f"fapi{kind}{suffix}": f"{self.base_url}/fapi/{version}" for kind in ("Public", "Private")
                for suffix, version in (("", "v1"), ("V2", "v2"), ("V3", "v3"))}
        return {"public": self.rest_url, "private": self.rest_url, "v1": f"{self.base_url}/api/v1", **fapi,
                "ws": {"spot": self.ws_url, "linear": self.futures_ws_url, "ws-api": {"spot": self.ws_api_url}}}

    def ccxt_urls_toml(self) -> str:
        """`ccxt_urls()` as a TOML inline table: the `urls` value of config.toml's `[exchange]`."""
        return _toml_inline(self.ccxt_urls())

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
