"""Request body limit: an upload larger than `max_upload_bytes` is refused with 413 naming the limit, from its
Content-Length when it has one, else as soon as the streamed body passes the limit."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: bodies of HTTP requests are cut off at `limit` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def message(self, size: int | None) -> str:
        got = f"{size:,} bytes" if size is not None else f"more than {self.limit:,} bytes"
        return f"request body too large: {got}; the limit is {self.limit:,} bytes (api.max_upload_bytes in config.toml)"

    async def _refuse(self, send: Send, size: int | None) -> None:
        body = json.dumps({"detail": self.message(size), "limit": self.limit}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised inside the body parser: FastAPI passes an HTTPException through as the response.
                    raise HTTPException(413, detail=self.message(None))
            return message

        await self.app(scope, limited_receive, send)
