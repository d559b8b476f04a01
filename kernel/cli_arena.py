"""`allele arena`: evolve, rank and fund organisms.

    allele arena run --data prices.csv --population 24 --generations 6 --seed 1 --workers 2 [--json]
    allele arena leaderboard [--json]
    allele arena show FINGERPRINT [--json]          (a unique prefix is enough)
    allele arena fund FINGERPRINT --allocation 20   /   allele arena defund FINGERPRINT
    allele arena review [--json]                    (promote / defund on the paper and live record)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from allele.kernel import cli as _cli
from allele.kernel.arena.allocator import transition
from allele.kernel.arena.arena import DEFAULT_STRATEGIES, Arena, ArenaConfig, GenerationSummary
from allele.kernel.arena.executor import Executor, LocalExecutor, RayExecutor
from allele.kernel.arena.fitness import FitnessConfig
from allele.kernel.arena.live import MIN_RETURNS, review_lifecycle
from allele.kernel.arena.store import ArenaStore
from allele.kernel.backtest import DataError, load_bars, parse_data_spec
from allele.kernel.cli import JsonFlag, _fail, _print_json, err, out
from allele.kernel.config import ConfigError
from allele.kernel.engine.session import SessionError
from allele.kernel.paths import allele_home
from allele.kernel.plugin.errors import PluginError
from allele.kernel.risk import load_risk_config

app: typer.Typer = _cli.app
arena_app = typer.Typer(help="The genetic arena: evolve organisms, rank them honestly, fund what survives "
                             "out of sample.", no_args_is_help=True)
app.add_typer(arena_app, name="arena")


def _store(home: Path) -> ArenaStore:
    return ArenaStore(home / "trading.db")


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


@arena_app.command("run")
def run(data: Annotated[str, typer.Option(help="CSV, or synthetic:symbol=BTC-USD,bars=2000,seed=1,bar=1d")]
        = "synthetic:bars=2000,seed=1",
        population: Annotated[int, typer.Option(help="organisms per generation")] = 24,
        generations: Annotated[int, typer.Option(help="generations to run")] = 6,
        seed: Annotated[int, typer.Option(help="the same seed gives the same generations")] = 0,
        workers: Annotated[int, typer.Option(help="evaluation processes")] = 1,
        executor: Annotated[str, typer.Option(help="local (process pool) or ray")] = "local",
        address: Annotated[str | None, typer.Option(help="Ray cluster address (with --executor ray)")] = None,
        strategies: Annotated[str, typer.Option(help="comma-separated strategy names")]
        = ",".join(DEFAULT_STRATEGIES),
        commission: Annotated[float, typer.Option(help="fee as a fraction of each fill's notional")] = 0.001,
        windows: Annotated[int, typer.Option(help="walk-forward windows")] = 5,
        dsr_threshold: Annotated[float, typer.Option(help="out-of-sample deflated Sharpe needed for funding")]
        = 0.95,
        as_json: JsonFlag = False) -> None:
    """Evolve organisms on DATA; per generation: best/median fitness, funded count, PBO."""
    home = allele_home()
    if executor not in ("local", "ray"):
        raise _fail(f"--executor is local or ray, not {executor!r}")
    try:
        spec = parse_data_spec(data)
        if spec.kind == "recording":
            raise DataError(f"{data}: the arena evaluates bars (a CSV or synthetic:...), not a recording")
        bars = load_bars(spec)
        risk = load_risk_config(home)
        config = ArenaConfig(population=population, generations=generations, seed=seed, windows=windows,
                             global_cap=risk.global_capital_cap,
                             strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
                             fitness=FitnessConfig(dsr_threshold=dsr_threshold))
    except (DataError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None

    def show(s: GenerationSummary) -> None:
        if as_json:
            return
        err.print(Text(f"generation {s.generation}: ", style="bold") + Text(
            f"{s.evaluated} organisms ({s.cached} cached, {s.stillborn} stillborn), trials {s.trials}, "
            f"best {_fmt(s.best_fitness)}, median {_fmt(s.median_fitness)}, funded {s.funded}, "
            f"PBO {_fmt(s.pbo, '.2f')}, niches {s.archive_niches}, {s.seconds:.1f} s"))

    ex: Executor
    try:
        with err.status(f"starting {workers} evaluation worker(s)"):
            ex = (LocalExecutor(home, bars, commission=commission, workers=workers) if executor == "local"
                  else RayExecutor(home, bars, commission=commission, workers=workers, address=address))
        try:
            result = Arena(home, bars, config, ex).run(on_generation=show)
        finally:
            ex.close()
    except (SessionError, PluginError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json(result.to_json())
        return
    _board(result.leaderboard[:20], f"arena run {result.run_id}: {result.trials} trials")
    if not result.funded:
        out.print("funded: none (no organism's out-of-sample deflated Sharpe reached "
                  f"{dsr_threshold:g} over {result.trials} trials)")


def _board(rows: Any, title: str) -> None:
    table = Table("fingerprint", "strategy", "genome", "fitness", "Sortino", "DSR", "trades", "status", "capital",
                  title=title)
    for r in rows:
        genome = r["genome"] if "genome" in r else r["spec"]["genome"]
        strategy = r["strategy"] if "strategy" in r else r["spec"]["strategy"]
        status = r.get("status") or ("funded" if r["funded"] else "protected" if r["protected"] else "")
        table.add_row(r["fingerprint"][:12], strategy, ", ".join(f"{k}={v}" for k, v in genome.items()),
                      _fmt(r["fitness"]), _fmt(r["sortino"]), _fmt(r["dsr"]), str(r["trades"]), status,
                      f"{r['allocation']:.2f}")
    out.print(table)


@arena_app.command("leaderboard")
def leaderboard(limit: Annotated[int, typer.Option(help="rows to show")] = 30, as_json: JsonFlag = False) -> None:
    """Every organism the arena has scored: funded first, then by fitness."""
    store = _store(allele_home())
    try:
        rows = store.standing()
    finally:
        store.close()
    if as_json:
        _print_json({"leaderboard": rows[:limit], "funded": [r for r in rows if r["funded"]]})
        return
    _board(rows[:limit], f"arena leaderboard ({len(rows)} organisms)")


def _one(store: ArenaStore, prefix: str) -> dict[str, Any]:
    rows = store.standing(prefix)
    if not rows:
        raise _fail(f"no organism with fingerprint {prefix!r} in the arena (see `allele arena leaderboard`)")
    if len(rows) > 1:
        raise _fail(f"{prefix!r} matches {len(rows)} organisms; give more of the fingerprint")
    row: dict[str, Any] = rows[0]
    return row


@arena_app.command("show")
def show(fingerprint: Annotated[str, typer.Argument(help="fingerprint or a unique prefix")],
         as_json: JsonFlag = False) -> None:
    """One organism: its spec, metrics, lineage and lifecycle."""
    store = _store(allele_home())
    try:
        row = _one(store, fingerprint)
        report = {**row, "lineage": store.lineage(row["fingerprint"]), "events": store.events(row["fingerprint"])}
    finally:
        store.close()
    if as_json:
        _print_json(report)
        return
    table = Table(show_header=False, box=None, title=f"organism {row['fingerprint']}")
    for key in ("status", "allocation", "fitness", "sortino", "dsr", "oos_sharpe", "trades", "protected", "funded",
                "reason", "run_id", "generation"):
        table.add_row(Text(key, style="bold"), str(row[key]))
    table.add_row(Text("spec", style="bold"), str(row["spec"]))
    out.print(table)
    for step in report["lineage"]:
        parents = ", ".join(p[:12] for p in step["parents"]) or "-"
        out.print(f"  {step['fingerprint'][:12]} generation {step['generation']} by {step['operator']} of {parents}")
    for e in report["events"]:
        out.print(f"  {e['old']} -> {e['new']} (generation {e['generation']}): {e['reason']}")


def _move(prefix: str, fund: bool, allocation: float, reason: str) -> None:
    store = _store(allele_home())
    try:
        row = _one(store, prefix)
        old = row["status"]
        new = ("paper" if old in ("candidate", "hibernating") else old) if fund else "hibernating"
        if fund and allocation <= 0:
            raise _fail("--allocation must be positive")
        if new != old:
            try:
                t = transition(old, new, row["fingerprint"], reason, int(row["generation"]))
            except ValueError as exc:
                raise _fail(str(exc)) from None
            store.add_events([t])
        store.set_status(row["fingerprint"], new, allocation if fund else 0.0, fund, reason)
    finally:
        store.close()
    out.print(f"{row['fingerprint'][:12]}: {old} -> {new}, capital {allocation if fund else 0.0:.2f} USD ({reason})")


@arena_app.command("fund")
def fund(fingerprint: Annotated[str, typer.Argument(help="fingerprint or a unique prefix")],
         allocation: Annotated[float, typer.Option(help="USD of capital")] = 10.0,
         reason: Annotated[str, typer.Option(help="recorded with the decision")] = "funded by the operator") -> None:
    """Fund an organism by hand (recorded as a lifecycle event with the reason)."""
    _move(fingerprint, True, allocation, reason)


@arena_app.command("defund")
def defund(fingerprint: Annotated[str, typer.Argument(help="fingerprint or a unique prefix")],
           reason: Annotated[str, typer.Option(help="recorded with the decision")] = "defunded by the operator")\
        -> None:
    """Take an organism's capital away; it hibernates."""
    _move(fingerprint, False, 0.0, reason)


@arena_app.command("review")
def review(min_returns: Annotated[int, typer.Option(help="equity returns an organism needs before its record "
                                                         "counts")] = MIN_RETURNS,
           min_trades: Annotated[int, typer.Option(help="fills an organism needs before its record counts")] = 5,
           as_json: JsonFlag = False) -> None:
    """Judge the funded organisms on their paper/live record: promote a positive paper record to live,
    defund (hibernate) an organism whose live fitness fell to zero or below. Every move is recorded."""
    home = allele_home()
    store = _store(home)
    try:
        standing = store.standing()
        generation = max((int(r["generation"]) for r in standing), default=0)
        moves, records = review_lifecycle(store, generation, FitnessConfig(min_trades=min_trades), min_returns)
    finally:
        store.close()
    if as_json:
        _print_json({"moves": [{"fingerprint": m.fingerprint, "old": m.old, "new": m.new, "reason": m.reason}
                               for m in moves], "records": [r.to_json() for r in records.values()]})
        return
    table = Table("organism", "engine id", "fills", "returns", "live fitness", "record", title="live records")
    for r in records.values():
        table.add_row(r.fingerprint[:12], r.organism, str(r.trades), str(r.returns),
                      _fmt(r.fitness.value if r.fitness else None), r.reason)
    out.print(table)
    for m in moves:
        out.print(f"{m.fingerprint[:12]}: {m.old} -> {m.new} ({m.reason})")
    if not moves:
        out.print("no lifecycle changes")
