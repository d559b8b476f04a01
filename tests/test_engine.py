"""The engine end to end, in process: real wasm strategies, the simulated venue, the order kernel, a real
SQLite ledger and firehose files. What the pipeline does is checked against the ledger, never against timing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from klines_venue import klines

from allele.kernel.domain import FinalizedOrder, MarketEvent, Signal
from allele.kernel.engine.config import DEFAULT_ORGANISMS, EngineConfig, OrganismSpec, SensorSpec
from allele.kernel.engine.engine import Control, Engine
from allele.kernel.engine.firehose import read_recording
from allele.kernel.engine.session import Session, SessionError, open_paper_session, open_replay_session
from allele.kernel.ledger import Ledger
from allele.kernel.risk import OrderIntent, RiskConfig, RiskDecision, RiskGate, RiskState, killswitch

START_NS = 1_800_000_000_000_000_000


def config(**kwargs: Any) -> EngineConfig:
    return EngineConfig(**{"bars": 120, "speed": 0, "ledger_sync": "normal", **kwargs})


async def paper(home: Path, organisms: tuple[OrganismSpec, ...] = DEFAULT_ORGANISMS, session: str = "s1",
                **kwargs: Any) -> Session:
    return await open_paper_session(home, config=config(**kwargs), organisms=organisms, session=session,
                                    start_ns=START_NS)


async def orders_and_fills(ledger: Ledger) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    orders = [(o.client_order_id, o.organism, o.symbol, o.side, o.order_type, o.quantity, o.limit_price,
               o.time_in_force, o.ts_ns, o.deadline_ns, o.status, o.filled_quantity) for o in await ledger.orders()]
    fills = [(f.client_order_id, f.symbol, f.side, f.quantity, f.price, f.fee, f.ts_ns) for f in await ledger.fills()]
    return orders, fills


class RecordingVenue:
    """Wraps a venue and records every request that reaches it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.submitted: list[FinalizedOrder] = []
        self.amended: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit(self, order: FinalizedOrder, sent_ns: int) -> None:
        self.submitted.append(order)
        self.inner.submit(order, sent_ns)

    def amend(self, client_order_id: str, sent_ns: int, **kwargs: Any) -> None:
        self.amended.append(client_order_id)
        self.inner.amend(client_order_id, sent_ns, **kwargs)


class RefuseAll(RiskGate):
    """A gate that refuses every intent and counts them."""

    def __init__(self) -> None:
        super().__init__(RiskConfig())
        self.asked = 0

    def decide(self, intent: OrderIntent, book: RiskState) -> RiskDecision:
        self.asked += 1
        return RiskDecision.refuse("kill_switch", "test gate refuses everything")


# -- a paper session ----------------------------------------------------------------------------------------------


async def test_a_paper_session_trades_and_the_ledger_agrees_with_the_engine(built, tmp_path: Path) -> None:
    s = await paper(tmp_path)
    try:
        await s.run()
        engine, ledger = s.engine, s.engine.ledger
        orders, fills = await orders_and_fills(ledger)
        decisions = await ledger.risk_decisions()
        assert engine.counters.orders == len(orders) > 0 and engine.counters.fills == len(fills) > 0
        # Every order went through the gate: an accepted decision names its client order id.
        accepted = {d["client_order_id"] for d in decisions if d["accepted"]}
        assert {o[0] for o in orders} <= accepted
        # Every fill belongs to a recorded order and the ledger's positions are the fills replayed.
        assert {f[0] for f in fills} <= {o[0] for o in orders}
        assert await ledger.rebuild_positions() == []
        # The engine's in-memory book agrees with the ledger's.
        for p in await ledger.positions():
            assert engine.portfolio.position(p.organism, p.symbol) == pytest.approx(float(p.quantity), abs=1e-9)
        # Organisms traded what they were given: completeness-arb only binary outcomes.
        traded = {(o[1], ":" in o[2]) for o in orders}
        assert ("completeness-arb", False) not in traded
        assert all(not binary for org, binary in traded if org != "completeness-arb")
        # No order was refused by the order kernel with the default limits.
        assert engine.counters.kernel_rejects == 0
        # The plugin registry and the organisms are in the ledger too.
        registered = {p["sha256"] for p in await ledger.plugins()}
        assert {o.plugin_sha256 for o in engine.organisms.values()} <= registered
    finally:
        await s.close()


async def test_replaying_a_recorded_session_sends_the_same_orders_and_gets_the_same_fills(built,
                                                                                       tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = await paper(home, bars=150, firehose_max_mb=1)
    kill_at = 700

    def engage_midway(msg: Any) -> None:  # an operator action in the middle of the session
        if s.engine.counters.events in (kill_at, kill_at + 400):
            if s.engine.counters.events == kill_at:
                killswitch.engage(home, "test: engaged mid-session")
            else:
                killswitch.clear(home)
            s.engine._kill_checked = -1e9  # the engine polls the file at most every 0.2 s: poll on the next event

    s.engine.bus.subscribe(engage_midway, ("tick",))
    try:
        await s.run()
        recorded_orders, recorded_fills = await orders_and_fills(s.engine.ledger)
    finally:
        await s.close()
    recording = home / "historical" / "s1"
    controls = [r for r in read_recording(recording) if r["k"] == "control"]
    assert recorded_orders and recorded_fills

    r = await open_replay_session(home, recording, tmp_path / "replay.db")
    try:
        await r.run()
        replayed_orders, replayed_fills = await orders_and_fills(r.engine.ledger)
    finally:
        await r.close()
    assert replayed_orders == recorded_orders
    assert replayed_fills == recorded_fills
    # The recording holds the operator's actions, and the replay re-applied them at the same place.
    assert [c["kill_switch"] for c in controls] == [True, False]
    assert any(d["rule"] == "kill_switch" for d in await _decisions(tmp_path / "replay.db"))


async def _decisions(path: Path) -> list[dict[str, Any]]:
    ledger = await Ledger.open(path)
    try:
        return await ledger.risk_decisions()
    finally:
        await ledger.close()


async def test_replay_refuses_what_is_not_a_session_recording(built, tmp_path: Path) -> None:
    not_a_recording = tmp_path / "x.jsonl"
    not_a_recording.write_text(json.dumps({"k": "event", "kind": "trade", "venue": "v", "symbol": "S",
                                           "ts_ns": 1, "price": 1.0}) + "\n")
    with pytest.raises(SessionError, match="session header"):
        await open_replay_session(tmp_path, not_a_recording, tmp_path / "r.db")


# -- the risk gate cannot be bypassed ---------------------------------------------------------------------------


async def _refused_everywhere(session: Session) -> tuple[RecordingVenue, RefuseAll]:
    gate = RefuseAll()
    venue = RecordingVenue(session.engine.venue)
    session.engine.gate = gate
    session.engine.venue = venue  # type: ignore[assignment]
    return venue, gate


async def test_no_entry_point_sends_an_order_the_gate_refused(built, tmp_path: Path) -> None:
    # 1. a paper session
    s = await paper(tmp_path / "paper")
    venue, gate = await _refused_everywhere(s)
    try:
        await s.run()
        assert gate.asked > 0 and venue.submitted == [] and venue.amended == []
        assert await s.engine.ledger.orders() == []
        refusals = await s.engine.ledger.risk_decisions()
        assert len(refusals) == gate.asked and not any(d["accepted"] for d in refusals)
        # 2. signals handed straight to on_event, for every organism
        engine: Engine = s.engine
        for org in engine.organisms.values():
            symbol = sorted(org.symbols)[0]
            event = MarketEvent("trade", "sim", symbol, engine.now_ns + 1, engine.portfolio.last_price[symbol])
            for sig in (Signal(symbol, "exposure", 1.0), Signal(symbol, "units", 5.0, event.price)):
                await engine.on_event(event, [(org, sig)])
        assert venue.submitted == [] and await s.engine.ledger.orders() == []
        # 3. a hot-swapped organism goes through the same gate
        from allele.kernel.engine.runner import hot_swap

        assert await hot_swap(s, tmp_path / "paper") == []  # nothing newer deployed: nothing swapped
    finally:
        await s.close()

    # 4. a replay of a recorded session
    ok = await paper(tmp_path / "rec", bars=60, session="rec")
    try:
        await ok.run()
        assert ok.engine.counters.orders > 0  # the recording did trade
    finally:
        await ok.close()
    r = await open_replay_session(tmp_path / "rec", tmp_path / "rec" / "historical" / "rec", tmp_path / "r.db")
    venue, gate = await _refused_everywhere(r)
    try:
        await r.run()
        assert gate.asked > 0 and venue.submitted == []
    finally:
        await r.close()


async def test_backtest_orders_pass_the_gate_too(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from allele.kernel.backtest import parse_data_spec
    from allele.kernel.backtest import run as bt

    gates: list[RefuseAll] = []

    def refuse_all(_config: RiskConfig) -> RiskGate:
        gates.append(RefuseAll())
        return gates[-1]

    monkeypatch.setattr(bt, "RiskGate", refuse_all)
    result = await bt.run_backtest(tmp_path, "sma_cross", {"fast": 5, "slow": 20},
                                   parse_data_spec("synthetic:bars=300,seed=4"))
    assert gates[0].asked > 0
    assert result.orders == 0 and result.metrics.trades == 0 and result.metrics.final_equity == 10_000.0


# -- kill switch, kernel refusals, deadlines ----------------------------------------------------------------------


async def test_the_kill_switch_cancels_open_orders_and_refuses_new_ones(built, tmp_path: Path) -> None:
    s = await paper(tmp_path, organisms=(OrganismSpec(id="arb", strategy="completeness_arb", binary=True,
                                                      params={"outcomes": 3, "min_margin": 0.0}),),
                    bars=200)
    try:
        engine = s.engine
        await engine.run(iter(list(s.events())[:400]), drain=False)
        # Put a resting order in the book: a bid far below the market that cannot fill.
        arb = engine.organisms["arb"]
        symbol = "ELECTION:RED"
        price = round(engine.portfolio.last_price[symbol] * 0.95, 3)
        await engine.on_event(MarketEvent("trade", "sim", symbol, engine.now_ns + 1, engine.portfolio.last_price[
            symbol]), [(arb, Signal(symbol, "units", 5.0, price))])
        [resting] = [o for o in engine.portfolio.open_orders.values() if o.limit_price == price]
        assert engine.orders.is_open(resting.client_order_id)

        await engine.set_kill_switch(True, "test", engine.now_ns)
        assert not engine.orders.is_open(resting.client_order_id)
        await engine.on_event(MarketEvent("trade", "sim", symbol, engine.now_ns + 10**9, price))
        order = await engine.ledger.order(resting.client_order_id)
        assert order is not None and order.status == "cancelled"
        before = len(await engine.ledger.orders())
        await engine.on_event(MarketEvent("trade", "sim", symbol, engine.now_ns + 1, price),
                              [(arb, Signal(symbol, "units", 5.0, price))])
        assert len(await engine.ledger.orders()) == before
        assert (await engine.ledger.risk_decisions())[-1]["rule"] == "kill_switch"
    finally:
        await s.close()


async def test_an_order_past_its_deadline_is_expired_by_the_order_kernel(built, tmp_path: Path) -> None:
    s = await paper(tmp_path, organisms=(OrganismSpec(id="arb", strategy="completeness_arb", binary=True,
                                                      params={"outcomes": 3}),), order_ttl_s=2.0)
    try:
        engine = s.engine
        await engine.run(iter(list(s.events())[:200]), drain=False)
        arb = engine.organisms["arb"]
        symbol = "ELECTION:BLUE"
        last = engine.portfolio.last_price[symbol]
        price = round(last * 0.95, 3)
        await engine.on_event(MarketEvent("trade", "sim", symbol, engine.now_ns + 1, last),
                              [(arb, Signal(symbol, "units", 3.0, price))])
        [resting] = [o for o in engine.portfolio.open_orders.values() if o.limit_price == price]
        for _ in range(5):  # 5 s of event time, past the 2 s deadline
            await engine.on_event(MarketEvent("trade", "sim", symbol, engine.now_ns + 10**9, last))
        events = await engine.ledger.order_events(resting.client_order_id)
        statuses = [e.status for e in events]
        assert "expired" in statuses, statuses
        assert not engine.orders.is_open(resting.client_order_id)
        assert resting.client_order_id not in engine.portfolio.open_orders
    finally:
        await s.close()


async def test_order_kernel_refusals_are_recorded_as_rejected_orders(built, tmp_path: Path) -> None:
    s = await paper(tmp_path, organisms=(OrganismSpec(id="arb", strategy="completeness_arb", binary=True,
                                                      params={"outcomes": 3}),), order_kernel_slots=1)
    try:
        engine = s.engine
        await engine.run(iter(list(s.events())[:200]), drain=False)
        arb = engine.organisms["arb"]
        symbol = "ELECTION:RED"
        last = engine.portfolio.last_price[symbol]
        low = round(last * 0.95, 3)
        signals = [(arb, Signal(symbol, "units", 2.0, low)), (arb, Signal("ELECTION:BLUE", "units", 2.0,
                                                                         round(engine.portfolio.last_price[
                                                                             "ELECTION:BLUE"] * 0.95, 3)))]
        await engine.on_event(MarketEvent("trade", "sim", symbol, engine.now_ns + 1, last), signals)
        rejected = [o for o in await engine.ledger.orders() if o.status == "rejected"]
        assert rejected, "the second resting order should not fit a one-slot order table"
        events = await engine.ledger.order_events(rejected[-1].client_order_id)
        assert "TABLE_FULL" in events[-1].reason
        assert engine.counters.kernel_rejects >= 1
    finally:
        await s.close()


# -- plugins that misbehave -----------------------------------------------------------------------------------------


async def test_a_memory_hog_is_quarantined_and_the_others_keep_trading(built, tmp_path: Path) -> None:
    specs = (OrganismSpec(id="hog", strategy=str(built["memory_hog"])), DEFAULT_ORGANISMS[0])
    s = await paper(tmp_path, organisms=specs, bars=100)
    try:
        await s.run()
        hog = s.engine.organisms["hog"]
        assert not hog.active and hog.strategy.quarantine_reason is not None
        assert s.engine.counters.plugin_errors == 1  # quarantined at once: never called again
        assert {o.organism for o in await s.engine.ledger.orders()} == {"sma-cross"}
        assert s.engine.status()["organisms"][0]["quarantined"] is True
    finally:
        await s.close()


async def test_a_strategy_that_raises_fails_its_calls_only(built, tmp_path: Path) -> None:
    specs = (OrganismSpec(id="raiser", strategy=str(built["trapper"])), DEFAULT_ORGANISMS[0])
    s = await paper(tmp_path, organisms=specs, bars=100)
    try:
        await s.run()
        raiser = s.engine.organisms["raiser"]
        # A Python exception inside the guest is the plugin's own error: that call fails, the instance serves on.
        assert raiser.active and raiser.strategy.quarantine_reason is None
        assert s.engine.counters.plugin_errors >= 2
        assert {o.organism for o in await s.engine.ledger.orders()} == {"sma-cross"}
    finally:
        await s.close()


async def test_bad_organism_settings_are_refused_naming_the_organism(built, tmp_path: Path) -> None:
    with pytest.raises(SessionError, match=r"organism x: parameters .* refused"):
        await paper(tmp_path, organisms=(OrganismSpec(id="x", strategy="sma_cross", params={"fast": 5000}),))
    with pytest.raises(SessionError, match="no strategy named 'nope'"):
        await paper(tmp_path, organisms=(OrganismSpec(id="y", strategy="nope"),))
    with pytest.raises(SessionError, match="not listed by the venue"):
        await paper(tmp_path, organisms=(OrganismSpec(id="z", strategy="sma_cross", symbols=("DOGE-USD",)),))


# -- restart -------------------------------------------------------------------------------------------------------


async def test_a_restart_keeps_the_books_and_closes_orders_the_lost_venue_held(built, tmp_path: Path) -> None:
    s = await paper(tmp_path, bars=80, session="first")
    try:
        await s.run()
        equity = {o: s.engine.portfolio.cash[o] for o in s.engine.organisms}
        positions = {o: dict(p) for o, p in s.engine.portfolio.positions.items()}
        # An order recorded but never acknowledged: the engine died between the ledger and the venue.
        await s.engine.ledger.record_order(FinalizedOrder("first-orphan", "BTC-USD", "buy", "limit", 0.001, 1.0,
                                                          "gtc", START_NS, 0), "sma-cross")
    finally:
        await s.close()

    again = await paper(tmp_path, bars=10, session="second")
    try:
        assert again.closed == ["first-orphan"]
        orphan = await again.engine.ledger.order("first-orphan")
        assert orphan is not None and orphan.status == "cancelled"
        # Cash and positions come back from the ledger; nobody is funded twice.
        for org, cash in equity.items():
            assert again.engine.portfolio.cash[org] == pytest.approx(cash)
            for symbol, qty in positions[org].items():
                assert again.engine.portfolio.position(org, symbol) == pytest.approx(qty)
        await again.run()
        ids = Counter(o.client_order_id for o in await again.engine.ledger.orders())
        assert all(n == 1 for n in ids.values())
        assert await again.engine.ledger.rebuild_positions() == []
    finally:
        await again.close()


async def test_an_operator_control_in_the_stream_engages_the_kill_switch(built, tmp_path: Path) -> None:
    s = await paper(tmp_path, organisms=(DEFAULT_ORGANISMS[0],), record=False)
    try:
        events = list(s.events())
        stream = [*events[:300], Control(True, "drill"), *events[300:]]
        await s.engine.run(iter(stream))
        assert s.engine.kill_switch
        after = [d for d in await s.engine.ledger.risk_decisions() if d["ts_ns"] > events[299].ts_ns]
        assert after and all(d["rule"] == "kill_switch" for d in after if not d["accepted"])
        assert not any(d["accepted"] for d in after)
    finally:
        await s.close()


def test_engine_loop_is_cancellable(built, tmp_path: Path) -> None:
    async def main() -> int:
        s = await paper(tmp_path, bars=0, record=False)  # endless
        stop = asyncio.Event()
        try:
            task = asyncio.create_task(s.run(stop=stop))
            while s.engine.counters.events < 200:
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(task, 60)
            return s.engine.counters.events
        finally:
            await s.close()

    assert asyncio.run(main()) >= 200


# -- sensors --------------------------------------------------------------------------------------------------------


async def test_sensor_readings_reach_the_organisms_that_list_them_and_replay_without_polling(
        built, tmp_path: Path, venue: Any) -> None:
    venue.serve(klines([100.0 + (i % 7) for i in range(61)]))
    sensors = (SensorSpec(id="rv", sensor="realized_vol", params={"local_port": venue.port, "window": 60},
                          poll_s=10.0),)
    listening = OrganismSpec(id="sma-rv", strategy="sma_cross", params={"fast": 5, "slow": 20},
                             symbols=("BTC-USD",), sensors=("rv",))
    deaf = OrganismSpec(id="sma", strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=("ETH-USD",))
    home = tmp_path / "home"
    s = await open_paper_session(home, config=config(bars=60), organisms=(listening, deaf), sensors=sensors,
                                 session="rv", start_ns=START_NS)
    seen: dict[str, list[str]] = {"sma-rv": [], "sma": []}
    for org in s.engine.organisms.values():
        real = org.strategy.on_event

        def spy(event: Any, _real: Any = real, _id: str = org.id) -> Any:
            seen[_id].append(type(event).__name__)
            return _real(event)

        org.strategy.on_event = spy  # type: ignore[method-assign]
    try:
        await s.run()
        paper_orders, paper_fills = await orders_and_fills(s.engine.ledger)
        readings = s.engine.counters.readings
    finally:
        await s.close()
    assert readings == 6 == len(venue.requests)  # 60 bars of 1 s, polled every 10 s of event time
    assert seen["sma-rv"].count("Reading") == 6 and "MarketEvent" in seen["sma-rv"]  # live path, per event
    assert seen["sma"] == []  # batched: never called per event, never given a reading
    recorded = [r for r in read_recording(home / "historical" / "rv") if r["k"] == "reading"]
    assert len(recorded) == 6 and recorded[0]["sensor_id"] == "rv" and recorded[0]["value"] > 0

    venue.stop()  # the replay must not poll: it feeds the recorded readings
    r = await open_replay_session(home, home / "historical" / "rv", tmp_path / "replay.db")
    try:
        await r.run()
        assert r.engine.counters.readings == 6
        assert await orders_and_fills(r.engine.ledger) == (paper_orders, paper_fills)
    finally:
        await r.close()


async def test_an_organism_listing_an_unconfigured_sensor_is_refused(built, tmp_path: Path) -> None:
    spec = OrganismSpec(id="x", strategy="sma_cross", sensors=("nope",))
    with pytest.raises(SessionError, match=r"organism x: sensors \['nope'\] are not configured"):
        await paper(tmp_path, organisms=(spec,))


async def test_a_new_limit_on_the_same_side_amends_the_live_order_in_place(built, tmp_path: Path) -> None:
    spec = OrganismSpec(id="mm", strategy="sma_cross", symbols=("BTC-USD",), allocation=50.0)
    s = await paper(tmp_path, organisms=(spec,), record=False)
    try:
        engine = s.engine
        venue = RecordingVenue(engine.venue)
        engine.venue = venue  # type: ignore[assignment]
        await engine.run(iter(list(s.events())[:100]), drain=False)
        org = engine.organisms["mm"]
        last = engine.portfolio.last_price["BTC-USD"]
        bid = round(last * 0.97, 2)
        held = engine.portfolio.position("mm", "BTC-USD")
        await engine.on_event(MarketEvent("trade", "sim", "BTC-USD", engine.now_ns + 1, last),
                              [(org, Signal("BTC-USD", "units", 0.05, bid))])
        [resting] = [o for o in engine.portfolio.open_orders.values() if o.limit_price == bid]
        # The same side again, a new price and size: re-parameterized, not cancelled and re-sent.
        target = (held + 0.08) * last / 50.0 * (1 + 0.0005)
        await engine.on_event(MarketEvent("trade", "sim", "BTC-USD", engine.now_ns + 1, last),
                              [(org, Signal("BTC-USD", "exposure", min(target, 1.0), round(bid + 0.5, 2)))])
        assert venue.amended == [resting.client_order_id]
        live = engine.portfolio.open_orders[resting.client_order_id]
        assert live.limit_price == round(bid + 0.5, 2) and live.quantity != resting.quantity
        assert [o.client_order_id for o in venue.submitted].count(resting.client_order_id) == 1
        audit = [a for a in await engine.ledger.audit_log() if a["action"] == "amend"]
        assert audit and audit[-1]["details"]["client_order_id"] == resting.client_order_id
        await engine.on_event(MarketEvent("trade", "sim", "BTC-USD", engine.now_ns + 10**9, last))
        events = await engine.ledger.order_events(resting.client_order_id)
        assert [e.reason for e in events if e.status == "accepted"][-1] != ""  # the venue confirmed the amend
    finally:
        await s.close()


def test_a_pid_file_naming_an_unrelated_process_is_not_a_running_engine(tmp_path: Path) -> None:
    import subprocess
    import sys

    from allele.kernel.engine.runner import pid_path, running_pid

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_path(tmp_path).write_text(str(other.pid))  # a crashed engine's pid, since reused
        assert running_pid(tmp_path) is None
        pid_path(tmp_path).write_text("999999999")
        assert running_pid(tmp_path) is None
    finally:
        other.kill()
        other.wait()
