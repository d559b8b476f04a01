"""Extism plugins (core wasm modules) through the PluginHost: the bundled momentum_c, and small test modules
written in freestanding C (tests/plugins/extism/), compiled here with the `ziglang` package's clang.

Each test module breaks (or probes) one rule: Extism's own HTTP, WASI, a capability of another kind, a call
that never returns, and the event clock seen from inside the guest."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from allele.kernel.domain import MarketEvent, Reading, Signal
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin import KindLimits, Limits, PluginCallError, PluginHost, PluginLoadError, PluginQuarantined
from allele.kernel.plugin.capabilities import EXTISM_KERNEL_ALLOWED, EXTISM_USER_FUNCTIONS
from allele.kernel.plugin.host import read_quarantine_log

C_SOURCES = SOURCE_ROOT / "tests" / "plugins" / "extism"
MODULES = ("clock", "spinner", "http_request", "wasi_fd_write", "strategy_signs")
TS = 1_700_000_000_123_456_789


@pytest.fixture(scope="session")
def extism_modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every C test module, compiled to a .wasm in a temporary directory."""
    out = tmp_path_factory.mktemp("extism-modules")
    modules = {}
    for name in MODULES:
        wasm = out / f"{name}.wasm"
        proc = subprocess.run(
            [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", "-O2", "-nostdlib",
             "-Wall", "-Wextra", "-Werror", "-Wl,--no-entry", "-o", str(wasm), str(C_SOURCES / f"{name}.c")],
            capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"compiling {name}.c failed:\n{proc.stderr}"
        modules[name] = wasm
    return modules


def bar(ts_ns: int, price: float = 100.0, symbol: str = "X") -> MarketEvent:
    return MarketEvent("bar", "sim", symbol, ts_ns, price)


# -- momentum_c ------------------------------------------------------------------------------------------------


def test_momentum_c_is_an_extism_strategy_importing_only_allowed_functions(host: PluginHost, built) -> None:
    loaded = host.load(built["momentum_c"])
    assert (loaded.abi, loaded.kind, loaded.name) == ("extism", "strategy", "momentum_c")
    assert loaded.describe()["world"] is None
    for full in loaded.imports:
        module, _, name = full.partition("::")
        assert (module == "extism:host/env" and name in EXTISM_KERNEL_ALLOWED) or \
            (module == "extism:host/user" and name in EXTISM_USER_FUNCTIONS["strategy"]), full
    # exactly what its README documents
    assert set(loaded.imports) == {
        *(f"extism:host/env::{n}" for n in ("input_length", "input_load_u8", "input_load_u64", "alloc", "free",
                                            "store_u8", "store_u64", "output_set", "error_set")),
        "extism:host/user::allele_log"}
    assert {"manifest", "configure", "reset", "on_event", "on_batch"} <= set(loaded.exports)


def test_momentum_c_logs_through_the_host_tagged_with_its_instance(host: PluginHost, built, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="allele.plugin")
    mc = host.strategy(host.load(built["momentum_c"]))
    mc.configure({"lookback": 7, "threshold": 0.25})
    lines = [r.getMessage() for r in caplog.records if r.name == "allele.plugin"]
    assert f"[{mc.instance_id}] momentum_c configured: lookback=7 threshold=0.25" in lines
    assert mc.params == {"lookback": 7, "threshold": 0.25}


# -- refused at load -------------------------------------------------------------------------------------------


def test_extism_http_is_refused_naming_the_import(host: PluginHost, extism_modules) -> None:
    with pytest.raises(PluginLoadError) as info:
        host.load(extism_modules["http_request"])
    assert "extism:host/env::http_request" in str(info.value)
    assert "may not use" in info.value.problem
    assert host.quarantined == []


def test_wasi_import_is_refused_naming_it(host: PluginHost, extism_modules) -> None:
    with pytest.raises(PluginLoadError) as info:
        host.load(extism_modules["wasi_fd_write"])
    assert "wasi_snapshot_preview1::fd_write" in str(info.value)
    assert "without WASI" in info.value.hint


def test_a_strategy_may_not_import_the_signer(host: PluginHost, extism_modules) -> None:
    with pytest.raises(PluginLoadError) as info:
        host.load(extism_modules["strategy_signs"])
    message = str(info.value)
    assert "extism:host/user::allele_sign" in message and "strategy" in message
    assert "allele_log, allele_now_ns" in info.value.hint


def test_load_errors_name_the_file(host: PluginHost, extism_modules) -> None:
    for name in ("http_request", "wasi_fd_write", "strategy_signs"):
        with pytest.raises(PluginLoadError) as info:
            host.load(extism_modules[name])
        assert info.value.source == str(extism_modules[name])


# -- an endless loop -------------------------------------------------------------------------------------------


def test_endless_loop_times_out_and_is_quarantined(make_host: Callable[..., PluginHost], built,
                                                   extism_modules) -> None:
    host = make_host(limits=Limits(strategy=KindLimits(call_timeout_s=0.5)))
    healthy = host.strategy(host.load(built["momentum_c"]))
    healthy.configure({"lookback": 1})
    spinner = host.strategy(host.load(extism_modules["spinner"]))
    assert spinner.loaded.abi == "extism"

    with pytest.raises(PluginCallError) as info:
        spinner.on_event(bar(TS))
    assert info.value.quarantined
    assert info.value.call == "on-event" and "timeout" in info.value.reason
    assert spinner.quarantine_reason is not None and "timeout" in spinner.quarantine_reason
    with pytest.raises(PluginQuarantined):
        spinner.on_batch({"symbols": ["X"], "ts": [1], "price": [1.0]})
    records = read_quarantine_log(host.home)
    assert [(r.instance, r.call, r.plugin) for r in records] == [(spinner.instance_id, "on-event", "spinner")]

    # the host and the other Extism instance keep serving
    assert healthy.on_event(bar(1, 100.0)) == []
    assert healthy.on_event(bar(2, 101.0)) == [Signal("X", "exposure", 1.0, None, "", "momentum up")]
    fresh = host.strategy(host.load(extism_modules["clock"]))
    assert fresh.on_event(bar(5))[0].note == "5"


# -- the event clock -------------------------------------------------------------------------------------------


def test_event_clock_reaches_an_extism_guest(host: PluginHost, extism_modules) -> None:
    clock = host.strategy(host.load(extism_modules["clock"]))
    assert "extism:host/user::allele_now_ns" in clock.loaded.imports
    for ts in (TS, 1, 0, TS + 60_000_000_000, 2**63 - 1):
        assert clock.on_event(bar(ts)) == [Signal("CLOCK", "exposure", 0.0, None, "", str(ts))]
    (sig,) = clock.on_event(Reading("deribit", "dvol", "BTC-USDT", 1_650_000_000_000_000_001, 54.2))
    assert sig.note == "1650000000000000001"
    assert clock.on_event(bar(-5))[0].note == "-5"  # an event before 1970 is still its own time


def test_event_clock_in_a_batch_is_the_first_rows_time(host: PluginHost, extism_modules) -> None:
    clock = host.strategy(host.load(extism_modules["clock"]))
    (row,) = clock.on_batch({"symbols": ["X"], "ts": [TS, TS + 1, TS + 2], "price": [1.0, 2.0, 3.0]})
    assert (row.row, row.signal.symbol, row.signal.group) == (0, "X", str(TS))
    (row,) = clock.on_batch({"symbols": ["X"], "ts": {"start": 42, "step": 7}, "price": [1.0, 2.0]})
    assert row.signal.group == "42"
    assert clock.on_event(bar(99))[0].note == "99"  # the live path again reads its own event's time


def test_each_instance_reads_its_own_clock(host: PluginHost, extism_modules) -> None:
    loaded = host.load(extism_modules["clock"])
    first, second = host.strategy(loaded), host.strategy(loaded)
    assert second.on_event(bar(2_000))[0].note == "2000"
    assert first.on_event(bar(1_000))[0].note == "1000"  # not the clock of the instance created last
    assert second.on_event(bar(3_000))[0].note == "3000"


# -- a plugin's own error is not a trap ------------------------------------------------------------------------


def test_a_refused_batch_leaves_momentum_c_serving(host: PluginHost, built) -> None:
    mc = host.strategy(host.load(built["momentum_c"]))
    mc.configure({"lookback": 1})
    with pytest.raises(PluginCallError) as info:
        mc.on_batch({"symbols": ["X" * 200], "ts": [1], "price": [1.0]})
    assert not info.value.quarantined and "too long (at most 127 bytes)" in info.value.reason
    assert mc.quarantine_reason is None
    assert [s.row for s in mc.on_batch({"symbols": ["X"], "ts": [1, 2], "price": [1.0, 2.0]})] == [1]


def test_a_refused_batch_naming_a_symbol_with_a_trap_word_leaves_momentum_c_serving(host: PluginHost,
                                                                                    built) -> None:
    mc = host.strategy(host.load(built["momentum_c"]))
    with pytest.raises(PluginCallError) as info:
        mc.on_batch({"symbols": ["memory" * 30], "ts": [1], "price": [1.0]})  # same error as above, other name
    assert not info.value.quarantined
    assert mc.quarantine_reason is None
