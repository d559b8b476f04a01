"""The live path: the engine trading through CcxtVenue / LiveSource against the venue emulator on 127.0.0.1, with
credentials from a real Vault file; real ccxt, real strategies (wasm), real SQLite ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import running_emulator, wait_for

from allele.kernel.domain import FinalizedOrder, OrderUpdate
from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.engine.config import EngineConfig, OrganismSpec
from allele.kernel.engine.firehose import read_recording
from allele.kernel.engine.live import open_live_session
from allele.kernel.engine.session import (
    RecordedVenue,
    SessionError,
    historical_dir,
    open_replay_session,
    read_header,
)
from allele.kernel.exchange.ccxt_adapter import CcxtExchange
from allele.kernel.exchange.settings import ExchangeSettings
from allele.kernel.exchange.venue import CcxtVenue, IoLoop, LiveSource
from allele.kernel.ledger import Ledger
from allele.vault import ScryptParams, Vault
from allele.vault.signing import MemorySigner

KEY, SECRET = "live-key", "live-secret-abcdef-123456"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with running_emulator({KEY: (SECRET, {"USDT": 10_000.0, "ETH": 10.0, "BTC": 1.0})}, tick_s=0.02) as server:
        yield server


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
        amended = wait_for("the amend's answer", lambda: venue.advance(now), timeout=15)
        assert [(u.status, u.reason) for u in amended] == [("accepted", "amended: priority lost")]
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


@contextmanager
def venue_port(server: EmulatorServer) -> Iterator[tuple[CcxtExchange, CcxtVenue]]:
    """The `Venue` port over real ccxt, pointed at `server`, for the block."""
    io = IoLoop()
    exchange = CcxtExchange(settings(server), MemorySigner({"main": (KEY, SECRET.encode())}))
    io.run(exchange.open())
    venue = CcxtVenue(exchange, io)
    try:
        yield exchange, venue
    finally:
        venue.close()
        io.run(exchange.close())
        io.stop()


def answers(venue: CcxtVenue, cid: str, until: Callable[[list[OrderUpdate]], bool]) -> list[OrderUpdate]:
    """`cid`'s updates from `advance` until `until` holds for them."""
    got: list[OrderUpdate] = []

    def more() -> bool:
        got.extend(u for u in venue.advance(time.time_ns()) if isinstance(u, OrderUpdate) and u.client_order_id == cid)
        return until(got)

    wait_for(f"updates of {cid}", more, timeout=15, interval=0.02)
    return got


def test_an_amend_is_a_cancel_replace_under_the_same_client_order_id(emulator: EmulatorServer) -> None:
    state = emulator.state

    def venue_orders(cid: str) -> list[tuple[int, str, float, float]]:
        rows: list[tuple[int, str, float, float]] = emulator.call(
            lambda: [(o.order_id, o.status, o.price, o.orig_qty) for o in state.orders.values()
                     if o.client_order_id == cid])
        return rows

    with venue_port(emulator) as (exchange, venue):
        now = time.time_ns()
        venue.submit(FinalizedOrder("a-1", "ETH-USDT", "sell", "limit", 0.01, 9000.0, "gtc", now, 0), now)
        first = answers(venue, "a-1", lambda got: bool(got))
        assert [u.status for u in first] == ["accepted"]
        old_id = first[0].venue_order_id

        # A bigger size at the same price: the venue cancels and replaces; our id now names the new order.
        venue.amend("a-1", now, quantity=0.02)
        [update] = answers(venue, "a-1", lambda got: bool(got))
        assert (update.status, update.reason) == ("accepted", "amended: priority lost")
        assert update.venue_order_id != old_id == str(venue_orders("a-1")[0][0])
        assert [(s, p, q) for _, s, p, q in venue_orders("a-1")] == [("CANCELED", 9000.0, 0.01), ("NEW", 9000.0, 0.02)]
        assert exchange.orders.venue_order_id("a-1") == update.venue_order_id

        # A price through the bid: the replacement trades at once; its fill is reported for our order.
        venue.amend("a-1", now, limit_price=100.0)
        done = answers(venue, "a-1", lambda got: any(u.status == "filled" for u in got))
        assert [u.status for u in done] == ["accepted", "filled"]
        assert done[1].fill_quantity == 0.02 and done[1].fill_price > 100.0
        venue_fills = emulator.call(lambda: [t for t in state.my_trades[KEY]])
        assert sum(float(t["qty"]) for t in venue_fills) == pytest.approx(0.02)

        # A closed order cannot be amended.
        venue.amend("a-1", now, limit_price=9000.0)
        [refused] = answers(venue, "a-1", lambda got: bool(got))
        assert refused.status == "rejected" and "unknown or closed order" in refused.reason

        # A post-only order amended to a crossing price: the venue cancels it and refuses the replacement.
        venue.submit(FinalizedOrder("a-2", "ETH-USDT", "buy", "limit", 0.01, 100.0, "post-only", now, 0), now)
        answers(venue, "a-2", lambda got: bool(got))
        venue.amend("a-2", now, limit_price=9000.0)
        [ended] = answers(venue, "a-2", lambda got: bool(got))
        assert ended.status == "cancelled" and "amend: refused by binance" in ended.reason
        assert "the venue had cancelled the order" in ended.reason
        assert [s for _, s, _, _ in venue_orders("a-2")] == ["CANCELED"]
        assert venue.drain() == [] and exchange.private_clients_open == 0


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
        # Our orders' updates came over the venue's user data stream (the poller is only the safety net).
        assert session.venue.exchange.counters["user_stream_updates"] > 0
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


def test_an_amend_counts_the_fills_before_it_and_reports_the_replacements_on_top() -> None:
    accounts = {KEY: (SECRET, {"USDT": 10_000.0, "ETH": 10.0}), "other": ("other-secret", {"USDT": 10_000.0})}

    def other_buys(server: EmulatorServer, quantity: str) -> None:
        server.call(lambda: server.state.new_order("other", {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT",
                                                             "timeInForce": "GTC", "quantity": quantity,
                                                             "price": "3100"}))

    # A still market: our order trades only with the other account's.
    with running_emulator(accounts, tick_s=0) as server, venue_port(server) as (exchange, venue):
        now = time.time_ns()
        venue.submit(FinalizedOrder("p-1", "ETH-USDT", "sell", "limit", 0.004, 3100.0, "gtc", now, 0), now)
        answers(venue, "p-1", lambda got: bool(got))
        # Filled in part before the amend reaches the venue; the engine asked for 0.003 open, not knowing it.
        venue.close()  # no poller: the amend is the first to read the fill
        other_buys(server, "0.002")
        venue.amend("p-1", now, quantity=0.003)
        got = answers(venue, "p-1", lambda got: any(u.status == "accepted" for u in got))
        assert [(u.status, u.fill_quantity, u.reason) for u in got] == [
            ("partially-filled", 0.002, "fill"), ("accepted", 0.0, "amended: priority lost")]
        replacement = server.call(lambda: [o for o in server.state.orders.values() if o.client_order_id == "p-1"][-1])
        assert (replacement.status, replacement.orig_qty) == ("NEW", 0.001)  # 0.003 intended, 0.002 filled since
        other_buys(server, "0.001")
        [last] = [u for u in venue.drain() if isinstance(u, OrderUpdate)]
        assert (last.status, last.fill_quantity, last.fill_price) == ("filled", 0.001, 3100.0)
        assert exchange.orders.closed("p-1") and exchange.orders.venue_order_id("p-1") == str(replacement.order_id)


async def ledger_rows(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    """What a session decided and what came of it, without the wall-clock columns."""
    return {"orders": [(o.client_order_id, o.organism, o.symbol, o.side, o.order_type, o.quantity, o.limit_price,
                        o.time_in_force, o.ts_ns, o.deadline_ns, o.status, o.filled_quantity, o.venue_order_id)
                       for o in await ledger.orders()],
            "fills": [(f.client_order_id, f.quantity, f.price, f.fee, f.fee_currency, f.ts_ns)
                      for f in await ledger.fills()],
            "decisions": [tuple(d.values()) for d in await ledger.risk_decisions()],
            "positions": [(p.organism, p.symbol, p.quantity) for p in await ledger.positions()]}


async def test_a_live_session_records_a_firehose_that_replays_to_the_same_ledger(
        emulator: EmulatorServer, built: Any, make_host: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    session = await open_live_session(home, credentials=MemorySigner({"main": (KEY, SECRET.encode())}),
                                      settings=settings(emulator), organisms=ORGANISMS, host=make_host(),
                                      session="rec", max_events=200)
    try:
        await session.run()
        live = await ledger_rows(session.engine.ledger)
    finally:
        await session.close()
    assert session.engine.counters.orders > 0 and session.engine.counters.fills > 0, session.engine.counters
    recording = historical_dir(home) / "al-rec"
    header = read_header(recording)
    assert header["venue"]["kind"] == "recorded" and header["batch_events"] == 1
    assert header["venue"]["instruments"][0]["symbol"] == "ETH-USDT"
    kinds = [r["k"] for r in read_recording(recording)]
    assert kinds.count("event") == 200 and kinds.count("update") >= 2 * session.engine.counters.fills

    replay = await open_replay_session(home, recording, tmp_path / "replay.db", host=make_host())
    try:
        await replay.run()
        replayed = await ledger_rows(replay.engine.ledger)
        assert isinstance(replay.engine.venue, RecordedVenue)
        submitted = [cid for request, cid in replay.engine.venue.requests if request == "submit"]
        assert submitted == [row[0] for row in live["orders"]]
    finally:
        await replay.close()
    assert replayed == live
    assert replay.engine.counters.events == 200 and replay.engine.counters.fills == session.engine.counters.fills


async def test_wrong_credentials_stop_a_live_session_before_it_trades(
        emulator: EmulatorServer, built: Any, make_host: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    wrong = "wrong-secret-0000-1111"
    with pytest.raises(SessionError) as refused:
        await open_live_session(home, credentials=vault_with(tmp_path, wrong), settings=settings(emulator),
                                organisms=ORGANISMS, host=make_host(), max_events=150)
    message = str(refused.value)
    assert message.startswith("no trading before the ledger's open orders are reconciled with the venue")
    assert "account 'main'" in message and f"binance at {emulator.rest_url}" in message
    assert "Check the API key and secret" in message and wrong not in message
    assert emulator.state.counters["orders"] == 0 and emulator.state.counters["rejected_auth"] > 0


async def test_credentials_refused_mid_session_reject_orders_with_a_clear_reason(
        emulator: EmulatorServer, built: Any, make_host: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    session = await open_live_session(home, credentials=vault_with(tmp_path, SECRET), settings=settings(emulator),
                                      organisms=ORGANISMS, host=make_host(), max_events=150)
    rotated = "rotated-on-the-venue-0000"
    emulator.call(lambda: setattr(emulator.state.accounts[KEY], "secret", rotated))  # the venue revoked the key
    try:
        await session.run()
        assert session.engine.counters.orders > 0 and session.engine.counters.fills == 0
        assert session.errors, "the failed executions are reported to the session"
        message = str(session.errors[0])
        assert "account 'main'" in message and f"binance at {emulator.rest_url}" in message
        assert "Check the API key and secret" in message and SECRET not in message and rotated not in message
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
    home = tmp_path / "home"
    home.mkdir()
    # a market that never moves: no event will ever arrive
    with running_emulator({KEY: (SECRET, {"USDT": 1000.0})}, tick_s=0) as server:
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
        f'urls = {emulator.ccxt_urls_toml()}\n\n'
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
