"""Where market events come from: the synthetic market (paper) or a recording (replay)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allele.kernel.domain import MarketEvent
from allele.kernel.market import DEFAULT_BINARY_EVENTS, SyntheticMarket

from .firehose import event_from_record, read_recording


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """Everything that determines the synthetic stream; recorded in a session's header."""

    seed: int
    symbols: tuple[str, ...]
    binary_markets: bool
    start_ns: int
    bar_ns: int
    bars: int  # 0 = endless

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "symbols": list(self.symbols), "binary_markets": self.binary_markets,
                "start_ns": self.start_ns, "bar_ns": self.bar_ns, "bars": self.bars}


class SyntheticSource:
    """The seeded synthetic market: continuous symbols and (optionally) binary-outcome markets."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        self.market = SyntheticMarket(spec.seed, spec.symbols, spec.start_ns, spec.bar_ns,
                                      binary_events=DEFAULT_BINARY_EVENTS if spec.binary_markets else ())

    @property
    def binary_symbols(self) -> tuple[str, ...]:
        symbols: tuple[str, ...] = self.market.binary_symbols
        return symbols

    def events(self) -> Iterator[MarketEvent]:
        return self.market.events(self.spec.bars) if self.spec.bars else iter(self.market)

    def describe(self) -> dict[str, object]:
        return {"kind": "synthetic", **self.spec.to_json()}


class RecordingSource:
    """The market events of a firehose recording, in recorded order (other records are skipped)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> Iterator[dict[str, Any]]:
        return read_recording(self.path)

    def events(self) -> Iterator[MarketEvent]:
        for record in read_recording(self.path):
            if record.get("k") == "event":
                yield event_from_record(record)

    def describe(self) -> dict[str, object]:
        return {"kind": "recording", "path": str(self.path)}
