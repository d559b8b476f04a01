"""Adapter for Extism plugins (core wasm modules), carrying the same payloads as JSON.

The JSON shapes are the WIT records with snake_case keys (see
plugins/strategies/momentum_c/README.md). Capabilities are host functions in
`extism:host/user`, closed over the instance's `Capabilities`; Extism's own
HTTP, config and variables are refused at load, so the only way out is the
same policy components get. There is no fuel here: each call has a
wall-clock timeout and the memory cap of the kind.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import asdict, dataclass
from typing import Any

import extism
from extism.extism import HOST_FN_REGISTRY, ExplicitFunction, ValType, _ffi, _lib
from wasmtime import Engine, Module, WasmtimeError

from allele.kernel.domain import Event, FinalizedOrder, MarketEvent

from .capabilities import (
    EXTISM_ENV,
    EXTISM_EXPORTS,
    EXTISM_KERNEL_ALLOWED,
    EXTISM_USER,
    EXTISM_USER_FUNCTIONS,
    LOG_LEVELS,
    Capabilities,
    Refused,
)
from .errors import CapabilityViolation, PluginLoadError
from .limits import KindLimits
from .port import Reported, Trapped

_PAGE = 65536


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


# extism-python 1.1 dispatches every host function through its global HOST_FN_REGISTRY by an
# index carried in the function's user data (type inference there mishandles `-> int` and
# `-> None`). So each capability has one dispatcher, registered once per process, and each
# instance's functions carry its key; the dispatcher finds that instance's Capabilities here.
_CAPABILITIES: dict[int, Capabilities] = {}
_KEYS = itertools.count(1)
_DISPATCHERS: dict[str, bytes] = {}
_REGISTRY_LOCK = threading.Lock()
_I64 = ValType.I64
_SIGNATURES: dict[str, tuple[list[ValType], list[ValType]]] = {
    "allele_log": ([_I64, _I64], []), "allele_now_ns": ([], [_I64]),
    "allele_fetch": ([_I64], [_I64]), "allele_sign": ([_I64], [_I64])}


def _caps_of(key: bytes) -> Capabilities:
    return _CAPABILITIES[int.from_bytes(key, "big")]


def _log(plugin: Any, inputs: list[Any], outputs: list[Any], key: bytes) -> None:
    level = inputs[0].value
    _caps_of(key).log(LOG_LEVELS[level] if 0 <= level < len(LOG_LEVELS) else "info", plugin.input_string(inputs[1]))


def _now_ns(plugin: Any, inputs: list[Any], outputs: list[Any], key: bytes) -> None:
    outputs[0].value = _caps_of(key).now_ns()


def _fetch(plugin: Any, inputs: list[Any], outputs: list[Any], key: bytes) -> None:
    try:
        req = json.loads(plugin.input_string(inputs[0]))
        result = _caps_of(key).fetch(str(req.get("method", "GET")), str(req.get("url", "")),
                                     [tuple(h) for h in req.get("headers", [])], str(req.get("body", "")))
        answer = {"err": result.reason} if isinstance(result, Refused) else {"ok": asdict(result)}
    except (ValueError, AttributeError, TypeError) as exc:
        answer = {"err": f"malformed fetch request: {exc}"}
    plugin.return_string(outputs[0], json.dumps(answer))


def _sign(plugin: Any, inputs: list[Any], outputs: list[Any], key: bytes) -> None:
    caps = _caps_of(key)
    try:
        req = json.loads(plugin.input_string(inputs[0]))
        result = caps.sign(str(req.get("account", "")), str(req.get("algorithm", "")), str(req.get("payload", "")))
        answer = {"err": result.reason} if isinstance(result, Refused) else {"ok": result}
    except CapabilityViolation as exc:
        answer = {"err": str(exc)}  # caps.violation is set: the call is failed and quarantined on return
    except (ValueError, AttributeError, TypeError) as exc:
        answer = {"err": f"malformed sign request: {exc}"}
    plugin.return_string(outputs[0], json.dumps(answer))


_HANDLERS = {"allele_log": _log, "allele_now_ns": _now_ns, "allele_fetch": _fetch, "allele_sign": _sign}


def _dispatcher_index(name: str) -> bytes:
    with _REGISTRY_LOCK:
        if name not in _DISPATCHERS:
            _DISPATCHERS[name] = len(HOST_FN_REGISTRY).to_bytes(4, "big")
            HOST_FN_REGISTRY.append(_HANDLERS[name])
        return _DISPATCHERS[name]


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

    def _host_functions(self, kind: str) -> list[Any]:
        """The kind's capabilities; before the manifest has named a kind (kind ""), all of them, so that any
        module links: the probe instance's Capabilities grant nothing anyway."""
        names = EXTISM_USER_FUNCTIONS[kind] if kind else frozenset().union(*EXTISM_USER_FUNCTIONS.values())
        key = next(_KEYS)
        _CAPABILITIES[key] = self._caps
        self._key = key  # keeps the entry alive exactly as long as this instance
        return [ExplicitFunction(EXTISM_USER, name, *_SIGNATURES[name], None,
                                 [key.to_bytes(8, "big"), _dispatcher_index(name)])
                for name in sorted(names)]

    def __del__(self) -> None:
        _CAPABILITIES.pop(getattr(self, "_key", 0), None)

    def _call(self, name: str, payload: str = "") -> str | Reported:
        # The raw call, for its return code: extism-python folds it into one exception type, but the code
        # is what separates the plugin's own error (error_set, return 1) from a trap or timeout (-1).
        # Judging by the message text instead would let a plugin's error that mentions "memory" pass as a trap.
        data = payload.encode()
        handle = self._plugin.plugin
        rc = _lib.extism_plugin_call(handle, name.encode(), data, len(data))
        if self._caps.violation:  # a host function refused a violation; whatever the guest did next is moot
            raise Trapped(self._caps.violation)
        if rc != 0:
            err = _lib.extism_plugin_error(handle)
            message = _ffi.string(err).decode("utf-8", "replace") if err != _ffi.NULL else f"error code {rc}"
            if rc < 0:
                first = message.strip().splitlines()[0] if message.strip() else f"error code {rc}"
                raise Trapped(f"trapped: {first}")
            return Reported(message)
        out = bytes(_ffi.buffer(_lib.extism_plugin_output_data(handle), _lib.extism_plugin_output_length(handle)))
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
        out = self._json("on_event", json.dumps({tag: asdict(event)}, allow_nan=False))
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
