"""The engine's in-memory book of the organisms: cash, positions, open orders, marks.

The ledger is the durable truth; this is the fast view the strategy kernel and the risk gate
read on every signal, updated from the same order updates the ledger records, in the same
order. `risk_state()` freezes it into the `RiskState` snapshot the gate judges against.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from allele.kernel.domain import OrderType, Side
from allele.kernel.risk import RATE_WINDOW_NS, RiskState


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order of ours that may still trade (recorded, sent, not yet terminal)."""

    client_order_id: str
    organism: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    limit_price: float | None
    filled: float = 0.0
    deadline_ns: int = 0

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled, 0.0)

    @property
    def signed_remaining(self) -> float:
        return self.remaining if self.side == "buy" else -self.remaining


@dataclass(slots=True)
class Portfolio:
    """Cash, positions and open orders per organism, and the last price of every symbol."""

    cash: dict[str, float] = field(default_factory=dict)
    positions: dict[str, dict[str, float]] = field(default_factory=dict)
    open_orders: dict[str, OpenOrder] = field(default_factory=dict)
    last_price: dict[str, float] = field(default_factory=dict)
    fees: dict[str, float] = field(default_factory=dict)
    recent_orders: dict[str, deque[int]] = field(default_factory=dict)
    high_water: float = 0.0

    def deposit(self, organism: str, amount: float) -> None:
        self.cash[organism] = self.cash.get(organism, 0.0) + amount
        self.positions.setdefault(organism, {})
        self.high_water = max(self.high_water, self.total_equity())

    def position(self, organism: str, symbol: str) -> float:
        return self.positions.get(organism, {}).get(symbol, 0.0)

    def pending(self, organism: str, symbol: str, excluding: str | None = None) -> float:
        """Signed remaining quantity of the organism's open orders on `symbol`."""
        return sum(o.signed_remaining for o in self.open_orders.values()
                   if o.organism == organism and o.symbol == symbol and o.client_order_id != excluding)

    def orders_of(self, organism: str, symbol: str) -> list[OpenOrder]:
        return [o for o in self.open_orders.values() if o.organism == organism and o.symbol == symbol]

    def mark(self, symbol: str, price: float) -> None:
        self.last_price[symbol] = price

    def equity(self, organism: str) -> float:
        """Cash plus positions at their last price (a position in a symbol never priced counts 0)."""
        held = self.positions.get(organism, {})
        return self.cash.get(organism, 0.0) + sum(q * self.last_price.get(s, 0.0) for s, q in held.items())

    def total_equity(self) -> float:
        return sum(self.equity(o) for o in self.cash)

    def committed(self, organism: str, excluding: str | None = None) -> float:
        """USD the organism would hold once its open orders fill: per symbol |position + open orders| at the
        last price. Projected, so a reducing order in flight frees its capital for the order that follows it
        (a flip: reduce to zero, then open the other side)."""
        held = self.positions.get(organism, {})
        projected = dict(held)
        for o in self.open_orders.values():
            if o.organism == organism and o.client_order_id != excluding:
                projected[o.symbol] = projected.get(o.symbol, 0.0) + o.signed_remaining
        total = 0.0
        for symbol, quantity in projected.items():
            price = self.last_price.get(symbol, 0.0)
            limits = [o.limit_price for o in self.open_orders.values() if o.organism == organism
                      and o.symbol == symbol and o.limit_price is not None and o.client_order_id != excluding]
            # A resting buy at a limit above the last price would cost more: count the dearer price.
            total += abs(quantity) * max([price, *limits])
        return total

    # --- updates --------------------------------------------------------------------------

    def order_sent(self, order: OpenOrder, ts_ns: int) -> None:
        self.open_orders[order.client_order_id] = order
        self.recent_orders.setdefault(order.organism, deque()).append(ts_ns)

    def order_amended(self, client_order_id: str, quantity: float | None, limit_price: float | None,
                      ts_ns: int) -> None:
        order = self.open_orders.get(client_order_id)
        if order is None:
            return
        self.open_orders[client_order_id] = replace(
            order, quantity=order.quantity if quantity is None else quantity,
            limit_price=order.limit_price if limit_price is None else limit_price)
        self.recent_orders.setdefault(order.organism, deque()).append(ts_ns)

    def fill(self, organism: str, client_order_id: str, symbol: str, side: Side, quantity: float, price: float,
             fee: float) -> None:
        signed = quantity if side == "buy" else -quantity
        held = self.positions.setdefault(organism, {})
        after = held.get(symbol, 0.0) + signed
        # Float residue of repeated partial fills must not leave a phantom position.
        held[symbol] = 0.0 if abs(after) < 1e-12 else after
        self.cash[organism] = self.cash.get(organism, 0.0) - signed * price - fee
        self.fees[organism] = self.fees.get(organism, 0.0) + fee
        order = self.open_orders.get(client_order_id)
        if order is not None:
            self.open_orders[client_order_id] = replace(order, filled=order.filled + quantity)
        self.last_price.setdefault(symbol, price)

    def order_closed(self, client_order_id: str) -> None:
        self.open_orders.pop(client_order_id, None)

    def mark_high_water(self) -> None:
        self.high_water = max(self.high_water, self.total_equity())

    # --- the gate's view ------------------------------------------------------------------

    def risk_state(self, allocations: dict[str, float], *, kill_switch: bool, kill_reason: str = "",
                   now_ns: int = 0, excluding: str | None = None) -> RiskState:
        """A frozen snapshot for `RiskGate.decide`; `excluding` leaves out one open order (an amend's)."""
        since = now_ns - RATE_WINDOW_NS
        for times in self.recent_orders.values():
            while times and times[0] <= since:
                times.popleft()
        committed = {o: self.committed(o, excluding) for o in self.cash}
        return RiskState(
            committed=committed,
            committed_total=sum(committed.values()),
            allocations=dict(allocations),
            positions={o: dict(p) for o, p in self.positions.items()},
            last_trade=dict(self.last_price),
            equity_high_water=self.high_water,
            equity=self.total_equity(),
            recent_orders={o: tuple(t) for o, t in self.recent_orders.items()},
            kill_switch=kill_switch,
            kill_switch_reason=kill_reason,
        )
