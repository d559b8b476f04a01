"""The risk gate: every order intent passes `RiskGate.decide` before it may become an order.

Pure and deterministic: no I/O, no wall clock (time is the intent's event `ts_ns`), and the
same (config, intent, state) always gives the same decision. The caller supplies a frozen
`RiskState` snapshot and, after an acceptance, records the order in the next snapshot.

Money is USD notional = quantity * price, price being the limit price, or for a market order
the intent's reference price. An order *opens* unless `intent.reduces`; a reducing order must
be backed by the organism's position (opposite sign, quantity <= |position|).

Rules, in this fixed order; the first that refuses is the decision:

    1  kill_switch          switch engaged: refuse everything (flattening is a person's call)
    2  reduce_only          an intent claiming to reduce that the position does not back
    3  drawdown_halt        drawdown >= halt_drawdown: refuse openings (reductions pass)
    4  asymmetric_risk_ban  openings only: buying a binary above binary_max_price, selling one
                            below 1 - binary_max_price (the same bet from the other side),
                            selling an option (naked: a covered sell arrives as a reduction)
    5  max_order_quantity   quantity > max_order_quantity (all orders: fat finger)
    6  max_order_notional   notional > max_order_notional (all orders: fat finger)
    7  price_band           limit orders: |limit - last trade| > price_band_pct * last trade
                            (last trade from the state, else the intent's reference price)
    8  rate_limit           the organism already sent orders_per_minute orders in the 60 s of
                            event time ending at ts_ns (all orders count)
    9  organism_allocation  openings: organism committed + notional > its allocation
                            (an organism without an allocation has 0: fail closed)
    10 global_capital_cap   openings: total committed (every organism, positions and open
                            orders) + notional > global_capital_cap
    11 drawdown_derisk      openings: from a stage's drawdown on, quantity * that stage's scale;
                            accepted with the reduced quantity

Rules 9 and 10 judge the quantity rule 11 would send (stages only shrink it), so an order
that fits once scaled is not refused for its unscaled size. Reducing orders are never refused
by rules 3, 4, 9, 10 and never scaled by 11. Every comparison is written so that a NaN
anywhere refuses (fail closed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from allele.kernel.domain import Side
from allele.kernel.risk.config import RiskConfig

InstrumentKind = Literal["spot", "perp", "binary", "option"]
RuleName = Literal[
    "kill_switch",
    "reduce_only",
    "drawdown_halt",
    "asymmetric_risk_ban",
    "max_order_quantity",
    "max_order_notional",
    "price_band",
    "rate_limit",
    "organism_allocation",
    "global_capital_cap",
    "drawdown_derisk",
    "accepted",
]

RATE_WINDOW_NS = 60 * 1_000_000_000


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """One order an organism wants to send, before the gate. Invalid numbers raise ValueError."""

    organism: str
    symbol: str
    side: Side
    quantity: float
    limit_price: float | None  # None = market order
    reference_price: float  # what a market order is expected to pay; notional uses it
    kind: InstrumentKind
    reduces: bool  # True = closes (part of) the organism's position in symbol
    ts_ns: int
    group: str = ""  # basket id, e.g. the legs of one arbitrage; informational here

    def __post_init__(self) -> None:
        _positive("quantity", self.quantity)
        _positive("reference_price", self.reference_price)
        if self.limit_price is not None:
            _positive("limit_price", self.limit_price)

    @property
    def price(self) -> float:
        return self.limit_price if self.limit_price is not None else self.reference_price

    @property
    def notional(self) -> float:
        return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class RiskState:
    """A frozen snapshot of what the gate judges against; the mappings must not change after.

    committed: USD each organism has in positions and open orders; committed_total: the same
    across all organisms (and anything else holding capital), the figure the global cap binds.
    positions: organism -> symbol -> signed quantity. recent_orders: organism -> ts_ns of
    the orders it sent (older than the rate window may be left in; they are ignored).
    """

    committed: Mapping[str, float] = field(default_factory=dict)
    committed_total: float = 0.0
    allocations: Mapping[str, float] = field(default_factory=dict)
    positions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    last_trade: Mapping[str, float] = field(default_factory=dict)
    equity_high_water: float = 0.0
    equity: float = 0.0
    recent_orders: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    kill_switch: bool = False
    kill_switch_reason: str = ""

    @property
    def drawdown(self) -> float:
        """(high water - equity) / high water, 0 without a high-water mark, never negative; NaN
        stays NaN (max() would turn it into 0 and open the gate)."""
        if self.equity_high_water <= 0:
            return 0.0
        drawdown = (self.equity_high_water - self.equity) / self.equity_high_water
        return 0.0 if drawdown < 0 else drawdown

    def position(self, organism: str, symbol: str) -> float:
        return self.positions.get(organism, {}).get(symbol, 0.0)


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The gate's verdict. quantity: what may be sent (<= the intent's; 0.0 when refused)."""

    accepted: bool
    rule: RuleName
    reason: str
    quantity: float

    @classmethod
    def refuse(cls, rule: RuleName, reason: str) -> RiskDecision:
        return cls(False, rule, reason, 0.0)


class RiskGate:
    """Applies `RiskConfig`'s rules in the order of the module docstring."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()

    def stage_scale(self, drawdown: float) -> float:
        """The scale of the deepest stage reached; 1.0 above every stage."""
        scale = 1.0
        for dd, stage_scale in self.config.drawdown_stages:
            if not drawdown < dd:  # NaN reaches every stage
                scale = stage_scale
        return scale

    def decide(self, intent: OrderIntent, book: RiskState) -> RiskDecision:
        cfg = self.config
        opening = not intent.reduces
        if book.kill_switch:
            why = f" ({book.kill_switch_reason})" if book.kill_switch_reason else ""
            return RiskDecision.refuse("kill_switch", f"kill switch: engaged{why}; no order may be sent")
        if intent.reduces:
            held = book.position(intent.organism, intent.symbol)
            backs = held < 0 if intent.side == "buy" else held > 0
            if not (backs and intent.quantity <= abs(held)):
                return RiskDecision.refuse(
                    "reduce_only",
                    f"reduce only: {intent.side} {intent.quantity:g} {intent.symbol} does not reduce "
                    f"{intent.organism}'s position of {held:g}",
                )
        drawdown = book.drawdown
        if opening and not drawdown < cfg.halt_drawdown:
            return RiskDecision.refuse(
                "drawdown_halt",
                f"drawdown halt: drawdown {drawdown:.2%} >= {cfg.halt_drawdown:.2%}; only reducing orders pass",
            )
        if opening and cfg.asymmetric_risk_ban:
            ban = self._asymmetric(intent)
            if ban is not None:
                return RiskDecision.refuse("asymmetric_risk_ban", ban)
        if not intent.quantity <= cfg.max_order_quantity:
            return RiskDecision.refuse(
                "max_order_quantity",
                f"max order quantity: {intent.quantity:g} > {cfg.max_order_quantity:g}",
            )
        if not intent.notional <= cfg.max_order_notional:
            return RiskDecision.refuse(
                "max_order_notional",
                f"max order notional: {intent.notional:.2f} > {cfg.max_order_notional:.2f} USD",
            )
        if intent.limit_price is not None:
            last = book.last_trade.get(intent.symbol, intent.reference_price)
            distance = abs(intent.limit_price - last)
            if not distance <= cfg.price_band_pct * last:
                return RiskDecision.refuse(
                    "price_band",
                    f"price band: limit {intent.limit_price:g} is {distance / last:.2%} from last trade "
                    f"{last:g} > {cfg.price_band_pct:.2%}",
                )
        since = intent.ts_ns - RATE_WINDOW_NS
        sent = sum(1 for t in book.recent_orders.get(intent.organism, ()) if t > since)
        if sent >= cfg.orders_per_minute:
            return RiskDecision.refuse(
                "rate_limit",
                f"rate limit: {intent.organism} sent {sent} orders in the last 60 s >= {cfg.orders_per_minute}",
            )
        if intent.reduces:
            return RiskDecision(True, "accepted", "accepted: reduces a position", intent.quantity)

        scale = self.stage_scale(drawdown)
        quantity = intent.quantity * scale
        notional = quantity * intent.price
        mine = book.committed.get(intent.organism, 0.0)
        allocation = book.allocations.get(intent.organism, 0.0)
        if not mine + notional <= allocation:
            return RiskDecision.refuse(
                "organism_allocation",
                f"organism allocation: {intent.organism} committed {mine:.2f} + {notional:.2f} > {allocation:.2f} USD",
            )
        if not book.committed_total + notional <= cfg.global_capital_cap:
            return RiskDecision.refuse(
                "global_capital_cap",
                f"global capital cap: committed {book.committed_total:.2f} + {notional:.2f} "
                f"> {cfg.global_capital_cap:.2f} USD",
            )
        if scale < 1.0:
            return RiskDecision(
                True,
                "drawdown_derisk",
                f"drawdown derisk: drawdown {drawdown:.2%}, quantity {intent.quantity:g} scaled by {scale:g} "
                f"to {quantity:g}",
                quantity,
            )
        return RiskDecision(True, "accepted", "accepted", quantity)

    def _asymmetric(self, intent: OrderIntent) -> str | None:
        """Why an opening intent is a banned asymmetric bet, or None."""
        cap = self.config.binary_max_price
        price = intent.price
        if intent.kind == "binary" and intent.side == "buy" and not price <= cap:
            return (
                f"asymmetric risk ban: buying binary {intent.symbol} at {price:g} > {cap:g} "
                f"(risks {price:g} to win {1 - price:g})"
            )
        if intent.kind == "binary" and intent.side == "sell" and not price >= 1 - cap:
            return (
                f"asymmetric risk ban: selling binary {intent.symbol} at {price:g} < {1 - cap:g} "
                f"(risks {1 - price:g} to win {price:g})"
            )
        if intent.kind == "option" and intent.side == "sell":
            return f"asymmetric risk ban: selling option {intent.symbol} naked (unbounded loss for a premium)"
        return None
