"""Benchmark: the whole engine pipeline in paper mode, event to ledger.

    .venv/bin/python bench/pipeline.py [--bars N] [--rounds R] [--json]

venue -> strategy -> risk gate -> order kernel -> venue fill -> ledger, through `open_paper_session`
(temporary ALLELE_HOME, the synthetic market, the simulated venue, the software order kernel, a
SQLite ledger, the firehose). Variants, each over R rounds (rounds interleave the variants):

- baselines: the same sessions with every organism's strategy swapped for `NoCallStrategy`, a
  Python stand-in that makes no plugin call and emits no signal (so no orders either): the floor
  of the engine loop;
- each bundled strategy alone (sma_cross, mean_reversion, momentum_c, completeness_arb), batch 256;
- sma_cross with batch_events=1 (one on-event component call per event);
- the four default organisms together; and once more with ledger_sync="full" (fsync per commit).

Figures: events/s (engine counters / wall time of `session.run`), CPU µs per event
(time.process_time, every thread), orders, fills, and the latency from the start of `on_event` to
the order leaving the order kernel (`venue.submit`, called on SUBMIT_TO_VENUE). That latency
excludes the strategy call, which the engine makes per chunk before `on_event`: its cost is
reported beside it, per event and per call. Goals: >= 20,000 events/s per core with a bundled
strategy, p99 < 1 ms. Results also go to build/bench/pipeline.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ALLELE_COMPILE_CACHE", str(ROOT / "build" / "compile-cache"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from allele.kernel.domain import FinalizedOrder, MarketEvent  # noqa: E402
from allele.kernel.engine.config import DEFAULT_ORGANISMS, EngineConfig, OrganismSpec  # noqa: E402
from allele.kernel.engine.session import BUNDLED_BUILD_DIR, open_paper_session  # noqa: E402

OUT = ROOT / "build" / "bench" / "pipeline.json"
RATE_GOAL = 20_000  # events/s per core, whole pipeline, with a bundled strategy
P99_GOAL_US = 1_000  # event -> order out of the order kernel
STRATEGIES = ("sma_cross", "mean_reversion", "momentum_c", "completeness_arb")
SPEC = {s.strategy: s for s in DEFAULT_ORGANISMS}
LEDGER_WRITES = ("record_risk_decision", "record_order", "record_order_update", "audit")
START_NS = 1_700_000_000_000_000_000  # fixed, so every round sees the same market

err = Console(stderr=True)


class NoCallStrategy:
    """The "no plugin call" baseline: the StrategyPlugin surface the engine uses, in plain Python.

    on_batch / on_event return no signals, so a baseline session sends no orders: it measures the
    engine loop itself (venue advance and background liquidity, portfolio marks, order-kernel
    reference prices, firehose, bus, the chunking and the to_thread hop of the batch call)."""

    def __init__(self, real: Any) -> None:
        self.loaded = real.loaded  # .sha256, .name, .manifest of the plugin it replaces
        self.params = dict(real.params)
        self.name = f"{real.name} (no call)"
        self.quarantine_reason: str | None = None

    def on_event(self, event: MarketEvent) -> list[Any]:
        return []

    def on_batch(self, columns: dict[str, Any]) -> list[Any]:
        return []


@dataclass(frozen=True)
class Variant:
    name: str
    specs: tuple[OrganismSpec, ...]
    binary_markets: bool
    batch_events: int = 256
    ledger_sync: Literal["full", "normal"] = "normal"
    stub: bool = False
    baseline: str | None = None  # the variant its events/s is divided by

    @property
    def bundled(self) -> bool:
        """A variant that runs bundled strategies (not a baseline)."""
        return not self.stub


def variants() -> list[Variant]:
    cont = (SPEC["sma_cross"],)
    binary = (SPEC["completeness_arb"],)
    out = [
        Variant("baseline (continuous)", cont, False, stub=True),
        Variant("baseline (all markets)", DEFAULT_ORGANISMS, True, stub=True),
    ]
    for name in STRATEGIES[:3]:
        out.append(Variant(name, (SPEC[name],), False, baseline="baseline (continuous)"))
    out.append(Variant("completeness_arb", binary, True, baseline="baseline (all markets)"))
    out.append(Variant("sma_cross, batch_events=1", cont, False, batch_events=1, baseline="baseline (continuous)"))
    out.append(Variant("all four", DEFAULT_ORGANISMS, True, baseline="baseline (all markets)"))
    out.append(Variant("all four, ledger_sync=full", DEFAULT_ORGANISMS, True, ledger_sync="full",
                       baseline="baseline (all markets)"))
    return out


def _pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(int(q * len(ordered)), len(ordered) - 1)])


async def run_once(v: Variant, bars: int, record: bool) -> dict[str, Any]:
    """One paper session of the variant in a fresh home; only `session.run` is timed."""
    with tempfile.TemporaryDirectory(prefix="allele-bench-") as tmp:
        home = Path(tmp)
        cfg = EngineConfig(bars=bars, speed=0, record=record, ledger_sync=v.ledger_sync,
                           binary_markets=v.binary_markets, batch_events=v.batch_events)
        session = await open_paper_session(home, config=cfg, organisms=v.specs, session="bench", start_ns=START_NS)
        engine = session.engine
        if v.stub:
            for org in engine.organisms.values():
                org.strategy = NoCallStrategy(org.strategy)

        # Instrumentation: instance attributes shadow the methods the engine calls through self.
        clock = time.perf_counter_ns
        current = [0, 0]  # start of the current on_event, ledger time spent before it
        latencies: list[int] = []
        latencies_ex_ledger: list[int] = []
        strategy_calls: list[int] = []
        on_event = engine.on_event
        submit = engine.venue.submit
        strategy_signals = engine.strategy_signals

        async def timed_on_event(event: MarketEvent, signals: Any = ()) -> None:
            current[0], current[1] = clock(), spent["ledger"]
            await on_event(event, signals)

        def timed_submit(order: FinalizedOrder, sent_ns: int) -> None:
            latencies.append(clock() - current[0])
            latencies_ex_ledger.append(clock() - current[0] - (spent["ledger"] - current[1]))
            submit(order, sent_ns)

        async def timed_strategy(events: list[MarketEvent]) -> Any:
            t0 = clock()
            out = await strategy_signals(events)
            strategy_calls.append(clock() - t0)
            return out

        # Where the wall time goes: every awaited ledger call, and the venue's advance (matching engine,
        # background liquidity), summed over the run.
        spent = {"ledger": 0, "venue_advance": 0}

        def timed_ledger(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                t0 = clock()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    spent["ledger"] += clock() - t0
            return wrapper

        for name in LEDGER_WRITES:
            setattr(engine.ledger, name, timed_ledger(getattr(engine.ledger, name)))
        advance = engine.venue.advance

        def timed_advance(ts_ns: int, event: MarketEvent | None = None) -> Any:
            t0 = clock()
            try:
                return advance(ts_ns, event)
            finally:
                spent["venue_advance"] += clock() - t0

        engine.venue.advance = timed_advance
        engine.on_event = timed_on_event
        engine.venue.submit = timed_submit
        engine.strategy_signals = timed_strategy

        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await session.run()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        await session.close()
        c = engine.counters
        events = max(c.events, 1)
        return {"events": c.events, "wall_s": wall, "cpu_s": cpu, "events_per_s": c.events / wall,
                "cpu_us_per_event": cpu / events * 1e6, "signals": c.signals, "orders": c.orders, "fills": c.fills,
                "refused": c.refused, "kernel_rejects": c.kernel_rejects, "plugin_errors": c.plugin_errors,
                "latency_us": {"n": len(latencies), "p50": _pct(latencies, 0.50) / 1e3,
                               "p99": _pct(latencies, 0.99) / 1e3,
                               "max": max(latencies, default=0) / 1e3},
                "latency_ex_ledger_us": {"p50": _pct(latencies_ex_ledger, 0.50) / 1e3,
                                         "p99": _pct(latencies_ex_ledger, 0.99) / 1e3,
                                         "max": max(latencies_ex_ledger, default=0) / 1e3},
                "strategy_us_per_event": sum(strategy_calls) / events / 1e3,
                "ledger_us_per_event": spent["ledger"] / events / 1e3,
                "venue_advance_us_per_event": spent["venue_advance"] / events / 1e3,
                "strategy_call_us": {"calls": len(strategy_calls), "p50": _pct(strategy_calls, 0.5) / 1e3,
                                     "max": max(strategy_calls, default=0) / 1e3}}


def summarize(v: Variant, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(f: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(f(r) for r in runs)

    rates = [r["events_per_s"] for r in runs]
    return {
        "variant": v.name, "strategies": [s.strategy for s in v.specs], "stub": v.stub,
        "binary_markets": v.binary_markets, "batch_events": v.batch_events, "ledger_sync": v.ledger_sync,
        "baseline": v.baseline, "rounds": len(runs), "events": runs[0]["events"],
        "events_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "cpu_us_per_event": {"median": med(lambda r: r["cpu_us_per_event"]),
                             "min": min(r["cpu_us_per_event"] for r in runs)},
        "wall_s": med(lambda r: r["wall_s"]),
        "orders": runs[0]["orders"], "fills": runs[0]["fills"], "signals": runs[0]["signals"],
        "refused": runs[0]["refused"], "kernel_rejects": runs[0]["kernel_rejects"],
        "plugin_errors": runs[0]["plugin_errors"],
        "latency_us": {"orders": runs[0]["latency_us"]["n"], "p50": med(lambda r: r["latency_us"]["p50"]),
                       "p99": med(lambda r: r["latency_us"]["p99"]), "max": med(lambda r: r["latency_us"]["max"]),
                       "p99_worst_round": max(r["latency_us"]["p99"] for r in runs)},
        "latency_ex_ledger_us": {"p50": med(lambda r: r["latency_ex_ledger_us"]["p50"]),
                                 "p99": med(lambda r: r["latency_ex_ledger_us"]["p99"]),
                                 "max": med(lambda r: r["latency_ex_ledger_us"]["max"])},
        "strategy_us_per_event": med(lambda r: r["strategy_us_per_event"]),
        "ledger_us_per_event": med(lambda r: r["ledger_us_per_event"]),
        "venue_advance_us_per_event": med(lambda r: r["venue_advance_us_per_event"]),
        "strategy_call_us": {"calls": runs[0]["strategy_call_us"]["calls"],
                             "p50": med(lambda r: r["strategy_call_us"]["p50"]),
                             "max": med(lambda r: r["strategy_call_us"]["max"])},
        "deterministic": len({(r["orders"], r["fills"], r["events"]) for r in runs}) == 1,
    }


def verdicts(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rate: every variant with bundled strategies. p99: those with ledger_sync="normal", with the time spent in
    ledger writes taken out (the goal excludes the ledger's durable write)."""
    bundled = [r for r in results if not r["stub"]]
    rate = {r["variant"]: r["events_per_s"]["median"] for r in bundled}
    p99 = {r["variant"]: r["latency_ex_ledger_us"]["p99"] for r in bundled
           if r["latency_us"]["orders"] and r["ledger_sync"] == "normal"}
    best = max(rate, key=rate.__getitem__) if rate else None
    return {
        "rate_goal": RATE_GOAL, "rate_met": any(x >= RATE_GOAL for x in rate.values()),
        "rate_met_by": sorted(k for k, x in rate.items() if x >= RATE_GOAL),
        "rate_not_met_by": sorted(k for k, x in rate.items() if x < RATE_GOAL),
        "best_rate": {"variant": best, "events_per_s": rate[best] if best else None},
        "p99_goal_us": P99_GOAL_US, "p99_met": bool(p99) and all(x < P99_GOAL_US for x in p99.values()),
        "p99_met_by": sorted(k for k, x in p99.items() if x < P99_GOAL_US),
        "p99_not_met_by": sorted(k for k, x in p99.items() if x >= P99_GOAL_US),
    }


def print_table(report: dict[str, Any]) -> None:
    out = Console(width=max(Console().width, 190))
    by_name = {r["variant"]: r for r in report["results"]}
    t = Table(title=f"Engine pipeline, paper mode: {report['bars']:,} bars, {report['rounds']} rounds, medians "
                    "(latency: on_event start -> order out of the order kernel, strategy call excluded)")
    for col in ("variant", "sync", "events", "events/s (min)", "vs base", "CPU µs/ev", "orders", "fills",
                "lat. p50/p99/max µs", "ex-ledger p50/p99 µs", "strategy µs/ev", "call p50/max ms", "ledger µs/ev",
                "venue µs/ev"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in report["results"]:
        base = by_name.get(r["baseline"] or "")
        ratio = f"{r['events_per_s']['median'] / base['events_per_s']['median']:.2f}x" if base else "1.00x"
        lat = r["latency_us"]
        lat_s = f"{lat['p50']:,.0f} / {lat['p99']:,.0f} / {lat['max']:,.0f}" if lat["orders"] else "-"
        ex = r["latency_ex_ledger_us"]
        ex_s = f"{ex['p50']:,.0f} / {ex['p99']:,.0f}" if lat["orders"] else "-"
        sc = r["strategy_call_us"]
        t.add_row(r["variant"], r["ledger_sync"], f"{r['events']:,}",
                  f"{r['events_per_s']['median']:,.0f} ({r['events_per_s']['min']:,.0f})", ratio,
                  f"{r['cpu_us_per_event']['median']:.0f}", f"{r['orders']:,}", f"{r['fills']:,}", lat_s, ex_s,
                  f"{r['strategy_us_per_event']:.1f}", f"{sc['p50'] / 1e3:.2f} / {sc['max'] / 1e3:.2f}",
                  f"{r['ledger_us_per_event']:.0f}", f"{r['venue_advance_us_per_event']:.0f}")
    out.print(t)
    v = report["verdicts"]

    def listing(names: list[str], fmt: Callable[[dict[str, Any]], str]) -> str:
        return ", ".join(f"{k} {fmt(by_name[k])}" for k in names) or "none"

    rate = listing(v["rate_not_met_by"], lambda r: f"{r['events_per_s']['median']:,.0f}")
    out.print(f"goal >= {RATE_GOAL:,} events/s per core with a bundled strategy: "
              f"{'met' if v['rate_met'] else 'NOT met'} (best: {v['best_rate']['variant']}, "
              f"{v['best_rate']['events_per_s']:,.0f}/s; below the goal: {rate}; "
              f"met by: {', '.join(v['rate_met_by']) or 'none'})")
    over = listing(v["p99_not_met_by"], lambda r: f"{r['latency_ex_ledger_us']['p99']:,.0f} µs")
    under = listing(v["p99_met_by"], lambda r: f"{r['latency_ex_ledger_us']['p99']:,.0f} µs")
    out.print(f"goal p99 < {P99_GOAL_US:,} µs, event -> order out of the order kernel, excluding the ledger's writes "
              f"(ledger_sync=normal) and the batched strategy call: {'met' if v['p99_met'] else 'NOT met'} "
              f"(over: {over}; under: {under})")
    out.print("The strategy is called once per chunk of batch_events events, before on_event (Engine.strategy_signals)"
              ", so the latency above excludes it. Spread over the events it is 'strategy µs/ev'; for an event at "
              "the start of a chunk it adds up to one whole call ('call p50/max'). 'ledger' and 'venue' are the wall "
              "time spent awaiting ledger writes and in venue.advance (matching engine, background liquidity).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1500, help="bars per session (default 1500)")
    parser.add_argument("--rounds", type=int, default=3, help="sessions per variant (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--no-record", action="store_true", help="do not write the firehose (record=False)")
    parser.add_argument("--only", default="", help="comma-separated variant names to run (baselines always run)")
    args = parser.parse_args()

    missing = [s for s in STRATEGIES if not (BUNDLED_BUILD_DIR / "strategies" / f"{s}.wasm").is_file()]
    if missing:
        err.print(f"bundled strategies not built: {', '.join(missing)}; run `.venv/bin/allele build --bundled`")
        return 2
    chosen = variants()
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        chosen = [v for v in chosen if v.stub or v.name in wanted]
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in chosen}

    async def go() -> None:
        # One untimed warm-up session per variant: imports, the compile cache, first-call effects.
        for v in chosen:
            err.print(f"warm-up: {v.name}")
            await run_once(v, max(args.bars // 20, 20), not args.no_record)
        for i in range(args.rounds):
            for v in chosen:
                r = await run_once(v, args.bars, not args.no_record)
                runs[v.name].append(r)
                err.print(f"round {i + 1}/{args.rounds} {v.name}: {r['events']:,} events, "
                          f"{r['events_per_s']:,.0f}/s, {r['orders']} orders, p99 {r['latency_us']['p99']:.0f} µs")

    started = time.perf_counter()
    asyncio.run(go())
    results = [summarize(v, runs[v.name]) for v in chosen]
    report = {"bars": args.bars, "rounds": args.rounds, "record": not args.no_record,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                          "load_avg": os.getloadavg()},
              "elapsed_s": round(time.perf_counter() - started, 1), "results": results,
              "verdicts": verdicts(results)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
        err.print(f"written to {OUT.relative_to(ROOT)}; {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
