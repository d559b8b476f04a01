"""The compile cache: compiled components on disk, keyed by the wasm's sha256 and the wasmtime version.

Every test works in its own temporary cache directory (never the shared build/compile-cache), with the real
sma_cross component. Each compile of it is real, so this module is slow by design."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin import PluginHost, StrategyPlugin
from allele.kernel.sdk.testing import load_native
from allele_guest import MarketEvent as GuestMarketEvent

pytestmark = pytest.mark.slow

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
PRICES = [100.0, 101.0, 99.5, 98.0, 97.0, 99.0, 103.0, 104.0, 102.0, 99.0, 96.0, 95.5, 97.0, 101.0, 105.0, 106.0,
          104.0, 100.0, 97.0, 94.0, 96.0, 99.0, 103.0, 107.0]
PARAMS = {"fast": 2, "slow": 5}


def expected_signals() -> list[tuple[int, float]]:
    sma = load_native(SOURCE_ROOT / "plugins" / "strategies" / "sma_cross").SmaCross()
    sma.configure(PARAMS)
    return [(row, s.amount) for row, p in enumerate(PRICES)
            for s in sma.on_event(GuestMarketEvent("bar", "", "X", row, p))]


def assert_works(host: PluginHost, path: Path, data: bytes | None = None) -> None:
    """A fresh instance of the loaded component computes what the native sma_cross computes."""
    sma = host.strategy(host.load(path, data))
    assert isinstance(sma, StrategyPlugin)
    sma.configure(PARAMS)
    got = [(b.row, b.signal.amount) for b in sma.on_batch({"symbols": ["X"], "ts": list(range(len(PRICES))),
                                                           "price": PRICES})]
    want = expected_signals()
    assert len(want) >= 3 and got == want


def artifacts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file())


@dataclass(frozen=True)
class FirstCompile:
    cache_dir: Path
    sha256: str
    hits: int
    misses: int
    files: list[Path]
    mode: int


@pytest.fixture(scope="module")
def first_compile(built, tmp_path_factory: pytest.TempPathFactory) -> FirstCompile:
    """sma_cross loaded once by a host whose cache directory does not exist yet."""
    root = tmp_path_factory.mktemp("compile-cache")
    cache_dir = root / "cache"
    host = PluginHost(root / "home", cache_dir=cache_dir)
    loaded = host.load(built["sma_cross"])
    return FirstCompile(cache_dir, loaded.sha256, host.cache.hits, host.cache.misses, artifacts(cache_dir),
                        stat.S_IMODE(cache_dir.stat().st_mode))


def copy_cache(first: FirstCompile, tmp_path: Path) -> Path:
    target = tmp_path / "cache"
    shutil.copytree(first.cache_dir, target)
    return target


def test_first_load_compiles_and_stores_an_artifact_named_by_sha256_and_wasmtime_version(first_compile,
                                                                                         built) -> None:
    assert (first_compile.misses, first_compile.hits) == (1, 0)
    assert first_compile.sha256 == hashlib.sha256(built["sma_cross"].read_bytes()).hexdigest()
    (artifact,) = first_compile.files  # one artifact, no temporary file left behind
    assert artifact.name.startswith(f"{first_compile.sha256}-wasmtime{WASMTIME_VERSION}")
    assert artifact.suffix == ".cwasm"
    assert artifact.stat().st_size > 1_000_000
    assert first_compile.mode == 0o700  # deserializing runs native code: nobody else may write here


def test_a_second_host_loads_from_the_cache(first_compile, built, tmp_path: Path) -> None:
    (artifact,) = first_compile.files
    before = artifact.read_bytes()
    host = PluginHost(tmp_path / "home", cache_dir=first_compile.cache_dir)
    assert_works(host, built["sma_cross"])
    assert (host.cache.hits, host.cache.misses) == (1, 0)
    assert artifacts(first_compile.cache_dir) == [artifact] and artifact.read_bytes() == before


def test_a_corrupted_artifact_is_detected_and_recompiled(first_compile, built, tmp_path: Path) -> None:
    cache_dir = copy_cache(first_compile, tmp_path)
    (artifact,) = artifacts(cache_dir)
    garbage = b"\x7fELF" + bytes(range(256)) * 64
    artifact.write_bytes(garbage)

    host = PluginHost(tmp_path / "home", cache_dir=cache_dir)
    assert_works(host, built["sma_cross"])
    assert (host.cache.hits, host.cache.misses) == (0, 1)
    assert artifacts(cache_dir) == [artifact]
    assert artifact.read_bytes() != garbage and artifact.stat().st_size > 1_000_000

    again = PluginHost(tmp_path / "home2", cache_dir=cache_dir)  # the rewritten artifact is good
    assert_works(again, built["sma_cross"])
    assert (again.cache.hits, again.cache.misses) == (1, 0)


def with_custom_section(data: bytes, name: bytes, payload: bytes) -> bytes:
    """The same component with one more custom section at the end: other bytes, same behaviour."""
    def leb(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    content = leb(len(name)) + name + payload
    return data + b"\x00" + leb(len(content)) + content


def test_the_artifact_name_changes_when_the_wasm_bytes_change(first_compile, built, tmp_path: Path) -> None:
    cache_dir = copy_cache(first_compile, tmp_path)
    (original,) = artifacts(cache_dir)
    data = with_custom_section(built["sma_cross"].read_bytes(), b"allele-test", b"a different build")
    sha = hashlib.sha256(data).hexdigest()
    assert sha != first_compile.sha256

    host = PluginHost(tmp_path / "home", cache_dir=cache_dir)
    loaded = host.load(built["sma_cross"], data)
    assert loaded.sha256 == sha
    assert (host.cache.hits, host.cache.misses) == (0, 1)  # the old artifact is not used for the new bytes
    files = artifacts(cache_dir)
    assert len(files) == 2 and original in files
    (new,) = [f for f in files if f != original]
    assert new.name.startswith(f"{sha}-wasmtime{WASMTIME_VERSION}") and new.suffix == ".cwasm"
    assert new.name.removeprefix(sha) == original.name.removeprefix(first_compile.sha256)

    assert_works(host, built["sma_cross"], data)
    assert_works(host, built["sma_cross"])  # both artifacts now served from the cache
    assert (host.cache.hits, host.cache.misses) == (2, 1)
