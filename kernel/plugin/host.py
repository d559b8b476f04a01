"""PluginHost: load, validate and run plugins of either ABI, each inside its budget.

    host = PluginHost(home)
    loaded = host.load("build/plugins/strategies/sma_cross.wasm")
    sma = host.strategy(loaded)
    sma.configure({"fast": 5, "slow": 20})
    signals = sma.on_event(event)                       # live path, on the loop
    batch = await sma.on_batch_async(columns)           # long work, off the loop

Every failure of a call is a `PluginCallError`. If the guest trapped, ran out
of fuel or memory, broke a capability rule or returned malformed data, the
instance is quarantined (recorded in `<home>/quarantine.jsonl`, shown by
`allele status`) and refuses further calls; the host and every other instance
keep running. If the plugin itself answered with an error (refused
parameters, a garbled venue frame), the call fails and the instance serves on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from allele.kernel.config import describe_validation_error
from allele.kernel.domain import BatchSignal, Event, FinalizedOrder, Reading, Signal, VenueEvent, VenueRequest
from allele.kernel.paths import allele_home, compile_cache_dir
from allele.vault.signing import Signer

from . import checks, component, extism_abi
from .binary import Abi, detect_abi
from .cache import CompileCache
from .capabilities import WIT_PACKAGE, WIT_VERSION, Capabilities
from .errors import PluginCallError, PluginLoadError, PluginQuarantined
from .limits import KindLimits, Limits
from .manifest import Manifest, ParamValue, check_params
from .port import RawInstance, Reported, Trapped

log = logging.getLogger("allele.plugin")
T = TypeVar("T")


@dataclass(frozen=True)
class LoadedPlugin:
    """A validated plugin binary: what `allele inspect` shows."""

    source: str
    sha256: str
    size: int
    abi: Abi
    kind: str
    manifest: Manifest
    imports: tuple[str, ...]
    exports: tuple[str, ...]
    prepared: component.PreparedComponent | extism_abi.PreparedModule = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (used by `allele inspect --json`)."""
        world = f"{WIT_PACKAGE}/{self.kind}@{WIT_VERSION}" if self.abi == "component" else None
        return {"source": self.source, "sha256": self.sha256, "size": self.size, "abi": self.abi,
                "kind": self.kind, "world": world,
                "manifest": self.manifest.model_dump(mode="json"), "imports": list(self.imports),
                "exports": list(self.exports)}


@dataclass(frozen=True)
class EncodedBatch:
    """Batch columns encoded once, for many `on_batch` calls over the same rows (the arena evaluates every
    organism on the same bars; encoding them per call cost a third of an evaluation)."""

    text: str
    symbols: tuple[str, ...]
    n_rows: int
    first_ts_ns: int

    @classmethod
    def of(cls, columns: dict[str, Any]) -> EncodedBatch:
        """Check and encode `columns` (the columnar format of wit/worlds.wit); ValueError if malformed."""
        symbols = columns.get("symbols")
        prices = columns.get("price")
        if not isinstance(symbols, list) or not isinstance(prices, list):
            raise ValueError("batch columns need 'symbols' and 'price' lists")
        ts = columns.get("ts")
        first = ts[0] if isinstance(ts, list) and ts else ts.get("start", 0) if isinstance(ts, dict) else 0
        return cls(json.dumps(columns, separators=(",", ":")), tuple(symbols), len(prices), int(first))


@dataclass(frozen=True)
class QuarantineRecord:
    ts: float
    plugin: str
    sha256: str
    instance: str
    call: str
    reason: str


class PluginInstance:
    """One running instance. Calls are serialized: a wasm Store is not thread-safe."""

    def __init__(self, host: PluginHost, loaded: LoadedPlugin, instance_id: str, raw: RawInstance,
                 caps: Capabilities, limits: KindLimits) -> None:
        self.loaded = loaded
        self.instance_id = instance_id
        self.limits = limits
        self.params: dict[str, ParamValue] = loaded.manifest.defaults()
        self.quarantine_reason: str | None = None
        self._host = host
        self._raw = raw
        self._caps = caps
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.loaded.name

    def _guard(self, call: str, fn: Callable[[], T | Reported]) -> T:
        with self._lock:  # the check inside: a call queued behind the one that quarantined must not run
            if self.quarantine_reason is not None:
                raise PluginQuarantined(self.instance_id, self.quarantine_reason)
            try:
                out = fn()
            except Trapped as exc:
                self._quarantine(call, exc.reason)
                raise PluginCallError(self.instance_id, call, exc.reason, quarantined=True) from None
            except checks.MalformedResult as exc:
                reason = f"returned a malformed result: {exc}"
                self._quarantine(call, reason)
                raise PluginCallError(self.instance_id, call, reason, quarantined=True) from None
        if isinstance(out, Reported):
            raise PluginCallError(self.instance_id, call, f"the plugin reported: {out.message}", quarantined=False)
        return out

    def _quarantine(self, call: str, reason: str) -> None:
        self.quarantine_reason = reason
        self._host.record_quarantine(self, call, reason)

    def configure(self, values: dict[str, Any]) -> None:
        """Set parameter values; each is checked against the manifest before the plugin sees it."""
        try:
            coerced = check_params(self.loaded.manifest, values)
        except ValueError as exc:
            raise PluginCallError(self.instance_id, "configure", str(exc), quarantined=False) from None
        self._guard("configure", lambda: self._raw.configure(coerced))
        self.params = {**self.params, **coerced}


class StrategyPlugin(PluginInstance):
    def reset(self) -> None:
        self._guard("reset", self._raw.reset)

    def on_event(self, event: Event) -> list[Signal]:
        """Signals for one event (the live path). The event-time clock reads the event's timestamp."""
        try:
            checks.event_for_plugin(event)
        except ValueError as exc:
            raise PluginCallError(self.instance_id, "on-event", str(exc), quarantined=False) from None

        def call() -> list[Signal]:
            self._caps.event_time_ns = event.ts_ns
            return checks.signals(self._raw.on_event(event), self.limits)

        return self._guard("on-event", call)

    def on_batch(self, columns: dict[str, Any] | EncodedBatch) -> list[BatchSignal]:
        """Signals for a batch of rows in the columnar format of wit/worlds.wit (or those columns encoded once
        with `EncodedBatch.of`). Blocks: use on_batch_async on the event loop."""
        batch = columns if isinstance(columns, EncodedBatch) else EncodedBatch.of(columns)
        budget = self.limits.call_fuel + self.limits.batch_fuel_per_row * batch.n_rows
        symbols = list(batch.symbols)

        def call() -> list[BatchSignal] | Reported:
            self._caps.event_time_ns = batch.first_ts_ns
            out = self._raw.on_batch(batch.text, budget)
            if isinstance(out, Reported):
                return out
            return checks.batch_signals(out, batch.n_rows, symbols, self.limits)

        return self._guard("on-batch", call)

    async def on_batch_async(self, columns: dict[str, Any]) -> list[BatchSignal]:
        return await asyncio.to_thread(self.on_batch, columns)


class SensorPlugin(PluginInstance):
    def poll(self) -> list[Reading]:
        """Take readings now. Blocks on HTTP: use poll_async on the event loop."""
        def call() -> list[Reading] | Reported:
            out = self._raw.poll()
            return out if isinstance(out, Reported) else checks.readings(out, self.limits)

        return self._guard("poll", call)

    async def poll_async(self) -> list[Reading]:
        return await asyncio.to_thread(self.poll)


class ExchangePlugin(PluginInstance):
    def subscribe(self, symbols: list[str]) -> list[str]:
        return self._guard("subscribe", lambda: checks.frames(self._raw.subscribe(symbols), self.limits))

    def decode(self, frame: str) -> list[VenueEvent]:
        """Normalized events of one venue frame. A frame the plugin rejects raises PluginCallError
        (not quarantined): a garbled frame is the venue's fault, not the plugin's."""
        def call() -> list[VenueEvent] | Reported:
            out = self._raw.decode(frame)
            return out if isinstance(out, Reported) else checks.venue_events(out, self.limits)

        return self._guard("decode", call)

    def encode_order(self, order: FinalizedOrder, account: str) -> VenueRequest:
        """The request for the venue. The only call during which the plugin may sign."""
        def call() -> VenueRequest | Reported:
            self._caps.executing_order = True
            try:
                out = self._raw.encode_order(order, account)
            finally:
                self._caps.executing_order = False
            return out if isinstance(out, Reported) else checks.venue_request(out, self._caps.allowed_hosts)

        return self._guard("encode-order", call)


_INSTANCE_TYPES: dict[str, type[PluginInstance]] = {
    "strategy": StrategyPlugin, "sensor": SensorPlugin, "exchange": ExchangePlugin}


class PluginHost:
    def __init__(self, home: Path | None = None, *, limits: Limits | None = None, signer: Signer | None = None,
                 cache_dir: Path | None = None) -> None:
        self.home = home or allele_home()
        self.limits = limits or Limits()
        self.signer = signer
        self.engine = component.new_engine()
        self.cache = CompileCache(cache_dir or compile_cache_dir(self.home), component.ENGINE_TAG)
        self.quarantined: list[QuarantineRecord] = []
        self._counter = 0
        self._counter_lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------
    def load(self, path: str | Path, data: bytes | None = None) -> LoadedPlugin:
        """Validate a plugin file (or `data` under the name `path`). Raises PluginLoadError."""
        source = str(path)
        if data is None:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise PluginLoadError(source, f"cannot be read ({exc.strerror})") from None
        sha256 = hashlib.sha256(data).hexdigest()
        abi = detect_abi(data, source)
        prepared: component.PreparedComponent | extism_abi.PreparedModule
        if abi == "component":
            prepared = component.prepare(self.engine, self.cache, data, sha256, source)
            kind = prepared.kind
        else:
            prepared = extism_abi.prepare(self.engine, data, source)
            kind = ""  # the manifest decides; check_kind then narrows imports and exports to that kind
        raw = self._raw(prepared, kind, Capabilities(plugin=source, kind=kind), source)
        try:
            manifest_data = raw.manifest()
        except Trapped as exc:
            raise PluginLoadError(source, f"failed while reporting its manifest: {exc.reason}") from None
        try:
            manifest = Manifest.model_validate(manifest_data)
        except ValidationError as exc:
            raise PluginLoadError(source, f"has an invalid manifest: {describe_validation_error(exc)}") from None
        if isinstance(prepared, extism_abi.PreparedModule):
            prepared = extism_abi.check_kind(prepared, manifest.kind, source)
            kind = manifest.kind
        elif manifest.kind != kind:
            raise PluginLoadError(source, f"implements the {kind} world but its manifest says kind '{manifest.kind}'")
        return LoadedPlugin(source=source, sha256=sha256, size=len(data), abi=abi, kind=kind, manifest=manifest,
                            imports=prepared.imports, exports=prepared.exports, prepared=prepared)

    def _raw(self, prepared: component.PreparedComponent | extism_abi.PreparedModule, kind: str,
             caps: Capabilities, source: str) -> RawInstance:
        limits = self.limits.for_kind(kind or "strategy")
        try:
            if isinstance(prepared, component.PreparedComponent):
                return component.ComponentInstance(self.engine, prepared, caps, limits)
            return extism_abi.ExtismInstance(prepared, caps, limits)
        except Trapped as exc:
            raise PluginLoadError(source, exc.reason) from None

    # -- instances ---------------------------------------------------------------------
    def instantiate(self, loaded: LoadedPlugin) -> PluginInstance:
        """A fresh instance with its own memory, budget and capabilities."""
        with self._counter_lock:
            self._counter += 1
            instance_id = f"{loaded.name}#{self._counter}"
        caps = Capabilities(plugin=instance_id, kind=loaded.kind,
                            allowed_hosts=frozenset(loaded.manifest.allowed_hosts),
                            signer=self.signer if loaded.kind == "exchange" else None)
        raw = self._raw(loaded.prepared, loaded.kind, caps, loaded.source)
        return _INSTANCE_TYPES[loaded.kind](self, loaded, instance_id, raw, caps, self.limits.for_kind(loaded.kind))

    def strategy(self, loaded: LoadedPlugin) -> StrategyPlugin:
        return self._typed(loaded, StrategyPlugin)

    def sensor(self, loaded: LoadedPlugin) -> SensorPlugin:
        return self._typed(loaded, SensorPlugin)

    def exchange(self, loaded: LoadedPlugin) -> ExchangePlugin:
        return self._typed(loaded, ExchangePlugin)

    def _typed(self, loaded: LoadedPlugin, cls: type[T]) -> T:
        instance = self.instantiate(loaded)
        if not isinstance(instance, cls):
            raise PluginLoadError(loaded.source, f"is a {loaded.kind} plugin, not a {cls.__name__[:-6].lower()}")
        return instance

    # -- quarantine --------------------------------------------------------------------
    def record_quarantine(self, instance: PluginInstance, call: str, reason: str) -> None:
        record = QuarantineRecord(ts=time.time(), plugin=instance.name, sha256=instance.loaded.sha256,
                                  instance=instance.instance_id, call=call, reason=reason)
        self.quarantined.append(record)
        log.error("quarantined %s after %s: %s", instance.instance_id, call, reason)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            with open(self.home / "quarantine.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record.__dict__) + "\n")
        except OSError as exc:
            log.error("could not record the quarantine of %s in %s: %s", instance.instance_id, self.home, exc)


def read_quarantine_log(home: Path) -> list[QuarantineRecord]:
    path = home / "quarantine.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(QuarantineRecord(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a torn last line after a crash: skip it
    return out
