"""allele.kernel.backtest: bar data, a next-bar-open venue and performance metrics for `allele backtest`."""

from .data import (
    Bars,
    BarSource,
    DataError,
    DataSpec,
    SyntheticSpec,
    load_bars,
    load_csv,
    parse_data_spec,
    synthetic_bars,
)
from .metrics import FillRow, Metrics, TradeRow, compute_metrics
from .venue import BarVenue

__all__ = [
    "BarSource",
    "BarVenue",
    "Bars",
    "DataError",
    "DataSpec",
    "FillRow",
    "Metrics",
    "SyntheticSpec",
    "TradeRow",
    "compute_metrics",
    "load_bars",
    "load_csv",
    "parse_data_spec",
    "synthetic_bars",
]
