"""Shared fixtures: every plugin is built from source once per test session (skipped when
unchanged), and compiled components are shared through one compile cache."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from klines_venue import Venue

from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.emulator.state import Account, EmulatorConfig, EmulatorState
from allele.kernel.paths import SOURCE_ROOT, WIT_DIR
from allele.kernel.plugin import PluginHost
from allele.kernel.plugin.host import LoadedPlugin
from allele.kernel.sdk.build import BuildResult, build_many, build_plugin, bundled_plugin_dirs
from allele.vault.signing import MemorySigner

BUILD = SOURCE_ROOT / "build"
COMPILE_CACHE = BUILD / "compile-cache"
HOSTILE = SOURCE_ROOT / "tests" / "plugins" / "hostile"
TEST_SECRET = b"test-secret-never-leaves-the-host"

os.environ["ALLELE_COMPILE_CACHE"] = str(COMPILE_CACHE)

# No per-example deadline (that would be a wall-clock assertion on a shared machine), and the same
# examples on every run, so a CI failure reproduces locally.
settings.register_profile("allele", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("allele")


@dataclass(frozen=True)
class Built:
    """Paths of the .wasm files built for this session, by plugin folder name."""

    wasm: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.wasm[name]


def _hostile_builds() -> Iterator[BuildResult]:
    out = BUILD / "test-plugins"
    # wasi_snoop keeps its WASI imports; the two look-alikes use their own WIT packages.
    yield build_plugin(HOSTILE / "wasi_snoop", out / "wasi_snoop.wasm", stub_wasi=False)
    yield build_plugin(HOSTILE / "partial_strategy", out / "partial_strategy.wasm", world="strategy",
                       wit_dir=SOURCE_ROOT / "tests" / "plugins" / "wit" / "partial")
    yield build_plugin(HOSTILE / "foreign_world", out / "foreign_world.wasm", world="gadget",
                       wit_dir=SOURCE_ROOT / "tests" / "plugins" / "wit" / "foreign")


@pytest.fixture(scope="session")
def built() -> Built:
    """Every bundled plugin and every hostile test plugin, built from source."""
    assert WIT_DIR.is_dir()
    results = build_many(bundled_plugin_dirs(), BUILD / "plugins", jobs=2)
    regular_hostile = [d for d in sorted(HOSTILE.iterdir())
                       if (d / "app.py").is_file() and d.name not in ("wasi_snoop", "partial_strategy",
                                                                       "foreign_world")]
    results += build_many(regular_hostile, BUILD / "test-plugins", jobs=2)
    results += list(_hostile_builds())
    return Built({r.source.name: r.output for r in results})


@pytest.fixture
def venue() -> Iterator[Venue]:
    """A klines endpoint on 127.0.0.1 (see klines_venue.py)."""
    v = Venue()
    v.start()
    yield v
    v.stop()


@pytest.fixture
def signer() -> MemorySigner:
    return MemorySigner({"main": ("test-api-key", TEST_SECRET)})


@pytest.fixture
def make_host(tmp_path: Path, signer: MemorySigner) -> Callable[..., PluginHost]:
    """Hosts with a throwaway home, the shared compile cache, and any other PluginHost arguments."""
    def make(**kwargs: Any) -> PluginHost:
        return PluginHost(tmp_path / "home", **{"signer": signer, "cache_dir": COMPILE_CACHE, **kwargs})

    return make


@pytest.fixture
def host(make_host: Callable[..., PluginHost]) -> PluginHost:
    """A fresh host with a throwaway home and the shared compile cache."""
    return make_host()


@pytest.fixture(scope="session")
def session_host(tmp_path_factory: pytest.TempPathFactory) -> PluginHost:
    return PluginHost(tmp_path_factory.mktemp("home"), cache_dir=COMPILE_CACHE,
                      signer=MemorySigner({"main": ("test-api-key", TEST_SECRET)}))


@pytest.fixture(scope="session")
def loaded(built: Built, session_host: PluginHost) -> dict[str, LoadedPlugin]:
    """The bundled plugins, validated once per session."""
    return {name: session_host.load(built[name])
            for name in ("sma_cross", "mean_reversion", "completeness_arb", "momentum_c", "realized_vol",
                         "binance_spot") if name in built.wasm}


def fund_an_arena_organism(home: Path, allocation: float = 12.0) -> dict[str, Any]:
    """Run a one-generation arena on synthetic bars in `home`, then fund its first sma_cross organism for
    paper trading by hand; returns that organism's standing row (as it was before funding)."""
    from allele.kernel.arena.arena import Arena, ArenaConfig
    from allele.kernel.arena.executor import LocalExecutor
    from allele.kernel.arena.store import ArenaStore
    from allele.kernel.backtest import load_bars, parse_data_spec

    bars = load_bars(parse_data_spec("synthetic:bars=900,seed=3"))
    with LocalExecutor(home, bars, commission=0.001) as ex:  # the arena is synchronous: outside a loop
        Arena(home, bars, ArenaConfig(population=6, generations=1, seed=2), ex).run()
    store = ArenaStore(home / "trading.db")
    try:
        row = next(r for r in store.standing() if r["spec"]["strategy"] == "sma_cross")
        store.set_status(row["fingerprint"], "paper", allocation, True, "test: funded")
    finally:
        store.close()
    return row


@contextmanager
def running_emulator(accounts: Mapping[str, tuple[str, Mapping[str, float]]], *, config: EmulatorConfig | None = None,
                     tick_s: float = 0.05) -> Iterator[EmulatorServer]:
    """A venue emulator on 127.0.0.1 for the block: `accounts` maps API key -> (secret, balances).

    `tick_s` is its market's step period; 0 gives a still market that only moves when a test steps it
    (`server.call(server.state.step_market)`).
    """
    state = EmulatorState(config, {key: Account(secret, dict(money)) for key, (secret, money) in accounts.items()})
    server = EmulatorServer(state, tick_s=tick_s)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
    """Poll `check` until it returns something truthy and return that; fail naming `what` after `timeout`
    seconds (tests wait for real processes this way; they never assert how long something took)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def _forget_redacted_secrets() -> Iterator[None]:
    """Secrets a test's vault decrypts are masked in every later log record of the process; a test's
    throwaway values ("k", "s") would garble the logs other tests assert on. Forget them after each test."""
    from allele.vault.redact import scoped

    with scoped():
        yield
