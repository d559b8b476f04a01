"""The WebSocket fan-out: every bus message, numbered, to every client that subscribed to its topic.

The engine's cost per message is a store into a ring buffer and a flag check (the hub is one bus subscriber,
whatever the number of clients): clients never touch the engine's path. Waiting senders are woken once per
flush interval (`[api] ws_flush_ms`, 50 ms), not per message. Each client has its own sender task that
reads the ring from its cursor, keeps the topics it subscribed to, and sends them in batches (one JSON
array per frame). Each message is serialized once, by the first client that sends it, and clients that ask
for the same range and topics (those woken by the same publish) share one frame.

Slow clients: **drop, with a gap notice**. A client that falls a whole ring behind loses the messages
that were overwritten; it is told so by a `{"type": "gap", "from": a, "to": b}` message and continues
with the oldest message still held. It can fetch the non-tick messages of the gap from REST
(`GET /api/stream?since=a-1`), which reads the bus's own history; ticks are not kept there (the next
tick replaces a missed one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from allele.kernel.engine.bus import TOPICS, Bus, Message


def encode(msg: Message) -> str:
    return json.dumps({"type": "event", "seq": msg.seq, "topic": msg.topic, "data": msg.data},
                      separators=(",", ":"), default=str)


class Hub:
    """A ring of the last `size` bus messages and a wake-up for the clients waiting on new ones."""

    def __init__(self, bus: Bus, size: int = 65_536, flush_s: float = 0.05) -> None:
        self.bus = bus
        self.size = size
        self.flush_s = flush_s
        self._flush_due = False
        self._ring: list[Message | None] = [None] * size
        self._text: list[str | None] = [None] * size
        self.last = bus.seq  # the newest seq stored
        self.first = bus.seq + 1  # the oldest seq still stored (first > last: empty)
        self._waiter: asyncio.Future[None] | None = None
        self._frames: dict[tuple[int, int, frozenset[str], int], tuple[int, str | None, tuple[int, int] | None]] = {}
        self.clients = 0
        self.dropped = 0  # messages clients lost to the ring wrapping (sum over clients)
        bus.subscribe(self._on_message)

    def close(self) -> None:
        self.bus.unsubscribe(self._on_message)
        self._wake()

    def _on_message(self, msg: Message) -> None:
        # The engine's hot path: two stores and a check. No client work happens here.
        i = msg.seq % self.size
        self._ring[i] = msg
        self._text[i] = None
        self.last = msg.seq
        if self.last - self.first >= self.size:
            self.first = self.last - self.size + 1
        if self._waiter is not None and not self._flush_due:
            if self.flush_s > 0:
                # Waiting senders wake together once per flush interval, not per message: fewer, fuller frames,
                # and the clients woken at once read the same range, so they share one frame (see `frame`).
                self._flush_due = True
                self._waiter.get_loop().call_later(self.flush_s, self._wake)
            else:
                self._wake()

    def _wake(self) -> None:
        self._flush_due = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, after: int) -> None:
        """Return once a message newer than `after` is stored (at the next flush)."""
        while self.last <= after:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            # Shielded: the future is shared by every waiting client, and a client that disconnects (its task
            # cancelled) must not cancel it for the others.
            await asyncio.shield(self._waiter)

    def frame(self, after: int, topics: frozenset[str], limit: int) -> tuple[int, str | None, tuple[int, int] | None]:
        """`read` as one text frame (a JSON array), or None when no message matched. Clients woken by the same
        publish usually ask for the same range and topics: the frame is built once and shared."""
        key = (after, self.last, topics, limit)
        cached = self._frames.get(key)
        if cached is not None:
            return cached
        cursor, items, gap = self.read(after, topics, limit)
        result = (cursor, ("[" + ",".join(items) + "]") if items else None, gap)
        if len(self._frames) >= 64:
            self._frames.clear()
        self._frames[key] = result
        return result

    def read(self, after: int, topics: frozenset[str], limit: int) -> tuple[int, list[str], tuple[int, int] | None]:
        """Encoded messages after seq `after` of `topics`, at most `limit` of them.

        Returns (the new cursor, the messages, the gap (first, last seq lost) if `after` fell out of the ring)."""
        gap = None
        start = after + 1
        if start < self.first:
            gap = (start, self.first - 1)
            start = self.first
        out: list[str] = []
        seq = start
        while seq <= self.last and len(out) < limit:
            i = seq % self.size
            msg = self._ring[i]
            if msg is not None and msg.seq == seq and msg.topic in topics:
                text = self._text[i]
                if text is None:
                    text = self._text[i] = encode(msg)
                out.append(text)
            seq += 1
        return seq - 1, out, gap

    def history(self, since: int, topics: Iterable[str] = TOPICS, limit: int = 10_000) -> list[Message]:
        """Messages after `since` for REST backfill: the ring where it still reaches, then the bus's history of
        non-tick messages for what the ring no longer holds."""
        wanted = frozenset(topics)
        older = [m for m in self.bus.since(since, tuple(wanted)) if m.seq < self.first] if since + 1 < self.first \
            else []
        newer = []
        for seq in range(max(since + 1, self.first), self.last + 1):
            msg = self._ring[seq % self.size]
            if msg is not None and msg.seq == seq and msg.topic in wanted:
                newer.append(msg)
        return (older + newer)[:limit]


def parse_topics(raw: Any) -> frozenset[str]:
    """Topics from a list or a comma-separated string; ValueError names the unknown ones."""
    items = [t.strip() for t in raw.split(",")] if isinstance(raw, str) else list(raw)
    topics = frozenset(t for t in items if t)
    unknown = sorted(topics - set(TOPICS))
    if unknown:
        raise ValueError(f"unknown topics {unknown}; topics are {list(TOPICS)}")
    return topics
