"""The watchdog with real processes: an engine started by `allele start --detach` under the watchdog is killed
(-9), stopped (SIGSTOP: a hang) and made to exit (SIGTERM not sent by `allele stop`); each time the watchdog
brings it back, records the cause, and the ledger stays intact. `allele stop` stops both without a restart; a
crash loop backs off and gives up; container mode runs a restart command.

Each test has its own ALLELE_HOME and short [watchdog] timings set through ALLELE_WATCHDOG__* variables.
Nothing asserts wall-clock durations: every wait polls with a generous timeout."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for as _wait_for
from test_cli import WIDE, allele, as_json, assert_ok, assert_refused, flat

from allele.kernel.ledger import Ledger
from allele.watchdog.config import WatchdogConfig
from allele.watchdog.state import read_state, socket_path
from allele.watchdog.supervisor import Supervisor, describe_exit

FAST = {"ALLELE_WATCHDOG__HEARTBEAT_INTERVAL_S": "0.5", "ALLELE_WATCHDOG__HANG_TIMEOUT_S": "4",
        "ALLELE_WATCHDOG__BACKOFF_INITIAL_S": "0.5", "ALLELE_WATCHDOG__BACKOFF_MAX_S": "8",
        "ALLELE_WATCHDOG__MAX_RESTARTS": "10"}
TIMEOUT = 180.0  # an engine (re)start loads every plugin; on a busy 2-core machine that can take a while


wait_for = functools.partial(_wait_for, timeout=TIMEOUT)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: a detached process's parent exited, and whoever inherited it may
    reap it late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def engine_pid(home: Path) -> int | None:
    try:
        return int((home / "engine.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def ledger_check(home: Path) -> tuple[str, list[object], int]:
    """SQLite's integrity check, the positions that disagree with the fills, and the number of fills."""
    async def check() -> tuple[str, list[object], int]:
        ledger = await Ledger.open(home / "trading.db")
        try:
            return await ledger.integrity_check(), await ledger.rebuild_positions(), len(await ledger.fills())
        finally:
            await ledger.close()

    return asyncio.run(check())


def assert_ledger_intact(home: Path) -> int:
    integrity, mismatches, fills = ledger_check(home)
    assert integrity == "ok"
    assert mismatches == []  # every position is what its fills add up to
    return fills


def restarted(home: Path, count: int, old_pid: int) -> Callable[[], dict[str, Any] | None]:
    """A check: the watchdog has made its `count`th restart and the new engine (not `old_pid`) is up."""
    def check() -> dict[str, Any] | None:
        state = read_state(home)
        if state is None or state["restart_count"] < count or state["state"] != "running":
            return None
        new = state["engine_pid"]
        status = json.loads((home / "engine.json").read_text())
        return state if new != old_pid and status["pid"] == new and engine_pid(home) == new else None
    return check


class Pids:
    """Every engine and watchdog pid a test saw, killed at teardown if still alive (so nothing leaks)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def add(self, *pids: int | None) -> None:
        self.seen.update(p for p in pids if p is not None)

    def cleanup(self, home: Path) -> None:
        if any(alive(p) for p in self.seen):
            allele("stop", home=home)
        for pid in self.seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Pids]:
    tracked = Pids()
    yield tracked
    tracked.cleanup((tmp_path / "home").resolve())


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)


def start_watched(home: Path, pids: Pids) -> dict[str, Any]:
    report: dict[str, Any] = as_json(allele("start", "--detach", "--speed", "20", "--json", home=home))
    pids.add(report["pid"], report["watchdog_pid"])
    assert isinstance(report["watchdog_pid"], int) and report["watchdog_pid"] != report["pid"]
    assert engine_pid(home) == report["pid"]
    return report


# -- unit: causes and settings ------------------------------------------------------------------------------------


def test_exit_causes_name_the_signal_or_status() -> None:
    assert describe_exit(-signal.SIGKILL) == "crashed: killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "crashed: killed by SIGSEGV"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(0) == "exited with status 0 (it was not asked to stop)"


def test_settings_refuse_contradictions() -> None:
    with pytest.raises(ValueError, match=r"hang_timeout_s .* must exceed heartbeat_interval_s"):
        WatchdogConfig(heartbeat_interval_s=2, hang_timeout_s=1)
    with pytest.raises(ValueError, match=r"backoff_max_s .* is below backoff_initial_s"):
        WatchdogConfig(backoff_initial_s=10, backoff_max_s=1)
    with pytest.raises(ValueError, match="not a valid command line"):
        WatchdogConfig(restart_command="podman restart 'allele-engine")
    assert WatchdogConfig(restart_command="  ").restart_command is None


def test_a_bad_watchdog_setting_is_refused_naming_the_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[watchdog]\nhang_timeout_s = -1\n")
    assert_refused(allele("start", "--detach", home=home, columns=WIDE), "config.toml", "[watchdog]",
                   "'hang_timeout_s'", "greater than 0")
    assert not (home / "watchdog.pid").exists() and not (home / "engine.pid").exists()


def test_a_long_home_path_gets_a_short_socket_name(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    path = socket_path(deep)
    assert len(os.fsencode(path)) <= 100 and path.parent.name == f"allele-{os.getuid()}"
    assert socket_path(deep) == path  # the engine and the watchdog compute the same name
    assert socket_path(Path("/tmp/h")) == Path("/tmp/h/watchdog.sock")


# -- real processes --------------------------------------------------------------------------------------------


def test_kill_hang_and_exit_are_restarted_and_stop_stops_both(built, tmp_path: Path, fast: None,
                                                              pids: Pids) -> None:
    home = (tmp_path / "home").resolve()
    report = start_watched(home, pids)
    watchdog = report["watchdog_pid"]
    first = report["pid"]
    wait_for("the first fills", lambda: assert_ledger_intact(home) > 0)

    # kill -9: a crash.
    os.kill(first, signal.SIGKILL)
    state = wait_for("a restart after kill -9", restarted(home, 1, first))
    assert state["restarts"][0]["cause"] == "crashed: killed by SIGKILL"
    assert state["restarts"][0]["engine_pid"] == first
    second = state["engine_pid"]
    pids.add(second)
    assert_ledger_intact(home)

    # SIGSTOP: the process lives, its heartbeats stop: a hang. The watchdog kills it and starts another.
    os.kill(second, signal.SIGSTOP)
    state = wait_for("a restart after SIGSTOP", restarted(home, 2, second))
    assert state["restarts"][1]["cause"].startswith("hung: no heartbeat for ")
    assert not alive(second)  # killed (and reaped), not left stopped
    third = state["engine_pid"]
    pids.add(third)
    assert_ledger_intact(home)

    # An exit nobody asked for (SIGTERM makes the engine stop cleanly with status 0).
    os.kill(third, signal.SIGTERM)
    state = wait_for("a restart after an unrequested exit", restarted(home, 3, third))
    assert state["restarts"][2]["cause"] == "exited with status 0 (it was not asked to stop)"
    fourth = state["engine_pid"]
    pids.add(fourth)
    fills = assert_ledger_intact(home)
    assert fills > 0

    # Three restarts in a row: the backoff doubled each time.
    assert [r["backoff_s"] for r in state["restarts"]] == [0.5, 1.0, 2.0]
    assert state["pid"] == watchdog and state["alive"] and state["mode"] == "spawn"
    log = (home / "logs" / "watchdog.log").read_text()
    for cause in ("crashed: killed by SIGKILL", "hung: no heartbeat for", "exited with status 0"):
        assert cause in log

    status = as_json(allele("status", "--json", home=home))
    assert status["watchdog"]["restart_count"] == 3 and status["watchdog"]["state"] == "running"
    assert status["engine"]["state"] == "running" and status["engine"]["pid"] == fourth
    text = flat(as_text(allele("status", home=home, columns=WIDE)))
    assert f"watchdog: running (pid {watchdog}), 3 restarts" in text
    assert "exited with status 0 (it was not asked to stop)" in text

    # `allele stop`: the watchdog first, which stops its engine; nothing is restarted.
    proc = allele("stop", home=home)
    assert_ok(proc)
    assert f"engine (pid {fourth}) stopped" in flat(proc.stdout)
    assert f"watchdog (pid {watchdog}) stopped" in flat(proc.stdout)
    assert not alive(fourth) and not alive(watchdog)
    time.sleep(3 * float(FAST["ALLELE_WATCHDOG__BACKOFF_INITIAL_S"]) + 1)  # longer than a restart would wait
    assert engine_pid(home) is None
    final = read_state(home)
    assert final is not None and final["state"] == "stopped" and final["restart_count"] == 3
    assert not final["alive"]
    assert json.loads((home / "engine.json").read_text())["state"] == "stopped"
    assert not socket_path(home).exists() and not (home / "watchdog.pid").exists()
    assert assert_ledger_intact(home) >= fills


def as_text(proc: subprocess.CompletedProcess[str]) -> str:
    assert_ok(proc)
    return proc.stdout


def test_a_crash_loop_backs_off_then_gives_up(built, tmp_path: Path, fast: None, pids: Pids,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLELE_WATCHDOG__MAX_RESTARTS", "3")
    monkeypatch.setenv("ALLELE_WATCHDOG__BACKOFF_INITIAL_S", "0.2")
    home = (tmp_path / "home").resolve()
    report = start_watched(home, pids)
    # A config the engine refuses at start (exit status 2), as after a bad edit: every restart fails.
    (home / "config.toml").write_text("[engine]\nseed = -1\n")
    os.kill(report["pid"], signal.SIGKILL)

    state = wait_for("the watchdog to give up", lambda: (s := read_state(home)) and s["state"] == "gave-up" and s)
    causes = [r["cause"] for r in state["restarts"]]
    assert causes == ["crashed: killed by SIGKILL", "exited with status 2", "exited with status 2"]
    backoffs = [r["backoff_s"] for r in state["restarts"]]
    assert backoffs == sorted(backoffs) and backoffs[0] < backoffs[1] < backoffs[2], backoffs
    assert "max_restarts = 3" in state["gave_up"] and "exited with status 2" in state["gave_up"]
    wait_for("the watchdog process to exit", lambda: not alive(report["watchdog_pid"]))
    assert engine_pid(home) is None or not alive(engine_pid(home) or 0)

    text = flat(as_text(allele("status", home=home, columns=WIDE)))
    assert "watchdog: gave-up, 3 restarts" in text and "gave up: 4 failures" in text
    assert_ledger_intact(home)


def test_a_start_error_is_reported_not_restarted(built, tmp_path: Path, fast: None) -> None:
    home = (tmp_path / "home").resolve()
    home.mkdir()
    # Valid config, but an organism whose strategy does not exist: the engine fails before it is ready.
    (home / "config.toml").write_text('[[organisms]]\nid = "ghost"\nstrategy = "no_such_strategy"\n')
    proc = allele("start", "--detach", "--speed", "20", home=home, columns=WIDE)
    assert proc.returncode == 2, proc
    message = flat(proc.stderr)
    assert "exited with status" in message and "before the engine was ready" in message
    assert "no_such_strategy" in message
    state = read_state(home)
    assert state is not None and state["state"] == "stopped" and state["restart_count"] == 0


def test_restart_command_mode_runs_the_command_when_heartbeats_stop(built, tmp_path: Path, fast: None,
                                                                    pids: Pids) -> None:
    """Container mode: the engine runs on its own (`--no-watchdog`); the watchdog only watches its heartbeats
    and runs `restart_command` (here a script that records its call and does what `podman restart` would)."""
    home = (tmp_path / "home").resolve()
    record = tmp_path / "restarts.jsonl"
    script = tmp_path / "restart_engine.py"
    script.write_text(
        "import json, os, signal, subprocess, sys\n"
        "pid = os.environ['ALLELE_ENGINE_PID']\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(json.dumps({'cause': os.environ['ALLELE_WATCHDOG_CAUSE'], 'engine_pid': int(pid),\n"
        "                        'home': os.environ['ALLELE_HOME']}) + '\\n')\n"
        "os.kill(int(pid), signal.SIGKILL)\n"
        f"subprocess.run([{str(Path(sys.executable).parent / 'allele')!r}, 'start', '--detach', '--no-watchdog',\n"
        "                '--speed', '20'], check=True)\n")
    first: dict[str, Any] = as_json(allele("start", "--detach", "--no-watchdog", "--speed", "20", "--json",
                                           home=home))
    assert first["watchdog_pid"] is None
    pids.add(first["pid"])
    env = {**os.environ, "ALLELE_HOME": str(home),
           "ALLELE_WATCHDOG__RESTART_COMMAND": f"{sys.executable} {script} {record}"}
    watchdog = subprocess.Popen([sys.executable, "-m", "allele.watchdog"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    pids.add(watchdog.pid)
    try:
        state = wait_for("the first heartbeat", lambda: (s := read_state(home)) and s["state"] == "running" and s)
        assert state["mode"] == "command" and state["engine_pid"] == first["pid"]

        os.kill(first["pid"], signal.SIGSTOP)
        state = wait_for("the restarted engine's heartbeats", restarted(home, 1, first["pid"]))
        pids.add(state["engine_pid"])
        [call] = [json.loads(line) for line in record.read_text().splitlines()]
        assert call["cause"].startswith("hung: no heartbeat for ")
        assert call["engine_pid"] == first["pid"] and call["home"] == str(home)
        assert state["restarts"][0]["cause"] == call["cause"]
        assert_ledger_intact(home)

        # Stopping a command-mode watchdog leaves the engine to its container (here: `allele stop` ends both).
        proc = allele("stop", home=home)
        assert_ok(proc)
        assert watchdog.wait(30) == 0
        assert f"engine (pid {state['engine_pid']}) stopped" in flat(proc.stdout)
    finally:
        if watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait()


def test_start_refuses_while_a_watchdog_restarts_the_engine(built, tmp_path: Path, fast: None, pids: Pids,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLELE_WATCHDOG__BACKOFF_INITIAL_S", "6")
    monkeypatch.setenv("ALLELE_WATCHDOG__BACKOFF_MAX_S", "6")
    home = (tmp_path / "home").resolve()
    report = start_watched(home, pids)
    os.kill(report["pid"], signal.SIGKILL)
    wait_for("the watchdog to wait out its backoff", lambda: (s := read_state(home)) and s["state"] == "restarting")
    for args in (("start", "--detach"), ("start", "--no-watchdog", "--bars", "5", "--speed", "0")):
        assert_refused(allele(*args, home=home, columns=WIDE), "a watchdog is already running",
                       f"(pid {report['watchdog_pid']})", "allele stop")
    proc = allele("stop", home=home)
    assert_ok(proc)
    assert f"watchdog (pid {report['watchdog_pid']}) stopped" in flat(proc.stdout)
    assert not alive(report["watchdog_pid"])
    state = read_state(home)
    assert state is not None and state["state"] == "stopped" and state["restart_count"] == 1


def test_backoff_doubles_caps_and_resets_after_a_healthy_run(tmp_path: Path) -> None:
    config = WatchdogConfig(backoff_initial_s=1, backoff_max_s=4, healthy_reset_s=60, max_restarts=100)
    supervisor = Supervisor(tmp_path, config)
    assert supervisor._plan_restart("crashed: killed by SIGKILL", 4.0, ran_s=5.0) == 4.0
    assert supervisor._plan_restart("crashed: killed by SIGKILL", 4.0, ran_s=61.0) == 1.0  # healthy: reset
    assert supervisor._plan_restart("hung: no heartbeat for 10.0 s", 2.0, ran_s=None) == 2.0
    state = read_state(tmp_path)
    assert state is not None and state["state"] == "restarting" and state["restart_count"] == 3
    assert [r["backoff_s"] for r in state["restarts"]] == [4.0, 1.0, 2.0]


def test_foreground_start_is_the_watchdog_and_ctrl_c_stops_both(built, tmp_path: Path, fast: None,
                                                               pids: Pids) -> None:
    """`allele start` in a terminal: this process is the watchdog, the engine its child; a crash is restarted,
    and Ctrl-C (SIGINT) stops both cleanly (exit status 0), with nothing restarted."""
    home = (tmp_path / "home").resolve()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "allele"), "start", "--speed", "20"],
                            env={**os.environ, "ALLELE_HOME": str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pids.add(proc.pid)
    try:
        state = wait_for("the engine's first heartbeat",
                         lambda: (s := read_state(home)) and s["state"] == "running" and s)
        assert state["pid"] == proc.pid
        first = state["engine_pid"]
        pids.add(first)
        os.kill(first, signal.SIGKILL)
        state = wait_for("a restart after kill -9", restarted(home, 1, first))
        second = state["engine_pid"]
        pids.add(second)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "crashed: killed by SIGKILL; restarting in 0.5 s (restart 1)" in err  # the watchdog says so
        assert "paper session" in out  # each engine printed its tables to this terminal
        assert not alive(second)
        final = read_state(home)
        assert final is not None and final["state"] == "stopped" and final["restart_count"] == 1
        assert json.loads((home / "engine.json").read_text())["state"] == "stopped"
        assert_ledger_intact(home)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
