"""Plain data a plugin works with, independent of the generated WIT bindings.

These are NamedTuples on purpose: they are immutable, and cheap to create in
the hot loop of a batch call inside a WebAssembly Python interpreter.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Event kinds, in the order of the WIT enum `event-kind` and the batch "kind" column.
TRADE, QUOTE, BAR = "trade", "quote", "bar"
EVENT_KINDS = (TRADE, QUOTE, BAR)


class MarketEvent(NamedTuple):
    """One normalized market event (see `market-event` in wit/types.wit)."""

    kind: str
    venue: str
    symbol: str
    ts_ns: int
    price: float
    size: float = 0.0
    bid: float = 0.0
    ask: float = 0.0
    bid_size: float = 0.0
    ask_size: float = 0.0


class Reading(NamedTuple):
    """One sensor value (see `reading` in wit/types.wit)."""

    sensor: str
    name: str
    symbol: str
    ts_ns: int
    value: float


EXPOSURE, UNITS = "exposure", "units"


class Signal(NamedTuple):
    """A strategy's intent (see `signal` in wit/types.wit)."""

    symbol: str
    sizing: str
    amount: float
    limit_price: float | None = None
    group: str = ""
    note: str = ""


def exposure(symbol: str, target: float, note: str = "") -> Signal:
    """Target position as a signed fraction of the organism's allocation."""
    return Signal(symbol, EXPOSURE, float(target), None, "", note)


def units(symbol: str, quantity: float, limit_price: float | None = None, group: str = "", note: str = "") -> Signal:
    """A signed order quantity in base units (positive buys)."""
    return Signal(symbol, UNITS, float(quantity), limit_price, group, note)


class FinalizedOrder(NamedTuple):
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    order_type: str  # "market" | "limit"
    quantity: float
    limit_price: float | None
    time_in_force: str  # "gtc" | "ioc" | "fok" | "post-only"
    ts_ns: int  # when the strategy kernel finalized it
    deadline_ns: int


API_KEY_PLACEHOLDER = "{{api-key}}"  # the host puts the account's API key here when it sends


class OrderUpdate(NamedTuple):
    client_order_id: str
    venue_order_id: str
    symbol: str
    status: str  # accepted | partially-filled | filled | cancelled | rejected | expired
    fill_quantity: float = 0.0
    fill_price: float = 0.0
    fee: float = 0.0
    fee_currency: str = ""
    ts_ns: int = 0
    reason: str = ""


class VenueRequest(NamedTuple):
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: str


class HttpResponse(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: str


class Param(NamedTuple):
    """Declaration of one tunable parameter (see `param-spec`)."""

    name: str
    type: str  # "int" | "float" | "bool" | "enum"
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def int(cls, name: str, default: int, min: int, max: int, step: int = 1, description: str = "") -> Param:
        return cls(name, "int", default, min, max, step, (), description)

    @classmethod
    def float(cls, name: str, default: float, min: float, max: float, step: float | None = None,
              description: str = "") -> Param:
        return cls(name, "float", default, min, max, step, (), description)

    @classmethod
    def bool(cls, name: str, default: bool, description: str = "") -> Param:
        return cls(name, "bool", default, None, None, None, (), description)

    @classmethod
    def enum(cls, name: str, default: str, choices: tuple[str, ...], description: str = "") -> Param:
        return cls(name, "enum", default, None, None, None, tuple(choices), description)


class Manifest(NamedTuple):
    """What a plugin declares about itself (see `plugin-manifest`)."""

    name: str
    version: str
    kind: str  # "strategy" | "sensor" | "exchange"
    author: str
    description: str
    parameters: tuple[Param, ...] = ()
    symbols: tuple[str, ...] = ()
    sensor_inputs: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    proof: str = ""


class PluginError(Exception):
    """Raise this from a plugin call to return a clean error to the host.

    The host reports the message with the plugin's name; the plugin keeps
    running. Any other exception escaping a call that returns a result is
    reported the same way, prefixed with its type.
    """
