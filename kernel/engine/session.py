"""Assembling a session: paper trading on the simulated venue, or a replay of a recording.

    session = await open_paper_session(home)          # config.toml + defaults
    await session.run(stop=stop_event)
    await session.close()

    replay = await open_replay_session(home, recording, ledger_path)
    await replay.run()

A paper session writes a header as the first firehose record: the synthetic market, the venue,
the organisms (with their plugins' sha256), the risk settings and the order kernel's settings.
`open_replay_session` rebuilds exactly that from the header and feeds the recorded events, so it
sends the same orders and gets the same fills (test_engine.py proves it). A live session's recording
(`allele.kernel.engine.live`) names a venue of kind "recorded": a real venue cannot be rebuilt, so its
replay answers with the venue updates the recording holds (`RecordedVenue`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allele.kernel.config import read_config
from allele.kernel.domain import FinalizedOrder, MarketEvent, VenueEvent
from allele.kernel.ledger import Ledger
from allele.kernel.orders.port import OrderKernelPort, SoftwareOrderKernel
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin.errors import PluginError
from allele.kernel.plugin.host import LoadedPlugin, PluginHost, StrategyPlugin
from allele.kernel.risk import RiskConfig, RiskGate, load_risk_config
from allele.kernel.venue import Instrument

from .bus import Bus
from .config import EngineConfig, OrganismSpec, SensorSpec, load_engine_config, load_organisms, load_sensors
from .engine import Control, Engine, Organism, Retire, SensorFeed, StreamItem, Swap, reading_from_record
from .firehose import HEADER, Firehose, event_from_record, read_recording, recover, update_from_record
from .order_path import OrderPath
from .ports import Venue
from .simvenue import SimVenue, SimVenueSpec
from .sources import RecordingSource, SyntheticSource, SyntheticSpec

log = logging.getLogger("allele.session")

BUNDLED_BUILD_DIR = SOURCE_ROOT / "build" / "plugins"
RECORDING_VERSION = 1
RECORDED_VENUE = "recorded"
PACED_BATCH_EVENTS = 32


class SessionError(ValueError):
    """A session cannot be assembled as configured; the message says what to change."""


def ledger_path(home: Path) -> Path:
    return home / "trading.db"


def historical_dir(home: Path) -> Path:
    return home / "historical"


def plugin_catalog(home: Path, kind_dir: str) -> dict[str, Path]:
    """Plugin name -> .wasm for one kind folder ("strategies", "sensors"): the newest deployed one
    (`.allele/plugins/<kind>/<name>-<hash>.wasm`) wins over the bundled build (`build/plugins/<kind>/<name>.wasm`)."""
    catalog = {p.stem: p for p in sorted((BUNDLED_BUILD_DIR / kind_dir).glob("*.wasm"))}
    deployed = sorted((home / "plugins" / kind_dir).glob("*.wasm"), key=lambda p: p.stat().st_mtime)
    for p in deployed:
        catalog[p.stem.rsplit("-", 1)[0]] = p
    return catalog


def strategy_catalog(home: Path) -> dict[str, Path]:
    return plugin_catalog(home, "strategies")


def resolve_plugin(home: Path, name: str, kind_dir: str = "strategies") -> Path:
    """A `.wasm` path as given, or the catalog's plugin of that name; SessionError lists the known names."""
    what = {"strategies": "strategy", "sensors": "sensor", "exchanges": "exchange"}[kind_dir]
    if name.endswith(".wasm"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise SessionError(f"{what} file {path} does not exist")
        return path
    catalog = plugin_catalog(home, kind_dir)
    if name not in catalog:
        known = ", ".join(sorted(catalog)) or "none (run `allele build --bundled`)"
        raise SessionError(f"no {what} named '{name}' is deployed or bundled; known: {known}")
    return catalog[name]


def resolve_strategy(home: Path, strategy: str) -> Path:
    return resolve_plugin(home, strategy, "strategies")


def find_plugin_by_hash(home: Path, sha256: str) -> Path | None:
    candidates: list[Path] = [*(home / "plugins").glob("*/*.wasm"), *BUNDLED_BUILD_DIR.glob("*/*.wasm")]
    for path in candidates:
        if path.name.endswith(f"-{sha256[:12]}.wasm") or hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    return None


def arena_organisms(home: Path) -> tuple[OrganismSpec, ...]:
    """The organisms the arena has funded (status paper or live, capital > 0), as engine organisms: id
    `arena-<fingerprint prefix>`, the exact plugin by its sha256, the genome, the arena's allocation."""
    if not ledger_path(home).is_file():
        return ()
    # Imported here: the arena evaluates through this module, so a module-level import would be a cycle.
    from allele.kernel.arena.store import ArenaStore

    store = ArenaStore(ledger_path(home))
    try:
        rows = [r for r in store.standing() if r["funded"] and r["status"] in ("paper", "live")
                and r["allocation"] > 0]
    finally:
        store.close()
    specs = []
    for r in rows:
        sha = r["spec"]["plugin_sha256"]
        path = find_plugin_by_hash(home, sha)
        if path is None:
            raise SessionError(f"arena organism {r['fingerprint'][:12]}: its plugin {r['spec']['strategy']} "
                               f"({sha[:12]}) is neither deployed nor bundled; deploy it or defund the organism")
        specs.append(OrganismSpec(id=f"arena-{r['fingerprint'][:12]}", strategy=str(path),
                                  params=dict(r["spec"]["genome"]), allocation=r["allocation"]))
    return tuple(specs)


def arena_defunded(home: Path, organisms: Iterable[str]) -> dict[str, str]:
    """Of these engine organism ids, the arena organisms (`arena-<fingerprint prefix>`) the arena no longer
    funds, each with the arena's reason: what a running engine must stop trading."""
    wanted = {o.removeprefix("arena-"): o for o in organisms if o.startswith("arena-")}
    if not wanted or not ledger_path(home).is_file():
        return {}
    from allele.kernel.arena.store import ArenaStore  # see arena_organisms

    store = ArenaStore(ledger_path(home))
    try:
        rows = {r["fingerprint"][:12]: r for r in store.standing()}
    finally:
        store.close()
    out = {}
    for prefix, organism in wanted.items():
        r = rows.get(prefix)
        if r is None:
            out[organism] = "the arena has no record of it any more"
        elif not (r["funded"] and r["status"] in ("paper", "live") and r["allocation"] > 0):
            out[organism] = f"the arena moved it to {r['status']}: {r['reason'] or 'defunded'}"
    return out


def organisms_to_trade(home: Path) -> tuple[OrganismSpec, ...]:
    """`[[organisms]]` from config.toml if there are any; else the arena's funded organisms if there are
    any; else the bundled defaults."""
    if read_config(home).get("organisms") is not None:
        return load_organisms(home)
    return arena_organisms(home) or load_organisms(home)


def start_strategy(host: PluginHost, loaded: LoadedPlugin, spec: OrganismSpec) -> StrategyPlugin:
    """A configured instance of the organism's strategy; SessionError names the organism on bad params."""
    if loaded.kind != "strategy":
        raise SessionError(f"organism {spec.id}: {loaded.source} is a {loaded.kind}, not a strategy")
    instance = host.strategy(loaded)
    try:
        instance.configure(dict(spec.params))
    except PluginError as exc:
        raise SessionError(f"organism {spec.id}: parameters {spec.params} refused: {exc}") from None
    return instance


def organism_symbols(spec: OrganismSpec, loaded: LoadedPlugin, continuous: tuple[str, ...],
                     binary: tuple[str, ...]) -> frozenset[str]:
    listed = spec.symbols or (binary if spec.binary else continuous)
    unknown = sorted(set(listed) - set(continuous) - set(binary))
    if unknown:
        raise SessionError(f"organism {spec.id}: symbols {unknown} are not listed by the venue; "
                           f"it lists {list(continuous + binary)}")
    wanted = loaded.manifest.symbols
    if wanted and "*" not in wanted:
        listed = tuple(s for s in listed if s in wanted)
    return frozenset(listed)


@dataclass
class Session:
    """A running engine and what feeds it."""

    engine: Engine
    events: Callable[[], Iterator[StreamItem]]
    header: dict[str, Any]
    host: PluginHost
    speed: float = 0.0
    firehose: Firehose | None = None
    closed: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event | None = None, on_progress: Callable[[int], None] | None = None) -> None:
        await self.engine.run(self.events(), speed=self.speed, stop=stop, on_progress=on_progress)

    async def close(self) -> None:
        if self.firehose is not None:
            self.firehose.close()
        await self.engine.ledger.close()
        close_kernel = getattr(self.engine.orders.port, "close", None)  # rtl-sim: end the simulation
        if close_kernel is not None:
            close_kernel()


def _organisms(host: PluginHost, specs: tuple[OrganismSpec, ...], paths: dict[str, Path], risk: RiskConfig,
               continuous: tuple[str, ...], binary: tuple[str, ...]) -> list[Organism]:
    organisms = []
    share = risk.global_capital_cap / max(len(specs), 1)
    for spec in specs:
        try:
            loaded = host.load(paths[spec.id])
        except PluginError as exc:
            raise SessionError(f"organism {spec.id}: {exc}") from None
        organisms.append(Organism(spec, start_strategy(host, loaded, spec),
                                  organism_symbols(spec, loaded, continuous, binary),
                                  spec.allocation or share, loaded.sha256))
    return organisms


def _sensors(home: Path, host: PluginHost, specs: tuple[SensorSpec, ...], start_ns: int) -> list[SensorFeed]:
    feeds = []
    for spec in specs:
        try:
            loaded = host.load(resolve_plugin(home, spec.sensor, "sensors"))
        except PluginError as exc:
            raise SessionError(f"sensor {spec.id}: {exc}") from None
        if loaded.kind != "sensor":
            raise SessionError(f"sensor {spec.id}: {loaded.source} is a {loaded.kind}, not a sensor")
        instance = host.sensor(loaded)
        try:
            instance.configure(dict(spec.params))
        except PluginError as exc:
            raise SessionError(f"sensor {spec.id}: parameters {spec.params} refused: {exc}") from None
        feeds.append(SensorFeed(spec.id, instance, int(spec.poll_s * 1e9), start_ns))
    return feeds


def _check_sensor_ids(organisms: tuple[OrganismSpec, ...], sensor_ids: set[str]) -> None:
    for spec in organisms:
        unknown = sorted(set(spec.sensors) - sensor_ids)
        if unknown:
            raise SessionError(f"organism {spec.id}: sensors {unknown} are not configured ([[sensors]] ids: "
                               f"{sorted(sensor_ids) or 'none'})")


class RecordedVenue:
    """The venue of a live session's replay: what the real venue answered, read back from the recording.

    The engine writes the updates it takes from `advance` just before the market event's record, and those
    of the final `drain` after the last event; so the n-th `advance` returns the updates recorded before the
    n-th event, and `drain` the rest. Requests go nowhere (the recording holds their answers); `requests`
    lists them, as (request, client order id)."""

    def __init__(self, name: str, instruments: list[Instrument], recording: Path) -> None:
        self.name = name
        self._instruments = {i.symbol: i for i in instruments}
        self._records = read_recording(recording)
        self.requests: list[tuple[str, str]] = []

    @classmethod
    def from_header(cls, venue: dict[str, Any], recording: Path) -> RecordedVenue:
        instruments = [Instrument(str(i["symbol"]), float(i["tick_size"]), float(i["lot_size"]),
                                  float(i["maker_fee"]), float(i["taker_fee"]), str(i["quote_currency"]))
                       for i in venue["instruments"]]
        return cls(str(venue["name"]), instruments, recording)

    def instrument(self, symbol: str) -> Instrument:
        return self._instruments[symbol]

    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._instruments))

    def submit(self, order: FinalizedOrder, sent_ns: int) -> None:
        self.requests.append(("submit", order.client_order_id))

    def amend(self, client_order_id: str, sent_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> None:
        self.requests.append(("amend", client_order_id))

    def cancel(self, client_order_id: str, sent_ns: int) -> None:
        self.requests.append(("cancel", client_order_id))

    def advance(self, ts_ns: int, event: MarketEvent | None = None) -> list[VenueEvent]:
        out: list[VenueEvent] = []
        for record in self._records:
            if record.get("k") == "event":
                break
            if record.get("k") == "update":
                out.append(update_from_record(record))
        return out

    def drain(self) -> list[VenueEvent]:
        return [update_from_record(r) for r in self._records if r.get("k") == "update"]


def _engine(*, session: str, venue: Venue, organisms: list[Organism], ledger: Ledger, risk: RiskConfig,
            slots: int, ttl_ns: int, firehose: Firehose | None, home: Path | None, bus: Bus | None,
            batch_events: int, sensors: list[SensorFeed] | None = None, order_kernel: str = "software") -> Engine:
    instruments = {s: venue.instrument(s) for s in venue.symbols()}
    port: OrderKernelPort
    if order_kernel == "rtl-sim":
        from allele.kernel.orders.rtl_sim import RtlSimError, RtlSimOrderKernel

        try:
            port = RtlSimOrderKernel(slots, max(len(instruments), 1))
        except RtlSimError as exc:
            raise SessionError(f"order_kernel = \"rtl-sim\": {exc}") from None
    else:
        port = SoftwareOrderKernel(slots)
    path = OrderPath(port, instruments)
    return Engine(session=session, venue=venue, organisms=organisms, ledger=ledger, gate=RiskGate(risk),
                  order_path=path, ttl_ns=ttl_ns, firehose=firehose, bus=bus, home=home, batch_events=batch_events,
                  sensors=sensors or ())


async def open_paper_session(home: Path, *, config: EngineConfig | None = None,
                             organisms: tuple[OrganismSpec, ...] | None = None,
                             sensors: tuple[SensorSpec, ...] | None = None, host: PluginHost | None = None,
                             session: str | None = None, bus: Bus | None = None,
                             start_ns: int | None = None) -> Session:
    """Paper trading on the simulated venue, configured from `<home>/config.toml` unless given."""
    cfg = config or load_engine_config(home)
    risk = load_risk_config(home)
    specs = organisms if organisms is not None else organisms_to_trade(home)
    sensor_specs = sensors if sensors is not None else load_sensors(home)
    _check_sensor_ids(specs, {s.id for s in sensor_specs})
    host = host or PluginHost(home)
    session = session or time.strftime("p%Y%m%d-%H%M%S", time.gmtime())
    start = start_ns if start_ns is not None else time.time_ns() // 1_000_000_000 * 1_000_000_000
    source = SyntheticSource(SyntheticSpec(cfg.seed, cfg.symbols, cfg.binary_markets, start,
                                           cfg.bar_ms * 1_000_000, cfg.bars))
    vspec = SimVenueSpec(cfg.symbols, source.binary_symbols, cfg.seed, cfg.latency_us * 1000, cfg.jitter_us * 1000,
                         cfg.maker_fee, cfg.taker_fee, source.market.tick_size, source.market.lot_size)
    paths = {s.id: resolve_strategy(home, s.strategy) for s in specs}
    orgs = _organisms(host, specs, paths, risk, cfg.symbols, source.binary_symbols)
    feeds = _sensors(home, host, sensor_specs, start)
    ttl_ns = int(cfg.order_ttl_s * 1e9)
    # Paced, a chunk is read ahead of the wall clock and a swap waits for the next chunk: keep chunks to a few
    # seconds of market. The header records the size used, so a replay chunks the same way.
    batch_events = cfg.batch_events if cfg.speed == 0 else min(cfg.batch_events, PACED_BATCH_EVENTS)
    header = {"k": HEADER, "version": RECORDING_VERSION, "session": session, "mode": "paper",
              "source": source.describe(), "venue": vspec.to_json(), "risk": risk.model_dump(mode="json"),
              "order_kernel": {"kind": cfg.order_kernel, "slots": cfg.order_kernel_slots}, "ttl_ns": ttl_ns,
              "batch_events": batch_events,
              "sensors": [{**f.model_dump(mode="json"), "plugin_sha256": feed.sensor.loaded.sha256}
                          for f, feed in zip(sensor_specs, feeds, strict=True)],
              "organisms": [{**o.spec.model_dump(mode="json"), "allocation": o.allocation,
                             "plugin_sha256": o.plugin_sha256} for o in orgs]}
    firehose = None
    if cfg.record:
        recover(historical_dir(home))
        firehose = Firehose(historical_dir(home), session, max_bytes=cfg.firehose_max_mb * 2**20)
        firehose.append(header)
    ledger = await Ledger.open(ledger_path(home), synchronous=cfg.ledger_sync)
    engine = _engine(session=session, venue=SimVenue(vspec), organisms=orgs, ledger=ledger, risk=risk,
                     slots=cfg.order_kernel_slots, ttl_ns=ttl_ns, firehose=firehose, home=home, bus=bus,
                     batch_events=batch_events, sensors=feeds, order_kernel=cfg.order_kernel)
    engine.equity_interval_ns = int(cfg.equity_interval_s * 1e9)
    closed = await engine.reconcile()
    await engine.open_books()
    return Session(engine, source.events, header, host, cfg.speed, firehose, closed)


def read_header(recording: Path) -> dict[str, Any]:
    for record in read_recording(recording):
        if record.get("k") != HEADER:
            break
        if record.get("version") != RECORDING_VERSION:
            raise SessionError(f"{recording}: recording version {record.get('version')} is not "
                               f"{RECORDING_VERSION}; replay it with the Allele version that wrote it")
        return record
    raise SessionError(f"{recording} does not start with a session header: it is not a paper session recording")


def _replay_items(recording: Path) -> Iterator[StreamItem]:
    source = RecordingSource(recording)
    for record in source.records():
        kind = record.get("k")
        if kind == "event":
            yield event_from_record(record)
        elif kind == "reading":
            yield reading_from_record(record)
        elif kind == "control" and "kill_switch" in record:
            yield Control(bool(record["kill_switch"]), str(record.get("reason", "")))
        elif kind == "control" and "swap" in record:
            params = record.get("params")
            yield Swap(str(record["swap"]), str(record["sha256"]), dict(params) if isinstance(params, dict) else None)
        elif kind == "control" and "retire" in record:
            yield Retire(str(record["retire"]), str(record.get("reason", "")))


async def open_replay_session(home: Path, recording: Path, ledger_file: Path, *, host: PluginHost | None = None,
                              bus: Bus | None = None) -> Session:
    """The paper session recorded in `recording`, rebuilt from its header, into a fresh ledger."""
    header = read_header(recording)
    if ledger_file.exists():
        raise SessionError(f"{ledger_file} already exists; a replay writes a fresh ledger (choose another path)")
    host = host or PluginHost(home)
    venue: Venue
    binary: tuple[str, ...] = ()
    try:
        if header["venue"].get("kind") == RECORDED_VENUE:
            venue = RecordedVenue.from_header(header["venue"], recording)
            continuous = venue.symbols()
        else:
            vspec = SimVenueSpec.from_json(header["venue"])
            venue, continuous, binary = SimVenue(vspec), vspec.symbols, vspec.binary_symbols
        risk = RiskConfig.model_validate(header["risk"])
        specs = tuple(OrganismSpec.model_validate({k: v for k, v in o.items() if k != "plugin_sha256"})
                      for o in header["organisms"])
    except (KeyError, ValueError) as exc:
        raise SessionError(f"{recording}: the header cannot be read: {exc}") from None
    paths: dict[str, Path] = {}
    for o in header["organisms"]:
        found = find_plugin_by_hash(home, o["plugin_sha256"])
        if found is None:
            raise SessionError(f"organism {o['id']}: plugin {o['strategy']} with sha256 {o['plugin_sha256'][:12]} "
                               "is neither deployed nor bundled; deploy that exact .wasm to replay")
        paths[o["id"]] = found
    orgs = _organisms(host, specs, paths, risk, continuous, binary)
    ledger = await Ledger.open(ledger_file, synchronous="off")
    engine = _engine(session=str(header["session"]), venue=venue, organisms=orgs, ledger=ledger, risk=risk,
                     slots=int(header["order_kernel"]["slots"]), ttl_ns=int(header["ttl_ns"]), firehose=None,
                     home=None, bus=bus, batch_events=int(header["batch_events"]))
    await engine.open_books()

    def resolve_swap(org: Organism, sha256: str, params: dict[str, Any] | None) -> StrategyPlugin:
        found = find_plugin_by_hash(home, sha256)
        if found is None:
            raise SessionError(f"the recording swaps organism {org.id} to plugin {sha256[:12]}, which is neither "
                               "deployed nor bundled here; deploy that exact .wasm to replay")
        spec = org.spec if params is None else org.spec.model_copy(update={"params": params})
        return start_strategy(host, host.load(found), spec)

    engine.resolve_swap = resolve_swap
    return Session(engine, lambda: _replay_items(recording), header, host, 0.0, None)


def check_config(home: Path) -> tuple[EngineConfig, RiskConfig, tuple[OrganismSpec, ...]]:
    """Load every table a session needs; ConfigError names the first bad key."""
    return load_engine_config(home), load_risk_config(home), load_organisms(home)
