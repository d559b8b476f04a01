"""Base classes for the three plugin kinds.

A plugin subclasses one of them, sets `manifest`, and implements the calls of
its kind. Parameters arrive validated in `self.params` (every declared name,
defaults filled in) and `reset()` is called after every `configure`.
"""

from __future__ import annotations

import math
from typing import Any

from .columns import Batch
from .model import FinalizedOrder, Manifest, MarketEvent, OrderUpdate, Param, PluginError, Reading, Signal, VenueRequest


def check_params(manifest: Manifest, values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge `values` over `base` (or the defaults), refusing unknown names and out-of-range values."""
    specs = {p.name: p for p in manifest.parameters}
    merged = dict(base) if base is not None else {p.name: p.default for p in manifest.parameters}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            raise PluginError(f"unknown parameter '{name}' (known: {', '.join(sorted(specs)) or 'none'})")
        merged[name] = _check_value(spec, value)
    return merged


def _check_value(spec: Param, value: Any) -> Any:
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise PluginError(f"parameter '{spec.name}' must be a bool, got {value!r}")
        return value
    if spec.type == "enum":
        if value not in spec.choices:
            raise PluginError(f"parameter '{spec.name}' must be one of {list(spec.choices)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PluginError(f"parameter '{spec.name}' must be a number, got {value!r}")
    if spec.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise PluginError(f"parameter '{spec.name}' must be an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise PluginError(f"parameter '{spec.name}' must be finite, got {value!r}")
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise PluginError(f"parameter '{spec.name}' = {value!r} is outside [{spec.min}, {spec.max}]")
    return value


class Plugin:
    manifest: Manifest

    def __init__(self) -> None:
        self.params: dict[str, Any] = check_params(self.manifest, {})
        self.reset()

    def configure(self, values: dict[str, Any]) -> None:
        """Apply new values; if they are refused, the previous ones stay in force."""
        previous = self.params
        self.params = check_params(self.manifest, values, previous)
        try:
            self.reset()
        except Exception:
            self.params = previous
            self.reset()
            raise

    def reset(self) -> None:
        """Rebuild all state from `self.params`."""


class Strategy(Plugin):
    """Turns events into signals. Imports nothing but `log` and `now_ns`."""

    def on_event(self, event: MarketEvent | Reading) -> list[Signal]:
        return []

    def on_batch(self, batch: Batch) -> list[tuple[int, Signal]]:
        """Signals for a whole batch, each with the row that produced it.

        The default replays the rows through `on_event`, so a strategy gets
        identical results on the live and batch paths. Override it with a
        tight loop over the columns when the batch path must be fast; the
        test helper checks that both paths agree.
        """
        emitted: list[tuple[int, Signal]] = []
        for row, event in enumerate(batch.events()):
            for sig in self.on_event(event):
                emitted.append((row, sig))
        return emitted


class Sensor(Plugin):
    """Polls outside data through `fetch`, within the manifest's allowed hosts."""

    def poll(self) -> list[Reading]:
        return []


class Exchange(Plugin):
    """Speaks one venue's wire format; signs only through `sign` in `encode_order`."""

    def subscribe(self, symbols: list[str]) -> list[str]:
        return []

    def decode(self, frame: str) -> list[MarketEvent | OrderUpdate]:
        raise PluginError("decode is not implemented")

    def encode_order(self, order: FinalizedOrder, account: str) -> VenueRequest:
        raise PluginError("encode_order is not implemented")
