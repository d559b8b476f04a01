"""The message bus: what happens in the engine, as numbered messages on topics.

Topics: tick, signal, order, fill, risk, organism, health, control. Every message gets the next
sequence number of the bus, so a consumer that lost its connection can ask for everything after
the last number it saw (`since`) and resume without a gap while the ring buffer still holds it.
Subscribers are called synchronously on the engine's loop: they must be quick (queue the message,
do the work elsewhere). A subscriber that raises is removed and logged, never kills the engine.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("allele.bus")

TOPICS = ("tick", "signal", "order", "fill", "risk", "organism", "health", "control")


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    topic: str
    data: dict[str, Any]


Subscriber = Callable[[Message], None]


class Bus:
    def __init__(self, history: int = 10_000) -> None:
        self.seq = 0
        self._history: deque[Message] = deque(maxlen=history)
        self._subscribers: list[tuple[frozenset[str], Subscriber]] = []

    def subscribe(self, fn: Subscriber, topics: tuple[str, ...] = TOPICS) -> None:
        unknown = sorted(set(topics) - set(TOPICS))
        if unknown:
            raise ValueError(f"unknown bus topics {unknown}; topics are {list(TOPICS)}")
        self._subscribers.append((frozenset(topics), fn))

    def unsubscribe(self, fn: Subscriber) -> None:
        self._subscribers = [(t, f) for t, f in self._subscribers if f is not fn]

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        self.seq += 1
        msg = Message(self.seq, topic, data)
        if topic != "tick":  # ticks are many and replaceable; the rest is kept for backfill
            self._history.append(msg)
        for topics, fn in list(self._subscribers):
            if topic in topics:
                try:
                    fn(msg)
                except Exception:
                    log.exception("bus subscriber %r failed on %s #%d and was removed", fn, topic, msg.seq)
                    self.unsubscribe(fn)

    def holds_since(self, seq: int) -> bool:
        """Whether the history still holds every non-tick message published after `seq`."""
        history = self._history
        return len(history) < (history.maxlen or 0) or not history or history[0].seq <= seq + 1

    def since(self, seq: int, topics: tuple[str, ...] = TOPICS) -> list[Message]:
        """Messages after `seq` still in the buffer (ticks are not kept)."""
        return [m for m in self._history if m.seq > seq and m.topic in topics]
