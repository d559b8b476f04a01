"""The operator's API: REST under /api, the live stream at /ws, the dashboard at /.

    app = create_app(ApiContext(home, session, hub, token, config))

It runs in the engine's own asyncio loop (see `server.py`), so a handler reads the engine's memory and
ledger directly, between two chunks of the engine's events; handlers never block on the engine.
Every /api route and /ws need the token (`auth.py`); /docs and the dashboard's static files do not
(they hold no data).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter

import allele.kernel
from allele.kernel.arena.store import ArenaStore
from allele.kernel.engine.bus import TOPICS
from allele.kernel.engine.deploy import DeployError, Deployment, UnprovenError, install_plugin, record_deployment
from allele.kernel.engine.ports import TradingSession
from allele.kernel.engine.session import SessionError, ledger_path, start_strategy
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.risk import killswitch
from allele.vault import VaultError, default_vault_dir, list_entries

from . import models as m
from .auth import require_token
from .config import ApiConfig
from .hub import Hub, parse_topics
from .limits import BodyLimit
from .stream import stream_endpoint

DASHBOARD_DIST = Path(allele.kernel.__file__).parents[1] / "dashboard" / "dist"
MAX_ROWS = 10_000


@dataclass
class ApiContext:
    """What the API serves from: the running session, its bus hub, the home directory and the token."""

    home: Path
    session: TradingSession
    hub: Hub
    token: str
    config: ApiConfig
    running: Callable[[], bool] = lambda: True
    _arena: ArenaStore | None = field(default=None, repr=False)
    cache: dict[str, tuple[tuple[Any, ...], float, bytes]] = field(default_factory=dict, repr=False)

    @property
    def arena(self) -> ArenaStore:
        if self._arena is None:
            self._arena = ArenaStore(ledger_path(self.home))
        return self._arena

    def close(self) -> None:
        if self._arena is not None:
            self._arena.close()
            self._arena = None


async def ctx(request: Request) -> ApiContext:
    api: ApiContext = request.app.state.api
    return api


Ctx = Annotated[ApiContext, Depends(ctx)]
OrganismQ = Annotated[str | None, Query(description="only this organism")]
LimitQ = Annotated[int, Query(ge=1, le=MAX_ROWS, description="most rows, newest kept")]


# Polled endpoints answer from a cache while nothing they show has changed: the key is the bus's seq (every
# tick, order, fill and kill-switch change moves it) and whatever else the answer depends on; an entry also
# expires after CACHE_MAX_AGE_S (for the wall-clock fields). Many pollers then cost one computation per change.
CACHE_MAX_AGE_S = 0.5
_POSITIONS = TypeAdapter(list[m.Position])


def _cache_hit(api: ApiContext, name: str, key: tuple[Any, ...]) -> Response | None:
    entry = api.cache.get(name)
    if entry is not None and entry[0] == key and time.monotonic() - entry[1] < CACHE_MAX_AGE_S:
        return Response(entry[2], media_type="application/json")
    return None


def _cached(api: ApiContext, name: str, key: tuple[Any, ...], build: Callable[[], bytes]) -> Response:
    hit = _cache_hit(api, name, key)
    if hit is not None:
        return hit
    body = build()
    api.cache[name] = (key, time.monotonic(), body)
    return Response(body, media_type="application/json")


def _kill_switch(api: ApiContext) -> m.KillSwitch:
    engine = api.session.engine
    reason = killswitch.reason(api.home)
    engaged = reason is not None
    return m.KillSwitch(engaged=engaged, reason=reason or "", applied=engine.kill_switch == engaged,
                        file=str(killswitch.kill_switch_path(api.home)))


def _organisms(api: ApiContext) -> list[m.Organism]:
    engine = api.session.engine
    rows = engine.status()["organisms"]
    ranked = sorted(rows, key=lambda r: -r["equity"])
    rank = {r["id"]: i + 1 for i, r in enumerate(ranked)}
    out = []
    for r in rows:
        org = engine.organisms[r["id"]]
        out.append(m.Organism(**{k: r[k] for k in ("id", "strategy", "plugin_sha256", "active", "quarantined",
                                                   "allocation", "equity", "cash", "fees", "positions",
                                                   "open_orders", "signals")},
                              params=dict(org.spec.params), symbols=sorted(org.symbols), rank=rank[r["id"]]))
    return out


# --- engine ------------------------------------------------------------------------------------------------------

engine_routes = APIRouter(tags=["engine"])


@engine_routes.get("/health", response_model=m.Health, summary="Cheap liveness check")
async def health(api: Ctx) -> m.Health:
    return m.Health(ok=True, seq=api.hub.bus.seq, engine_running=api.running())


@engine_routes.get("/status", response_model=m.Status, summary="Engine, organisms, counters, P&L, kill switch")
async def status(api: Ctx) -> Response:
    def build() -> bytes:
        s = api.session.engine.status()
        return m.Status(state="running" if api.running() else "stopped", session=s["session"], pid=os.getpid(),
                        event_time_ns=s["event_time_ns"], uptime_s=s["uptime_s"], counters=s["counters"],
                        kill_switch=_kill_switch(api), equity=s["equity"], high_water=s["high_water"],
                        organisms=_organisms(api), seq=api.hub.bus.seq,
                        stream_clients=api.hub.clients).model_dump_json().encode()

    key = (api.hub.bus.seq, api.hub.clients, api.running(), killswitch.reason(api.home))
    return _cached(api, "status", key, build)


@engine_routes.get("/organisms", response_model=list[m.Organism], summary="Organisms, ranked by equity")
async def organisms(api: Ctx) -> list[m.Organism]:
    return sorted(_organisms(api), key=lambda o: o.rank)


@engine_routes.get("/watchdog", response_model=m.Watchdog, summary="The watchdog's last state")
async def watchdog(api: Ctx) -> m.Watchdog:
    try:
        from allele.watchdog.state import read_state  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return m.Watchdog(state=None, note="allele.watchdog.state is not installed: no watchdog state to show")
    state = read_state(api.home)
    return m.Watchdog(state=state, note=None if state is not None else "the watchdog has not written a state yet")


@engine_routes.get("/stream", response_model=m.Backfill, summary="Backfill of the stream after a sequence number")
async def backfill(api: Ctx, since: Annotated[int, Query(ge=0, description="last seq the client has")],
                   topics: Annotated[str, Query(description="comma-separated topics")] = ",".join(TOPICS),
                   limit: LimitQ = MAX_ROWS) -> m.Backfill:
    try:
        wanted = parse_topics(topics)
    except ValueError as exc:
        raise HTTPException(422, detail=f"query field 'topics': {exc}") from None
    events = api.hub.history(since, wanted, limit)
    complete = (since + 1 >= api.hub.first or ("tick" not in wanted and api.hub.bus.holds_since(since))) \
        and len(events) < limit
    return m.Backfill(since=since, last_seq=api.hub.last, complete=complete,
                      events=[m.StreamEvent(seq=e.seq, topic=e.topic, data=e.data) for e in events])


# --- ledger ------------------------------------------------------------------------------------------------------

ledger_routes = APIRouter(tags=["ledger"])


@ledger_routes.get("/positions", response_model=list[m.Position], summary="Open positions (the ledger's)")
async def positions(api: Ctx, organism: OrganismQ = None) -> Response:
    engine = api.session.engine
    key = (engine.bus.seq, organism)
    hit = _cache_hit(api, "positions", key)
    if hit is not None:
        return hit
    out = []
    for p in await engine.ledger.positions(organism):
        if not p.quantity:
            continue
        mark = engine.portfolio.last_price.get(p.symbol)
        out.append(m.Position(organism=p.organism, symbol=p.symbol, quantity=p.quantity, avg_price=p.avg_price,
                              realized_pnl=p.realized_pnl, mark=mark,
                              unrealized_pnl=None if mark is None else float(p.quantity) * (mark - float(p.avg_price))))
    return _cached(api, "positions", key, lambda: _POSITIONS.dump_json(out))


@ledger_routes.get("/orders", response_model=list[m.Order], summary="Orders, oldest first")
async def orders(api: Ctx, organism: OrganismQ = None,
                 status: Annotated[str | None, Query(description="new, accepted, filled, cancelled, ...")] = None,
                 limit: LimitQ = 500) -> list[m.Order]:
    rows = await api.session.engine.ledger.orders(organism, status)
    return [m.Order(client_order_id=o.client_order_id, organism=o.organism, symbol=o.symbol, side=o.side,
                    type=o.order_type, quantity=o.quantity, limit_price=o.limit_price, time_in_force=o.time_in_force,
                    status=o.status, filled_quantity=o.filled_quantity, ts_ns=o.ts_ns, deadline_ns=o.deadline_ns,
                    venue_order_id=o.venue_order_id) for o in rows[-limit:]]


@ledger_routes.get("/fills", response_model=list[m.Fill], summary="Fills in the order they were applied")
async def fills(api: Ctx, organism: OrganismQ = None, limit: LimitQ = 500) -> list[m.Fill]:
    rows = await api.session.engine.ledger.fills(organism=organism)
    return [m.Fill(client_order_id=f.client_order_id, fill_id=f.fill_id, organism=f.organism, symbol=f.symbol,
                   side=f.side, quantity=f.quantity, price=f.price, fee=f.fee, fee_currency=f.fee_currency,
                   ts_ns=f.ts_ns) for f in rows[-limit:]]


@ledger_routes.get("/pnl", response_model=list[m.Pnl], summary="P&L per organism, marked at the last price")
async def pnl(api: Ctx) -> list[m.Pnl]:
    engine = api.session.engine
    p = engine.portfolio
    realized: dict[str, Any] = {}
    unrealized: dict[str, float] = {}
    for pos in await engine.ledger.positions():
        realized[pos.organism] = realized.get(pos.organism, 0) + pos.realized_pnl
        mark = p.last_price.get(pos.symbol)
        if mark is not None and pos.quantity:
            unrealized[pos.organism] = unrealized.get(pos.organism, 0.0) + float(pos.quantity) * (
                mark - float(pos.avg_price))
    return [m.Pnl(organism=o.id, cash=p.cash.get(o.id, 0.0), equity=p.equity(o.id), fees=p.fees.get(o.id, 0.0),
                  realized_pnl=realized.get(o.id, 0), unrealized_pnl=unrealized.get(o.id, 0.0),
                  allocation=o.allocation) for o in engine.organisms.values()]


@ledger_routes.get("/pnl/history", response_model=m.PnlHistory, summary="Equity over event time (the ledger's)")
async def pnl_history(api: Ctx, organism: Annotated[str, Query(description="an organism id; * = the portfolio")] = "*",
                      since_ns: Annotated[int, Query(ge=0, description="event time to start from")] = 0,
                      limit: LimitQ = 2000) -> m.PnlHistory:
    engine = api.session.engine
    # The engine samples equity in event time into the ledger (table equity_history); older ledgers have none.
    history = getattr(engine.ledger, "equity_history", None)
    samples = [] if history is None else await history(organism, since_ns)
    now = engine.portfolio.total_equity() if organism == "*" else engine.portfolio.equity(organism)
    return m.PnlHistory(organism=organism,
                        points=[m.EquityPoint(ts_ns=x.ts_ns, equity=float(x.equity)) for x in samples[-limit:]],
                        current=m.EquityPoint(ts_ns=engine.now_ns, equity=now))


# --- risk --------------------------------------------------------------------------------------------------------

risk_routes = APIRouter(tags=["risk"])


@engine_routes.put("/organisms/{organism_id}/params", response_model=m.Reconfigured,
                   summary="Configure an organism's strategy: a new instance with these parameters is hot-swapped in")
async def configure(api: Ctx, organism_id: str, body: m.ParamsIn) -> m.Reconfigured:
    engine = api.session.engine
    org = engine.organisms.get(organism_id)
    if org is None:
        raise HTTPException(404, detail=f"no organism {organism_id!r} (running: {', '.join(engine.organisms)})")
    spec = org.spec.model_copy(update={"params": {**org.spec.params, **body.params}})
    try:  # off the loop: a new instance is created and configured; bad values are refused by the manifest
        instance = await asyncio.to_thread(start_strategy, api.session.host, org.strategy.loaded, spec)
    except SessionError as exc:
        raise HTTPException(422, detail=f"body field 'params': {exc}") from None
    # The same path as a deploy's hot swap: applied between two chunks, recorded (with the parameters) in the
    # ledger's audit log and the firehose, so a replay configures the same instance at the same place.
    engine.queue_swap(org.id, instance)
    await engine.ledger.audit("api", "configure", {"organism": org.id, "params": dict(instance.params)})
    deadline = time.monotonic() + 3.0
    while api.running() and org.strategy is not instance and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return m.Reconfigured(organism=org.id, sha256=instance.loaded.sha256, params=dict(instance.params),
                          applied=org.strategy is instance)


@engine_routes.get("/book/{symbol}", response_model=m.Book, summary="The simulated venue's order book")
async def book(api: Ctx, symbol: str, depth: Annotated[int, Query(ge=1, le=200)] = 20) -> m.Book:
    engine = api.session.engine
    matching = getattr(engine.venue, "engine", None)  # the simulated venue's matching engine
    if matching is None:
        raise HTTPException(404, detail=f"the venue '{engine.venue.name}' has no order book to show "
                                        "(only the simulated venue's is served)")
    if symbol not in engine.venue.symbols():
        raise HTTPException(404, detail=f"the venue does not list {symbol!r} (it lists "
                                        f"{', '.join(engine.venue.symbols())})")
    instrument = engine.venue.instrument(symbol)
    books = matching.book(symbol)

    def side(name: Literal["buy", "sell"]) -> list[m.BookLevel]:
        return [m.BookLevel(price=instrument.price(ticks), quantity=instrument.quantity(lots))
                for ticks, lots in itertools.islice(books.levels(name), depth)]

    return m.Book(symbol=symbol, ts_ns=engine.now_ns, bids=side("buy"), asks=side("sell"))


@risk_routes.get("/risk", response_model=m.RiskState, summary="Risk settings, drawdown, kill switch")
async def risk(api: Ctx) -> m.RiskState:
    engine = api.session.engine
    p = engine.portfolio
    equity = p.total_equity()
    return m.RiskState(kill_switch=_kill_switch(api), config=engine.gate.config.model_dump(mode="json"),
                       equity=equity, high_water=p.high_water,
                       drawdown=max(0.0, (p.high_water - equity) / p.high_water) if p.high_water > 0 else 0.0,
                       open_orders=len(p.open_orders), refused=engine.counters.refused,
                       kernel_rejects=engine.counters.kernel_rejects)


@risk_routes.get("/risk/rejections", response_model=list[m.Rejection], summary="Refused intents, oldest first")
async def rejections(api: Ctx, organism: OrganismQ = None, limit: LimitQ = 500) -> list[m.Rejection]:
    rows = [d for d in await api.session.engine.ledger.risk_decisions(organism) if not d["accepted"]]
    return [m.Rejection(ts_ns=d["ts_ns"], organism=d["organism"], symbol=d["symbol"], rule=d["rule"],
                        reason=d["reason"]) for d in rows[-limit:]]


@risk_routes.get("/kill-switch", response_model=m.KillSwitch, summary="The kill switch")
async def get_kill_switch(api: Ctx) -> m.KillSwitch:
    return _kill_switch(api)


@risk_routes.post("/kill-switch", response_model=m.KillSwitch,
                  summary="Engage (cancel every open order, refuse new ones) or clear the kill switch")
async def set_kill_switch(api: Ctx, body: m.KillSwitchIn) -> m.KillSwitch:
    # The same flag file as `allele kill-switch`: the engine picks it up at its next event and records it in
    # the ledger and the firehose at that place, so a replay applies it where it happened.
    if body.engaged:
        killswitch.engage(api.home, body.reason)
    else:
        killswitch.clear(api.home)
    await api.session.engine.ledger.audit("api", "kill switch " + ("engage" if body.engaged else "clear"),
                                          {"reason": body.reason})
    deadline = time.monotonic() + 3.0
    while api.running() and api.session.engine.kill_switch != body.engaged and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return _kill_switch(api)


# --- plugins, vault ----------------------------------------------------------------------------------------------

plugin_routes = APIRouter(tags=["plugins"])


@plugin_routes.get("/plugins", response_model=list[m.Plugin], summary="Registered and deployed plugins")
async def plugins(api: Ctx) -> list[m.Plugin]:
    engine = api.session.engine
    users: dict[str, list[str]] = {}
    for o in engine.organisms.values():
        users.setdefault(o.plugin_sha256, []).append(o.id)
    deployed_root = (api.home / "plugins").resolve()
    out: dict[str, m.Plugin] = {}
    for r in await engine.ledger.plugins():
        path = Path(r["path"])
        out[r["sha256"]] = m.Plugin(name=r["name"], kind=r["kind"], version=r["version"], sha256=r["sha256"],
                                    path=str(path), deployed=path.resolve().is_relative_to(deployed_root),
                                    organisms=users.get(r["sha256"], []),
                                    proof_url=f"/api/plugins/{r['sha256']}/proof" if _proof_path(api, path)
                                    else None)
    return list(out.values())


def _proof_path(api: ApiContext, wasm: Path) -> Path | None:
    """A plugin's proof document: next to a deployed .wasm (`x.proof.md`, as `allele deploy` copies it), else the
    manifest's `proof` path of a loaded instance (bundled strategies: docs/strategies/<name>.md in Allele's tree)."""
    beside = wasm.with_suffix(".proof.md")
    if beside.is_file():
        return beside
    for org in api.session.engine.organisms.values():
        if Path(org.strategy.loaded.source).resolve() == wasm.resolve() and org.strategy.loaded.manifest.proof:
            candidate: Path = (SOURCE_ROOT / str(org.strategy.loaded.manifest.proof)).resolve()
            if candidate.is_file() and candidate.is_relative_to(SOURCE_ROOT.resolve()):
                return candidate
    return None


@plugin_routes.get("/plugins/{sha256}/proof", response_class=Response, summary="A plugin's proof document (Markdown)",
                   responses={200: {"content": {"text/markdown": {}}}, 404: {"description": "no proof document"}})
async def plugin_proof(api: Ctx, sha256: str) -> Response:
    for r in await api.session.engine.ledger.plugins():
        if r["sha256"] == sha256:
            proof = _proof_path(api, Path(r["path"]))
            if proof is None:
                raise HTTPException(404, detail=f"plugin {r['name']} ({sha256[:12]}) has no proof document")
            return Response(proof.read_bytes(), media_type="text/markdown; charset=utf-8")
    raise HTTPException(404, detail=f"no plugin with sha256 {sha256!r}")


@plugin_routes.post("/plugins", response_model=m.Deployed, status_code=201,
                    summary="Deploy a plugin by upload (multipart: wasm, optional proof, allow_unproven)")
async def deploy(api: Ctx, wasm: Annotated[UploadFile, File(description="the plugin .wasm")],
                 proof: Annotated[UploadFile | None, File(description="the strategy's proof document")] = None,
                 allow_unproven: Annotated[bool, Form(description="deploy a strategy without a proof")] = False
                 ) -> m.Deployed:
    name = Path(wasm.filename or "plugin.wasm").name
    if not name.endswith(".wasm"):
        raise HTTPException(422, detail=f"form field 'wasm': {name!r} is not a .wasm file")
    wasm_bytes = await wasm.read()
    proof_name = None if proof is None else (Path(proof.filename or "proof.md").name or "proof.md")
    proof_bytes = None if proof is None else await proof.read()

    def install(tmp: Path) -> Deployment:  # off the loop: writing the files, and a first load compiles (~10 s)
        (tmp / name).write_bytes(wasm_bytes)
        proof_path = None
        if proof_name is not None and proof_bytes is not None:
            proof_path = tmp / proof_name
            proof_path.write_bytes(proof_bytes)
        return install_plugin(api.session.host, tmp / name, proof=proof_path, allow_unproven=allow_unproven,
                              search=[tmp, SOURCE_ROOT])

    with tempfile.TemporaryDirectory(prefix="allele-upload-") as tmp:
        try:
            deployment = await asyncio.to_thread(install, Path(tmp))
        except UnprovenError as exc:
            raise HTTPException(422, detail=f"form field 'proof': {exc}. Upload the proof document as 'proof' "
                                            "(edge, assumptions, failure modes, risks; see docs/plugins.md) or set "
                                            "allow_unproven=true") from None
        except DeployError as exc:
            raise HTTPException(422, detail=f"form field 'wasm': {exc}") from None
    await record_deployment(api.session.engine.ledger, deployment, "api")
    loaded = deployment.loaded
    trades_it = any(o.spec.strategy == loaded.name for o in api.session.engine.organisms.values())
    return m.Deployed(name=loaded.name, kind=loaded.kind, version=loaded.manifest.version, sha256=loaded.sha256,
                      deployed=str(deployment.target), proof=None if deployment.proof is None else
                      str(deployment.proof), unproven=deployment.unproven,
                      hot_swap=loaded.kind == "strategy" and trades_it and api.running())


@plugin_routes.get("/vault", response_model=m.Vault, summary="Vault entry names (never secret values)")
async def vault(api: Ctx) -> m.Vault:
    directory = default_vault_dir(api.home)
    if not directory.exists():
        return m.Vault(entries=[], note=f"no vault at {directory}: `allele vault init` creates one")
    try:
        infos = list_entries(directory)
    except VaultError as exc:  # a damaged vault file: say so, never guess
        return m.Vault(entries=[], note=f"the vault at {directory} cannot be read: {exc}")
    # Only these four fields are copied: whatever else an entry holds never reaches the API.
    return m.Vault(entries=[m.VaultEntry(name=e.name, exchange=e.exchange, created=e.created, last_used=e.last_used)
                            for e in infos])


# --- arena -------------------------------------------------------------------------------------------------------

arena_routes = APIRouter(tags=["arena"])


@arena_routes.get("/arena/leaderboard", response_model=list[m.Standing], summary="The arena's standing, best first")
async def leaderboard(api: Ctx, limit: LimitQ = 100) -> list[m.Standing]:
    return [m.Standing(**row) for row in api.arena.standing()[:limit]]


@arena_routes.get("/arena/archive", response_model=m.ArenaArchive,
                  summary="The MAP-Elites niches of the latest arena run")
async def archive(api: Ctx) -> m.ArenaArchive:
    grid = api.arena.latest_archive()
    if grid is None:
        raise HTTPException(404, detail="no arena run has finished yet: `allele arena run --data ...` makes one")
    return m.ArenaArchive(**grid)


@arena_routes.get("/arena/lineage/{fingerprint}", response_model=list[m.LineageNode],
                  summary="An organism's ancestry, itself first")
async def lineage(api: Ctx, fingerprint: str) -> list[m.LineageNode]:
    rows = api.arena.lineage(fingerprint)
    if not rows:
        raise HTTPException(404, detail=f"no arena organism with fingerprint {fingerprint!r}")
    return [m.LineageNode(**row) for row in rows]


# --- the app -----------------------------------------------------------------------------------------------------

NO_DASHBOARD = """<!doctype html><html><head><meta charset="utf-8"><title>Allele</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Allele API</h1>
<p>The dashboard is not built. Build it with <code>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</code>
(it lands in <code>dashboard/dist/</code>), then reload this page.</p>
<p>The REST API is documented at <a href="/docs">/docs</a>; the stream is at <code>/ws</code>.</p>
</body></html>"""


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        problems.append(f"field '{where}': {e['msg']}")
    return JSONResponse({"detail": exc.errors(), "message": "; ".join(problems)}, status_code=422)


def create_app(api: ApiContext, dashboard: Path | None = DASHBOARD_DIST) -> FastAPI:
    """The FastAPI app serving `api`; `dashboard`: the built dashboard folder to serve at / (if it exists)."""
    app = FastAPI(title="Allele API", version="1",
                  description="The operator's API of a running Allele engine. Every /api route and /ws need the "
                              "token of `.allele/api.token` (`Authorization: Bearer <token>`); see docs/api.md.")
    app.state.api = api
    secured = [Depends(require_token)]
    for router in (engine_routes, ledger_routes, risk_routes, plugin_routes, arena_routes):
        app.include_router(router, prefix="/api", dependencies=secured)
    app.add_api_websocket_route("/ws", stream_endpoint)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimit, limit=api.config.max_upload_bytes)
    if dashboard is not None:
        app.mount("/", DashboardFiles(directory=dashboard, html=True, check_dir=False), name="dashboard")
    return app


class DashboardFiles(StaticFiles):
    """The built dashboard, looked up per request (it may be built, or rebuilt, while the engine runs); without
    a build, `/` is a page saying how to make one."""

    async def check_config(self) -> None:
        if (Path(str(self.directory)) / "index.html").is_file():
            await super().check_config()

    async def get_response(self, path: str, scope: Any) -> Response:
        if not (Path(str(self.directory)) / "index.html").is_file():
            if path in ("", ".", "index.html"):
                return HTMLResponse(NO_DASHBOARD)
            raise HTTPException(404, detail="the dashboard is not built (dashboard/dist)")
        return await super().get_response(path, scope)
