"""Adapter for WIT components on wasmtime's component model (the primary ABI).

One Engine per host, with fuel metering. Each instance gets its own Store
(fuel and memory limit), and its own Linker whose host functions close over
that instance's `Capabilities` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import Config, Engine, Store, WasmtimeError
from wasmtime.component import Component, Func, Instance, Linker, Record, Variant

from allele.kernel.domain import Event, FinalizedOrder, MarketEvent

from .cache import CompileCache
from .capabilities import (
    COMPONENT_EXPORTS,
    COMPONENT_IMPORTS,
    LOG_LEVELS,
    WIT_PACKAGE,
    WIT_VERSION,
    Capabilities,
    Refused,
    wit_name,
)
from .errors import PluginLoadError
from .limits import KindLimits
from .port import Reported, Trapped

ENGINE_TAG = "fuel"
_INSTANTIATE_FUEL = 5_000_000_000


def new_engine() -> Engine:
    config = Config()
    config.consume_fuel = True
    return Engine(config)


@dataclass(frozen=True)
class PreparedComponent:
    component: Component
    kind: str
    imports: tuple[str, ...]
    exports: tuple[str, ...]


def prepare(engine: Engine, cache: CompileCache, data: bytes, sha256: str, source: str) -> PreparedComponent:
    """Compile (or fetch from the cache) and check the component's imports and exports against its kind."""
    try:
        component = cache.component(engine, data, sha256)
    except WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise PluginLoadError(source, f"is not a valid component ({first})",
                              "the file may be truncated or corrupted; rebuild it with `allele build`") from None
    ctype = component.type
    exports = ctype.exports(engine)
    export_names = tuple(sorted(exports))
    kind = next((k for k, (iface, _) in COMPONENT_EXPORTS.items() if iface in exports), None)
    if kind is None:
        ours = [n for n in export_names if n.startswith("allele:plugin/")]
        hint = (f"it was built for another version of the WIT package ({', '.join(ours)}); this host speaks "
                f"{WIT_PACKAGE}@{WIT_VERSION}" if ours else
                "build it against wit/ with world strategy, sensor or exchange")
        raise PluginLoadError(source, f"is not a component of a known Allele world: it exports "
                                      f"{', '.join(export_names) or 'nothing'}", hint)
    iface, funcs = COMPONENT_EXPORTS[kind]
    iface_type = exports[iface].ty
    present = set(iface_type.exports(engine)) if hasattr(iface_type, "exports") else set()
    missing = [f for f in funcs if f not in present]
    if missing:
        raise PluginLoadError(source, f"exports {iface} without {', '.join(missing)}",
                              "every function of the interface must be implemented")
    import_names = tuple(sorted(ctype.imports(engine)))
    for name in import_names:
        if name not in COMPONENT_IMPORTS[kind]:
            allowed = ", ".join(sorted(i for i in COMPONENT_IMPORTS[kind] if i != wit_name("types")))
            hint = ("strategies and other plugins get no WASI: build with `allele build` (it stubs WASI out)"
                    if name.startswith("wasi:") else f"a {kind} may import only {allowed}")
            raise PluginLoadError(source, f"imports '{name}', which a {kind} plugin may not use", hint)
    return PreparedComponent(component, kind, import_names, export_names)


def _record(fields: dict[str, Any]) -> Record:
    rec = Record()
    rec.__dict__.update(fields)
    return rec


def _plain(value: Any) -> Any:
    """Lifted component values as plain data: records to dicts with snake_case keys, variants to {tag: payload}."""
    if isinstance(value, Record):
        return {k.replace("-", "_"): _plain(v) for k, v in vars(value).items()}
    if isinstance(value, Variant):
        return {value.tag: _plain(value.payload)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _market_record(e: MarketEvent) -> Record:
    return _record({"kind": e.kind, "venue": e.venue, "symbol": e.symbol, "ts-ns": e.ts_ns, "price": e.price,
                    "size": e.size, "bid": e.bid, "ask": e.ask, "bid-size": e.bid_size, "ask-size": e.ask_size})


def _trap_reason(exc: WasmtimeError, budget: int, memory_bytes: int) -> str:
    text = str(exc)
    if "all fuel consumed" in text:
        return (f"exceeded its fuel budget of {budget:,} instructions "
                "(an endless loop, or more work than one call may do)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    cause = next((ln for ln in reversed(lines) if "trap" in ln or "error" in ln.lower()), lines[-1] if lines else "")
    if "unreachable" in cause:
        # How a component's language runtime aborts: an uncaught error, or an allocation refused at the cap.
        return (f"trapped: the guest aborted ({cause}): an uncaught error in the plugin, or memory exhausted "
                f"at its {memory_bytes // 2**20} MiB cap")
    return f"trapped: {cause}"


class ComponentInstance:
    """One component instance in its own Store."""

    def __init__(self, engine: Engine, prepared: PreparedComponent, caps: Capabilities, limits: KindLimits) -> None:
        self._caps = caps
        self._limits = limits
        self._store = Store(engine)
        self._store.set_limits(memory_size=limits.memory_bytes)
        linker = Linker(engine)
        with linker.root() as root:
            self._define_host(root, prepared.kind)
        self._store.set_fuel(_INSTANTIATE_FUEL)
        try:
            instance = linker.instantiate(self._store, prepared.component)
        except WasmtimeError as exc:
            raise Trapped(f"could not be instantiated: {str(exc).splitlines()[0]}") from None
        iface, funcs = COMPONENT_EXPORTS[prepared.kind]
        self._funcs = self._lookup(instance, iface, funcs)

    def _lookup(self, instance: Instance, iface: str, names: tuple[str, ...]) -> dict[str, Func]:
        index = instance.get_export_index(self._store, iface)
        out = {}
        for name in names:
            func_index = instance.get_export_index(self._store, name, index)
            func = instance.get_func(self._store, func_index) if func_index is not None else None
            assert func is not None, name  # prepare() checked the exports
            out[name] = func
        return out

    def _define_host(self, root: Any, kind: str) -> None:
        caps = self._caps
        with root.add_instance(wit_name("log")) as log:
            log.add_func("write", lambda _s, level, message: caps.log(level if level in LOG_LEVELS else "info",
                                                                       message))
        if kind == "strategy":
            with root.add_instance(wit_name("clock")) as clock:
                clock.add_func("now-ns", lambda _s: caps.now_ns())
        if kind == "sensor":
            def fetch(_s: Any, req: Record) -> Record | str:
                d = _plain(req)
                result = caps.fetch(d["method"], d["url"], [tuple(h) for h in d["headers"]], d["body"])
                if isinstance(result, Refused):
                    return result.reason
                return _record({"status": result.status, "headers": [tuple(h) for h in result.headers],
                                "body": result.body})

            with root.add_instance(wit_name("http")) as http:
                http.add_func("fetch", fetch)
        if kind == "exchange":
            def sign(_s: Any, account: str, algorithm: str, payload: str) -> Variant:
                result = caps.sign(account, algorithm, payload)
                return Variant("err", result.reason) if isinstance(result, Refused) else Variant("ok", result)

            with root.add_instance(wit_name("signer")) as signer:
                signer.add_func("sign", sign)

    def _call(self, name: str, *args: Any, budget: int | None = None) -> Any:
        fuel = budget or self._limits.call_fuel
        func = self._funcs[name]
        self._store.set_fuel(fuel)
        try:
            result = func(self._store, *args)
            func.post_return(self._store)
        except WasmtimeError as exc:
            if self._caps.violation:
                raise Trapped(self._caps.violation) from None
            raise Trapped(_trap_reason(exc, fuel, self._limits.memory_bytes)) from None
        except Exception as exc:  # a host function raised (e.g. a capability violation)
            raise Trapped(self._caps.violation or f"failed in a host call: {exc}") from None
        return result

    @staticmethod
    def _result(value: Any, ok: Callable[[Any], Any] = _plain) -> Any:
        """Untagged `result<T, string>`: a str is the error (T is never a string here)."""
        return Reported(value) if isinstance(value, str) else ok(value)

    # -- calls -------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(self._call("manifest"))
        return out

    def configure(self, values: dict[str, Any]) -> Reported | None:
        params = [_record({"name": k, "value": v}) for k, v in values.items()]
        out = self._call("configure", params)
        return Reported(out) if isinstance(out, str) else None

    def reset(self) -> None:
        self._call("reset")

    def on_event(self, event: Event) -> Any:
        if isinstance(event, MarketEvent):
            arg = Variant("market", _market_record(event))
        else:
            arg = Variant("reading", _record({"sensor": event.sensor, "name": event.name, "symbol": event.symbol,
                                              "ts-ns": event.ts_ns, "value": event.value}))
        return _plain(self._call("on-event", arg))

    def on_batch(self, columns: str, budget: int) -> str | Reported:
        out = self._call("on-batch", columns, budget=budget)
        if not isinstance(out, Variant):
            raise Trapped("on-batch returned a value that is not a result")
        return str(out.payload) if out.tag == "ok" else Reported(str(out.payload))

    def poll(self) -> Any:
        return self._result(self._call("poll"))

    def subscribe(self, symbols: list[str]) -> Any:
        return self._call("subscribe", list(symbols))

    def decode(self, frame: str) -> Any:
        return self._result(self._call("decode", frame))

    def encode_order(self, order: FinalizedOrder, account: str) -> Any:
        rec = _record({"client-order-id": order.client_order_id, "symbol": order.symbol, "side": order.side,
                       "order-type": order.order_type, "quantity": order.quantity,
                       "limit-price": order.limit_price, "time-in-force": order.time_in_force,
                       "ts-ns": order.ts_ns, "deadline-ns": order.deadline_ns})
        return self._result(self._call("encode-order", rec, account))
