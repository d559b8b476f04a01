"""The host's capabilities as seen from inside a plugin.

Inside a component, the bridge installs a backend that calls the WIT imports.
Run natively (a plugin author's unit tests), `allele.kernel.sdk.testing`
installs a backend that imitates the host. Either way plugin code calls the
same four functions.
"""

from __future__ import annotations

import sys
from typing import Protocol

from .model import HttpResponse


class Backend(Protocol):
    def log(self, level: str, message: str) -> None: ...
    def now_ns(self) -> int: ...
    def fetch(self, method: str, url: str, headers: list[tuple[str, str]], body: str) -> HttpResponse: ...
    def sign(self, account: str, algorithm: str, payload: str) -> str: ...


class _Unattached:
    """Used when no host is attached: logs to stderr, refuses capabilities."""

    def log(self, level: str, message: str) -> None:
        print(f"[{level}] {message}", file=sys.stderr)

    def now_ns(self) -> int:
        return 0

    def fetch(self, method: str, url: str, headers: list[tuple[str, str]], body: str) -> HttpResponse:
        from .model import PluginError

        raise PluginError("fetch is not available: no host is attached")

    def sign(self, account: str, algorithm: str, payload: str) -> str:
        from .model import PluginError

        raise PluginError("sign is not available: no host is attached")


_backend: Backend = _Unattached()


def attach(backend: Backend) -> None:
    """Route the capability calls below to `backend`."""
    global _backend
    _backend = backend


def log(message: str, level: str = "info") -> None:
    """Write a line to the host's log (levels: debug, info, warn, error)."""
    _backend.log(level, message)


def now_ns() -> int:
    """Event time of the event being processed, ns since the Unix epoch (strategies)."""
    return _backend.now_ns()


def fetch(url: str, method: str = "GET", headers: list[tuple[str, str]] | None = None, body: str = "") -> HttpResponse:
    """HTTP through the host, allowed only to the manifest's `allowed_hosts` (sensors).

    Raises PluginError with the host's reason when the request is refused or fails.
    """
    return _backend.fetch(method, url, list(headers or []), body)


def sign(account: str, payload: str, algorithm: str = "hmac-sha256") -> str:
    """Hex signature of `payload` with the vault secret of `account` (exchanges, encode_order only)."""
    return _backend.sign(account, algorithm, payload)
