"""The operator's API end to end: a real engine (`allele start --no-watchdog`) in its own process with its own
ALLELE_HOME, serving REST and WebSocket on 127.0.0.1, and real httpx / websockets clients. What the API says is
checked against the ledger and the token file, never against timing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from conftest import wait_for
from test_cli import ALLELE, _c_variant
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from allele.kernel.api.apitoken import TokenError, ensure_token, read_token, token_path
from allele.kernel.api.app import ApiContext, create_app
from allele.kernel.api.config import ApiConfig
from allele.kernel.arena.store import ArenaStore
from allele.kernel.paths import SOURCE_ROOT
from allele.vault import ScryptParams, Vault, default_vault_dir

UPLOAD_LIMIT = 1 << 20  # [api] max_upload_bytes of the test engine: momentum_c (~140 KB) fits, 1 MiB + 1 does not
MOMENTUM_AUTHOR = '\\"author\\":\\"Allele\\"'


@dataclass
class Api:
    home: Path
    url: str
    port: int
    token: str
    proc: subprocess.Popen[str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, headers=self.auth, params=params, timeout=30)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/status")
        return result


ARCHIVE = {"descriptors": ["turnover", "holding_bars", "beta", "exposure", "venue"],
           "bins": {"turnover": [0.01, 0.1], "holding_bars": [5.0], "beta": [0.0], "exposure": [0.5]},
           "cells": [{"niche": [1, 0, 1, 1, "sim"], "labels": {"venue": "sim"}, "fingerprint": "child001",
                      "value": 1.25}]}


def _seed_arena(home: Path) -> None:
    """An arena standing and lineage in the ledger file (not funded, so the engine does not trade it)."""
    store = ArenaStore(home / "trading.db")
    try:
        spec = {"strategy": "sma_cross", "genome": {"fast": 5, "slow": 20}, "plugin_sha256": "0" * 64}
        store.put_lineage([{"fingerprint": "parent01", "parents": [], "operator": "seed", "generation": 0,
                            "detail": {}},
                           {"fingerprint": "child001", "parents": ["parent01"], "operator": "mutate", "generation": 1,
                            "detail": {"fast": [10, 5]}}], "run-1")
        store.put_standing([{"fingerprint": "child001", "spec": json.dumps(spec), "status": "candidate",
                             "allocation": "0.0", "fitness": 1.25, "sortino": 1.5, "dsr": 0.7, "oos_sharpe": 0.9,
                             "trades": 12, "protected": 0, "funded": 0, "reason": "evaluated", "run_id": "run-1",
                             "generation": 1}])
        store.start_run("run-1", {}, "data")
        store.finish_run("run-1", 1, [], ARCHIVE)
    finally:
        store.close()


VAULT_SECRET = "s3cret-never-in-the-api"
VAULT_KEY = "key-never-in-the-api"


def _seed_vault(home: Path) -> None:
    """A real vault with one entry (cheap scrypt: a test)."""
    vault = Vault.create(default_vault_dir(home), passphrase="test passphrase", scrypt=ScryptParams(n=2**10))
    vault.add("binance-main", exchange="binance", api_key=VAULT_KEY, secret=VAULT_SECRET)


@pytest.fixture(scope="module")
def api(built: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api") / "home"
    home.mkdir()
    (home / "config.toml").write_text(f"[engine]\nspeed = 20\nledger_sync = \"normal\"\n\n"
                                      f"[api]\nport = 0\nmax_upload_bytes = {UPLOAD_LIMIT}\n")
    _seed_arena(home)
    _seed_vault(home)
    log = (home.parent / "engine.out").open("w")
    proc = subprocess.Popen([str(ALLELE), "start", "--no-watchdog"], env={**os.environ, "ALLELE_HOME": str(home)},
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        def listening() -> dict[str, Any] | None:
            assert proc.poll() is None, f"the engine exited: {(home.parent / 'engine.out').read_text()}"
            try:
                info: dict[str, Any] = json.loads((home / "api.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            return info if info["pid"] == proc.pid else None

        info = wait_for("the API to listen", listening, timeout=180)
        yield Api(home, info["url"], info["port"], (home / "api.token").read_text().strip(), proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def traded(api: Api) -> Api:
    """The API of an engine that has sent orders and got fills."""
    wait_for("orders and fills", lambda: api.status()["counters"]["fills"] >= 3)
    return api


async def receive(ws: ClientConnection, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The messages of the next frame (an event frame is an array; control messages are objects)."""
    import asyncio

    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame if isinstance(frame, list) else [frame]


# -- security ---------------------------------------------------------------------------------------------------


def test_the_token_file_is_0600_and_the_server_listens_on_loopback_only(api: Api) -> None:
    path = api.home / "api.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(api.token) >= 40
    assert api.url == f"http://127.0.0.1:{api.port}"
    # Bound to 127.0.0.1, not 0.0.0.0: another loopback address of this machine is refused.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", api.port), timeout=5).close()
    socket.create_connection(("127.0.0.1", api.port), timeout=5).close()
    # The kernel agrees: the listening socket's local address is 127.0.0.1 (0100007F in /proc/net/tcp).
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and line.split()[1].endswith(f":{api.port:04X}")]
    assert listening == [f"0100007F:{api.port:04X}"]


def test_the_token_is_generated_once_and_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    first = ensure_token(tmp_path)
    assert stat.S_IMODE(token_path(tmp_path).stat().st_mode) == 0o600
    assert ensure_token(tmp_path) == first == read_token(tmp_path)
    assert ensure_token(tmp_path / "other") != first  # generated, not a constant
    token_path(tmp_path).chmod(0o644)
    with pytest.raises(TokenError, match=r"readable by other users \(mode 0644\); run `chmod 600"):
        read_token(tmp_path)


@pytest.mark.parametrize("path", ["/api/health", "/api/status", "/api/positions", "/api/orders", "/api/vault",
                                  "/api/kill-switch", "/api/stream?since=0"])
def test_rest_without_or_with_a_wrong_token_is_401(api: Api, path: str) -> None:
    missing = httpx.get(api.url + path, timeout=10)
    assert missing.status_code == 401 and "missing API token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(api.url + path, headers={"Authorization": "Bearer " + "x" * len(api.token)}, timeout=10)
    assert wrong.status_code == 401 and "wrong API token" in wrong.json()["detail"]
    other_scheme = httpx.get(api.url + path, headers={"Authorization": f"Basic {api.token}"}, timeout=10)
    assert other_scheme.status_code == 401
    assert httpx.get(api.url + path, headers=api.auth, timeout=10).status_code == 200


def test_posting_without_a_token_changes_nothing(api: Api) -> None:
    r = httpx.post(api.url + "/api/kill-switch", json={"engaged": True, "reason": "intruder"}, timeout=10)
    assert r.status_code == 401
    assert not (api.home / "KILL_SWITCH").exists()


async def test_websocket_without_or_with_a_wrong_token_is_401(api: Api) -> None:
    for kwargs in ({}, {"subprotocols": ["allele.bearer", "wrong"]}, {"subprotocols": ["allele.bearer"]}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(api.ws, **kwargs):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        async with connect(api.ws + "?token=" + "y" * 43):
            pass
    assert refused.value.response.status_code == 401
    # The right token, either way, is let in.
    async with connect(api.ws + f"?token={api.token}") as ws:
        assert (await receive(ws))[0]["type"] == "hello"
    async with connect(api.ws, subprotocols=["allele.bearer", api.token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "allele.bearer"
        assert (await receive(ws))[0]["type"] == "hello"


async def test_a_websocket_with_unknown_topics_or_a_bad_since_is_422(api: Api) -> None:
    for query, named in (("?topics=tick,weather", "unknown topics ['weather']"), ("?since=-4", "since must be >= 0"),
                         ("?since=soon", "'soon'")):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(api.ws + query, subprotocols=["allele.bearer", api.token]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 422
        detail = json.loads(refused.value.response.body or b"{}")["detail"]
        assert "query field 'topics' or 'since'" in detail and named in detail, detail


def test_a_malformed_body_is_422_naming_the_field(api: Api) -> None:
    r = httpx.post(api.url + "/api/kill-switch", headers=api.auth, json={"engaged": "perhaps"}, timeout=10)
    assert r.status_code == 422 and "field 'body.engaged'" in r.json()["message"]
    r = httpx.post(api.url + "/api/kill-switch", headers=api.auth, json={"reason": "no state"}, timeout=10)
    assert r.status_code == 422 and "field 'body.engaged': Field required" in r.json()["message"]
    r = httpx.post(api.url + "/api/kill-switch", headers={**api.auth, "Content-Type": "application/json"},
                   content=b"{not json", timeout=10)
    assert r.status_code == 422 and "field 'body" in r.json()["message"]
    r = httpx.post(api.url + "/api/plugins", headers=api.auth, data={"allow_unproven": "true"}, timeout=10)
    assert r.status_code == 422 and "field 'body.wasm'" in r.json()["message"]
    r = httpx.get(api.url + "/api/orders", headers=api.auth, params={"limit": "many"}, timeout=10)
    assert r.status_code == 422 and "field 'query.limit'" in r.json()["message"]
    assert not (api.home / "KILL_SWITCH").exists()


def test_an_oversize_upload_is_413_naming_the_limit(api: Api) -> None:
    big = b"\0asm" + b"\0" * UPLOAD_LIMIT
    r = httpx.post(api.url + "/api/plugins", headers=api.auth, files={"wasm": ("big.wasm", big)}, timeout=30)
    assert r.status_code == 413
    assert f"the limit is {UPLOAD_LIMIT:,} bytes" in r.json()["detail"]
    # Without a Content-Length (chunked), the body is cut off where it passes the limit.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"big.wasm\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(UPLOAD_LIMIT // 65_536 + 2):
            yield b"\0" * 65_536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = httpx.post(api.url + "/api/plugins", headers={**api.auth, "Content-Type":
                                                          f"multipart/form-data; boundary={boundary}"},
                   content=chunks(), timeout=30)
    assert r.status_code == 413 and f"the limit is {UPLOAD_LIMIT:,} bytes" in r.json()["detail"]
    assert not list((api.home / "plugins").glob("*/big*"))


# -- every endpoint, on a session that traded ----------------------------------------------------------------------


def test_status_and_organisms_are_the_running_engines(traded: Api) -> None:
    status = traded.status()
    assert status["state"] == "running" and status["pid"] == traded.proc.pid
    assert status["counters"]["orders"] > 0 and status["counters"]["fills"] > 0
    engine_json = json.loads((traded.home / "engine.json").read_text())
    assert status["session"] == engine_json["session"]
    ids = {o["id"] for o in status["organisms"]}
    assert ids == {o["id"] for o in engine_json["organisms"]} == {"sma-cross", "mean-reversion", "momentum-c",
                                                                  "completeness-arb"}
    ranked = traded.get("/api/organisms")
    assert [o["rank"] for o in ranked] == [1, 2, 3, 4]
    assert [o["equity"] for o in ranked] == sorted((o["equity"] for o in ranked), reverse=True)
    sma = next(o for o in ranked if o["id"] == "sma-cross")
    assert sma["params"] == {"fast": 10, "slow": 30} and sma["strategy"] == "sma_cross"
    health = traded.get("/api/health")
    assert health["ok"] and health["engine_running"] and health["seq"] >= status["seq"]


def test_orders_fills_positions_and_pnl_are_the_ledgers(traded: Api) -> None:
    fills = traded.get("/api/fills", limit=10_000)
    orders = traded.get("/api/orders", limit=10_000)  # after the fills: the engine trades on in between
    assert orders and fills
    order_ids = {o["client_order_id"] for o in orders}
    assert {f["client_order_id"] for f in fills} <= order_ids
    assert all(o["side"] in ("buy", "sell") and o["status"] for o in orders)
    filled = [o for o in orders if o["status"] == "filled"]
    assert filled and all(o["filled_quantity"] == o["quantity"] for o in filled)
    only = traded.get("/api/orders", organism="sma-cross")
    assert all(o["organism"] == "sma-cross" for o in only)
    positions = traded.get("/api/positions")
    assert positions and all(p["quantity"] != "0" and p["mark"] is not None for p in positions)
    pnl = traded.get("/api/pnl")
    assert {p["organism"] for p in pnl} == {"sma-cross", "mean-reversion", "momentum-c", "completeness-arb"}
    assert sum(p["fees"] for p in pnl) > 0
    history = wait_for("an equity sample", lambda: traded.get("/api/pnl/history")["points"])
    assert all(p["equity"] > 0 for p in history)
    assert [p["ts_ns"] for p in history] == sorted(p["ts_ns"] for p in history)


def test_risk_plugins_vault_watchdog_and_arena(traded: Api) -> None:
    risk = traded.get("/api/risk")
    assert risk["config"]["global_capital_cap"] == 100.0 and risk["kill_switch"]["engaged"] is False
    assert 0 <= risk["drawdown"] < 1 and risk["equity"] > 0
    assert isinstance(traded.get("/api/risk/rejections"), list)
    plugins = traded.get("/api/plugins")
    running = {p["name"]: p for p in plugins if p["organisms"]}
    assert set(running) == {"sma_cross", "mean_reversion", "momentum_c", "completeness_arb"}
    assert running["momentum_c"]["organisms"] == ["momentum-c"] and len(running["momentum_c"]["sha256"]) == 64
    vault = traded.get("/api/vault")
    assert [(e["name"], e["exchange"]) for e in vault["entries"]] == [("binance-main", "binance")]
    assert vault["entries"][0]["created"] and vault["note"] is None
    assert VAULT_SECRET not in json.dumps(vault) and VAULT_KEY not in json.dumps(vault)
    watchdog = traded.get("/api/watchdog")
    assert watchdog["state"] is None or isinstance(watchdog["state"], dict)
    board = traded.get("/api/arena/leaderboard")
    assert [(b["fingerprint"], b["fitness"], b["status"]) for b in board] == [("child001", 1.25, "candidate")]
    assert board[0]["spec"]["genome"] == {"fast": 5, "slow": 20}
    lineage = traded.get("/api/arena/lineage/child001")
    assert [(n["fingerprint"], n["operator"]) for n in lineage] == [("child001", "mutate"), ("parent01", "seed")]
    missing = httpx.get(traded.url + "/api/arena/lineage/nope", headers=traded.auth, timeout=10)
    assert missing.status_code == 404 and "'nope'" in missing.json()["detail"]


def test_the_order_book_the_niches_and_the_proof_documents(traded: Api) -> None:
    book = traded.get("/api/book/BTC-USD", depth=5)
    assert book["symbol"] == "BTC-USD" and book["ts_ns"] > 0 and book["bids"] and book["asks"]
    assert len(book["bids"]) <= 5 and len(book["asks"]) <= 5
    bids, asks = [b["price"] for b in book["bids"]], [a["price"] for a in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    assert all(level["quantity"] > 0 for level in book["bids"] + book["asks"])
    unknown = httpx.get(traded.url + "/api/book/NOPE-USD", headers=traded.auth, timeout=10)
    assert unknown.status_code == 404 and "'NOPE-USD'" in unknown.json()["detail"]

    archive = traded.get("/api/arena/archive")
    assert archive["run_id"] == "run-1" and archive["cells"] == ARCHIVE["cells"]
    assert archive["descriptors"] == ARCHIVE["descriptors"]

    sma = next(p for p in traded.get("/api/plugins") if p["name"] == "sma_cross")
    assert sma["proof_url"] == f"/api/plugins/{sma['sha256']}/proof"
    proof = httpx.get(traded.url + sma["proof_url"], headers=traded.auth, timeout=10)
    assert proof.status_code == 200 and proof.headers["content-type"].startswith("text/markdown")
    assert proof.text == (SOURCE_ROOT / "docs" / "strategies" / "sma_cross.md").read_text()
    assert httpx.get(traded.url + sma["proof_url"], timeout=10).status_code == 401
    nothing = httpx.get(traded.url + "/api/plugins/" + "f" * 64 + "/proof", headers=traded.auth, timeout=10)
    assert nothing.status_code == 404


def test_docs_and_the_dashboard_page_are_served(api: Api) -> None:
    schema = httpx.get(api.url + "/openapi.json", timeout=10).json()
    for path in ("/api/status", "/api/positions", "/api/orders", "/api/fills", "/api/pnl", "/api/pnl/history",
                 "/api/risk", "/api/risk/rejections", "/api/kill-switch", "/api/plugins", "/api/vault",
                 "/api/watchdog", "/api/arena/leaderboard", "/api/arena/lineage/{fingerprint}", "/api/stream"):
        assert path in schema["paths"], path
    assert "Position" in schema["components"]["schemas"]
    assert httpx.get(api.url + "/docs", timeout=10).status_code == 200
    # The dashboard (or the page saying how to build it: another job may be rebuilding dashboard/dist right now).
    page = httpx.get(api.url + "/", timeout=10)
    assert page.status_code == 200 and page.text.lower().startswith("<!doctype html>")


def _static_app(dashboard: Path) -> Any:
    # The static part of the app touches no engine: a context without one is enough.
    return create_app(ApiContext(Path("."), cast(Any, None), cast(Any, None), "t" * 43, ApiConfig()), dashboard)


async def test_a_built_dashboard_is_served_at_the_root_and_the_api_stays_reachable(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    (tmp_path / "assets" / "app.js").write_text("console.log('allele')")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(_static_app(tmp_path)), base_url="http://t") as c:
        assert (await c.get("/")).text == "<!doctype html><div id=root></div>"
        assert (await c.get("/assets/app.js")).text == "console.log('allele')"
        assert (await c.get("/api/health")).status_code == 401  # the mount at / does not shadow the API
        assert (await c.get("/nothing.js")).status_code == 404
    async with httpx.AsyncClient(transport=httpx.ASGITransport(_static_app(tmp_path / "missing")),
                                 base_url="http://t") as c:
        page = await c.get("/")
        assert page.status_code == 200 and "dashboard/dist" in page.text and "npm run build" in page.text
        assert (await c.get("/assets/app.js")).status_code == 404


def test_allele_ui_prints_the_url_with_the_token_in_the_fragment(api: Api) -> None:
    env = {**os.environ, "ALLELE_HOME": str(api.home)}
    proc = subprocess.run([str(ALLELE), "ui", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["url"] == f"{api.url}/#token={api.token}" and info["api"] == api.url
    proc = subprocess.run([str(ALLELE), "ui", "--print-url"], env={**env, "COLUMNS": "300"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == info["url"]


def test_allele_ui_without_a_running_api_says_how_to_start_one(tmp_path: Path) -> None:
    proc = subprocess.run([str(ALLELE), "ui", "--print-url"], env={**os.environ, "ALLELE_HOME": str(tmp_path),
                                                                   "COLUMNS": "300"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no API is running" in proc.stderr and "allele start" in proc.stderr


# -- the stream ----------------------------------------------------------------------------------------------------


async def test_the_stream_delivers_live_ticks_orders_and_fills_in_seq_order(traded: Api) -> None:
    async with connect(traded.ws + "?topics=tick,order,fill", subprotocols=["allele.bearer", traded.token]) as ws:
        hello = (await receive(ws))[0]
        assert hello["type"] == "hello" and hello["topics"] == ["fill", "order", "tick"]
        seen: list[dict[str, Any]] = []
        while {"tick", "order", "fill"} - {m["topic"] for m in seen}:
            seen += [m for m in await receive(ws) if m["type"] == "event"]
    seqs = [m["seq"] for m in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > hello["seq"]
    assert {m["topic"] for m in seen} == {"tick", "order", "fill"}
    fill = next(m for m in seen if m["topic"] == "fill")["data"]
    assert fill["side"] in ("buy", "sell") and fill["price"] > 0 and fill["organism"]
    tick = next(m for m in seen if m["topic"] == "tick")["data"]
    assert tick["symbol"] and tick["price"] > 0


async def test_the_stream_carries_ranking_changes_and_health(traded: Api) -> None:
    async with connect(traded.ws + "?topics=organism,health&since=0",
                       subprotocols=["allele.bearer", traded.token]) as ws:
        await receive(ws)
        seen: dict[str, dict[str, Any]] = {}
        while not {"organism", "health"} <= set(seen):
            for m in await receive(ws):
                if m["type"] == "event" and (m["topic"] == "health" or "ranking" in m["data"]):
                    seen.setdefault(m["topic"], m["data"])
    ranking = seen["organism"]["ranking"]
    assert sorted(ranking) == ["completeness-arb", "mean-reversion", "momentum-c", "sma-cross"]
    equity = seen["organism"]["equity"]
    assert [equity[o] for o in ranking] == sorted(equity.values(), reverse=True)
    assert seen["health"]["pid"] == traded.proc.pid and seen["health"]["events"] >= 0


async def test_subscribing_changes_the_topics_received(traded: Api) -> None:
    async with connect(traded.ws + "?topics=fill", subprotocols=["allele.bearer", traded.token]) as ws:
        await receive(ws)
        await ws.send(json.dumps({"op": "subscribe", "topics": ["tick"]}))
        await ws.send(json.dumps({"op": "unsubscribe", "topics": ["fill"]}))
        await ws.send(json.dumps({"op": "subscribe", "topics": ["weather"]}))
        await ws.send(json.dumps({"op": "ping"}))
        controls: list[dict[str, Any]] = []
        after_unsubscribe = []
        while len(controls) < 4 or len(after_unsubscribe) < 20:
            for m in await receive(ws):
                if m["type"] != "event":
                    controls.append(m)
                elif len(controls) >= 2:
                    after_unsubscribe.append(m)
    assert [c["type"] for c in controls] == ["subscribed", "subscribed", "error", "pong"]
    assert controls[1]["topics"] == ["tick"] and "unknown topics ['weather']" in controls[2]["detail"]
    assert {m["topic"] for m in after_unsubscribe} == {"tick"}


async def test_a_client_leaving_does_not_disturb_the_others(traded: Api) -> None:
    async with connect(traded.ws + "?topics=tick", subprotocols=["allele.bearer", traded.token]) as stays:
        await receive(stays)
        for _ in range(3):  # clients that leave while the senders of all wait for the same wake-up
            async with connect(traded.ws + "?topics=tick", subprotocols=["allele.bearer", traded.token]) as leaves:
                await receive(leaves)
        seqs: list[int] = []
        while len(seqs) < 50:
            seqs += [m["seq"] for m in await receive(stays) if m["type"] == "event"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_a_reconnecting_client_resumes_with_since_without_a_gap(traded: Api) -> None:
    topics = "order,fill,risk"
    got: dict[int, dict[str, Any]] = {}
    async with connect(traded.ws + f"?topics={topics}", subprotocols=["allele.bearer", traded.token]) as ws:
        start = (await receive(ws))[0]["seq"]
        while len(got) < 5:
            got.update({m["seq"]: m for m in await receive(ws) if m["type"] == "event"})
    last = max(got)
    time.sleep(2)  # disconnected while the engine trades on
    async with connect(traded.ws + f"?topics={topics}&since={last}",
                       subprotocols=["allele.bearer", traded.token]) as ws:
        hello = (await receive(ws))[0]
        assert hello["seq"] > last
        while max(got) < hello["seq"] + 1 or len([s for s in got if s > last]) < 5:
            frame = await receive(ws)
            assert all(m["type"] == "event" for m in frame), frame  # no gap notice: the ring still held them
            got.update({m["seq"]: m for m in frame})
    # The REST backfill of the same range has exactly the messages the two connections delivered.
    backfill = traded.get("/api/stream", since=start, topics=topics)
    assert backfill["complete"]
    rest = {e["seq"]: e for e in backfill["events"] if e["seq"] <= max(got)}
    assert sorted(rest) == sorted(got)
    assert all(rest[s]["data"] == got[s]["data"] and rest[s]["topic"] == got[s]["topic"] for s in rest)
    assert any(s > last for s in got)


# -- actions -------------------------------------------------------------------------------------------------------


def test_configuring_an_organism_hot_swaps_an_instance_with_its_parameters(traded: Api) -> None:
    sma = next(o for o in traded.get("/api/organisms") if o["strategy"] == "sma_cross")
    url = f"{traded.url}/api/organisms/{sma['id']}/params"
    done = httpx.put(url, json={"params": {"fast": 4, "slow": 17}}, headers=traded.auth, timeout=30)
    assert done.status_code == 200, done.text
    assert done.json()["applied"] and done.json()["params"]["fast"] == 4 and done.json()["params"]["slow"] == 17
    now = next(o for o in traded.get("/api/organisms") if o["id"] == sma["id"])
    assert now["params"]["fast"] == 4 and now["plugin_sha256"] == sma["plugin_sha256"]

    refused = httpx.put(url, json={"params": {"fast": 30, "slow": 5}}, headers=traded.auth, timeout=30)
    assert refused.status_code == 422 and "'params'" in refused.json()["detail"] and "refused" in refused.text
    typo = httpx.put(url, json={"parms": {"fast": 3}}, headers=traded.auth, timeout=30)
    assert typo.status_code == 422 and "parms" in typo.text
    assert httpx.put(url, json={"params": {"fast": 3}}, timeout=30).status_code == 401
    ghost = httpx.put(f"{traded.url}/api/organisms/ghost/params", json={"params": {}}, headers=traded.auth,
                      timeout=30)
    assert ghost.status_code == 404 and "'ghost'" in ghost.json()["detail"]

    def recorded() -> bool:  # the swap is in the firehose with its parameters: a replay configures the same
        for path in (traded.home / "historical").rglob("*.jsonl"):
            for line in path.read_text().splitlines():
                if '"swap"' in line and sma["id"] in line:
                    record = json.loads(line)
                    if record.get("params", {}).get("fast") == 4:
                        return True
        return False

    wait_for("the swap in the firehose", recorded)


def test_uploading_a_plugin_deploys_it_and_the_engine_swaps_it_in(traded: Api, tmp_path: Path) -> None:
    wasm = _c_variant(tmp_path, "momentum_c", MOMENTUM_AUTHOR, '\\"author\\":\\"the API test\\"')
    sha = hashlib.sha256(wasm.read_bytes()).hexdigest()
    proof = (SOURCE_ROOT / "docs" / "strategies" / "momentum_c.md").read_bytes()
    r = httpx.post(traded.url + "/api/plugins", headers=traded.auth, timeout=120,
                   files={"wasm": ("momentum_c.wasm", wasm.read_bytes()), "proof": ("momentum_c.md", proof)})
    assert r.status_code == 201, r.text
    deployed = r.json()
    target = traded.home / "plugins" / "strategies" / f"momentum_c-{sha[:12]}.wasm"
    assert deployed["sha256"] == sha and deployed["name"] == "momentum_c" and deployed["hot_swap"] is True
    assert Path(deployed["deployed"]) == target and target.read_bytes() == wasm.read_bytes()
    assert Path(deployed["proof"]).read_bytes() == proof and deployed["unproven"] is None
    listed = {p["sha256"]: p for p in traded.get("/api/plugins")}
    assert listed[sha]["deployed"] is True and listed[sha]["name"] == "momentum_c"
    # The engine notices the new version of a strategy an organism trades and swaps it in.
    wait_for("the hot swap", lambda: next(o for o in traded.get("/api/organisms")
                                          if o["id"] == "momentum-c")["plugin_sha256"] == sha)
    assert next(p for p in traded.get("/api/plugins") if p["sha256"] == sha)["organisms"] == ["momentum-c"]


def test_an_upload_that_is_not_a_plugin_is_refused_naming_it(api: Api) -> None:
    r = httpx.post(api.url + "/api/plugins", headers=api.auth, timeout=30,
                   files={"wasm": ("junk.wasm", b"\0asm not really")})
    assert r.status_code == 422 and "field 'wasm'" in r.json()["detail"]
    r = httpx.post(api.url + "/api/plugins", headers=api.auth, timeout=30, files={"wasm": ("notes.txt", b"hi")})
    assert r.status_code == 422 and "'notes.txt' is not a .wasm file" in r.json()["detail"]


def test_an_unproven_strategy_upload_is_refused_unless_allowed(api: Api, tmp_path: Path) -> None:
    wasm = _c_variant(tmp_path, "momentum_c", '\\"proof\\":\\"docs/strategies/momentum_c.md\\"',
                      '\\"proof\\":\\"docs/strategies/no_such_proof.md\\"')
    files = {"wasm": ("momentum_c.wasm", wasm.read_bytes())}
    r = httpx.post(api.url + "/api/plugins", headers=api.auth, timeout=120, files=files)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "strategy momentum_c refused" in detail and "no_such_proof.md" in detail and "allow_unproven" in detail
    r = httpx.post(api.url + "/api/plugins", headers=api.auth, timeout=120, files=files,
                   data={"allow_unproven": "true"})
    assert r.status_code == 201 and r.json()["unproven"] and r.json()["proof"] is None


def test_the_kill_switch_via_the_api_halts_trading(traded: Api) -> None:
    try:
        r = httpx.post(traded.url + "/api/kill-switch", headers=traded.auth, timeout=30,
                       json={"engaged": True, "reason": "API test: halt"})
        assert r.status_code == 200
        state = r.json()
        assert state["engaged"] and state["applied"] and state["reason"] == "API test: halt"
        assert (traded.home / "KILL_SWITCH").read_text() == "API test: halt"
        halted = traded.status()
        assert halted["kill_switch"]["engaged"]
        # Trading goes on in event time, yet no new order is sent; the gate refuses the signals instead.
        wait_for("60 s of event time", lambda: traded.status()["event_time_ns"] > halted["event_time_ns"] + 60e9)
        later = traded.status()
        assert later["counters"]["orders"] == halted["counters"]["orders"]
        assert later["counters"]["events"] > halted["counters"]["events"]
        refusals = traded.get("/api/risk/rejections", limit=10_000)
        assert any(r["rule"] == "kill_switch" for r in refusals)
        orders = traded.get("/api/orders", limit=10_000)
        assert all(o["ts_ns"] <= halted["event_time_ns"] for o in orders)
        assert all(o["status"] not in ("new", "accepted", "partially_filled") for o in orders)
    finally:
        r = httpx.post(traded.url + "/api/kill-switch", headers=traded.auth, timeout=30, json={"engaged": False})
    assert r.status_code == 200 and r.json() == {**r.json(), "engaged": False, "applied": True}
    assert not (traded.home / "KILL_SWITCH").exists()
    wait_for("trading to resume", lambda: traded.status()["counters"]["orders"] > later["counters"]["orders"])
