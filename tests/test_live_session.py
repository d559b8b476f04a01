"""The live path: the engine trading through CcxtVenue / LiveSource against the venue emulator on 127.0.0.1, with
credentials from a real Vault file; real ccxt, real strategies (wasm), real SQLite ledger."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from allele.kernel.domain import FinalizedOrder, OrderUpdate
from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.emulator.state import Account, EmulatorState
from allele.kernel.engine.config import EngineConfig, OrganismSpec
from allele.kernel.engine.live import open_live_session
from allele.kernel.engine.session import SessionError
from allele.kernel.exchange.ccxt_adapter import CcxtExchange
from allele.kernel.exchange.settings import ExchangeSettings
from allele.kernel.exchange.venue import CcxtVenue, IoLoop, LiveSource
from allele.vault import ScryptParams, Vault
from allele.vault.signing import MemorySigner

KEY, SECRET = "live-key", "live-secret-abcdef-123456"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    state = EmulatorState(accounts={KEY: Account(SECRET, {"USDT": 10_000.0, "ETH": 10.0, "BTC": 1.0})})
    server = EmulatorServer(state, tick_s=0.02)
    server.start()
    yield server
    server.stop()


def settings(server: EmulatorServer, **kw: Any) -> ExchangeSettings:
    return ExchangeSettings(**{"id": "binance", "account": "main", "urls": server.ccxt_urls(),
                               "symbols": ("ETH-USDT",), "poll_s": 0.1, "backoff_s": 0.05, **kw})


def vault_with(tmp_path: Path, secret: str) -> Vault:
    Vault.create(tmp_path / "vault", passphrase=PASSPHRASE, scrypt=ScryptParams(n=2**10)).add(
        "main", exchange="binance", api_key=KEY, secret=secret)
    return Vault.open(tmp_path / "vault", passphrase=PASSPHRASE)


ORGANISMS = (OrganismSpec(id="sma", strategy="sma_cross", params={"fast": 2, "slow": 3}, symbols=("ETH-USDT",),
                          allocation=40.0),)


def test_the_venue_port_sends_at_once_and_reports_on_advance(emulator: EmulatorServer) -> None:
    io = IoLoop()
    exchange = CcxtExchange(settings(emulator), MemorySigner({"main": (KEY, SECRET.encode())}))
    io.run(exchange.open())
    venue = CcxtVenue(exchange, io)
    source = LiveSource(exchange, io, ("ETH-USDT",), max_events=20)
    try:
        assert venue.symbols() == ("BTC-USDT", "ETH-USDT") and venue.instrument("ETH-USDT").lot_size == 0.001
        events = list(source.events())
        assert len(events) == 20 and {e.symbol for e in events} == {"ETH-USDT"}
        assert [e.ts_ns for e in events] == sorted(e.ts_ns for e in events)

        now = time.time_ns()
        venue.submit(FinalizedOrder("v-1", "ETH-USDT", "buy", "market", 0.01, None, "gtc", now, 0), now)
        venue.submit(FinalizedOrder("v-2", "ETH-USDT", "buy", "limit", 0.01, 100.0, "gtc", now, 0), now)
        got: list[Any] = []
        deadline = time.monotonic() + 15
        while not ({u.client_order_id for u in got if u.status != "accepted"} >= {"v-1"}
                   and any(u.client_order_id == "v-2" for u in got)):
            assert time.monotonic() < deadline
            got += venue.advance(time.time_ns())
            time.sleep(0.02)
        assert [u.status for u in got if u.client_order_id == "v-1"] == ["accepted", "filled"]
        assert [u.status for u in got if u.client_order_id == "v-2"] == ["accepted"]
        venue.amend("v-2", now, limit_price=101.0)
        assert [(u.status, "the order stands" in u.reason) for u in venue.advance(now)] == [("rejected", True)]
        venue.cancel("v-2", now)
        drained = venue.drain()
        assert [(u.client_order_id, u.status) for u in drained if isinstance(u, OrderUpdate)] == [("v-2",
                                                                                                   "cancelled")]
        assert venue.pending() == 0 and exchange.private_clients_open == 0
    finally:
        source.close()
        venue.close()
        io.run(exchange.close())
        io.stop()


async def test_a_live_session_trades_through_the_engine_with_vault_credentials(
        emulator: EmulatorServer, built: Any, make_host: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    vault = vault_with(tmp_path, SECRET)
    session = await open_live_session(home, credentials=vault, settings=settings(emulator), organisms=ORGANISMS,
                                      host=make_host(), max_events=300)
    assert session.header["mode"] == "sandbox" and session.header["exchange"]["account"] == "main"
    try:
        await session.run()
        counters = session.engine.counters
        assert counters.events == 300 and counters.orders > 0 and counters.fills > 0, counters
        assert session.errors == []
        ledger = session.engine.ledger
        fills = await ledger.fills()
        state = emulator.state
        venue_trades = emulator.call(lambda: list(state.my_trades.get(KEY, [])))
        assert len(fills) == len(venue_trades) == counters.fills
        assert sorted(float(f.price) for f in fills) == sorted(float(t["price"]) for t in venue_trades)
        assert {f.fee_currency for f in fills} == {"USDT"}
        # What the ledger says we hold is what the venue says we hold.
        net = sum((float(f.quantity) if f.side == "buy" else -float(f.quantity)) for f in fills)
        positions = {p.symbol: float(p.quantity) for p in await ledger.positions("sma")}
        eth = emulator.call(lambda: state.accounts[KEY].balances["ETH"])
        assert positions.get("ETH-USDT", 0.0) == pytest.approx(net) == pytest.approx(eth - 10.0)
        # Every order the ledger holds is known to the venue under the same client order id.
        ours = {o.client_order_id for o in await ledger.orders()}
        venue_ids = emulator.call(lambda: {o.client_order_id for o in state.orders.values()})
        assert ours == venue_ids
        # The risk gate was on the path: the capital cap refused what would have exceeded the allocation.
        decisions = await ledger.risk_decisions("sma")
        assert any(d["accepted"] for d in decisions)
        assert all(d["rule"] == "accepted" for d in decisions if d["accepted"])
        for fill in fills:  # no single order was worth more than the organism's whole allocation
            assert float(fill.quantity * fill.price) <= ORGANISMS[0].allocation
    finally:
        await session.close()


async def test_wrong_credentials_in_a_session_reject_orders_with_a_clear_reason(
        emulator: EmulatorServer, built: Any, make_host: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    wrong = "wrong-secret-0000-1111"
    session = await open_live_session(home, credentials=vault_with(tmp_path, wrong), settings=settings(emulator),
                                      organisms=ORGANISMS, host=make_host(), max_events=150)
    try:
        await session.run()
        assert session.engine.counters.orders > 0 and session.engine.counters.fills == 0
        assert session.errors, "the failed executions are reported to the session"
        message = str(session.errors[0])
        assert "account 'main'" in message and f"binance at {emulator.rest_url}" in message
        assert "Check the API key and secret" in message and wrong not in message
        orders = await session.engine.ledger.orders()
        assert orders and {o.status for o in orders} == {"rejected"}
        events = await session.engine.ledger.order_events(orders[0].client_order_id)
        assert any("refused the credentials of account 'main'" in (e.reason or "") for e in events)
        assert emulator.state.counters["orders"] == 0 and emulator.state.counters["rejected_auth"] > 0
    finally:
        await session.close()


async def test_real_money_needs_live_mode_and_symbols(tmp_path: Path) -> None:
    live = ExchangeSettings(id="binance", account="main", sandbox=False, allow_live=True, symbols=("BTC-USDT",))
    with pytest.raises(SessionError, match='mode = "live"'):
        await open_live_session(tmp_path, credentials=MemorySigner({}), settings=live, config=EngineConfig(),
                                organisms=ORGANISMS)
    with pytest.raises(SessionError, match="symbols is empty"):
        await open_live_session(tmp_path, credentials=MemorySigner({}), settings=ExchangeSettings(id="binance"),
                                config=EngineConfig(mode="live"), organisms=ORGANISMS)


async def test_an_unreachable_venue_is_a_session_error(tmp_path: Path) -> None:
    dead = ExchangeSettings(id="binance", account="main", symbols=("ETH-USDT",), retries=1, backoff_s=0.01,
                            urls={"public": "http://127.0.0.1:9/api/v3", "private": "http://127.0.0.1:9/api/v3"})
    with pytest.raises(SessionError, match=r"could not load its markets.*127\.0\.0\.1:9"):
        await asyncio.wait_for(open_live_session(tmp_path, credentials=MemorySigner({}), settings=dead,
                                                 organisms=ORGANISMS), 60)


async def test_a_quiet_market_leaves_the_engine_loop_free_to_stop(built: Any, make_host: Any,
                                                                   tmp_path: Path) -> None:
    state = EmulatorState(accounts={KEY: Account(SECRET, {"USDT": 1000.0})})
    server = EmulatorServer(state, tick_s=0)  # a market that never moves: no event will ever arrive
    server.start()
    home = tmp_path / "home"
    home.mkdir()
    try:
        session = await open_live_session(home, credentials=MemorySigner({"main": (KEY, SECRET.encode())}),
                                          settings=settings(server), organisms=ORGANISMS, host=make_host(),
                                          idle_timeout_s=3600)
        stop = asyncio.Event()
        ticks = 0

        async def operator() -> None:  # another task on the engine's loop: it runs only if the loop is free
            nonlocal ticks
            for _ in range(5):
                await asyncio.sleep(0.05)
                ticks += 1
            stop.set()

        try:
            await asyncio.wait_for(asyncio.gather(session.run(stop), operator()), 60)
        finally:
            await session.close()
        assert ticks == 5 and session.engine.counters.events == 0
    finally:
        server.stop()


def _toml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings and numbers: JSON's forms are TOML's


def test_allele_start_trades_live_on_the_emulator_with_the_vault(emulator: EmulatorServer, built: Any,
                                                                  tmp_path: Path) -> None:
    """`allele start` with `mode = "live"`: the whole pipeline from the CLI, credentials from the vault."""
    home = tmp_path / "home"
    home.mkdir()
    Vault.create(home / "vault", passphrase=PASSPHRASE, scrypt=ScryptParams(n=2**10)).add(
        "main", exchange="binance", api_key=KEY, secret=SECRET)
    (home / "config.toml").write_text(
        '[engine]\nmode = "live"\n\n[api]\nenabled = false\n\n'
        f'[exchange]\nid = "binance"\naccount = "main"\nsymbols = ["ETH-USDT"]\npoll_s = 0.1\n'
        f'urls = {_toml_inline(emulator.ccxt_urls())}\n\n'
        '[[organisms]]\nid = "sma"\nstrategy = "sma_cross"\nparams = { fast = 2, slow = 3 }\n'
        'symbols = ["ETH-USDT"]\nallocation = 40.0\n')
    env = {**os.environ, "ALLELE_HOME": str(home), "ALLELE_VAULT_PASSPHRASE": PASSPHRASE}
    allele = Path(sys.executable).parent / "allele"
    log = (tmp_path / "engine.out").open("w")
    proc = subprocess.Popen([str(allele), "start", "--no-watchdog"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        state = emulator.state
        while len(emulator.call(lambda: list(state.my_trades.get(KEY, [])))) < 2:
            assert proc.poll() is None, (tmp_path / "engine.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "no live fills within 180 s"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    venue_ids = emulator.call(lambda: {o.client_order_id for o in state.orders.values()})
    ledger = sqlite3.connect(home / "trading.db")
    ours = {r[0] for r in ledger.execute("SELECT client_order_id FROM orders WHERE organism = 'sma'")}
    fills = ledger.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
    ledger.close()
    assert ours and venue_ids <= ours and fills >= 2

    # A wrong passphrase: refused at start, naming what to do, and the secret is never printed.
    bad = subprocess.run([str(allele), "start", "--no-watchdog"], env={**env, "ALLELE_VAULT_PASSPHRASE": "wrong"},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "vault" in bad.stderr and "passphrase" in bad.stderr
    assert SECRET not in bad.stdout + bad.stderr
