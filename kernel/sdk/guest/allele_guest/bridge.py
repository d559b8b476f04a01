"""Glue between componentize-py's generated bindings (`wit_world`) and the SDK.

Only used inside a component: `export_strategy(MyStrategy)` returns the class
componentize-py looks up by the name of the exported interface
(`StrategyApi`, `SensorApi`, `ExchangeApi`). The bindings are imported on the
first call, so a plugin module still imports natively for unit tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from . import host
from .columns import decode_batch, encode_signals
from .model import (
    EVENT_KINDS,
    EXPOSURE,
    FinalizedOrder,
    HttpResponse,
    Manifest,
    MarketEvent,
    OrderUpdate,
    PluginError,
    Reading,
    Signal,
)
from .plugin import Exchange, Plugin, Sensor, Strategy

T = TypeVar("T")


def _load_bindings() -> Any:
    """Import the generated bindings, or None when running natively.

    This runs at module import, which componentize-py performs at build time
    and snapshots: an import inside a plugin call would look for files, and a
    strategy built with --stub-wasi has no filesystem (the call would trap).
    """
    import importlib
    import types as _t

    try:
        ns = _t.SimpleNamespace(types=importlib.import_module("wit_world.imports.types"),
                                Err=importlib.import_module("componentize_py_types").Err)
    except ImportError:
        return None
    for name in ("log", "clock", "http", "signer"):
        try:
            setattr(ns, name, importlib.import_module(f"wit_world.imports.{name}"))
        except ImportError:
            setattr(ns, name, None)  # not in this plugin's world
    return ns


_wit: Any = _load_bindings()


def _bindings() -> Any:
    if _wit is None:
        raise RuntimeError("the WIT bindings are only available inside a component built by `allele build`")
    return _wit


class _WitBackend:
    def __init__(self, wit: Any) -> None:
        self._wit = wit

    def log(self, level: str, message: str) -> None:
        lv = self._wit.log.Level
        self._wit.log.write({"debug": lv.DEBUG, "warn": lv.WARN, "error": lv.ERROR}.get(level, lv.INFO), message)

    def now_ns(self) -> int:
        if self._wit.clock is None:
            raise PluginError("this plugin kind has no event clock")
        return int(self._wit.clock.now_ns())

    def fetch(self, method: str, url: str, headers: list[tuple[str, str]], body: str) -> HttpResponse:
        http = self._wit.http
        if http is None:
            raise PluginError("this plugin kind may not fetch")
        try:
            resp = http.fetch(http.Request(method=method, url=url, headers=headers, body=body))
        except self._wit.Err as err:
            raise PluginError(str(err.value)) from None
        return HttpResponse(resp.status, list(resp.headers), resp.body)

    def sign(self, account: str, algorithm: str, payload: str) -> str:
        signer = self._wit.signer
        if signer is None:
            raise PluginError("this plugin kind may not sign")
        algo = {"hmac-sha256": signer.Algorithm.HMAC_SHA256, "hmac-sha512": signer.Algorithm.HMAC_SHA512}.get(algorithm)
        if algo is None:
            raise PluginError(f"unknown signing algorithm '{algorithm}'")
        try:
            return str(signer.sign(account, algo, payload))
        except self._wit.Err as err:
            raise PluginError(str(err.value)) from None


if _wit is not None:
    host.attach(_WitBackend(_wit))


def _as_result(call: Callable[[], T]) -> T:
    """Run a call whose WIT type is a `result`: any exception becomes `err(message)`."""
    try:
        return call()
    except PluginError as exc:
        raise _bindings().Err(str(exc)) from None
    except (MemoryError, RecursionError):
        raise  # exhausted resources trap, and the host quarantines the instance
    except Exception as exc:  # a plugin bug: report it instead of trapping
        # No traceback: formatting one reads source files, which a component cannot.
        raise _bindings().Err(f"{type(exc).__name__}: {exc}") from None


def _scalar(value: Any) -> Any:
    t = _bindings().types
    if isinstance(value, bool):
        return t.Scalar_Boolean(value)
    if isinstance(value, int):
        return t.Scalar_Integer(value)
    if isinstance(value, float):
        return t.Scalar_Real(value)
    return t.Scalar_Text(str(value))


def _manifest(m: Manifest) -> Any:
    t = _bindings().types
    return t.PluginManifest(
        name=m.name, version=m.version, kind=t.PluginKind[m.kind.upper()], author=m.author,
        description=m.description,
        parameters=[t.ParamSpec(name=p.name, type=t.ParamType[p.type.upper()], default=_scalar(p.default),
                                min=None if p.min is None else float(p.min),
                                max=None if p.max is None else float(p.max),
                                step=None if p.step is None else float(p.step),
                                choices=list(p.choices), description=p.description) for p in m.parameters],
        symbols=list(m.symbols), sensor_inputs=list(m.sensor_inputs), allowed_hosts=list(m.allowed_hosts),
        proof=m.proof)


def _market_event(e: Any) -> MarketEvent:
    return MarketEvent(EVENT_KINDS[e.kind.value], e.venue, e.symbol, e.ts_ns, e.price, e.size, e.bid, e.ask,
                       e.bid_size, e.ask_size)


def _wit_market_event(e: MarketEvent) -> Any:
    t = _bindings().types
    return t.MarketEvent(kind=t.EventKind(EVENT_KINDS.index(e.kind)), venue=e.venue, symbol=e.symbol,
                         ts_ns=int(e.ts_ns), price=float(e.price), size=float(e.size), bid=float(e.bid),
                         ask=float(e.ask), bid_size=float(e.bid_size), ask_size=float(e.ask_size))


def _wit_signal(s: Signal) -> Any:
    t = _bindings().types
    return t.Signal(symbol=s.symbol, sizing=t.Sizing.EXPOSURE if s.sizing == EXPOSURE else t.Sizing.UNITS,
                    amount=float(s.amount), limit_price=None if s.limit_price is None else float(s.limit_price),
                    group=s.group, note=s.note)


def _configure(plugin: Plugin, params: list[Any]) -> None:
    _as_result(lambda: plugin.configure({p.name: p.value.value for p in params}))


def export_strategy(cls: type[Strategy]) -> type:
    plugin = cls()

    class StrategyApi:
        def manifest(self) -> Any:
            return _manifest(plugin.manifest)

        def configure(self, params: list[Any]) -> None:
            _configure(plugin, params)

        def reset(self) -> None:
            plugin.reset()

        def on_event(self, ev: Any) -> list[Any]:
            t = _bindings().types
            if isinstance(ev, t.Event_Market):
                event: MarketEvent | Reading = _market_event(ev.value)
            else:
                r = ev.value
                event = Reading(r.sensor, r.name, r.symbol, r.ts_ns, r.value)
            return [_wit_signal(s) for s in plugin.on_event(event)]

        def on_batch(self, columns: str) -> str:
            _bindings()

            def run() -> str:
                batch = decode_batch(columns)
                return encode_signals(batch, plugin.on_batch(batch))

            return _as_result(run)

    return StrategyApi


def export_sensor(cls: type[Sensor]) -> type:
    plugin = cls()

    class SensorApi:
        def manifest(self) -> Any:
            return _manifest(plugin.manifest)

        def configure(self, params: list[Any]) -> None:
            _configure(plugin, params)

        def poll(self) -> list[Any]:
            t = _bindings().types
            return _as_result(lambda: [t.Reading(sensor=r.sensor, name=r.name, symbol=r.symbol, ts_ns=int(r.ts_ns),
                                                 value=float(r.value)) for r in plugin.poll()])

    return SensorApi


def export_exchange(cls: type[Exchange]) -> type:
    plugin = cls()

    class ExchangeApi:
        def manifest(self) -> Any:
            return _manifest(plugin.manifest)

        def configure(self, params: list[Any]) -> None:
            _configure(plugin, params)

        def subscribe(self, symbols: list[str]) -> list[str]:
            _bindings()
            return [str(f) for f in plugin.subscribe(list(symbols))]

        def decode(self, frame: str) -> list[Any]:
            t = _bindings().types

            def run() -> list[Any]:
                out = []
                for item in plugin.decode(frame):
                    if isinstance(item, MarketEvent):
                        out.append(t.VenueEvent_Market(_wit_market_event(item)))
                    elif isinstance(item, OrderUpdate):
                        out.append(t.VenueEvent_Order(t.OrderUpdate(
                            client_order_id=item.client_order_id, venue_order_id=item.venue_order_id,
                            symbol=item.symbol, status=t.OrderStatus[item.status.upper().replace("-", "_")],
                            fill_quantity=float(item.fill_quantity), fill_price=float(item.fill_price),
                            fee=float(item.fee), fee_currency=item.fee_currency, ts_ns=int(item.ts_ns),
                            reason=item.reason)))
                    else:
                        raise PluginError(f"decode produced {type(item).__name__}, not MarketEvent or OrderUpdate")
                return out

            return _as_result(run)

        def encode_order(self, order: Any, account: str) -> Any:
            t = _bindings().types
            fo = FinalizedOrder(order.client_order_id, order.symbol, order.side.name.lower(),
                                order.order_type.name.lower(), order.quantity, order.limit_price,
                                order.time_in_force.name.lower().replace("_", "-"), order.ts_ns, order.deadline_ns)

            def run() -> Any:
                req = plugin.encode_order(fo, account)
                return t.VenueRequest(method=req.method, url=req.url, headers=list(req.headers), body=req.body)

            return _as_result(run)

    return ExchangeApi
