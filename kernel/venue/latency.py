"""Seeded network latency and a scheduler that delivers requests to the matching engine in arrival order.

    venue = SimulatedVenue(engine, LatencyModel(base_ns=200_000, jitter_median_ns=50_000), seed=7)
    venue.submit(order, owner="me", sent_ns=t)          # returns the arrival time it drew
    emitted = venue.advance_to(t + 1_000_000)            # everything that arrived by then, matched

Inbound latency only: a request sent at `sent_ns` reaches the engine at
`sent_ns + base_ns + jitter`, jitter lognormal with median `jitter_median_ns`. The engine
stamps what it emits with the arrival time. Requests of one owner keep their sending
order (as on one TCP session): an arrival is never earlier than that owner's previous one.
Arrivals at the same nanosecond are processed in the order they were sent to the
scheduler. All randomness comes from one `random.Random(seed)`, and there is no clock:
the same seed and the same calls give the same outputs, bit for bit.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from allele.kernel.domain import FinalizedOrder

from .matching import Emitted, MatchingEngine


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """One-way delay in ns: `base_ns` plus lognormal jitter (median `jitter_median_ns`, shape `jitter_sigma`)."""

    base_ns: int = 100_000
    jitter_median_ns: int = 20_000
    jitter_sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.base_ns < 0 or self.jitter_median_ns < 0 or not (self.jitter_sigma >= 0):
            raise ValueError(f"latency parameters must be non-negative: {self}")

    def sample(self, rng: random.Random) -> int:
        """One delay draw from `rng` (the caller owns the generator, so draws are reproducible)."""
        if self.jitter_median_ns == 0:
            return self.base_ns
        jitter = rng.lognormvariate(math.log(self.jitter_median_ns), self.jitter_sigma)
        return self.base_ns + int(jitter)


_Action = Callable[[int], list[Emitted]]


class SimulatedVenue:
    """A `MatchingEngine` behind a seeded network delay, driven by event time."""

    def __init__(self, engine: MatchingEngine, latency: LatencyModel | None = None, seed: int = 0) -> None:
        self.engine = engine
        self.latency = latency or LatencyModel()
        self._rng = random.Random(seed)
        self._queue: list[tuple[int, int, _Action]] = []
        self._seq = 0
        self._last_arrival: dict[str, int] = {}
        self.now_ns = 0
        """Event time up to which arrivals have been processed."""

    def pending(self) -> int:
        return len(self._queue)

    def next_arrival_ns(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def submit(self, order: FinalizedOrder, owner: str = "self", sent_ns: int | None = None) -> int:
        """Send `order` at `sent_ns` (default `order.ts_ns`); returns when it reaches the engine."""
        sent = order.ts_ns if sent_ns is None else sent_ns
        return self._schedule(owner, sent, lambda at: self.engine.submit(order, owner, at))

    def cancel(self, owner: str, client_order_id: str, sent_ns: int) -> int:
        return self._schedule(owner, sent_ns, lambda at: self.engine.cancel(owner, client_order_id, at))

    def amend(self, owner: str, client_order_id: str, sent_ns: int, *, quantity: float | None = None,
              limit_price: float | None = None) -> int:
        return self._schedule(owner, sent_ns, lambda at: self.engine.amend(
            owner, client_order_id, at, quantity=quantity, limit_price=limit_price))

    def advance_to(self, ts_ns: int) -> list[Emitted]:
        """Process every request arriving at or before `ts_ns`, in arrival order; returns what the engine emitted."""
        out: list[Emitted] = []
        while self._queue and self._queue[0][0] <= ts_ns:
            arrival, _, action = heapq.heappop(self._queue)
            out.extend(action(arrival))
        self.now_ns = max(self.now_ns, ts_ns)
        return out

    def drain(self) -> list[Emitted]:
        """Process everything still in flight."""
        out: list[Emitted] = []
        while self._queue:
            out.extend(self.advance_to(self._queue[0][0]))
        return out

    def _schedule(self, owner: str, sent_ns: int, action: _Action) -> int:
        if sent_ns < self.now_ns:
            raise ValueError(f"request sent at {sent_ns}, before the venue's event time {self.now_ns}")
        arrival = max(sent_ns + self.latency.sample(self._rng), self._last_arrival.get(owner, 0))
        self._last_arrival[owner] = arrival
        # The sequence number breaks ties between equal arrival times in sending order, and keeps
        # heapq from ever comparing two actions.
        heapq.heappush(self._queue, (arrival, self._seq, action))
        self._seq += 1
        return arrival
