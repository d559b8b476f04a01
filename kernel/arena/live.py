"""Live fitness and the lifecycle review: how the organisms the arena funded do where they actually trade.

The arena funds on backtests (walk-forward, deflated Sharpe); this module closes the loop with what
happened afterwards. The engine samples every organism's marked-to-market equity every
`equity_interval_s` of event time into the ledger (`equity_history`). An arena organism trades under
the id :func:`organism_id` (``arena-`` + the first 12 hex digits of its fingerprint).

Its *live return stream* is the step-to-step change of those samples within each session: the first
sample of a session is not a return (a restart, or capital added between sessions, is not P&L). Its
*trades* are its fills. :func:`live_fitness` scores that stream with the same
:func:`~allele.kernel.arena.fitness.fitness` the arena ranks by, annualized from the sampling interval.
An organism that has not yet traded ``min_trades`` times, or has fewer than ``min_returns`` returns,
has no measurement: it is neither promoted nor defunded on noise.

:func:`review_lifecycle` then applies :func:`~allele.kernel.arena.allocator.review` (paper -> live on a
positive paper record, live -> hibernating when live fitness falls to zero or below, ...) and records
every move with its reason in the arena's tables. A hibernating organism loses its capital and its
funding; a later arena run may bring it back through paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .allocator import Lifecycle, Transition, review
from .fitness import DEFAULT_CONFIG, Fitness, FitnessConfig, fitness
from .store import ArenaStore

__all__ = ["LiveRecord", "live_fitness", "organism_id", "review_lifecycle"]

SECONDS_PER_YEAR = 365.25 * 24 * 3600
MIN_RETURNS = 30


def organism_id(fingerprint: str) -> str:
    """The engine's id for an arena organism: ``arena-`` + the first 12 hex digits of its fingerprint."""
    return f"arena-{fingerprint[:12]}"


@dataclass(frozen=True)
class LiveRecord:
    """One funded organism's track record where it trades. ``fitness`` is None while it is unmeasured."""

    fingerprint: str
    organism: str
    returns: int
    trades: int
    periods_per_year: float
    fitness: Fitness | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        f = self.fitness
        return {"fingerprint": self.fingerprint, "organism": self.organism, "returns": self.returns,
                "trades": self.trades, "periods_per_year": self.periods_per_year,
                "fitness": None if f is None else f.value, "sortino": None if f is None else f.sortino,
                "max_drawdown": None if f is None else f.max_drawdown, "reason": self.reason}


def _returns(samples: list[tuple[str, int, float]]) -> tuple[np.ndarray, float]:
    """Per-session simple returns of (session, ts_ns, equity) samples, and the median sample spacing (s)."""
    returns: list[float] = []
    gaps: list[int] = []
    previous: tuple[str, int, float] | None = None
    for session, ts_ns, equity in samples:
        if previous is not None and previous[0] == session and ts_ns > previous[1]:
            gaps.append(ts_ns - previous[1])
            returns.append(equity / previous[2] - 1.0 if previous[2] > 0 else -math.inf)
        previous = (session, ts_ns, equity)
    spacing = float(np.median(gaps)) / 1e9 if gaps else 0.0
    return np.asarray(returns, dtype=np.float64), spacing


def live_fitness(store: ArenaStore, fingerprints: list[str], config: FitnessConfig = DEFAULT_CONFIG,
                 min_returns: int = MIN_RETURNS) -> dict[str, LiveRecord]:
    """The live track record of each fingerprint, read from the equity samples and fills in `store`'s file.

    `config.min_trades` and `min_returns` decide when a record counts as a measurement; the annualization
    comes from the median spacing of the samples (not from `config.periods_per_year`, which is the
    backtest bar's)."""
    records = {}
    for fp in sorted(fingerprints):
        oid = organism_id(fp)
        returns, spacing = _returns(store.equity_samples(oid))
        trades = store.fill_count(oid)
        per_year = SECONDS_PER_YEAR / spacing if spacing > 0 else 0.0
        if trades < config.min_trades or len(returns) < min_returns or per_year <= 0:
            why = (f"unmeasured: {trades} fills (need {config.min_trades}), {len(returns)} equity returns "
                   f"(need {min_returns})")
            records[fp] = LiveRecord(fp, oid, len(returns), trades, per_year, None, why)
            continue
        scored = fitness(returns, trades, FitnessConfig(periods_per_year=per_year,
                                                        drawdown_penalty=config.drawdown_penalty,
                                                        min_trades=config.min_trades))
        records[fp] = LiveRecord(fp, oid, len(returns), trades, per_year, scored, scored.reason)
    return records


def review_lifecycle(store: ArenaStore, generation: int, config: FitnessConfig = DEFAULT_CONFIG,
                     min_returns: int = MIN_RETURNS) -> tuple[list[Transition], dict[str, LiveRecord]]:
    """Apply the lifecycle review to every organism in the arena's standing and record the moves.

    Funded now = funded in the standing. Live fitness = :func:`live_fitness` of the organisms in paper or
    live. A move to hibernating (or retired) takes the organism's capital and funding away; every move
    is recorded in ``arena_events`` with its reason. Returns the moves and the live records."""
    standing = store.standing()
    current: dict[str, Lifecycle] = {r["fingerprint"]: r["status"] for r in standing}
    funded_now = {r["fingerprint"] for r in standing if r["funded"]}
    trading = [fp for fp, status in current.items() if status in ("paper", "live")]
    records = live_fitness(store, trading, config, min_returns)
    measured = {fp: rec.fitness.value for fp, rec in records.items() if rec.fitness is not None}
    moves = review(current, measured, funded_now, generation)
    rows = {r["fingerprint"]: r for r in standing}
    for move in moves:
        row = rows[move.fingerprint]
        keeps_capital = move.new in ("paper", "live")
        store.set_status(move.fingerprint, move.new, row["allocation"] if keeps_capital else 0.0,
                         bool(row["funded"]) and keeps_capital, move.reason)
    store.add_events(moves)
    return moves, records
