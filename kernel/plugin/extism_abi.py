"""Adapter for Extism plugins (core wasm modules), carrying the same payloads as JSON.

The JSON shapes are the WIT records with snake_case keys (see
plugins/strategies/momentum_c/README.md). Capabilities are host functions in
`extism:host/user`, closed over the instance's `Capabilities`; Extism's own
HTTP, config and variables are refused at load, so the only way out is the
same policy components get. There is no fuel here: each call has a
wall-clock timeout and the memory cap of the kind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import extism
from wasmtime import Engine, Module, WasmtimeError

from allele.kernel.domain import Event, FinalizedOrder, MarketEvent

from .capabilities import (EXTISM_ENV, EXTISM_EXPORTS, EXTISM_KERNEL_ALLOWED, EXTISM_USER, EXTISM_USER_FUNCTIONS,
                           LOG_LEVELS, Capabilities, Refused)
from .errors import PluginLoadError
from .limits import KindLimits
from .port import Reported, Trapped

_PAGE = 65536
# Extism reports both plugin errors and traps as extism.Error; these mark traps.
_TRAP_MARKERS = ("wasm backtrace", "wasm trap", "timeout", "timed out", "out of fuel", "unreachable",
                 "memory", "call stack exhausted")


@dataclass(frozen=True)
class PreparedModule:
    data: bytes
    kind: str
    imports: tuple[str, ...]
    exports: tuple[str, ...]


def prepare(engine: Engine, data: bytes, source: str, kind_hint: str | None = None) -> PreparedModule:
    """Check the module's imports and exports. The kind is read from the manifest later;
    the import check here uses the union of all kinds, and `check_kind` narrows it."""
    try:
        module = Module(engine, data)
    except WasmtimeError as exc:
        raise PluginLoadError(source, f"is not a valid WebAssembly module ({str(exc).splitlines()[0]})",
                              "the file may be truncated or corrupted") from None
    imports = []
    for imp in module.imports:
        full = f"{imp.module}::{imp.name}"
        imports.append(full)
        if imp.module == EXTISM_ENV:
            if imp.name not in EXTISM_KERNEL_ALLOWED:
                raise PluginLoadError(source, f"imports '{full}', which Allele plugins may not use",
                                      "Extism's own HTTP, config and variables are disabled; a sensor fetches "
                                      "through extism:host/user::allele_fetch")
        elif imp.module == EXTISM_USER:
            if not any(imp.name in fns for fns in EXTISM_USER_FUNCTIONS.values()):
                raise PluginLoadError(source, f"imports '{full}', which the host does not provide")
        else:
            hint = "Extism plugins run without WASI" if imp.module.startswith("wasi") else \
                "only extism:host/env and extism:host/user functions can be imported"
            raise PluginLoadError(source, f"imports '{full}', which an Allele plugin may not use", hint)
    exports = tuple(sorted(e.name for e in module.exports))
    if "manifest" not in exports:
        raise PluginLoadError(source, "is a core wasm module without a 'manifest' export, so not an Extism "
                                      "plugin for Allele", "export manifest, configure and the calls of its kind")
    return PreparedModule(data, kind_hint or "", tuple(imports), exports)


def check_kind(prepared: PreparedModule, kind: str, source: str) -> PreparedModule:
    """Now that the manifest names the kind: its imports and exports must fit that kind."""
    allowed = EXTISM_USER_FUNCTIONS[kind]
    for full in prepared.imports:
        module, _, name = full.partition("::")
        if module == EXTISM_USER and name not in allowed:
            raise PluginLoadError(source, f"imports '{full}', which a {kind} plugin may not use",
                                  f"a {kind} may import only {', '.join(sorted(allowed))}")
    missing = [e for e in EXTISM_EXPORTS[kind] if e not in prepared.exports]
    if missing:
        raise PluginLoadError(source, f"is a {kind} plugin without the export(s) {', '.join(missing)}")
    return PreparedModule(prepared.data, kind, prepared.imports, prepared.exports)


class ExtismInstance:
    def __init__(self, prepared: PreparedModule, caps: Capabilities, limits: KindLimits) -> None:
        self._caps = caps
        manifest = {"wasm": [{"data": prepared.data}],
                    "memory": {"max_pages": max(1, limits.memory_bytes // _PAGE)},
                    "timeout_ms": int(limits.call_timeout_s * 1000),
                    "allowed_hosts": []}
        try:
            self._plugin = extism.Plugin(manifest, wasi=False, functions=self._host_functions(prepared.kind))
        except extism.Error as exc:
            raise Trapped(f"could not be instantiated: {exc}") from None

    def _host_functions(self, kind: str) -> list[extism.Function]:
        caps = self._caps

        def allele_log(level: int, message: str) -> None:
            caps.log(LOG_LEVELS[level] if 0 <= level < len(LOG_LEVELS) else "info", message)

        def allele_now_ns() -> int:
            return caps.now_ns()

        def allele_fetch(req: Annotated[dict[str, Any], extism.Json]) -> Annotated[dict[str, Any], extism.Json]:
            result = caps.fetch(str(req.get("method", "GET")), str(req.get("url", "")),
                                [tuple(h) for h in req.get("headers", [])], str(req.get("body", "")))
            return {"err": result.reason} if isinstance(result, Refused) else {"ok": asdict(result)}

        def allele_sign(req: Annotated[dict[str, Any], extism.Json]) -> Annotated[dict[str, Any], extism.Json]:
            result = caps.sign(str(req.get("account", "")), str(req.get("algorithm", "")),
                               str(req.get("payload", "")))
            return {"err": result.reason} if isinstance(result, Refused) else {"ok": result}

        available = {"allele_log": allele_log, "allele_now_ns": allele_now_ns, "allele_fetch": allele_fetch,
                     "allele_sign": allele_sign}
        return [extism.TypeInferredFunction(EXTISM_USER, name, available[name], [])
                for name in sorted(EXTISM_USER_FUNCTIONS[kind])]

    def _call(self, name: str, payload: str = "") -> str | Reported:
        try:
            out: bytes = self._plugin.call(name, payload)
        except extism.Error as exc:
            message = str(exc)
            if self._caps.violation:
                raise Trapped(self._caps.violation) from None
            if any(marker in message.lower() for marker in _TRAP_MARKERS):
                raise Trapped(f"trapped: {message.strip().splitlines()[0]}") from None
            return Reported(message)
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise Trapped(f"{name} returned bytes that are not UTF-8") from None

    def _json(self, name: str, payload: str = "") -> Any:
        out = self._call(name, payload)
        if isinstance(out, Reported):
            return out
        try:
            return json.loads(out) if out else None
        except ValueError as exc:
            raise Trapped(f"{name} returned text that is not JSON ({exc})") from None

    def manifest(self) -> dict[str, Any]:
        out = self._json("manifest")
        if isinstance(out, Reported) or not isinstance(out, dict):
            raise Trapped(f"manifest did not return a JSON object ({out!r:.200})")
        return out

    def configure(self, values: dict[str, Any]) -> Reported | None:
        out = self._call("configure", json.dumps(values))
        return out if isinstance(out, Reported) else None

    def reset(self) -> None:
        out = self._call("reset")
        if isinstance(out, Reported):
            raise Trapped(f"reset failed: {out.message}")

    def on_event(self, event: Event) -> Any:
        tag = "market" if isinstance(event, MarketEvent) else "reading"
        out = self._json("on_event", json.dumps({tag: asdict(event)}))
        if isinstance(out, Reported):
            raise Trapped(f"on_event failed: {out.message}")  # on-event has no error case in the contract
        return out

    def on_batch(self, columns: str, budget: int) -> str | Reported:
        return self._call("on_batch", columns)

    def poll(self) -> Any:
        return self._json("poll")

    def subscribe(self, symbols: list[str]) -> Any:
        return self._json("subscribe", json.dumps(symbols))

    def decode(self, frame: str) -> Any:
        return self._json("decode", frame)

    def encode_order(self, order: FinalizedOrder, account: str) -> Any:
        return self._json("encode_order", json.dumps({"order": asdict(order), "account": account}))
