"""Budgets each plugin instance runs under, per kind."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from allele.kernel.config import load_table


class KindLimits(BaseModel):
    """Limits for one plugin kind. Fuel is wasmtime's instruction budget: deterministic,
    so the same call on the same input always passes or always fails, on any machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_fuel: int = Field(2_000_000_000, gt=0, description="fuel per ordinary call (~1 s of guest Python)")
    # Measured per batch row: sma_cross ~11k, mean_reversion ~18k, completeness_arb (the SDK's replay of
    # on_event) ~47k. 250k leaves 5x headroom; the price is that a looping plugin given 1M rows burns
    # ~2.5e11 fuel (about a minute, off the event loop) before it is stopped.
    batch_fuel_per_row: int = Field(250_000, gt=0, description="extra fuel per input row of a batch call")
    memory_bytes: int = Field(512 * 2**20, gt=0, description="cap on the instance's linear memory")
    max_result_bytes: int = Field(64 * 2**20, gt=0, description="largest string a call may return")
    max_items: int = Field(10_000, gt=0, description="most signals/readings/events one ordinary call may return")
    call_timeout_s: float = Field(10.0, gt=0, description="wall-clock cap for Extism calls (no fuel there)")


class Limits(BaseModel):
    """Per-kind limits; the `[plugins.limits.<kind>]` tables of config.toml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: KindLimits = KindLimits()
    sensor: KindLimits = KindLimits(memory_bytes=256 * 2**20)
    exchange: KindLimits = KindLimits(memory_bytes=256 * 2**20)

    def for_kind(self, kind: str) -> KindLimits:
        limits: KindLimits = getattr(self, kind)
        return limits


def load_limits(home: Path) -> Limits:
    """The `[plugins.limits]` tables of `<home>/config.toml`; ConfigError names a bad key."""
    limits: Limits = load_table(home, ("plugins", "limits"), Limits)
    return limits
