"""What each plugin kind may import and must export, and the host side of each capability.

Capabilities are enforced by what the linker defines: a component or module
importing anything outside its kind's set is refused at load, naming the
import. At run time each instance gets its own `Capabilities` object, which
is the only thing its host functions can reach.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from allele.vault.signing import ALGORITHMS, Signer, UnknownAccount

from .errors import CapabilityViolation

WIT_PACKAGE = "allele:plugin"
WIT_VERSION = "0.1.0"


def wit_name(interface: str) -> str:
    return f"{WIT_PACKAGE}/{interface}@{WIT_VERSION}"


# Host interfaces each kind may import. `types` carries no functions.
COMPONENT_IMPORTS: dict[str, frozenset[str]] = {
    "strategy": frozenset({wit_name("types"), wit_name("log"), wit_name("clock")}),
    "sensor": frozenset({wit_name("types"), wit_name("log"), wit_name("http")}),
    "exchange": frozenset({wit_name("types"), wit_name("log"), wit_name("signer")}),
}

# The interface each kind exports, with its functions.
COMPONENT_EXPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "strategy": (wit_name("strategy-api"), ("manifest", "configure", "reset", "on-event", "on-batch")),
    "sensor": (wit_name("sensor-api"), ("manifest", "configure", "poll")),
    "exchange": (wit_name("exchange-api"), ("manifest", "configure", "subscribe", "decode", "encode-order")),
}

# Extism: the kernel's memory and I/O functions are allowed; its own HTTP,
# config and variables are not (a plugin reaches the outside only through
# Allele's capabilities below, which apply the same policy as for components).
EXTISM_ENV = "extism:host/env"
EXTISM_USER = "extism:host/user"
EXTISM_KERNEL_ALLOWED = frozenset({
    "alloc", "free", "length", "length_unsafe", "input_length", "input_offset", "input_load_u8", "input_load_u64",
    "output_set", "error_set", "load_u8", "load_u64", "store_u8", "store_u64", "log_info", "log_debug",
    "log_warn", "log_error", "log_trace", "get_log_level",
})
EXTISM_USER_FUNCTIONS: dict[str, frozenset[str]] = {
    "strategy": frozenset({"allele_log", "allele_now_ns"}),
    "sensor": frozenset({"allele_log", "allele_fetch"}),
    "exchange": frozenset({"allele_log", "allele_sign"}),
}
EXTISM_EXPORTS: dict[str, tuple[str, ...]] = {
    "strategy": ("manifest", "configure", "reset", "on_event", "on_batch"),
    "sensor": ("manifest", "configure", "poll"),
    "exchange": ("manifest", "configure", "subscribe", "decode", "encode_order"),
}

LOG_LEVELS = ("debug", "info", "warn", "error")
_PY_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
MAX_LOG_CHARS = 4096
MAX_HTTP_BODY = 4 * 2**20
HTTP_TIMEOUT_S = 10.0


def url_allowed(url: str, allowed: frozenset[str]) -> bool:
    """Is `url` an http(s) URL that one of the manifest's `allowed_hosts` entries admits?

    An entry is `[scheme://]host[:port]`: `host` matches exactly, or `*.example.com` any subdomain of
    example.com; a scheme restricts it to that scheme (else http and https); a port to that port (else any)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a malformed port
        return False
    hostname = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not hostname:
        return False
    for entry in allowed:
        scheme, _, rest = entry.lower().rpartition("://")
        host, _, entry_port = rest.partition(":")
        if scheme and scheme != parts.scheme:
            continue
        if entry_port and int(entry_port) != port:
            continue
        if (host.startswith("*.") and hostname.endswith(host[1:])) or hostname == host:
            return True
    return False


@dataclass(frozen=True)
class Refused:
    """A capability call the host declined; the plugin receives `reason` as an error."""

    reason: str


@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: str


@dataclass
class Capabilities:
    """Everything one plugin instance can reach through the host, and nothing more."""

    plugin: str
    kind: str
    allowed_hosts: frozenset[str] = frozenset()
    signer: Signer | None = None
    event_time_ns: int = 0
    executing_order: bool = False
    violation: str | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("allele.plugin"))

    # -- log ---------------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        if len(message) > MAX_LOG_CHARS:
            message = message[:MAX_LOG_CHARS] + f"… ({len(message) - MAX_LOG_CHARS} more characters cut)"
        self.logger.log(_PY_LEVELS.get(level, logging.INFO), "[%s] %s", self.plugin, message)

    # -- clock -------------------------------------------------------------
    def now_ns(self) -> int:
        return self.event_time_ns

    # -- http (sensors) ------------------------------------------------------
    def fetch(self, method: str, url: str, headers: list[tuple[str, str]], body: str) -> HttpResult | Refused:
        """The response, or an error message for the plugin (refusals are not violations)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return Refused(f"refused: only http and https URLs may be fetched, not '{parts.scheme}:'")
        hostname = parts.hostname or ""
        if not url_allowed(url, self.allowed_hosts):
            where = parts.netloc or hostname
            self.logger.warning("[%s] refused a request to '%s' (%s): not in its allowed_hosts %s",
                                self.plugin, hostname, where, sorted(self.allowed_hosts))
            return Refused(f"refused: '{parts.scheme}://{where}' (host '{hostname}') is not in this plugin's "
                           f"allowed_hosts {sorted(self.allowed_hosts)}")
        if method.upper() not in ("GET", "POST", "PUT", "DELETE", "HEAD"):
            return Refused(f"refused: HTTP method '{method}' is not allowed")
        request = urllib.request.Request(url, data=body.encode() if body else None, method=method.upper(),
                                         headers=dict(headers))
        try:
            with _NO_REDIRECTS.open(request, timeout=HTTP_TIMEOUT_S) as resp:
                return self._read(resp.status, resp.headers.items(), resp)
        except urllib.error.HTTPError as exc:
            return self._read(exc.code, exc.headers.items(), exc)
        except (OSError, ValueError) as exc:
            return Refused(f"request to {url} failed: {exc}")

    @staticmethod
    def _read(status: int, headers: Iterable[tuple[str, str]], stream: _Readable) -> HttpResult | Refused:
        data = stream.read(MAX_HTTP_BODY + 1)
        if len(data) > MAX_HTTP_BODY:
            return Refused(f"response body exceeds the {MAX_HTTP_BODY} byte cap")
        return HttpResult(status, [(str(k), str(v)) for k, v in headers], data.decode("utf-8", "replace"))

    # -- signer (exchanges) --------------------------------------------------
    def sign(self, account: str, algorithm: str, payload: str) -> str | Refused:
        """The hex signature, or Refused for an error the plugin may handle.

        Signing outside an order execution is a violation: it raises, which
        traps the guest, and the host quarantines the instance.
        """
        if not self.executing_order:
            self.violation = "called signer.sign outside an order execution (signing works only in encode-order)"
            raise CapabilityViolation(self.violation)
        if self.signer is None:
            return Refused("no vault is attached to this host: signing is unavailable")
        if algorithm not in ALGORITHMS:
            return Refused(f"unknown signing algorithm '{algorithm}'")
        try:
            return str(self.signer.sign(account, algorithm, payload.encode()))
        except UnknownAccount:
            return Refused(f"the vault holds no credentials for account '{account}'")


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead outside the allow-list: hand 3xx back to the plugin instead."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)
