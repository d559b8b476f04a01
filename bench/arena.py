"""Benchmark: the arena's evaluation throughput and memory.

    .venv/bin/python bench/arena.py [--bars 2000] [--organisms 48] [--population 1000] [--json]

Figures, each beside a baseline measured in the same run:
- baseline: the strategy batch calls alone (one `on_batch` over all bars per organism, in this process):
  the bars/s a strategy itself can do, with no engine behind it;
- 1 worker: `Evaluator.evaluate` in this process (batch call + the engine acting on the signals + the
  equity curve): evaluations/s and organism-bars/s, and the ratio to the baseline;
- 2 workers: the same through `LocalExecutor(workers=2)` (spawned processes), timed on a second pass
  (the first one warms every plugin in every worker);
- memory: one generation of an arena with `--population` organisms on 2 workers: peak resident memory
  (VmHWM) of the parent and of each worker, and their sum.
Goals (issue 4): >= 1,000,000 organism-bars/s on 2 workers; < 2 GB with 1,000 organisms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ALLELE_COMPILE_CACHE", str(Path(__file__).resolve().parent.parent / "build" / "compile-cache"))

from allele.kernel.arena import genome as g
from allele.kernel.arena.arena import Arena, ArenaConfig
from allele.kernel.arena.evaluate import Evaluator
from allele.kernel.arena.executor import LocalExecutor
from allele.kernel.arena.organism import OrganismSpec
from allele.kernel.backtest import load_bars, parse_data_spec
from allele.kernel.engine.session import resolve_strategy
from allele.kernel.plugin.host import PluginHost

STRATEGIES = ("sma_cross", "mean_reversion", "momentum_c")
BAR_GOAL = 1_000_000
MEMORY_GOAL = 2 * 2**30


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a process, bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--organisms", type=int, default=48, help="organisms per throughput measurement")
    parser.add_argument("--population", type=int, default=1000, help="population of the memory measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="allele-bench-arena-"))
    bars = load_bars(parse_data_spec(f"synthetic:bars={args.bars},seed=1"))
    host = PluginHost(home)
    plugins = {name: host.load(resolve_strategy(home, name)) for name in STRATEGIES}
    rng = random.Random(1)
    specs = []
    while len(specs) < args.organisms:
        name = STRATEGIES[len(specs) % len(STRATEGIES)]
        spec = OrganismSpec(strategy=name, plugin_sha256=plugins[name].sha256,
                            genome=g.random_genome(plugins[name].manifest, rng))
        specs.append(spec)
    n_bars = len(bars)

    evaluator = Evaluator(home, bars, commission=0.001, host=host)
    evaluator.evaluate(specs[0])  # warm: instances, compiled code
    # Baseline: the strategies' batch calls alone.
    t0 = time.perf_counter()
    for s in specs:
        inst = evaluator._instance(s.plugin_sha256)
        try:
            inst.configure(dict(s.genome))
            inst.on_batch(evaluator._batch)
        except Exception:
            pass
    base_s = time.perf_counter() - t0
    # 1 worker: the whole evaluation in this process.
    t0 = time.perf_counter()
    results = [evaluator.evaluate(s) for s in specs]
    one_s = time.perf_counter() - t0
    # 2 workers.
    with LocalExecutor(home, bars, commission=0.001, workers=2) as ex:
        # Warm: one whole pass, so each worker has instantiated every plugin (~0.1-0.2 s each, once per
        # worker) before the timed pass, as in an arena run past its first generation.
        ex.map(specs)
        t0 = time.perf_counter()
        ex.map(specs)
        two_s = time.perf_counter() - t0
    # Memory: one generation of a large population on 2 workers.
    with LocalExecutor(home, bars, commission=0.001, workers=2) as ex:
        arena = Arena(home, bars, ArenaConfig(population=args.population, generations=1, seed=2), ex, host=host)
        t0 = time.perf_counter()
        arena.run()
        pop_s = time.perf_counter() - t0
        pool = ex._pool
        workers = [vm_hwm(p) for p in (pool._processes if pool else {})]  # type: ignore[union-attr]
    parent = vm_hwm(os.getpid())
    total = parent + sum(workers)
    ok = sum(1 for r in results if r.ok)
    report: dict[str, Any] = {
        "bars": n_bars, "organisms": len(specs), "stillborn": len(specs) - ok,
        "baseline_batch_only": {"seconds": base_s, "organism_bars_per_s": len(specs) * n_bars / base_s},
        "one_worker": {"seconds": one_s, "evaluations_per_s": len(specs) / one_s,
                       "organism_bars_per_s": len(specs) * n_bars / one_s},
        "two_workers": {"seconds": two_s, "evaluations_per_s": len(specs) / two_s,
                        "organism_bars_per_s": len(specs) * n_bars / two_s},
        "memory": {"population": args.population, "generation_seconds": pop_s, "parent_bytes": parent,
                   "worker_bytes": workers, "total_bytes": total},
    }
    base = report["baseline_batch_only"]["organism_bars_per_s"]
    report["ratios_vs_baseline"] = {"one_worker": report["one_worker"]["organism_bars_per_s"] / base,
                                    "two_workers": report["two_workers"]["organism_bars_per_s"] / base}
    report["goals"] = {
        "organism_bars_per_s_two_workers": {"goal": BAR_GOAL,
                                            "value": report["two_workers"]["organism_bars_per_s"],
                                            "met": report["two_workers"]["organism_bars_per_s"] >= BAR_GOAL},
        "memory_1000_organisms": {"goal_bytes": MEMORY_GOAL, "value": total, "met": total < MEMORY_GOAL},
    }
    out_dir = Path(__file__).resolve().parent.parent / "build" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "arena.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"arena evaluation, {n_bars} bars, {len(specs)} organisms ({len(specs) - ok} stillborn), "
          f"strategies {', '.join(STRATEGIES)}")
    print(f"  baseline (batch calls only, 1 process): {base:>12,.0f} organism-bars/s   1.00x")
    for key, label in (("one_worker", "evaluate, 1 process      "), ("two_workers", "evaluate, 2 workers      ")):
        r = report[key]
        print(f"  {label}              : {r['organism_bars_per_s']:>12,.0f} organism-bars/s   "
              f"{report['ratios_vs_baseline'][key]:.2f}x   {r['evaluations_per_s']:.1f} evaluations/s")
    m = report["memory"]
    print(f"  memory, population {m['population']} on 2 workers: parent {m['parent_bytes'] / 2**20:,.0f} MiB, "
          f"workers {', '.join(f'{w / 2**20:,.0f}' for w in m['worker_bytes'])} MiB, total "
          f"{m['total_bytes'] / 2**20:,.0f} MiB ({m['generation_seconds']:.0f} s for the generation)")
    for name, goal in report["goals"].items():
        print(f"  goal {name}: {'met' if goal['met'] else 'NOT met'} ({goal['value']:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
