"""A Binance-compatible klines endpoint on 127.0.0.1 for sensor tests, and klines to serve from it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

T0_MS = 1_700_000_000_000
MINUTE_MS = 60_000


def klines(closes: list[float], t0_ms: int = T0_MS) -> list[list[Any]]:
    """Binance-format 1m klines with the given closes (numbers as strings, like the venue)."""
    rows = []
    for i, c in enumerate(closes):
        open_ms = t0_ms + i * MINUTE_MS
        rows.append([open_ms, f"{c:.8f}", f"{c * 1.001:.8f}", f"{c * 0.999:.8f}", f"{c:.8f}", "12.5",
                     open_ms + MINUTE_MS - 1, "500000.0", 42, "6.0", "250000.0", "0"])
    return rows


class Venue:
    """A klines endpoint whose answer each test sets: (status, body). Records every request."""

    def __init__(self) -> None:
        self.status = 200
        self.body = "[]"
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        venue = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                venue.requests.append((url.path, parse_qs(url.query)))
                data = venue.body.encode()
                self.send_response(venue.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def serve(self, rows: list[list[Any]]) -> None:
        self.status, self.body = 200, json.dumps(rows)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
