"""Capital allocation and the organism lifecycle.

Lifecycle
---------
::

    candidate -> paper -> live -> hibernating -> paper ...
                   |        |          |
                   +--------+----------+--> retired   (terminal)

``candidate``: evaluated in backtests only. ``paper``: trades on live data without capital. ``live``: trades
real capital. ``hibernating``: defunded after failing live; may come back through paper. ``retired``: gone
for good. Every move goes through :func:`transition`, which refuses anything not in :data:`TRANSITIONS`.

Allocation rules (:func:`allocate`)
-----------------------------------
1. Only organisms with a finite fitness > 0 are eligible; the rest get nothing.
2. Capital ``global_cap`` is split in proportion to fitness.
3. Nobody gets more than ``max_share * global_cap``: an organism over the limit is pinned at it and the
   remainder is split among the others in proportion to their fitness, repeated until no one is over (water
   filling). If everyone is pinned, the rest of the cap stays undeployed: the cap is a ceiling, not a target.
4. If any allocation is below ``min_allocation``, the organism with the lowest fitness (ties: the
   lexicographically greatest fingerprint) is dropped and steps 2-4 rerun on the rest, until every remaining
   allocation is at least ``min_allocation`` (a dust position costs more in fees and attention than it earns).
5. The total never exceeds ``global_cap`` (asserted, relative tolerance 1e-9). The result depends only on the
   input mapping's contents, never its order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["TRANSITIONS", "Lifecycle", "Transition", "allocate", "review", "transition"]

Lifecycle = Literal["candidate", "paper", "live", "hibernating", "retired"]
_STATES: frozenset[str] = frozenset(get_args(Lifecycle))

TRANSITIONS: dict[Lifecycle, frozenset[Lifecycle]] = {
    "candidate": frozenset({"paper"}),
    "paper": frozenset({"live", "hibernating", "retired"}),
    "live": frozenset({"hibernating", "paper", "retired"}),
    "hibernating": frozenset({"paper", "retired"}),
    "retired": frozenset(),
}
"""Allowed lifecycle moves; staying in place is not a transition."""

_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Transition:
    """One lifecycle move of one organism, for the ledger: who, from where, to where, why, and when."""

    fingerprint: str
    old: Lifecycle
    new: Lifecycle
    reason: str
    generation: int


def transition(old: Lifecycle, new: Lifecycle, fingerprint: str, reason: str, generation: int) -> Transition:
    """Build the :class:`Transition` ``old -> new``, or raise ValueError naming the illegal move.

    Also raises ValueError for an unknown state, an empty fingerprint or reason, or a negative generation.
    """
    for name, state in (("old", old), ("new", new)):
        if state not in _STATES:
            raise ValueError(f"{name} state {state!r} is not a lifecycle state ({', '.join(sorted(_STATES))})")
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "nothing (terminal)"
        raise ValueError(f"illegal lifecycle move {old} -> {new} for {fingerprint}; {old} may move to {allowed}")
    if not fingerprint:
        raise ValueError("fingerprint must not be empty")
    if not reason:
        raise ValueError("a transition needs a reason")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation must be an integer >= 0, got {generation!r}")
    return Transition(fingerprint, old, new, reason, generation)


# ---------------------------------------------------------------------------------------- allocation


def _water_fill(fitness: dict[str, float], cap: float, limit: float) -> dict[str, float]:
    """Split ``cap`` in proportion to ``fitness`` with nobody above ``limit`` (rules 2 and 3)."""
    pinned: dict[str, float] = {}
    free = dict(fitness)
    while free:
        remaining = cap - math.fsum(pinned.values())
        total = math.fsum(free[k] for k in sorted(free))
        if not total > 0.0:
            return pinned
        shares = {k: remaining * (free[k] / total) for k in sorted(free)}
        over = [k for k, v in shares.items() if v > limit]
        if not over:
            return {**pinned, **shares}
        for k in over:
            pinned[k] = limit
            del free[k]
    return pinned


def allocate(
    funded: Mapping[str, float], global_cap: float, max_share: float = 0.5, min_allocation: float = 1.0
) -> dict[str, float]:
    """Capital per fingerprint, proportional to risk-adjusted fitness; see the module docstring for the rules.

    ``funded`` maps fingerprint -> fitness (only finite values > 0 count). ``global_cap`` >= 0 is the total
    capital available, ``max_share`` in (0, 1] the largest fraction of it one organism may hold,
    ``min_allocation`` >= 0 the smallest allocation worth making. Returns only the organisms that get capital,
    sorted by fingerprint; every amount is ``>= min_allocation`` and ``> 0``. Raises ValueError for
    out-of-range arguments.
    """
    for name, v in (("global_cap", global_cap), ("max_share", max_share), ("min_allocation", min_allocation)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if global_cap < 0:
        raise ValueError(f"global_cap must be >= 0, got {global_cap!r}")
    if not 0.0 < max_share <= 1.0:
        raise ValueError(f"max_share must be in (0, 1], got {max_share!r}")
    if min_allocation < 0:
        raise ValueError(f"min_allocation must be >= 0, got {min_allocation!r}")

    eligible = {
        fp: float(f)
        for fp, f in funded.items()
        if isinstance(f, int | float) and not isinstance(f, bool) and math.isfinite(f) and f > 0
    }
    if eligible:  # scale so the largest weight is 1: sums of huge fitness values cannot overflow
        top = max(eligible.values())
        eligible = {k: v / top for k, v in eligible.items() if v / top > 0.0}  # underflow: a share of nothing
    cap = float(global_cap)
    limit = max_share * cap
    while True:
        shares = {k: v for k, v in _water_fill(eligible, cap, limit).items() if v > 0.0}
        if len(shares) < len(eligible):  # a fitness so small its share underflowed to zero
            eligible = {k: eligible[k] for k in shares}
        if all(v >= min_allocation for v in shares.values()):
            break
        by_fingerprint_desc = sorted(eligible, reverse=True)
        weakest = min(by_fingerprint_desc, key=lambda k: eligible[k])  # min keeps the first of equal keys
        del eligible[weakest]
    total = math.fsum(shares.values())
    assert total <= cap * (1.0 + _TOLERANCE) + _TOLERANCE, f"allocated {total} above the cap {cap}"
    return {k: shares[k] for k in sorted(shares)}


# -------------------------------------------------------------------------------------------- review


def review(
    current: Mapping[str, Lifecycle],
    live_fitness: Mapping[str, float],
    funded_now: set[str],
    generation: int,
) -> list[Transition]:
    """The lifecycle moves the arena makes this generation, sorted by fingerprint (at most one per organism).

    ``current``: every organism's state; ``live_fitness``: fitness measured on live or paper trading (absent =
    no measurement yet; NaN counts as failing); ``funded_now``: the organisms the arena funds this generation
    (e.g. those with a funded :class:`~allele.kernel.arena.fitness.Verdict`). Rules, first match wins:

    * candidate, funded -> paper ("funded: starts paper trading"): capital is never the first step.
    * paper, measured fitness <= 0 -> hibernating ("paper fitness ... <= 0").
    * paper, funded, measured fitness > 0 -> live ("funded, paper fitness 1.3 > 0: promoted ..."): capital
      follows a positive paper record, never a backtest alone; unmeasured, it stays in paper.
    * live, measured fitness <= 0 -> hibernating ("defunded: live fitness -0.12 <= 0").
    * live, not funded -> paper ("defunded: no longer funded by the arena").
    * hibernating, funded -> paper ("refunded: back to paper trading").
    * otherwise nothing; retired is terminal, and retiring is an explicit :func:`transition`, never automatic.

    Fingerprints in ``funded_now`` or ``live_fitness`` without a ``current`` state are ignored (register them
    as candidates first). Raises ValueError for unknown states.
    """
    moves: list[Transition] = []

    def failing(fp: str) -> float | None:
        if fp not in live_fitness:
            return None
        value = float(live_fitness[fp])
        return value if math.isnan(value) or value <= 0 else None

    for fp in sorted(current):
        state = current[fp]
        if state not in _STATES:
            raise ValueError(f"{fp} is in unknown state {state!r}")
        funded = fp in funded_now
        bad = failing(fp)
        if state == "candidate" and funded:
            moves.append(transition(state, "paper", fp, "funded: starts paper trading", generation))
        elif state == "paper" and bad is not None:
            moves.append(transition(state, "hibernating", fp, f"paper fitness {bad:.4g} <= 0", generation))
        elif state == "paper" and funded and fp in live_fitness:
            moves.append(transition(state, "live", fp, f"funded, paper fitness {float(live_fitness[fp]):.4g} > 0: "
                                    "promoted from paper to live capital", generation))
        elif state == "live" and bad is not None:
            moves.append(transition(state, "hibernating", fp, f"defunded: live fitness {bad:.4g} <= 0", generation))
        elif state == "live" and not funded:
            moves.append(transition(state, "paper", fp, "defunded: no longer funded by the arena", generation))
        elif state == "hibernating" and funded:
            moves.append(transition(state, "paper", fp, "refunded: back to paper trading", generation))
    return moves
