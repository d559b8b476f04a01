"""Hostile plugins are contained with a clear reason, while a well-behaved plugin keeps serving
in the same host. Each is a real component built from tests/plugins/hostile/."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from allele.kernel.domain import FinalizedOrder, MarketEvent
from allele.kernel.plugin import KindLimits, Limits, PluginCallError, PluginHost, PluginQuarantined, StrategyPlugin
from allele.kernel.plugin.host import read_quarantine_log

BAR = MarketEvent("bar", "sim", "X", 1_700_000_000_000_000_000, 100.0)
BATCH = {"symbols": ["X"], "ts": {"start": 0, "step": 60}, "price": [100.0 + i % 7 for i in range(200)]}


@pytest.fixture
def healthy(host: PluginHost, built) -> StrategyPlugin:
    sma = host.strategy(host.load(built["sma_cross"]))
    sma.configure({"fast": 3, "slow": 8})
    return sma


def assert_still_serving(sma: StrategyPlugin) -> None:
    sma.reset()
    out = sma.on_batch(BATCH)
    assert out and all(s.signal.symbol == "X" for s in out)


def assert_quarantined(host: PluginHost, instance: StrategyPlugin, call: str, reason_part: str) -> None:
    assert instance.quarantine_reason is not None and reason_part in instance.quarantine_reason
    with pytest.raises(PluginQuarantined, match="is quarantined"):
        instance.on_event(BAR)
    records = read_quarantine_log(host.home)
    assert any(r.instance == instance.instance_id and r.call == call and reason_part in r.reason for r in records)


def test_endless_loop_runs_out_of_fuel(host: PluginHost, built, healthy: StrategyPlugin) -> None:
    looper = host.strategy(host.load(built["looper"]))
    with pytest.raises(PluginCallError) as info:
        looper.on_event(BAR)
    assert info.value.quarantined and "exceeded its fuel budget" in str(info.value)
    assert_quarantined(host, looper, "on-event", "fuel budget")
    assert_still_serving(healthy)


def test_endless_loop_in_a_batch_is_contained(host: PluginHost, built, healthy: StrategyPlugin) -> None:
    looper = host.strategy(host.load(built["looper"]))
    with pytest.raises(PluginCallError, match="exceeded its fuel budget"):
        looper.on_batch(BATCH)
    assert_still_serving(healthy)


def test_memory_bomb_hits_the_cap(make_host, built) -> None:
    host = make_host(limits=Limits(strategy=KindLimits(memory_bytes=192 * 2**20)))
    sma = host.strategy(host.load(built["sma_cross"]))
    sma.configure({"fast": 3, "slow": 8})
    hog = host.strategy(host.load(built["memory_hog"]))
    with pytest.raises(PluginCallError) as info:
        hog.on_event(BAR)
    assert info.value.quarantined and "trapped" in info.value.reason
    hog2 = host.strategy(host.load(built["memory_hog"]))
    with pytest.raises(PluginCallError) as info:
        hog2.on_batch(BATCH)  # a result-returning call: MemoryError must trap, not pass as an error
    assert info.value.quarantined
    assert_still_serving(sma)


def test_trap_is_contained(host: PluginHost, built, healthy: StrategyPlugin) -> None:
    trapper = host.strategy(host.load(built["trapper"]))
    with pytest.raises(PluginCallError, match="trapped") as info:
        trapper.on_event(BAR)
    assert info.value.quarantined
    assert_quarantined(host, trapper, "on-event", "trapped")
    assert_still_serving(healthy)


@pytest.mark.parametrize(("mode", "call", "reason"), [
    ("nan", "on-event", "signal[0].amount is nan, not a finite number"),
    ("exposure", "on-event", "signal[0].amount = 50.0 is an exposure outside [-1, 1]"),
    ("flood", "on-event", "returned 20000 signals; the limit for one call is 10000"),
    ("notjson", "on-batch", "on-batch returned text that is not JSON"),
    ("badrow", "on-batch", "row 999999999 is not a row of the 200-row input"),
])
def test_garbage_results_quarantine_with_the_reason(host: PluginHost, built, healthy: StrategyPlugin,
                                                    mode: str, call: str, reason: str) -> None:
    garbage = host.strategy(host.load(built["garbage"]))
    garbage.configure({"mode": mode})
    with pytest.raises(PluginCallError) as info:
        garbage.on_event(BAR) if call == "on-event" else garbage.on_batch(BATCH)
    assert info.value.quarantined and "malformed result" in info.value.reason and reason in info.value.reason
    assert_quarantined(host, garbage, call, reason)
    assert_still_serving(healthy)


def test_signing_outside_an_execution_is_a_violation(host: PluginHost, built, healthy: StrategyPlugin) -> None:
    sneaky = host.exchange(host.load(built["sneaky_exchange"]))
    with pytest.raises(PluginCallError) as info:
        sneaky.decode('{"e":"trade"}')
    assert info.value.quarantined
    assert "signer.sign outside an order execution" in info.value.reason
    with pytest.raises(PluginQuarantined):
        sneaky.subscribe(["BTC-USDT"])
    assert_still_serving(healthy)


class _Value(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Value.requests.append(self.path)
        body = json.dumps({"value": 1}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_sensor_cannot_reach_hosts_outside_its_allow_list(host: PluginHost, built, http_server, caplog) -> None:
    nosy = host.sensor(host.load(built["nosy_sensor"]))
    port = http_server.server_address[1]
    _Value.requests.clear()
    for target in ("exfil.example.com", "localhost"):  # 'localhost' reaches the same server, but is not listed
        nosy.configure({"port": port, "target": target})
        readings = nosy.poll()
        assert [r.name for r in readings] == ["refused"]
    assert _Value.requests == ["/value", "/value"]  # only the allowed request arrived
    assert "refused a request to 'exfil.example.com'" in caplog.text
    assert nosy.quarantine_reason is None  # a refusal is an answer, not a crime


def test_order_requests_may_only_go_to_declared_hosts(host: PluginHost, built, healthy: StrategyPlugin) -> None:
    leaky = host.exchange(host.load(built["leaky_exchange"]))
    order = FinalizedOrder("c1", "BTC-USDT", "buy", "limit", 1.0, 100.0, "gtc", 1, 2)
    with pytest.raises(PluginCallError) as info:
        leaky.encode_order(order, "main")
    assert info.value.quarantined
    assert "https://collector.example.net/keys" in info.value.reason and "allowed_hosts" in info.value.reason
    assert_still_serving(healthy)


@pytest.mark.parametrize("name", ["sma_cross", "momentum_c"])  # a component and an Extism plugin
def test_events_with_non_finite_numbers_are_refused_before_the_plugin(host: PluginHost, built, name: str) -> None:
    strategy = host.strategy(host.load(built[name]))
    bad = MarketEvent("bar", "sim", "X", 1, float("nan"))
    with pytest.raises(PluginCallError, match="has price = nan; events with non-finite numbers are not passed") as info:
        strategy.on_event(bad)
    assert not info.value.quarantined and strategy.quarantine_reason is None
    assert strategy.on_event(MarketEvent("bar", "sim", "X", 2, 100.0)) == []
