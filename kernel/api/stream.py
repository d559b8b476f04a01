"""`/ws`: the live stream. Protocol (docs/api.md has examples):

- connect to `/ws?topics=tick,order&since=N` with the token (subprotocols `allele.bearer, <token>`, or
  `?token=`); without a valid token the handshake is refused with HTTP 401;
- the server sends `{"type": "hello", "seq": <latest>, "topics": [...], "first": <oldest held>, "session": id,
  "reset": bool}` (reset: `since` was ahead of the bus, i.e. from an earlier session), then every
  message after `since` (default: the latest, i.e. only new ones) on the subscribed topics, as text frames
  each holding a JSON array of `{"type": "event", "seq", "topic", "data"}` objects, in seq order;
- the client may send `{"op": "subscribe", "topics": [...]}`, `{"op": "unsubscribe", "topics": [...]}` or
  `{"op": "ping"}` (answered with `{"type": "pong", "seq": ...}`); a bad request gets `{"type": "error"}`;
- a client too slow for the ring gets `{"type": "gap", "from": a, "to": b}` and continues after it (see hub.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from allele.kernel.engine.bus import TOPICS

from .auth import websocket_allowed
from .hub import Hub, parse_topics


async def _deny(websocket: WebSocket, status: int, detail: str) -> None:
    await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status))


async def stream_endpoint(websocket: WebSocket) -> None:
    api = websocket.app.state.api
    hub: Hub = api.hub
    allowed, subprotocol = websocket_allowed(websocket)
    if not allowed:
        await _deny(websocket, 401, "missing or wrong API token: offer the subprotocols 'allele.bearer' and the "
                                    "token, or add ?token=")
        return
    try:
        topics = parse_topics(websocket.query_params.get("topics", ",".join(TOPICS)))
        raw_since = websocket.query_params.get("since")
        since = hub.last if raw_since is None else int(raw_since)
        if since < 0:
            raise ValueError("since must be >= 0")
    except ValueError as exc:
        await _deny(websocket, 422, f"query field 'topics' or 'since': {exc}")
        return
    await websocket.accept(subprotocol=subprotocol)
    # A `since` ahead of the bus is from an earlier engine run (numbering restarts with each session): say so
    # and start from now, rather than wait for numbers that belong to another session.
    reset = since > hub.last
    state: dict[str, Any] = {"topics": topics, "cursor": hub.last if reset else since}
    hub.clients += 1
    try:
        await websocket.send_text(json.dumps({"type": "hello", "seq": hub.last, "first": hub.first,
                                              "topics": sorted(topics), "session": api.session.engine.session,
                                              "reset": reset}))
        sender = asyncio.create_task(_send_loop(websocket, hub, state, api.config.ws_batch))
        receiver = asyncio.create_task(_receive_loop(websocket, hub, state))
        done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None and not isinstance(failure, WebSocketDisconnect | RuntimeError | OSError):
                raise failure
    except WebSocketDisconnect:
        pass
    finally:
        hub.clients -= 1


async def _send_loop(websocket: WebSocket, hub: Hub, state: dict[str, Any], batch: int) -> None:
    while True:
        await hub.wait(state["cursor"])
        cursor, frame, gap = hub.frame(state["cursor"], state["topics"], batch)
        state["cursor"] = cursor
        if gap is not None:
            hub.dropped += gap[1] - gap[0] + 1
            await websocket.send_text(json.dumps({"type": "gap", "from": gap[0], "to": gap[1]}))
        if frame is not None:
            await websocket.send_text(frame)


async def _receive_loop(websocket: WebSocket, hub: Hub, state: dict[str, Any]) -> None:
    while True:
        text = await websocket.receive_text()
        try:
            request = json.loads(text)
            op = request.get("op") if isinstance(request, dict) else None
            if op == "ping":
                await websocket.send_text(json.dumps({"type": "pong", "seq": hub.last}))
                continue
            if op not in ("subscribe", "unsubscribe"):
                raise ValueError(f"field 'op': {op!r} is not one of subscribe, unsubscribe, ping")
            if "topics" not in request:
                raise ValueError("field 'topics': required")
            topics = parse_topics(request["topics"])
        except (ValueError, TypeError, AttributeError) as exc:
            await websocket.send_text(json.dumps({"type": "error", "detail": str(exc)}))
            continue
        state["topics"] = state["topics"] | topics if op == "subscribe" else state["topics"] - topics
        await websocket.send_text(json.dumps({"type": "subscribed", "topics": sorted(state["topics"]),
                                              "seq": hub.last}))
