"""The arena: evolve organisms on data, rank them honestly, fund only what survives out of sample.

    arena = Arena(home, bars, ArenaConfig(population=24, generations=6, seed=1), executor)
    result = arena.run(on_generation=print)

One generation, walk-forward: the data's bar steps are cut into `windows` equal windows; generation g
selects on the in-sample windows [0, k) and judges on window k only, k rising from 1 in the first
generation to windows - 1 in the last (`walk_forward_step`).

1. evaluate every organism not yet evaluated on this data (the ledger caches evaluations by
   organism and data fingerprint); an organism whose genome its strategy refuses is stillborn;
2. fitness on the in-sample returns (Sortino minus a drawdown penalty); organisms with too few
   trades are protected: not ranked, not killed;
3. rank with a penalty for return correlation with better-ranked organisms; offer every organism
   to the MAP-Elites archive (turnover, holding period, beta, exposure, venue);
4. out of sample: the deflated Sharpe ratio of each ranked organism's window-k returns, deflated
   for every organism the arena has evaluated on this data (not just this generation); funded
   when it reaches `dsr_threshold` and its in-sample fitness is positive;
5. the probability of backtest overfitting of the generation (CSCV over the organisms' returns);
6. breed: the best quarter and the archive's elites survive, protected organisms stay (up to a
   quarter of the population, so that idle genomes cannot crowd it out), the rest are children:
   crossover of two parents of the same strategy (then a light mutation), or a mutation of one;
   a child identical to an organism already seen is mutated again.

At the end, capital goes to the funded organisms of the last generation in proportion to fitness
under the global cap (`allocator.allocate`), each funded candidate moves to paper, and every
standing, lineage record and transition is in the ledger. All randomness comes from
`random.Random(seed)`: the same seed gives the same generations with any number of workers.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from allele.kernel.backtest import Bars
from allele.kernel.plugin.host import LoadedPlugin, PluginHost
from allele.kernel.plugin.manifest import Manifest

from . import genome as g
from .allocator import Lifecycle, Transition, allocate, transition
from .archive import Archive, Behaviour
from .evaluate import Evaluation, bars_fingerprint
from .executor import Executor
from .fitness import Candidate, Fitness, FitnessConfig, Ranked, Verdict, fitness, oos_verdict, rank
from .live import review_lifecycle
from .organism import Operator, OrganismSpec, lineage_record
from .stats import pbo_cscv, sharpe_ratio
from .store import ArenaStore

DEFAULT_STRATEGIES = ("sma_cross", "mean_reversion", "momentum_c")


def walk_forward_step(generation: int, generations: int, windows: int) -> int:
    """The out-of-sample window of `generation`: steps 1 .. windows-1 spread over the run, so the first
    generation selects on window 0 and is judged on window 1, and the last selects on every window but
    the final one and is judged on that."""
    return 1 + (generation * (windows - 1)) // max(generations, 1)


@dataclass(frozen=True)
class ArenaConfig:
    population: int = 24
    generations: int = 6
    seed: int = 0
    windows: int = 5
    elite_fraction: float = 0.25
    crossover_rate: float = 0.4
    mutation_rate: float = 0.3
    global_cap: float = 100.0
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    pbo_splits: int = 8

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError(f"population must be at least 2, got {self.population}")
        if self.generations < 1:
            raise ValueError(f"generations must be at least 1, got {self.generations}")
        if self.windows < 2:
            raise ValueError(f"windows must be at least 2 (in-sample and out-of-sample), got {self.windows}")

    def to_json(self) -> dict[str, Any]:
        return {"population": self.population, "generations": self.generations, "seed": self.seed,
                "windows": self.windows, "elite_fraction": self.elite_fraction,
                "crossover_rate": self.crossover_rate, "mutation_rate": self.mutation_rate,
                "global_cap": self.global_cap, "strategies": list(self.strategies),
                "fitness": vars(self.fitness), "pbo_splits": self.pbo_splits}


@dataclass(frozen=True)
class Scored:
    """One organism's numbers in one generation."""

    spec: OrganismSpec
    evaluation: Evaluation
    fitness: Fitness | None
    ranked: Ranked | None
    verdict: Verdict | None

    @property
    def funded(self) -> bool:
        return bool(self.verdict and self.verdict.funded and self.fitness and self.fitness.value > 0)


@dataclass(frozen=True)
class GenerationSummary:
    generation: int
    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]
    evaluated: int
    cached: int
    stillborn: int
    trials: int
    best_fitness: float | None
    median_fitness: float | None
    funded: int
    pbo: float | None
    archive_niches: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class ArenaResult:
    run_id: str
    data_fingerprint: str
    generations: tuple[GenerationSummary, ...]
    leaderboard: tuple[dict[str, Any], ...]
    funded: tuple[dict[str, Any], ...]
    trials: int
    archive: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "data_fingerprint": self.data_fingerprint, "trials": self.trials,
                "generations": [s.to_json() for s in self.generations], "leaderboard": list(self.leaderboard),
                "funded": list(self.funded), "archive": self.archive}


class Arena:
    def __init__(self, home: Path, bars: Bars, config: ArenaConfig, executor: Executor, *,
                 host: PluginHost | None = None, store: ArenaStore | None = None) -> None:
        from allele.kernel.engine.session import resolve_strategy

        self.home, self.bars, self.config, self.executor = home, bars, config, executor
        self.host = host or PluginHost(home)
        self.store = store or ArenaStore(home / "trading.db")
        self.data_fingerprint = bars_fingerprint(bars)
        self.plugins: dict[str, LoadedPlugin] = {}
        for name in config.strategies:
            self.plugins[name] = self.host.load(resolve_strategy(home, name))
        self.rng = random.Random(config.seed)
        steps = len(bars) - 1
        self.windows = [(int(w[0]), int(w[-1]) + 1) for w in np.array_split(np.arange(steps), config.windows)]
        self.trial_oos: dict[str, list[float]] = {}  # fingerprint -> per-window OOS sharpe, for deflation
        self.seen: dict[str, OrganismSpec] = {}
        self.archive = Archive()

    def manifest(self, spec: OrganismSpec) -> Manifest:
        manifest: Manifest = self.plugins[spec.strategy].manifest
        return manifest

    # --- variation --------------------------------------------------------------------------------------

    def _spec(self, strategy: str, genome_: dict[str, Any]) -> OrganismSpec:
        return OrganismSpec(strategy=strategy, plugin_sha256=self.plugins[strategy].sha256, genome=genome_)

    def seed_population(self) -> list[tuple[OrganismSpec, list[OrganismSpec], Operator]]:
        out: list[OrganismSpec] = []
        names = list(self.config.strategies)
        for i in range(self.config.population):
            name = names[i % len(names)]
            out.append(self._unique(self._spec(name, g.random_genome(self.plugins[name].manifest, self.rng)), out))
        return [(s, [], "seed") for s in out]

    def _unique(self, spec: OrganismSpec, taken: list[OrganismSpec]) -> OrganismSpec:
        """`spec`, mutated until its fingerprint is new to this run (at most 20 tries)."""
        fps = {t.fingerprint for t in taken}
        for _ in range(20):
            if spec.fingerprint not in self.seen and spec.fingerprint not in fps:
                return spec
            spec = self._spec(spec.strategy, g.mutate(spec.genome, self.manifest(spec), self.rng,
                                                      self.config.mutation_rate))
        return spec

    def breed(self, scored: list[Scored]) -> list[tuple[OrganismSpec, list[OrganismSpec], Operator]]:
        ranked = sorted((s for s in scored if s.ranked and s.ranked.rank is not None),
                        key=lambda s: s.ranked.rank if s.ranked and s.ranked.rank else 0)
        protected = [s for s in scored if s.ranked and s.ranked.protected]
        n_elite = max(2, int(self.config.population * self.config.elite_fraction))
        survivors = [s.spec for s in ranked[:n_elite]]
        for elite in self.archive.elites():
            if elite.fingerprint in self.seen and len(survivors) < self.config.population // 2:
                spec = self.seen[elite.fingerprint]
                if spec not in survivors:
                    survivors.append(spec)
        # Protected organisms are not killed for acting too little, but they may not crowd out the next
        # generation: at most a quarter of it, those closest to having acted enough first.
        waiting = sorted((s for s in protected if s.spec not in survivors),
                         key=lambda s: (-s.evaluation.trades, s.spec.fingerprint))
        keep = survivors + [s.spec for s in waiting[: max(1, self.config.population // 4)]]
        keep = keep[: self.config.population // 2]
        parents_pool = survivors or keep or [s.spec for s in scored]
        out: list[tuple[OrganismSpec, list[OrganismSpec], Operator]] = [(s, [s], "import") for s in keep]
        children: list[OrganismSpec] = []
        while len(out) < self.config.population:
            a = self._tournament(parents_pool, ranked)
            mates = [p for p in parents_pool if p.strategy == a.strategy and p != a]
            if mates and self.rng.random() < self.config.crossover_rate:
                b = self.rng.choice(mates)
                child_genome = g.crossover(a.genome, b.genome, self.manifest(a), self.rng)
                child_genome = g.mutate(child_genome, self.manifest(a), self.rng, rate=0.1, scale=0.05)
                child = self._unique(self._spec(a.strategy, child_genome), children)
                out.append((child, [a, b], "crossover"))
            else:
                child = self._unique(self._spec(a.strategy, g.mutate(a.genome, self.manifest(a), self.rng,
                                                                     self.config.mutation_rate)), children)
                out.append((child, [a], "mutation"))
            children.append(child)
        return out

    def _tournament(self, pool: Sequence[OrganismSpec], ranked: list[Scored], size: int = 3) -> OrganismSpec:
        order = {s.spec.fingerprint: i for i, s in enumerate(ranked)}
        picks = [self.rng.choice(list(pool)) for _ in range(size)]
        return min(picks, key=lambda s: (order.get(s.fingerprint, len(order)), s.fingerprint))

    # --- one generation ---------------------------------------------------------------------------------

    def evaluate(self, specs: Sequence[OrganismSpec]) -> tuple[list[Evaluation], int]:
        cached: dict[str, Evaluation] = {}
        for s in specs:
            hit = self.store.evaluation(s.fingerprint, self.data_fingerprint)
            if hit is not None:
                cached[s.fingerprint] = hit
        todo = [s for s in specs if s.fingerprint not in cached]
        fresh = self.executor.map(todo) if todo else []
        self.store.put_evaluations(list(zip(todo, fresh, strict=True)))
        by_fp = {**cached, **{e.fingerprint: e for e in fresh}}
        return [by_fp[s.fingerprint] for s in specs], len(cached)

    def score(self, generation: int, specs: list[OrganismSpec],
              evaluations: list[Evaluation]) -> tuple[list[Scored], GenerationSummary]:
        t0 = time.monotonic()
        cfg = self.config
        k = walk_forward_step(generation, cfg.generations, cfg.windows)
        is_start, is_end = self.windows[0][0], self.windows[k - 1][1]
        oos_start, oos_end = self.windows[k]
        ok = [(s, e) for s, e in zip(specs, evaluations, strict=True) if e.ok]
        for s, e in ok:
            self.seen.setdefault(s.fingerprint, s)
            r = np.asarray(e.returns)
            self.trial_oos.setdefault(s.fingerprint, [0.0] * cfg.windows)
            for w, (a, b) in enumerate(self.windows):
                self.trial_oos[s.fingerprint][w] = sharpe_ratio(r[a:b])
        fits: dict[str, Fitness] = {}
        candidates = []
        for s, e in ok:
            r = np.asarray(e.returns[is_start:is_end])
            f = fitness(r, e.trades_between(is_start, is_end), cfg.fitness)
            fits[s.fingerprint] = f
            candidates.append(Candidate(s.fingerprint, r, f))
            self.archive.offer(s.fingerprint, Behaviour(venue=s.exchange, **e.behaviour), f.value)
        ranking = {r.fingerprint: r for r in rank(candidates, cfg.fitness)}
        trials = len(self.trial_oos)
        trial_sharpes = [v[k] for v in self.trial_oos.values()]
        scored = []
        for s, e in zip(specs, evaluations, strict=True):
            if not e.ok:
                scored.append(Scored(s, e, None, None, None))
                continue
            ranked = ranking[s.fingerprint]
            verdict = None
            if not ranked.protected:
                verdict = oos_verdict(np.asarray(e.returns[oos_start:oos_end]), trial_sharpes, trials, cfg.fitness)
            scored.append(Scored(s, e, fits[s.fingerprint], ranked, verdict))
        pbo = None
        usable = [np.asarray(e.returns[is_start:oos_end]) for _, e in ok]
        if len(usable) >= 2 and is_start < oos_end and oos_end - is_start >= cfg.pbo_splits:
            matrix = np.column_stack(usable)
            if np.any(np.std(matrix, axis=0) > 0):
                pbo = pbo_cscv(matrix, n_splits=cfg.pbo_splits, seed=cfg.seed).pbo
        values = [f.value for f in fits.values() if not f.protected and np.isfinite(f.value)]
        summary = GenerationSummary(
            generation, (is_start, is_end), (oos_start, oos_end), len(specs), 0,
            len(specs) - len(ok), trials, max(values) if values else None,
            statistics.median(values) if values else None, sum(1 for s in scored if s.funded), pbo,
            len(self.archive), time.monotonic() - t0)
        return scored, summary

    # --- the run ----------------------------------------------------------------------------------------

    def run(self, on_generation: Callable[[GenerationSummary], None] | None = None) -> ArenaResult:
        cfg = self.config
        run_id = f"arena-{cfg.seed}-{self.data_fingerprint[:8]}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}" \
                 f"-{time.time_ns() % 1_000_000_000:09d}"
        self.store.start_run(run_id, cfg.to_json(), self.data_fingerprint)
        population = self.seed_population()
        summaries: list[GenerationSummary] = []
        scored: list[Scored] = []
        for generation in range(cfg.generations):
            t0 = time.monotonic()
            unique: dict[str, tuple[OrganismSpec, list[OrganismSpec], Operator]] = {}
            for entry in population:  # a genome space too small for the population can repeat itself
                unique.setdefault(entry[0].fingerprint, entry)
            population = list(unique.values())
            specs = [s for s, _, _ in population]
            self.store.put_lineage([lineage_record(s, parents, op, generation) for s, parents, op in population
                                    if op != "import"], run_id)
            evaluations, cached = self.evaluate(specs)
            scored, summary = self.score(generation, specs, evaluations)
            summary = GenerationSummary(**{**summary.to_json(), "cached": cached,
                                           "seconds": time.monotonic() - t0})
            summaries.append(summary)
            self._record_standing(scored, run_id, generation, {})
            if on_generation is not None:
                on_generation(summary)
            if generation + 1 < cfg.generations:
                population = self.breed(scored)
        funded = {s.spec.fingerprint: s.ranked.adjusted for s in scored if s.funded and s.ranked}
        allocation = allocate(funded, cfg.global_cap) if funded else {}
        transitions = self._record_standing(scored, run_id, cfg.generations - 1, allocation)
        self.store.add_events(transitions)
        # The organisms already trading are judged on their paper/live record, not on this run's backtest.
        review_lifecycle(self.store, cfg.generations - 1, cfg.fitness)
        self.store.finish_run(run_id, len(self.trial_oos), [s.to_json() for s in summaries], self.archive.grid())
        board = tuple(self._row(s, allocation) for s in sorted(
            (s for s in scored if s.fitness),
            key=lambda s: (not s.funded, bool(s.ranked and s.ranked.protected),
                           -(s.ranked.adjusted if s.ranked else 0), s.spec.fingerprint)))
        return ArenaResult(run_id, self.data_fingerprint, tuple(summaries), board,
                           tuple(r for r in board if r["funded"]), len(self.trial_oos), self.archive.grid())

    def _row(self, s: Scored, allocation: dict[str, float]) -> dict[str, Any]:
        return {"fingerprint": s.spec.fingerprint, "strategy": s.spec.strategy, "genome": s.spec.genome,
                "fitness": s.fitness.value if s.fitness else None,
                "adjusted": s.ranked.adjusted if s.ranked else None,
                "sortino": s.fitness.sortino if s.fitness else None,
                "max_drawdown": s.fitness.max_drawdown if s.fitness else None,
                "trades": s.evaluation.trades, "protected": bool(s.ranked and s.ranked.protected),
                "dsr": s.verdict.dsr if s.verdict else None,
                "oos_sharpe": s.verdict.sharpe if s.verdict else None,
                "funded": s.funded, "allocation": allocation.get(s.spec.fingerprint, 0.0),
                "reason": s.verdict.reason if s.verdict else (s.fitness.reason if s.fitness else s.evaluation.error)}

    def _record_standing(self, scored: list[Scored], run_id: str, generation: int,
                         allocation: dict[str, float]) -> list[Transition]:
        rows, moves = [], []
        previous = {r["fingerprint"]: r["status"] for r in self.store.standing()}
        for s in scored:
            fp = s.spec.fingerprint
            status: Lifecycle = previous.get(fp, "candidate")
            if fp in allocation and status == "candidate":
                moves.append(transition("candidate", "paper", fp, f"funded: {s.verdict.reason if s.verdict else ''}",
                                        generation))
                status = "paper"
            row = self._row(s, allocation)
            rows.append({"fingerprint": fp, "spec": s.spec.canonical(), "status": status,
                         "allocation": repr(allocation.get(fp, 0.0)), "fitness": row["fitness"],
                         "sortino": row["sortino"], "dsr": row["dsr"], "oos_sharpe": row["oos_sharpe"],
                         "trades": row["trades"], "protected": int(row["protected"]), "funded": int(fp in allocation),
                         "reason": row["reason"] or "", "run_id": run_id, "generation": generation})
        self.store.put_standing(rows)
        return moves
