"""Seeded synthetic market data, and a bridge that rests it in the matching engine as background liquidity."""

from .generator import (
    DEFAULT_BINARY_EVENTS,
    DEFAULT_REGIMES,
    REGIMES,
    Regime,
    RegimeParams,
    SyntheticMarket,
    arb_gap,
)
from .liquidity import BackgroundLiquidity, quote_orders

__all__ = [
    "DEFAULT_BINARY_EVENTS",
    "DEFAULT_REGIMES",
    "REGIMES",
    "BackgroundLiquidity",
    "Regime",
    "RegimeParams",
    "SyntheticMarket",
    "arb_gap",
    "quote_orders",
]
