"""The plugin port: what an ABI adapter must provide for one running instance.

Adapters speak plain data (dicts with snake_case keys, lists, strings), so
one set of checks (`checks.py`) serves both ABIs. An adapter raises `Trapped`
when the guest trapped or ran out of budget, and returns `Reported` when the
plugin itself answered with an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from allele.kernel.domain import Event, FinalizedOrder


@dataclass(frozen=True)
class Reported:
    """The plugin answered `err(message)`: its own, orderly error."""

    message: str


class Trapped(Exception):
    """The guest trapped, ran out of fuel or time, or broke the calling convention."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RawInstance(Protocol):
    """One instantiated plugin, any ABI. Each call gets `budget` fuel (or the kind's timeout)."""

    def manifest(self) -> dict[str, Any]: ...
    def configure(self, values: dict[str, Any]) -> Reported | None: ...
    def reset(self) -> None: ...
    def on_event(self, event: Event) -> Any: ...
    def on_batch(self, columns: str, budget: int) -> str | Reported: ...
    def poll(self) -> Any: ...
    def subscribe(self, symbols: list[str]) -> Any: ...
    def decode(self, frame: str) -> Any: ...
    def encode_order(self, order: FinalizedOrder, account: str) -> Any: ...
