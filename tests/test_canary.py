"""The canary: a secret in the vault, used for real, is found nowhere it must not be.

The canary secret signs every order of a live session against the venue emulator (ccxt path,
credentials from a real vault file) and the orders the bundled binance_spot WASM plugin encodes
(signing capability). A paper session then runs with the same vault attached and records its firehose.
Afterwards the secret and the vault passphrase are searched for, as raw bytes, in:
- the linear memory of every WebAssembly instance alive in the process (strategies, the exchange
  plugin), with a positive control proving the scanner sees what a plugin holds;
- every file under the Allele home except the vault's own (ledger, WAL, firehose, logs);
- everything the loggers wrote at DEBUG level;
- every answer of the operator's API serving the live session (each GET route) and everything its
  WebSocket stream sent while the session traded.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import running_emulator
from memscan import linear_memories, linear_memory_contains
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from allele.kernel.api.config import ApiConfig
from allele.kernel.api.server import start_api
from allele.kernel.domain import FinalizedOrder
from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.engine.config import EngineConfig, OrganismSpec
from allele.kernel.engine.live import open_live_session
from allele.kernel.engine.session import open_paper_session
from allele.kernel.exchange.plugin_send import send_plugin_request
from allele.kernel.exchange.settings import ExchangeSettings
from allele.vault import ScryptParams, Vault

CANARY = "CANARY-" + secrets.token_hex(16)
API_KEY = "canary-key-" + secrets.token_hex(8)
PASSPHRASE = "canary-passphrase-" + secrets.token_hex(8)
MARKER = "PLUGIN-HELD-" + secrets.token_hex(8)  # the positive control: a string a strategy does hold


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with running_emulator({API_KEY: (CANARY, {"USDT": 10_000.0, "ETH": 10.0, "BTC": 1.0})}, tick_s=0.02) as server:
        yield server


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Everything every logger says, at DEBUG, into one file (what an operator's log would hold)."""
    path = tmp_path / "home" / "logs" / "everything.log"
    path.parent.mkdir(parents=True)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield path
    root.removeHandler(handler)
    root.setLevel(old_level)
    handler.close()


async def _every_get(url: str, token: str, live: Any) -> str:
    """The text of every GET route of the API (path parameters filled in from the session)."""
    fingerprint = "0" * 64
    paths = ["/api/health", "/api/status", "/api/organisms", "/api/watchdog", "/api/stream?since=0",
             "/api/positions", "/api/orders", "/api/fills", "/api/pnl", "/api/pnl/history", "/api/book/ETH-USDT",
             "/api/risk", "/api/risk/rejections", "/api/kill-switch", "/api/plugins", "/api/vault",
             "/api/arena/leaderboard", "/api/arena/archive", f"/api/arena/lineage/{fingerprint}", "/openapi.json"]
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        texts = []
        for path in paths:
            reply = await client.get(path)
            assert reply.status_code in (200, 404), f"{path}: {reply.status_code} {reply.text}"
            texts.append(reply.text)
        plugins = (await client.get("/api/plugins")).json()
        for plugin in plugins:
            if plugin["proof_url"]:
                texts.append((await client.get(plugin["proof_url"])).text)
    vault_names = [e["name"] for e in json.loads(texts[paths.index("/api/vault")])["entries"]]
    assert vault_names == ["main"]  # the vault is listed: by name only
    return "\n".join(texts)


def files_holding(home: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in sorted(p for p in home.rglob("*") if p.is_file() and "vault" not in p.relative_to(home).parts):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data += gzip.decompress(data)
        hits += [f"{path.relative_to(home)}: {needle[:12]!r}" for needle in needles if needle in data]
    return hits


async def test_the_canary_secret_reaches_no_plugin_file_or_log(emulator: EmulatorServer, built: Any,
                                                               make_host: Any, tmp_path: Path,
                                                               debug_log: Path) -> None:
    home = tmp_path / "home"
    Vault.create(home / "vault", passphrase=PASSPHRASE, scrypt=ScryptParams(n=2**10)).add(
        "main", exchange="binance", api_key=API_KEY, secret=CANARY)
    vault = Vault.open(home / "vault", passphrase=PASSPHRASE)
    host = make_host(signer=vault)
    settings = ExchangeSettings(id="binance", account="main", urls=emulator.ccxt_urls(), symbols=("ETH-USDT",),
                                poll_s=0.1, backoff_s=0.05)
    organisms = (OrganismSpec(id="sma", strategy="sma_cross", params={"fast": 2, "slow": 3}, symbols=("ETH-USDT",),
                              allocation=40.0),)

    # 1. A live session: every order signed with the canary through the ccxt path, watched through the API.
    live = await open_live_session(home, credentials=vault, settings=settings, organisms=organisms, host=host,
                                   max_events=200)
    api = await start_api(live, home, config=ApiConfig(port=0))
    assert api is not None
    token = (home / "api.token").read_text().strip()
    streamed: list[str] = []

    async def listen() -> None:
        async with connect(api.url.replace("http", "ws") + "/ws", subprotocols=[Subprotocol("allele.bearer"),
                                                                                Subprotocol(token)]) as ws:
            async for frame in ws:
                streamed.append(str(frame))

    listener = asyncio.create_task(listen())
    # 2. The WASM exchange plugin: the host signs its orders with the canary.
    exchange = host.exchange(host.load(built["binance_spot"]))
    exchange.configure({"testnet": True, "recv_window_ms": 5000})
    # 3. A paper session with the vault attached, recording its firehose.
    paper = await open_paper_session(home, config=EngineConfig(bars=60, speed=0, record=True), host=host,
                                     session="canary-paper")
    try:
        await live.run()
        assert live.errors == [] and live.engine.counters.orders > 0 and live.engine.counters.fills > 0
        answers = await _every_get(api.url, token, live)
        assert len(streamed) > 10 and any('"fill"' in frame for frame in streamed)
        for needle in (CANARY, PASSPHRASE):
            assert needle not in answers and not any(needle in frame for frame in streamed)
        order = FinalizedOrder("canary-wasm-1", "BTC-USDT", "buy", "limit", 0.002, 1000.0, "gtc", time.time_ns(), 0)
        reply = await send_plugin_request(exchange.encode_order(order, "main"), vault, "main",
                                          base_url=emulator.base_url)
        assert reply.status_code == 200, reply.text  # the canary really signed it
        await paper.run()
        assert paper.engine.counters.events > 0

        # The positive control: a string handed to a strategy is found in its linear memory.
        probe = host.strategy(host.load(built["sma_cross"]))
        probe.configure({"fast": 2, "slow": 3})
        probe.on_batch({"symbols": [MARKER], "ts": [1, 2, 3, 4], "price": [1.0, 2.0, 3.0, 4.0]})
        memories = linear_memories()
        assert len(memories) >= 3, memories  # the live and paper strategies, the exchange plugin, the probe
        assert linear_memory_contains(MARKER.encode()), "the scanner does not see plugin memory"

        for needle in (CANARY, PASSPHRASE):
            assert linear_memory_contains(needle.encode()) == [], f"{needle[:10]}... is in a plugin's memory"
    finally:
        listener.cancel()
        await api.stop()
        await live.close()
        await paper.close()

    logged = debug_log.read_bytes()
    assert len(logged) > 0
    assert CANARY.encode() not in logged and PASSPHRASE.encode() not in logged
    assert (home / "trading.db").is_file() and any((home / "historical").rglob("*"))
    assert files_holding(home, [CANARY.encode(), PASSPHRASE.encode()]) == []


def test_the_file_scan_finds_what_is_there(tmp_path: Path) -> None:
    """The negative checks above are only as good as the scan: it finds a needle in plain and gzipped files."""
    (tmp_path / "historical").mkdir()
    (tmp_path / "plain.txt").write_bytes(b"...NEEDLE...")
    (tmp_path / "historical" / "000001.jsonl.gz").write_bytes(gzip.compress(b"{\"x\": \"NEEDLE\"}"))
    (tmp_path / "vault").mkdir()
    (tmp_path / "vault" / "vault.json").write_bytes(b"NEEDLE")  # the vault's own files are not scanned
    assert files_holding(tmp_path, [b"NEEDLE"]) == ["historical/000001.jsonl.gz: b'NEEDLE'", "plain.txt: b'NEEDLE'"]

