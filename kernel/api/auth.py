"""Token checks: `Authorization: Bearer <token>` for REST; for the WebSocket (browsers cannot set its
headers) the `Sec-WebSocket-Protocol` pair `allele.bearer, <token>`, or `?token=<token>` for other clients.
Missing or wrong: 401. Compared in constant time."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, WebSocket, status

WS_PROTOCOL = "allele.bearer"


def _matches(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def require_token(request: Request) -> None:
    """FastAPI dependency of every /api route. Async on purpose (as every dependency here): FastAPI runs a sync
    one in a worker thread, and each hand-off waits for a turn of the loop the engine keeps busy."""
    token: str = request.app.state.api.token
    header = request.headers.get("authorization")
    if header is None:
        raise unauthorized("missing API token: send 'Authorization: Bearer <token>' (the token is in "
                           ".allele/api.token; `allele ui --print-url` shows a URL with it)")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not _matches(given.strip(), token):
        raise unauthorized("wrong API token: use the one in .allele/api.token")


def websocket_token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """(the token the client presented, the subprotocol to echo back)."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if WS_PROTOCOL in offered:
        rest = [p for p in offered if p != WS_PROTOCOL]
        return (rest[0] if rest else None), WS_PROTOCOL
    return websocket.query_params.get("token"), None


def websocket_allowed(websocket: WebSocket) -> tuple[bool, str | None]:
    given, subprotocol = websocket_token(websocket)
    return _matches(given, websocket.app.state.api.token), subprotocol
