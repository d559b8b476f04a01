"""The supervisor: runs the engine, watches its heartbeats, restarts it when it crashes, hangs or exits.

Spawn mode (no `restart_command`): the engine is this process's child (`allele start --no-watchdog ...`).
It is restarted when it

- crashes (killed by a signal, e.g. SIGKILL or SIGSEGV): cause "crashed: killed by SIGKILL";
- exits (any status, also 0, unless the watchdog itself asked it to stop): "exited with status 3";
- hangs: no heartbeat for `hang_timeout_s` (a blocked event loop, SIGSTOP); it is SIGKILLed first:
  "hung: no heartbeat for 10.0 s";
- never sends its first heartbeat within `startup_timeout_s`: "did not start: ...".

Exceptions: a session with a bar limit (`finish_on_clean_exit`) that exits with status 0 has finished, and
an engine that fails before it was ever ready (a bad config, a plugin that does not build) is a start error:
the watchdog stops and returns the engine's status rather than restarting into the same failure.

Each restart waits a backoff first: `backoff_initial_s`, doubled for each restart in a row up to
`backoff_max_s`, back to the initial value once an engine has run `healthy_reset_s`. More than
`max_restarts` restarts within `restart_window_s` is a crash loop: the watchdog records "gave-up" with the
reason and exits with status 1, leaving the engine down, instead of spinning.

Command mode (`restart_command`, for containers): the engine runs elsewhere (its own container); the watchdog
only watches heartbeats and, when they stop, runs the command (with `ALLELE_WATCHDOG_CAUSE` and
`ALLELE_ENGINE_PID` in its environment), with the same backoff and crash-loop cap.

SIGTERM / SIGINT stop the watchdog: in spawn mode it first stops the engine (SIGTERM, then SIGKILL after
`stop_timeout_s`), so that `allele stop` never races a restart. Every event is logged to
`logs/watchdog.log` and the state kept in `watchdog.json` (keys: `allele.watchdog.state.read_state`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from .config import WatchdogConfig
from .state import log_path, pid_path, remove_pid_file, socket_path, write_state

log = logging.getLogger("allele.watchdog")

ENGINE_ENTRY = "from allele.kernel.cli import app; app()"
SUPERVISED_ENV = "ALLELE_SUPERVISED_BY"  # the watchdog's pid, in the environment of the engine it spawns
_POLL_S = 0.2
_KEEP_RESTARTS = 100


class WatchdogError(RuntimeError):
    """The watchdog cannot run (its socket cannot be bound, ...)."""


@dataclass(frozen=True)
class Restart:
    """One restart: when, why, how long the watchdog waited before it, which engine it replaced."""

    ts: float
    cause: str
    backoff_s: float
    engine_pid: int | None


@dataclass(frozen=True)
class Outcome:
    """How watching one engine ended."""

    kind: Literal["stop", "exit", "hang", "no-start"]
    returncode: int | None = None
    silent_s: float = 0.0


def describe_exit(returncode: int) -> str:
    """The cause recorded for an engine that exited with `returncode` (Popen's: negative = killed by a signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed: killed by {name}"
    if returncode == 0:
        return "exited with status 0 (it was not asked to stop)"
    return f"exited with status {returncode}"


def engine_argv(engine_args: Sequence[str]) -> list[str]:
    """The command line of a supervised engine: `allele start --no-watchdog` plus `engine_args`."""
    return [sys.executable, "-c", ENGINE_ENTRY, "start", "--no-watchdog", *engine_args]


def configure_logging(home: Path, console: bool = True) -> None:
    """Watchdog events to `logs/watchdog.log` (and, if `console`, restarts and errors to stderr)."""
    path = log_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("watchdog: %(message)s"))
        stream.setLevel(logging.WARNING)
        handlers.append(stream)
    log.handlers[:] = handlers
    log.setLevel(logging.INFO)
    log.propagate = False


class Supervisor:
    """Watches (and in spawn mode runs) the engine of one Allele home; `run()` until stopped or given up."""

    def __init__(self, home: Path, config: WatchdogConfig, engine_args: Sequence[str] = (), *,
                 finish_on_clean_exit: bool = False) -> None:
        self.home = home
        self.config = config
        self.engine_args = list(engine_args)
        self.finish_on_clean_exit = finish_on_clean_exit
        self.mode: Literal["spawn", "command"] = "spawn" if config.restart_command is None else "command"
        self._stop_signal: str | None = None
        self._sock: socket.socket | None = None
        self._socket_path = socket_path(home)
        self._state = "starting"
        self._started_at = time.time()
        self._engine_pid: int | None = None
        self._engine_started_at: float | None = None
        self._last_beat_at: float | None = None
        self._last_beat: dict[str, Any] | None = None
        self._restarts: deque[Restart] = deque(maxlen=_KEEP_RESTARTS)
        self._restart_count = 0
        self._recent: deque[float] = deque()
        self._gave_up: str | None = None
        self._written = 0.0

    # --- state ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What `watchdog.json` holds (see `read_state` for the keys)."""
        now = time.time()
        return {"state": self._state, "pid": os.getpid(), "mode": self.mode,
                "restart_command": self.config.restart_command, "engine_pid": self._engine_pid,
                "started_at": self._started_at, "engine_started_at": self._engine_started_at,
                "updated_at": now, "last_heartbeat_at": self._last_beat_at,
                "last_heartbeat_age_s": None if self._last_beat_at is None else round(now - self._last_beat_at, 3),
                "heartbeat": self._last_beat, "restart_count": self._restart_count,
                "restarts": [asdict(r) for r in self._restarts], "gave_up": self._gave_up,
                "heartbeat_interval_s": self.config.heartbeat_interval_s,
                "hang_timeout_s": self.config.hang_timeout_s}

    def _set(self, state: str) -> None:
        self._state = state
        self._write()

    def _write(self) -> None:
        self._written = time.monotonic()
        write_state(self.home, self.snapshot())

    # --- lifecycle -----------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signal.Signals(signum).name

    def _open(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        path = self._socket_path
        if path.parent != self.home:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A socket file left by a watchdog that was killed: nothing listens on it any more (the CLI refuses
        # to start a second watchdog for a home), and bind() fails while it exists.
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(os.fsencode(path))
        except OSError as exc:
            sock.close()
            raise WatchdogError(f"cannot listen for heartbeats on {path}: {exc}") from None
        os.chmod(path, 0o600)  # only this user's processes may send heartbeats
        sock.settimeout(_POLL_S)
        self._sock = sock
        pid_path(self.home).write_text(str(os.getpid()))

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._socket_path.unlink(missing_ok=True)
        remove_pid_file(self.home, os.getpid())

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (0), a finished session (0), a start error (the engine's status) or
        a crash loop (1). Must run in the main thread (it installs signal handlers)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._open()
            log.info("watchdog %d started for %s (%s mode, heartbeats on %s)", os.getpid(), self.home, self.mode,
                     self._socket_path)
            self._write()
            return self._run_spawn() if self.mode == "spawn" else self._run_command()
        finally:
            self._close()
            for s, handler in previous.items():
                signal.signal(s, handler)

    # --- heartbeats ----------------------------------------------------------------------------------------

    def _receive(self) -> dict[str, Any] | None:
        """One heartbeat, or None after at most `_POLL_S` seconds."""
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except (TimeoutError, InterruptedError, BlockingIOError):
            return None
        try:
            beat = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("ignored a datagram on %s that is not a JSON heartbeat", self._socket_path)
            return None
        return beat if isinstance(beat, dict) and isinstance(beat.get("pid"), int) else None

    def _watch(self, proc: subprocess.Popen[bytes] | None) -> Outcome:
        """Watch one engine (the child `proc`, or in command mode whatever sends heartbeats) until it exits,
        hangs, never starts, or the watchdog is told to stop."""
        started = time.monotonic()
        last: float | None = None
        while True:
            if self._stop_signal is not None:
                return Outcome("stop")
            if proc is not None and (rc := proc.poll()) is not None:
                return Outcome("exit", returncode=rc)
            beat = self._receive()
            now = time.monotonic()
            if beat is not None and (proc is None or beat["pid"] == proc.pid):
                last = now
                self._last_beat_at = time.time()
                self._last_beat = beat
                self._engine_pid = beat["pid"]
                if self._engine_started_at is None:  # command mode: the engine started elsewhere
                    self._engine_started_at = time.time()
                if self._state != "running":
                    log.info("engine %d is up (first heartbeat after %.1f s)", beat["pid"], now - started)
                    self._set("running")
            if last is None and now - started > self.config.startup_timeout_s:
                return Outcome("no-start", silent_s=now - started)
            if last is not None and now - last > self.config.hang_timeout_s:
                return Outcome("hang", silent_s=now - last)
            if now - self._written >= 1.0:
                self._write()

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` (draining stale heartbeats); False if told to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop_signal is not None:
                return False
            self._receive()
        return self._stop_signal is None

    # --- restart policy ------------------------------------------------------------------------------------

    def _plan_restart(self, cause: str, backoff: float, ran_s: float | None) -> float | None:
        """Record a restart caused by `cause`; the backoff to wait before it, or None after giving up."""
        if ran_s is not None and ran_s >= self.config.healthy_reset_s:
            backoff = self.config.backoff_initial_s  # a healthy run: this failure is not part of a loop
        now = time.time()
        while self._recent and now - self._recent[0] > self.config.restart_window_s:
            self._recent.popleft()
        if len(self._recent) >= self.config.max_restarts:
            self._gave_up = (f"{len(self._recent) + 1} failures within {self.config.restart_window_s:g} s "
                             f"(max_restarts = {self.config.max_restarts}); last: {cause}")
            log.error("giving up: %s. The engine stays down; fix the cause (see logs/engine.log and "
                      "logs/engine.out), then `allele start`", self._gave_up)
            self._set("gave-up")
            return None
        self._recent.append(now)
        self._restart_count += 1
        self._restarts.append(Restart(ts=now, cause=cause, backoff_s=backoff, engine_pid=self._engine_pid))
        log.warning("engine %s %s; restarting in %.1f s (restart %d)", self._engine_pid, cause, backoff,
                    self._restart_count)
        self._set("restarting")
        return backoff

    def _cause(self, outcome: Outcome) -> str:
        if outcome.kind == "exit":
            assert outcome.returncode is not None
            return describe_exit(outcome.returncode)
        if outcome.kind == "hang":
            return f"hung: no heartbeat for {outcome.silent_s:.1f} s"
        return f"did not start: no heartbeat within {outcome.silent_s:.0f} s"

    # --- spawn mode ----------------------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ALLELE_HOME": str(self.home), SUPERVISED_ENV: str(os.getpid())}
        proc = subprocess.Popen(engine_argv(self.engine_args), env=env, stdin=subprocess.DEVNULL)
        self._engine_pid = proc.pid
        self._engine_started_at = time.time()
        self._last_beat_at = None
        log.info("engine %d spawned: allele start --no-watchdog %s", proc.pid, shlex.join(self.engine_args))
        self._write()
        return proc

    def _stop_engine(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            log.info("stopping engine %d (SIGTERM)", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) engine cannot handle SIGTERM
            try:
                proc.wait(self.config.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("engine %d did not stop within %g s: killed", proc.pid, self.config.stop_timeout_s)
                proc.kill()
                proc.wait()

    def _run_spawn(self) -> int:
        backoff = self.config.backoff_initial_s
        ever_ready = False
        while True:
            proc = self._spawn()
            outcome = self._watch(proc)
            ever_ready = ever_ready or self._last_beat_at is not None
            ran_s = None if self._last_beat_at is None or self._engine_started_at is None else \
                time.time() - self._engine_started_at
            if outcome.kind == "stop":
                log.info("watchdog stopping (%s)", self._stop_signal)
                self._set("stopping")
                self._stop_engine(proc)
                log.info("engine %d stopped with status %s; watchdog stopped", proc.pid, proc.returncode)
                self._set("stopped")
                return 0
            if outcome.kind in ("hang", "no-start"):
                log.warning("engine %d: %s; killing it (SIGKILL)", proc.pid, self._cause(outcome))
                proc.kill()
                proc.wait()
            if outcome.kind == "exit" and outcome.returncode == 0 and self.finish_on_clean_exit:
                log.info("engine %d finished its session (bar limit reached); watchdog stopped", proc.pid)
                self._set("stopped")
                return 0
            if outcome.kind == "exit" and not ever_ready:
                rc = outcome.returncode or 0
                log.error("engine %d %s before it was ever ready: not restarted (a start error; see "
                          "logs/engine.out)", proc.pid, describe_exit(rc))
                self._set("stopped")
                return rc if rc > 0 else 1
            wait = self._plan_restart(self._cause(outcome), backoff, ran_s)
            if wait is None:
                return 1
            if not self._sleep(wait):
                self._set("stopped")
                return 0
            backoff = min(max(wait, self.config.backoff_initial_s) * 2, self.config.backoff_max_s)

    # --- command mode --------------------------------------------------------------------------------------

    def _run_command(self) -> int:
        assert self.config.restart_command is not None
        backoff = self.config.backoff_initial_s
        while True:
            outcome = self._watch(None)
            if outcome.kind == "stop":
                log.info("watchdog stopping (%s); the engine is left to its container", self._stop_signal)
                self._set("stopped")
                return 0
            ran_s = None if self._last_beat_at is None or self._engine_started_at is None else \
                time.time() - self._engine_started_at
            cause = self._cause(outcome)
            wait = self._plan_restart(cause, backoff, ran_s)
            if wait is None:
                return 1
            if not self._sleep(wait):
                self._set("stopped")
                return 0
            backoff = min(max(wait, self.config.backoff_initial_s) * 2, self.config.backoff_max_s)
            self._run_restart_command(cause)

    def _run_restart_command(self, cause: str) -> None:
        assert self.config.restart_command is not None
        # SUPERVISED_ENV lets a command that runs `allele start --no-watchdog` past the CLI's "a watchdog is running".
        env = {**os.environ, "ALLELE_HOME": str(self.home), "ALLELE_WATCHDOG_CAUSE": cause,
               "ALLELE_ENGINE_PID": "" if self._engine_pid is None else str(self._engine_pid),
               SUPERVISED_ENV: str(os.getpid())}
        argv = shlex.split(self.config.restart_command)
        log.warning("running the restart command: %s", self.config.restart_command)
        self._engine_started_at = time.time()
        self._last_beat_at = None
        self._write()
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=max(120.0, self.config.stop_timeout_s * 2), check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("the restart command %r failed: %s", self.config.restart_command, exc)
            return
        if done.returncode != 0:
            log.error("the restart command %r exited with status %d: %s", self.config.restart_command,
                      done.returncode, (done.stderr or done.stdout).strip()[-500:])
