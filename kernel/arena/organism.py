"""An organism as the arena sees it: what it is (canonical spec, fingerprint) and where it came from.

    spec = OrganismSpec(strategy="sma_cross", plugin_sha256="d772...", genome={"fast": 10, "slow": 30})
    spec.fingerprint          # sha256 of the canonical JSON, which includes every plugin hash
    data_fingerprint(bars)    # sha256 of the data an evaluation ran on

Identity is the strategy plugin (by hash), the genome, the exchange and the sensor set (by hash).
The allocation is not part of it: capital is the arena's decision about an organism, and moving
capital must not make an organism a stranger to its own evaluations. An evaluation is keyed by
(organism fingerprint, data fingerprint), so the same organism is never evaluated twice on the
same data.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allele.kernel.plugin.manifest import ParamValue

Operator = Literal["seed", "mutation", "crossover", "sensor-crossover", "import"]


class OrganismSpec(BaseModel):
    """The canonical spec of an organism; frozen, so its fingerprint never changes under it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str = Field(min_length=1, description="the strategy plugin's manifest name")
    plugin_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    genome: dict[str, ParamValue] = Field(default_factory=dict)
    exchange: str = "sim"
    sensors: tuple[tuple[str, str], ...] = Field(default=(), description="(sensor id, plugin sha256) pairs")

    @field_validator("genome")
    @classmethod
    def _finite(cls, genome: dict[str, ParamValue]) -> dict[str, ParamValue]:
        for name, value in genome.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"gene '{name}' is not a finite number: {value!r}")
        return genome

    def canonical(self) -> str:
        """Sorted keys, no whitespace, sensors sorted: equal organisms have equal text."""
        body = {"strategy": self.strategy, "plugin_sha256": self.plugin_sha256, "genome": self.genome,
                "exchange": self.exchange, "sensors": sorted(list(s) for s in self.sensors)}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def fingerprint(self) -> str:
        hashes = [self.plugin_sha256, *sorted(sha for _, sha in self.sensors)]
        return hashlib.sha256((self.canonical() + "|" + ",".join(hashes)).encode()).hexdigest()

    @property
    def short(self) -> str:
        return self.fingerprint[:12]


def data_fingerprint(symbol: str, ts_ns: Sequence[int], columns: Mapping[str, Sequence[float]]) -> str:
    """sha256 over the symbol, the timestamps and every price column, as exact binary numbers."""
    h = hashlib.sha256(symbol.encode() + b"\0")
    h.update(struct.pack(f"<{len(ts_ns)}q", *ts_ns))
    for name in sorted(columns):
        values = columns[name]
        h.update(name.encode() + b"\0")
        h.update(struct.pack(f"<{len(values)}d", *values))
    return h.hexdigest()


def lineage_record(child: OrganismSpec, parents: Sequence[OrganismSpec], operator: Operator, generation: int,
                   detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How `child` came to be, for the ledger: its parents' fingerprints, the operator and the generation."""
    return {"fingerprint": child.fingerprint, "parents": [p.fingerprint for p in parents], "operator": operator,
            "generation": generation, "detail": dict(detail or {})}
