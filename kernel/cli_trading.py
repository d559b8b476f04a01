"""The operator's sub-commands of `allele`, in workflow order:

    allele deploy X.wasm [--allow-unproven]   validate, install, hot-swap into a running engine
    allele start [--detach] [--bars N]        paper trading on the simulated venue
    allele status [--json]                    engine, organisms, positions, P&L, risk, quarantine
    allele stop                               stop a detached engine
    allele backtest --strategy S --data D     one strategy over CSV, a recording or synthetic data
    allele replay RECORDING                   a recorded session through the same pipeline
    allele kill-switch on|off                 cancel everything and refuse new orders / resume
    allele ledger positions|orders|fills|pnl  what the ledger holds
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from allele.kernel import cli as _cli
from allele.kernel.backtest import DataError, parse_data_spec
from allele.kernel.backtest.run import run_backtest
from allele.kernel.cli import BUNDLED_BUILD_DIR, JsonFlag, _fail, _host, _print_json, err, out
from allele.kernel.config import ConfigError
from allele.kernel.engine.config import EngineConfig, load_engine_config
from allele.kernel.engine.deploy import DeployError, UnprovenError, install_plugin, record_deployment
from allele.kernel.engine.firehose import RecordingError, list_sessions
from allele.kernel.engine.ports import TradingSession
from allele.kernel.engine.runner import read_status, running_pid, serve
from allele.kernel.engine.session import (
    SessionError,
    check_config,
    historical_dir,
    ledger_path,
    open_paper_session,
    open_replay_session,
)
from allele.kernel.ledger import Ledger
from allele.kernel.paths import BUNDLED_PLUGINS_DIR, allele_home
from allele.kernel.plugin.errors import PluginError
from allele.kernel.plugin.host import PluginHost, read_quarantine_log
from allele.kernel.plugin.manifest import ParamValue
from allele.kernel.risk import killswitch
from allele.kernel.sdk.build import KIND_DIRS, BuildError, build_many, bundled_plugin_dirs
from allele.watchdog.config import load_watchdog_config
from allele.watchdog.state import read_state as read_watchdog_state
from allele.watchdog.state import running_watchdog
from allele.watchdog.state import state_path as watchdog_state_path
from allele.watchdog.supervisor import SUPERVISED_ENV, Supervisor, WatchdogError, engine_argv
from allele.watchdog.supervisor import configure_logging as configure_watchdog_logging

T = TypeVar("T")
app: typer.Typer = _cli.app  # annotated: mypy sees the cross-package import as Any
PROOF_TEMPLATE_MARK = "Replace every line below."


def deployed_dir(home: Path) -> Path:
    return home / "plugins"


def list_deployed(home: Path) -> list[Path]:
    return sorted(p for kind_dir in KIND_DIRS.values() for p in (deployed_dir(home) / kind_dir).glob("*.wasm"))


def _with_ledger(home: Path, fn: Callable[[Ledger], Awaitable[T]]) -> T:
    """Run `fn` on the ledger at `<home>/trading.db` (created if needed), closing it afterwards."""
    async def main() -> T:
        ledger = await Ledger.open(ledger_path(home))
        try:
            return await fn(ledger)
        finally:
            await ledger.close()

    return asyncio.run(main())


def _run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def _configure_logging(home: Path, verbose: bool = False) -> None:
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs / "engine.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    root = logging.getLogger("allele")
    root.handlers[:] = [handler, console]
    root.setLevel(logging.INFO)


# --- deploy ---------------------------------------------------------------------------------------------------


@app.command()
def deploy(wasm: Annotated[Path, typer.Argument(help="a plugin .wasm")],
           allow_unproven: Annotated[bool, typer.Option("--allow-unproven",
                                                        help="deploy a strategy without its proof document")] = False,
           proof: Annotated[Path | None, typer.Option(help="the strategy's proof document, if not found by "
                                                           "the manifest's `proof` path")] = None,
           as_json: JsonFlag = False) -> None:
    """Validate a plugin and install it under .allele/plugins/<kind>/ (named by its content hash).

    A running engine picks up a new version of a strategy it trades and hot-swaps it."""
    host = _host()
    if not wasm.exists():
        raise _fail(f"{wasm} does not exist")
    try:
        with out.status(f"loading {wasm.name} (the first load of a component compiles it: ~10 s)"):
            deployment = install_plugin(host, wasm, proof=proof, allow_unproven=allow_unproven)
    except UnprovenError as exc:
        raise _fail(f"{exc}. Write the proof (edge, assumptions, failure modes, risks; see docs/plugins.md), pass "
                    "it with --proof FILE, or deploy with --allow-unproven to run it anyway") from None
    except DeployError as exc:
        raise _fail(str(exc)) from None
    loaded, target = deployment.loaded, deployment.target
    if deployment.unproven is not None:
        err.print(Text(f"warning: deploying {loaded.name} unproven: {deployment.unproven}", style="yellow"))
    _with_ledger(host.home, lambda ledger: record_deployment(ledger, deployment, "cli"))
    engine_pid = running_pid(host.home)
    info = {"deployed": str(target), "proof": None if deployment.proof is None else str(deployment.proof),
            "hot_swap": engine_pid is not None and loaded.kind == "strategy", **loaded.describe()}
    if as_json:
        _print_json(info)
        return
    out.print(f"deployed {loaded.kind} {loaded.name} {loaded.manifest.version} ({loaded.sha256[:12]}) to {target}")
    if info["hot_swap"]:
        out.print(f"the running engine (pid {engine_pid}) swaps it in for organisms trading {loaded.name} "
                  "within a few seconds; see `allele status`")


# --- start / stop ---------------------------------------------------------------------------------------------


def _build_bundled() -> list[Path]:
    try:
        with out.status("building bundled plugins") as st:
            results = build_many(bundled_plugin_dirs(BUNDLED_PLUGINS_DIR), BUNDLED_BUILD_DIR,
                                 progress=lambda m: st.update(m))
    except BuildError as exc:
        raise _fail(str(exc)) from None
    return [r.output for r in results]


def _plugin_rows(home: Path, paths: list[Path]) -> list[dict[str, Any]]:
    host = _host(home)
    rows = []
    for path in paths:
        try:
            loaded = host.load(path)
            rows.append({"name": loaded.name, "kind": loaded.kind, "abi": loaded.abi,
                         "version": loaded.manifest.version, "sha256": loaded.sha256, "path": str(path),
                         "status": "ok"})
        except PluginError as exc:
            rows.append({"name": path.stem, "kind": "?", "abi": "?", "version": "?", "sha256": "",
                         "path": str(path), "status": f"refused: {exc}"})
    return rows


@app.command()
def start(detach: Annotated[bool, typer.Option("--detach", help="run in the background; `allele stop` ends it")]
          = False,
          bars: Annotated[int | None, typer.Option(help="stop after this many synthetic bars (default: run until "
                                                        "stopped)")] = None,
          speed: Annotated[float | None, typer.Option(help="event-time seconds per wall second; 0 = as fast as "
                                                           "possible (default: [engine] speed)")] = None,
          seed: Annotated[int | None, typer.Option(help="synthetic market seed (default: [engine] seed)")] = None,
          order_kernel: Annotated[str | None, typer.Option(
              "--order-kernel", metavar="software|rtl-sim",
              help="the order kernel: the Python reference model, or the Verilog RTL of hw/ simulated with "
                   "Icarus + cocotb (default: [engine] order_kernel)")] = None,
          verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log engine events to the terminal")] = False,
          no_watchdog: Annotated[bool, typer.Option("--no-watchdog",
                                                    help="run the engine alone, without the watchdog that restarts "
                                                         "it (a container's engine service, a debugger)")] = False,
          as_json: JsonFlag = False) -> None:
    """Paper trading on the simulated venue with the bundled strategies (or the [[organisms]] configured).

    No keys, no network. Orders, fills and decisions go to .allele/trading.db, the market to
    .allele/historical/, status to .allele/engine.json. The engine runs under the watchdog, which restarts it
    when it crashes, hangs or exits (not a session that ends after its --bars), unless --no-watchdog or
    `[watchdog] enabled = false`."""
    home = allele_home()
    existing = running_pid(home)
    if existing is not None:
        raise _fail(f"an engine is already running for {home} (pid {existing}); `allele stop` it first")
    watcher = running_watchdog(home)
    if watcher is not None and os.environ.get(SUPERVISED_ENV) != str(watcher):
        raise _fail(f"a watchdog is already running for {home} (pid {watcher}) and restarts the engine; "
                    "`allele stop` it first")
    try:
        cfg, _risk, _organisms = check_config(home)
        watchdog_cfg = load_watchdog_config(home)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    overrides: dict[str, Any] = {k: v for k, v in (("bars", bars), ("speed", speed), ("seed", seed),
                                                   ("order_kernel", order_kernel)) if v is not None}
    try:
        cfg = EngineConfig.model_validate({**cfg.model_dump(), **overrides})
    except ValidationError as exc:
        raise _fail("bad option: " + "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                                             for e in exc.errors())) from None
    supervised = watchdog_cfg.enabled and not no_watchdog
    if supervised and watchdog_cfg.restart_command is not None:
        raise _fail(f"[watchdog] restart_command is set ({watchdog_cfg.restart_command!r}): that is container "
                    "mode, where the engine runs as `allele start --no-watchdog` and the watchdog as "
                    "`python -m allele.watchdog`; start with --no-watchdog, or unset restart_command")
    engine_options = [x for name, value in (("--bars", bars), ("--speed", speed), ("--seed", seed),
                                            ("--order-kernel", order_kernel))
                      if value is not None for x in (name, str(value))]
    if detach:
        _start_detached(home, engine_options, as_json, watchdog=supervised, bounded=cfg.bars > 0)
        return
    if supervised:
        # This process becomes the watchdog; the engine is its child and prints to this terminal.
        configure_watchdog_logging(home)
        args = engine_options + ["--verbose"] * verbose + ["--json"] * as_json
        try:
            code = Supervisor(home, watchdog_cfg, args, finish_on_clean_exit=cfg.bars > 0).run()
        except WatchdogError as exc:
            raise _fail(str(exc)) from None
        if code:
            raise typer.Exit(code)
        return
    built = _build_bundled()
    rows = _plugin_rows(home, built + list_deployed(home))
    _configure_logging(home, verbose)

    def ready(session: TradingSession) -> None:
        engine = session.engine
        info = {"home": str(home), "session": engine.session, "pid": os.getpid(), "plugins": rows,
                "organisms": [{"id": o.id, "strategy": o.strategy.name, "symbols": sorted(o.symbols),
                               "allocation": o.allocation} for o in engine.organisms.values()],
                "ledger": str(ledger_path(home)), "firehose": str(historical_dir(home) / engine.session),
                "closed_stale_orders": session.closed}
        if as_json:
            _print_json(info)
            sys.stdout.flush()
            return
        table = Table("plugin", "kind", "abi", "version", "sha256", "status", title="Allele plugins")
        for r in rows:
            table.add_row(r["name"], r["kind"], r["abi"], r["version"], r["sha256"][:12], r["status"])
        out.print(table)
        kind = "paper" if cfg.mode == "paper" else f"live ({session.header.get('mode', 'live')})"
        orgs = Table("organism", "strategy", "symbols", "allocation USD", title=f"{kind} session {engine.session}")
        for o in info["organisms"]:
            orgs.add_row(o["id"], o["strategy"], ", ".join(o["symbols"]), f"{o['allocation']:.2f}")
        out.print(orgs)
        out.print(f"home {home}: ledger trading.db, market recording historical/{engine.session}/, "
                  "log logs/engine.log")
        out.print("watch: `allele status`, `allele ledger fills`; stop: Ctrl-C or `allele stop`; "
                  "kill switch: `allele kill-switch on`")

    async def main() -> dict[str, Any]:
        session: TradingSession
        try:
            session = await (_open_live(home, cfg) if cfg.mode == "live" else open_paper_session(home, config=cfg))
        except (SessionError, ConfigError) as exc:
            raise _fail(str(exc)) from None
        await serve(session, home, status_interval_s=cfg.status_interval_s, on_ready=ready)
        status: dict[str, Any] = session.engine.status()
        return status

    try:
        final = asyncio.run(main())
    except KeyboardInterrupt:
        return
    if as_json:
        _print_json({"stopped": final})
    else:
        c = final["counters"]
        out.print(f"stopped session {final['session']}: {c['events']} events, {c['signals']} signals, "
                  f"{c['orders']} orders, {c['fills']} fills, {c['refused']} refused by risk; "
                  f"equity {final['equity']:.2f} USD")


async def _open_live(home: Path, cfg: EngineConfig) -> TradingSession:
    """A live session on `[exchange]`, its orders signed with the vault's credentials (unlocked with
    $ALLELE_VAULT_PASSPHRASE or the vault's key file: an engine cannot prompt)."""
    from allele.kernel.engine.live import open_live_session  # ccxt loads only for live sessions
    from allele.vault import Vault, VaultError, default_vault_dir

    try:
        vault = Vault.open(default_vault_dir(home))
    except VaultError as exc:
        raise SessionError(f"[engine] mode = \"live\" needs the vault's credentials: {exc}") from None
    session: TradingSession = await open_live_session(home, credentials=vault, config=cfg,
                                                      host=PluginHost(home, signer=vault))
    return session


def _start_detached(home: Path, engine_options: list[str], as_json: bool = False, *, watchdog: bool = True,
                    bounded: bool = False) -> None:
    """Start the watchdog (which spawns the engine), or with `watchdog=False` the engine alone, in the
    background; return once the engine is ready (its engine.json, and with the watchdog its first heartbeat)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    log_file = home / "logs" / "engine.out"
    if watchdog:
        args = [sys.executable, "-m", "allele.watchdog", *(["--finish-on-clean-exit"] if bounded else []),
                *engine_options]
    else:
        args = engine_argv(engine_options)
    started = time.time()
    with open(log_file, "ab") as sink:
        child = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env={**os.environ, "ALLELE_HOME": str(home)})
    what = "the watchdog" if watchdog else "the engine"
    pid: int | None = None
    with err.status("starting the engine (the first start builds and compiles the bundled plugins)"):
        while time.time() - started < 600:
            if watchdog:
                wstate = read_watchdog_state(home)
                pid = wstate.get("engine_pid") if wstate is not None and wstate.get("pid") == child.pid and \
                    wstate.get("state") == "running" else None
            else:
                pid = child.pid
            state = read_status(home)
            if pid is not None and state is not None and state.get("pid") == pid:
                break
            if child.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:]
                raise _fail(f"{what} exited with status {child.returncode} before the engine was ready; "
                            f"the end of {log_file}:\n{tail}")
            time.sleep(0.2)
        else:
            raise _fail(f"the engine ({what} pid {child.pid}) was not ready after 600 s; see {log_file}")
    watchdog_pid = child.pid if watchdog else None
    if as_json:
        _print_json({"pid": pid, "watchdog_pid": watchdog_pid, "home": str(home), "log": str(log_file),
                     "status": str(home / "engine.json"),
                     "watchdog_state": str(watchdog_state_path(home)) if watchdog else None})
        return
    out.print(f"engine running in the background: pid {pid}, home {home}")
    if watchdog:
        out.print(f"watched by the watchdog (pid {watchdog_pid}): restarted if it crashes, hangs or exits; "
                  "restarts in logs/watchdog.log")
    else:
        out.print("no watchdog: nothing restarts it if it dies")
    out.print(f"output in {log_file}; `allele status` to watch, `allele stop` to stop")


def _wait_gone(check: Callable[[], int | None], deadline: float) -> bool:
    while time.time() < deadline:
        if check() is None:
            return True
        time.sleep(0.1)
    return False


@app.command()
def stop(timeout: Annotated[float, typer.Option(help="seconds to wait for a clean stop")] = 30.0) -> None:
    """Stop the watchdog (so that it does not restart the engine), then the engine (SIGTERM: the ledger and
    the recording are closed cleanly)."""
    home = allele_home()
    watcher = running_watchdog(home)
    pid = running_pid(home)
    if watcher is None and pid is None:
        raise _fail(f"no engine is running for {home}", code=1)
    deadline = time.time() + timeout
    if watcher is not None:
        # The watchdog stops its engine itself (SIGTERM, SIGKILL after [watchdog] stop_timeout_s), then exits.
        os.kill(watcher, signal.SIGTERM)
        if not _wait_gone(lambda: running_watchdog(home), deadline + 5):
            raise _fail(f"the watchdog (pid {watcher}) did not stop within {timeout:g} s; `kill {watcher}` "
                        "again, or `kill -9` it and then `allele stop` the engine", code=1)
    pid = running_pid(home) or pid
    if running_pid(home) is not None:
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(lambda: running_pid(home), deadline):
            raise _fail(f"engine (pid {pid}) did not stop within {timeout:g} s; `kill -9 {pid}` ends it "
                        "(the ledger survives: every write is a committed transaction)", code=1)
    if pid is not None:
        out.print(f"engine (pid {pid}) stopped")
    if watcher is not None:
        out.print(f"watchdog (pid {watcher}) stopped" + ("" if pid is not None else
                                                         " (the engine was not running: it was being restarted)"))


# --- status -----------------------------------------------------------------------------------------------------


async def _ledger_summary(home: Path) -> dict[str, Any] | None:
    path = ledger_path(home)
    if not path.is_file():
        return None
    ledger = await Ledger.open(path)
    try:
        positions = [p for p in await ledger.positions() if p.quantity]
        cash = await ledger.cash()
        refusals = [d for d in await ledger.risk_decisions() if not d["accepted"]]
        open_orders = await ledger.open_orders()
        return {
            "positions": [{"organism": p.organism, "symbol": p.symbol, "quantity": str(p.quantity),
                           "avg_price": str(p.avg_price), "realized_pnl": str(p.realized_pnl)} for p in positions],
            "cash": [{"organism": o, "currency": c, "amount": str(v)} for (o, c), v in sorted(cash.items())],
            "open_orders": len(open_orders),
            "risk_refusals": len(refusals),
            "last_refusals": [{"organism": d["organism"], "symbol": d["symbol"], "rule": d["rule"],
                               "reason": d["reason"]} for d in refusals[-5:]],
        }
    finally:
        await ledger.close()


def _health_check(home: Path, what: str) -> None:
    """`allele status --check engine|watchdog`: one line, exit 0 when healthy, 1 when not (2: bad argument)."""
    if what == "engine":
        pid = running_pid(home)
        try:
            interval = load_engine_config(home).status_interval_s
        except ConfigError:
            interval = 1.0
        stale_after = max(15.0, 3 * interval)
        try:
            age = time.time() - (home / "engine.json").stat().st_mtime
        except FileNotFoundError:
            age = None
        if pid is None:
            raise _fail(f"unhealthy: no engine is running for {home}", code=1)
        if age is None or age > stale_after:
            raise _fail(f"unhealthy: engine (pid {pid}) has not rewritten engine.json for "
                        f"{'ever' if age is None else f'{age:.0f} s'} (hung?)", code=1)
        out.print(f"healthy: engine (pid {pid}) running, engine.json {age:.1f} s old")
    elif what == "watchdog":
        state = read_watchdog_state(home)
        if state is None or not state["alive"]:
            raise _fail(f"unhealthy: no watchdog is running for {home}"
                        + (f" (last state: {state['state']})" if state else ""), code=1)
        if state["state"] not in ("starting", "running", "restarting"):
            raise _fail(f"unhealthy: watchdog (pid {state['pid']}) is {state['state']}", code=1)
        out.print(f"healthy: watchdog (pid {state['pid']}) {state['state']}, {state['restart_count']} restarts")
    else:
        raise _fail(f"--check takes 'engine' or 'watchdog', not {what!r}")


def _describe_watchdog(state: dict[str, Any] | None) -> str:
    """One line on the watchdog for `allele status`."""
    if state is None:
        return "watchdog: never ran here"
    word = state["state"]
    if not state["alive"] and word not in ("stopped", "gave-up"):
        word = f"not running (it died while {word})"
    line = f"watchdog: {word}" + (f" (pid {state['pid']})" if state["alive"] else "")
    line += f", {state['restart_count']} restart{'s' if state['restart_count'] != 1 else ''}"
    if state["restarts"]:
        last = state["restarts"][-1]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["ts"]))
        line += f", last at {when}: {last['cause']}"
    if state["alive"] and state["last_heartbeat_age_s"] is not None:
        line += f"; last heartbeat {state['last_heartbeat_age_s']:.1f} s ago"
    if state.get("gave_up"):
        line += f"; gave up: {state['gave_up']}"
    return line


@app.command()
def status(as_json: JsonFlag = False,
           check: Annotated[str | None, typer.Option(
               "--check", metavar="engine|watchdog",
               help="health check (containers, monitoring): exit 0 if the engine runs and rewrites engine.json, or "
                    "if the watchdog runs and has not given up; else print why and exit 1")] = None) -> None:
    """Engine, watchdog, organisms, positions, P&L, risk state, deployed plugins and quarantined instances."""
    home = allele_home()
    if check is not None:
        _health_check(home, check)
        return
    pid = running_pid(home)
    engine = read_status(home)
    if engine is not None:
        engine["state"] = "running" if pid is not None and engine.get("pid") == pid else "stopped"
    deployed = [str(p) for p in list_deployed(home)]
    quarantined = [q.__dict__ for q in read_quarantine_log(home)]
    kill_reason = killswitch.reason(home)
    ledger = _run(_ledger_summary(home))
    watchdog = read_watchdog_state(home)
    report = {"home": str(home), "engine": engine, "kill_switch": {"engaged": kill_reason is not None,
                                                                  "reason": kill_reason or ""},
              "ledger": ledger, "deployed": deployed, "quarantined": quarantined, "watchdog": watchdog}
    if as_json:
        _print_json(report)
        return
    out.print(f"home: {home}")
    if engine is None:
        out.print("engine: never started here (`allele start`)")
    else:
        c = engine["counters"]
        out.print(f"engine: {engine['state']}" + (f" (pid {pid})" if engine["state"] == "running" else "")
                  + f", session {engine['session']}, up {engine['uptime_s']:.0f} s, {c['events']} events, "
                  f"{c['orders']} orders, {c['fills']} fills, equity {engine['equity']:.2f} USD")
        table = Table("organism", "strategy", "active", "equity", "positions", "open orders", "signals",
                      title="organisms")
        for o in engine["organisms"]:
            held = ", ".join(f"{s} {q:g}" for s, q in o["positions"].items()) or "-"
            table.add_row(o["id"], o["strategy"], "quarantined" if o["quarantined"] else str(o["active"]).lower(),
                          f"{o['equity']:.2f}", held, str(o["open_orders"]), str(o["signals"]))
        out.print(table)
    out.print(_describe_watchdog(watchdog))
    out.print("kill switch: " + (f"ENGAGED ({kill_reason})" if kill_reason is not None else "off"))
    if ledger is not None:
        out.print(f"ledger: {len(ledger['positions'])} open positions, {ledger['open_orders']} open orders, "
                  f"{ledger['risk_refusals']} risk refusals")
        for r in ledger["last_refusals"]:
            out.print(f"  refused {r['organism']} {r['symbol']}: {r['reason']}")
    out.print(f"deployed plugins: {len(deployed)}")
    for p in deployed:
        out.print(f"  {p}")
    if not quarantined:
        out.print("quarantined instances: none")
        return
    table = Table("instance", "sha256", "call", "reason", title=f"quarantined instances ({len(quarantined)})")
    for q in quarantined:
        table.add_row(q["instance"], q["sha256"][:12], q["call"], q["reason"])
    out.print(table)


# --- kill switch ----------------------------------------------------------------------------------------------


@app.command("kill-switch")
def kill_switch(state: Annotated[str, typer.Argument(help="on or off")],
                reason: Annotated[str, typer.Option(help="why (recorded with the switch)")] = "engaged from the CLI",
                as_json: JsonFlag = False) -> None:
    """on: the running engine cancels every open order and refuses new ones until `off`. Survives restarts."""
    home = allele_home()
    if state not in ("on", "off"):
        raise _fail(f"kill-switch takes 'on' or 'off', not {state!r}")
    if state == "on":
        killswitch.engage(home, reason)
    else:
        killswitch.clear(home)
    engaged = killswitch.engaged(home)
    if as_json:
        _print_json({"engaged": engaged, "reason": killswitch.reason(home) or "", "file": str(
            killswitch.kill_switch_path(home))})
        return
    out.print(f"kill switch {'ENGAGED' if engaged else 'off'} ({killswitch.kill_switch_path(home)})"
              + ("; the running engine cancels open orders within a second" if engaged and running_pid(home)
                 else ""))


# --- backtest / replay ----------------------------------------------------------------------------------------


def _parse_params(items: list[str]) -> dict[str, ParamValue]:
    params: dict[str, ParamValue] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise _fail(f"--param takes NAME=VALUE, got {item!r}")
        value: ParamValue
        low = raw.strip().lower()
        if low in ("true", "false"):
            value = low == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        params[key.strip()] = value
    return params


def _progress(label: str) -> tuple[Progress, Callable[[int, int | None], None]]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=True)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int | None) -> None:
        if done % 500 == 0 or done == total:
            progress.update(task, completed=done, total=total)

    return progress, update


@app.command()
def backtest(strategy: Annotated[str, typer.Option(help="a strategy name (deployed or bundled) or a .wasm path")],
             data: Annotated[str, typer.Option(help="a CSV (Date,Open,High,Low,Close,Volume), a recording, or "
                                                    "synthetic:symbol=BTC-USD,bars=2000,seed=1,bar=1d")],
             param: Annotated[list[str] | None, typer.Option(help="a parameter value, NAME=VALUE; repeatable")]
             = None,
             cash: Annotated[float, typer.Option(help="starting cash")] = 10_000.0,
             commission: Annotated[float, typer.Option(help="fee as a fraction of each fill's notional")] = 0.0,
             as_json: JsonFlag = False) -> None:
    """Run one strategy over data through the engine: fills at the next bar's open, no look-ahead."""
    home = allele_home()
    params = _parse_params(param or [])
    try:
        spec = parse_data_spec(data)
    except DataError as exc:
        raise _fail(str(exc)) from None
    progress, update = _progress(f"backtest {strategy}")
    try:
        with progress:
            result = _run(run_backtest(home, strategy, params, spec, cash=cash, commission=commission,
                                       host=_host(home), on_progress=None if as_json else update))
    except (SessionError, DataError, ConfigError, RecordingError) as exc:
        raise _fail(str(exc)) from None
    report = result.to_json()
    if as_json:
        _print_json(report)
        return
    m = result.metrics
    table = Table(show_header=False, box=None, title=f"backtest {result.strategy} {result.params}")
    for key, value in (("data", spec.describe().get("path") or data), ("bars", f"{result.bars:,}"),
                       ("total return", f"{m.return_pct:.2f} %"), ("final equity", f"{m.final_equity:,.2f}"),
                       ("CAGR", f"{m.cagr_pct:.2f} %"), ("Sharpe", f"{m.sharpe:.3f}"),
                       ("Sortino", f"{m.sortino:.3f}"), ("max drawdown", f"{m.max_drawdown_pct:.2f} %"),
                       ("trades", str(m.trades)), ("win rate", f"{m.win_rate_pct:.1f} %"),
                       ("exposure", f"{m.exposure_pct:.1f} %"), ("fees", f"{m.fees:,.2f}"),
                       ("orders", str(result.orders)), ("risk refusals", str(result.refused))):
        table.add_row(Text(key, style="bold"), str(value))
    out.print(table)


@app.command()
def replay(recording: Annotated[Path | None, typer.Argument(help="a session folder or file under "
                                                                 ".allele/historical/")] = None,
           ledger: Annotated[Path | None, typer.Option(help="where the replay's ledger goes (default "
                                                            ".allele/replays/<session>-<n>.db)")] = None,
           as_json: JsonFlag = False) -> None:
    """Run a recorded paper session through the same pipeline into a fresh ledger; without RECORDING, list them."""
    home = allele_home()
    if recording is None:
        sessions = list_sessions(historical_dir(home))
        if as_json:
            _print_json([{"name": s.name, "path": str(s.path), "files": s.files, "bytes": s.bytes}
                         for s in sessions])
            return
        table = Table("session", "files", "size", "path", title=f"recordings in {historical_dir(home)}")
        for s in sessions:
            table.add_row(s.name, str(s.files), f"{s.bytes / 2**20:.1f} MiB", str(s.path))
        out.print(table)
        return
    if ledger is None:
        replays = home / "replays"
        # named after the session folder, also for `replay .` or one file of it
        name = (recording.resolve().parent if recording.is_file() else recording.resolve()).name
        n = 1
        while (replays / f"{name}-{n}.db").exists():
            n += 1
        ledger = replays / f"{name}-{n}.db"

    progress, update = _progress(f"replay {recording.name}")

    async def main() -> dict[str, Any]:
        session = await open_replay_session(home, recording, ledger, host=_host(home))
        try:
            await session.run(on_progress=None if as_json else (lambda n: update(n, None)))
            status: dict[str, Any] = session.engine.status()
            return status
        finally:
            await session.close()

    try:
        with progress:
            final = _run(main())
    except (SessionError, RecordingError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json({"ledger": str(ledger), **final})
        return
    c = final["counters"]
    out.print(f"replayed {recording}: {c['events']} events, {c['orders']} orders, {c['fills']} fills, "
              f"{c['refused']} refused by risk; ledger {ledger}")


# --- ledger ---------------------------------------------------------------------------------------------------

ledger_app = typer.Typer(help="What the ledger (.allele/trading.db) holds.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
OrganismOpt = Annotated[str | None, typer.Option(help="only this organism")]
LimitOpt = Annotated[int, typer.Option(help="show at most this many rows (newest)")]


def _open_ledger(home: Path) -> Callable[[Callable[[Ledger], Awaitable[T]]], T]:
    path = ledger_path(home)
    if not path.is_file():
        raise _fail(f"no ledger at {path} yet: `allele start` creates it", code=1)

    def use(fn: Callable[[Ledger], Awaitable[T]]) -> T:
        return _with_ledger(home, fn)

    return use


def _emit(rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    if as_json:
        _print_json(rows)
        return
    if not rows:
        out.print(f"{title}: none")
        return
    table = Table(*rows[0].keys(), title=title)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r.values()))
    out.print(table)


@ledger_app.command("positions")
def ledger_positions(organism: OrganismOpt = None, as_json: JsonFlag = False) -> None:
    """Open positions per organism and symbol, with average price and realized P&L."""
    rows = _open_ledger(allele_home())(lambda db: db.positions(organism))
    _emit([{"organism": p.organism, "symbol": p.symbol, "quantity": str(p.quantity), "avg_price": str(p.avg_price),
            "realized_pnl": str(p.realized_pnl)} for p in rows if p.quantity], "positions", as_json)


@ledger_app.command("orders")
def ledger_orders(organism: OrganismOpt = None, limit: LimitOpt = 50, as_json: JsonFlag = False) -> None:
    """Orders, newest last, with status and filled quantity."""
    rows = _open_ledger(allele_home())(lambda db: db.orders(organism))
    _emit([{"client_order_id": o.client_order_id, "organism": o.organism, "symbol": o.symbol, "side": o.side,
            "type": o.order_type, "quantity": str(o.quantity),
            "limit_price": None if o.limit_price is None else str(o.limit_price), "status": o.status,
            "filled": str(o.filled_quantity), "ts_ns": o.ts_ns} for o in rows[-limit:]], "orders", as_json)


@ledger_app.command("fills")
def ledger_fills(organism: OrganismOpt = None, limit: LimitOpt = 50, as_json: JsonFlag = False) -> None:
    """Fills in the order they were applied."""
    rows = _open_ledger(allele_home())(lambda db: db.fills(organism=organism))
    _emit([{"client_order_id": f.client_order_id, "organism": f.organism, "symbol": f.symbol, "side": f.side,
            "quantity": str(f.quantity), "price": str(f.price), "fee": str(f.fee), "ts_ns": f.ts_ns}
           for f in rows[-limit:]], "fills", as_json)


@ledger_app.command("pnl")
def ledger_pnl(organism: OrganismOpt = None, as_json: JsonFlag = False) -> None:
    """Per organism: cash, realized P&L, fees, open positions marked at their last fill price, equity."""

    async def compute(db: Ledger) -> list[dict[str, Any]]:
        fills = await db.fills(organism=organism)
        last: dict[str, Decimal] = {}
        fees: dict[str, Decimal] = {}
        for f in fills:
            last[f.symbol] = f.price
            fees[f.organism] = fees.get(f.organism, Decimal(0)) + f.fee
        cash = await db.cash(organism)
        rows = []
        for org in sorted({o for o, _ in cash}):
            positions = await db.positions(org)
            realized = sum((p.realized_pnl for p in positions), Decimal(0))
            marked = sum((p.quantity * last.get(p.symbol, p.avg_price) for p in positions), Decimal(0))
            unrealized = sum((p.quantity * (last.get(p.symbol, p.avg_price) - p.avg_price) for p in positions),
                             Decimal(0))
            money = sum((v for (o, _c), v in cash.items() if o == org), Decimal(0))
            rows.append({"organism": org, "cash": str(money), "realized_pnl": str(realized),
                         "unrealized_pnl": str(unrealized), "fees": str(fees.get(org, Decimal(0))),
                         "equity": str(money + marked)})
        return rows

    _emit(_open_ledger(allele_home())(compute), "P&L", as_json)
