"""The dashboard in a real browser against a real engine.

A real engine (`allele start --detach`: under its watchdog) runs in its own ALLELE_HOME with the API on a free
port and the built dashboard (dashboard/dist/) served at /. The arena is filled by a small `allele arena run`
first, and a variant of momentum_c is built with `allele build` for the plugin manager to deploy. Then the
browser tests of dashboard/tests/ (Node's test runner + playwright-core + Debian's Chromium) run against it:
token handling, live prices and leaderboard, the views on desktop and phone sizes (screenshots in
build/screenshots/), the kill switch, a plugin upload, and recovery after the engine is killed and restarted by
the watchdog. This test fails when any browser check fails.

Needs node/npm (the dashboard's dependencies: `cd dashboard && npm ci`) and /usr/bin/chromium."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import wait_for as _wait_for

from allele.kernel.paths import SOURCE_ROOT

ALLELE = Path(sys.executable).parent / "allele"
DASHBOARD: Path = SOURCE_ROOT / "dashboard"
DIST: Path = DASHBOARD / "dist"
SCREENSHOTS = SOURCE_ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
MOMENTUM_C = SOURCE_ROOT / "plugins" / "strategies" / "momentum_c" / "momentum_c.c"
PROOF = SOURCE_ROOT / "docs" / "strategies" / "momentum_c.md"
AUTHOR = '\\"author\\":\\"Allele\\"'


wait_for = functools.partial(_wait_for, timeout=600.0, interval=0.5)


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _newest(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


@pytest.fixture(scope="module")
def dashboard_built() -> Path:
    """dashboard/dist/, (re)built when a source is newer than it; the npm dependencies installed if missing."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed: the dashboard's build and browser tests need Node 20 and npm"
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: install Debian's chromium for the browser tests"
    if not (DASHBOARD / "node_modules" / "playwright-core").is_dir():
        run(npm, "ci", "--no-audit", "--no-fund", cwd=DASHBOARD)
    sources = max(_newest(DASHBOARD / "src"), *(p.stat().st_mtime for p in (DASHBOARD / "index.html",
                                                                            DASHBOARD / "package-lock.json")))
    if not (DIST / "index.html").is_file() or _newest(DIST) < sources:
        run(npm, "run", "build", cwd=DASHBOARD)
    assert (DIST / "index.html").is_file()
    return DIST


@pytest.fixture(scope="module")
def strategy_variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A momentum_c whose manifest names another author: another sha256, the same strategy name (so the engine
    swaps it into the organism trading momentum_c)."""
    folder = tmp_path_factory.mktemp("variant") / "momentum_c"
    folder.mkdir()
    source = MOMENTUM_C.read_text()
    assert AUTHOR in source, f"{MOMENTUM_C} no longer holds {AUTHOR}: update this test's variant"
    (folder / "momentum_c.c").write_text(source.replace(AUTHOR, '\\"author\\":\\"the dashboard test\\"', 1))
    out = folder.parent / "momentum_c-variant.wasm"
    run(ALLELE, "build", folder, "--output", out)
    assert out.is_file()
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Engine:
    home: Path
    url: str
    token: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def engine(dashboard_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    home = tmp_path_factory.mktemp("dashboard") / "home"
    home.mkdir()
    # A fixed port (not 0): the engine the watchdog restarts must come back where the page looks for it.
    port = free_port()
    (home / "config.toml").write_text(f"[engine]\nspeed = 20\nledger_sync = \"normal\"\n\n[api]\nport = {port}\n")
    env = {**os.environ, "ALLELE_HOME": str(home)}
    # An arena standing, lineage and niches for the arena view.
    run(ALLELE, "arena", "run", "--data", "synthetic:bars=600,seed=3", "--population", "4", "--generations", "2",
        "--seed", "5", "--strategies", "sma_cross", "--windows", "3", env=env)
    run(ALLELE, "start", "--detach", env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def answering() -> bool:
            try:
                info = json.loads((home / "api.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return False
            token = (home / "api.token").read_text().strip()
            try:
                r = httpx.get(url + "/api/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            except httpx.HTTPError:
                return False
            return bool(info["port"] == port and r.status_code == 200 and r.json()["counters"]["fills"] > 0)

        wait_for("the engine's API to answer with fills", answering, timeout=900)
        yield Engine(home, url, (home / "api.token").read_text().strip(), env)
    finally:
        subprocess.run([str(ALLELE), "stop"], env=env, capture_output=True, text=True, timeout=120)


def test_dashboard_in_a_browser(engine: Engine, strategy_variant: Path) -> None:
    index = httpx.get(engine.url + "/", timeout=30)
    assert index.status_code == 200 and '<div id="root">' in index.text, "the API does not serve dashboard/dist/"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    env = {**engine.env, "ALLELE_URL": engine.url, "ALLELE_TOKEN": engine.token, "ALLELE_WASM": str(strategy_variant),
           "ALLELE_PROOF": str(PROOF), "SCREENSHOTS": str(SCREENSHOTS), "CHROMIUM": str(CHROMIUM)}
    proc = subprocess.run(["node", "--test", "--test-reporter=spec", "--test-concurrency=1", "tests/"],
                          cwd=DASHBOARD, env=env, capture_output=True, text=True, timeout=3600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"browser tests failed:\n{report}"
    assert "# fail 0" in report or "fail 0" in report, report
    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    for view in ("markets", "portfolio", "arena", "activity", "risk", "plugins", "health"):
        assert f"{view}-desktop.png" in shots and f"{view}-phone.png" in shots, shots
    assert "engine-down-desktop.png" in shots and "token-missing-desktop.png" in shots, shots
