"""The risk gate's rules and their thresholds: the `[risk]` table of config.toml.

All money is USD notional: quantity * price, where price is the order's limit price, or
for a market order its reference price. Per-organism allocations are not configured here:
the arena decides them and passes them in with each `RiskState` snapshot.

    [risk]
    global_capital_cap = 250.0
    drawdown_stages = [[0.05, 0.5], [0.15, 0.2]]
    halt_drawdown = 0.25
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from allele.kernel.config import load_table


class RiskConfig(BaseModel):
    """Thresholds of every rule of `allele.kernel.risk.gate.RiskGate`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    global_capital_cap: float = Field(
        100.0, gt=0, description="most USD committed across all organisms, positions and open orders together"
    )
    asymmetric_risk_ban: bool = Field(True, description="refuse bets that risk much to win little (see the gate)")
    binary_max_price: float = Field(
        0.90, gt=0, lt=1, description="highest price at which a binary outcome may be bought (paying 0.90 to win 0.10)"
    )
    max_order_quantity: float = Field(10_000.0, gt=0, description="largest quantity of one order (fat finger)")
    max_order_notional: float = Field(50.0, gt=0, description="largest USD notional of one order (fat finger)")
    price_band_pct: float = Field(
        0.10, gt=0, description="largest relative distance of a limit price from the last trade (0.10 = 10%)"
    )
    # Per organism, so one runaway organism cannot starve the others of the budget.
    orders_per_minute: int = Field(30, gt=0, description="most orders one organism may send in any 60 s of event time")
    drawdown_stages: tuple[tuple[float, float], ...] = Field(
        ((0.10, 0.5), (0.20, 0.25)),
        description="(drawdown, scale) pairs: from that drawdown on, opening quantities are scaled by that factor",
    )
    halt_drawdown: float = Field(0.30, gt=0, le=1, description="drawdown from which no position may be opened")

    @model_validator(mode="after")
    def _stages_are_ordered(self) -> RiskConfig:
        last_dd, last_scale = 0.0, 1.0
        for dd, scale in self.drawdown_stages:
            if not last_dd < dd < 1:
                raise ValueError(f"drawdown_stages: drawdown {dd} must be in (0, 1) and above the previous stage's")
            if not 0 < scale <= last_scale:
                raise ValueError(f"drawdown_stages: scale {scale} must be in (0, {last_scale}] (stages only shrink)")
            last_dd, last_scale = dd, scale
        if self.halt_drawdown <= last_dd:
            raise ValueError(f"halt_drawdown {self.halt_drawdown} must be above the last stage's drawdown {last_dd}")
        return self


def load_risk_config(home: Path) -> RiskConfig:
    """The `[risk]` table of `<home>/config.toml`; a missing file or table means the defaults.
    A bad value raises `allele.kernel.config.ConfigError` naming the file, table and key."""
    config: RiskConfig = load_table(home, ("risk",), RiskConfig)
    return config
