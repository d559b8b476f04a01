"""The columnar JSON format of `strategy-api.on-batch` (documented in wit/worlds.wit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .model import EVENT_KINDS, EXPOSURE, UNITS, MarketEvent, PluginError, Signal

_OPTIONAL_COLUMNS = ("kind", "size", "bid", "ask", "bid_size", "ask_size")


class Batch:
    """Decoded batch input: parallel columns, one entry per row."""

    __slots__ = ("_ts", "ask", "ask_size", "bid", "bid_size", "kind", "price", "size", "sym", "symbols")

    def __init__(self, columns: dict[str, Any]) -> None:
        for required in ("symbols", "price"):
            if not isinstance(columns.get(required), list):
                raise PluginError(f"batch column '{required}' is missing or not a list")
        self.symbols: list[str] = columns["symbols"]
        self.price: list[float] = columns["price"]
        n = len(self.price)
        ts = columns.get("ts")
        if isinstance(ts, dict):  # evenly spaced rows: {"start": t0, "step": dt}, expanded only when read
            if not isinstance(ts.get("start"), int) or not isinstance(ts.get("step"), int):
                raise PluginError("batch column 'ts' as an object needs integer 'start' and 'step'")
            self._ts: list[int] | range = range(ts["start"], ts["start"] + ts["step"] * n, ts["step"]) \
                if ts["step"] else [ts["start"]] * n
        elif isinstance(ts, list):
            self._ts = ts
        else:
            raise PluginError("batch column 'ts' is missing, or neither a list nor {\"start\", \"step\"}")
        sym = columns.get("sym")
        if sym is None and len(self.symbols) == 1:
            sym = [0] * n  # one symbol: the column may be left out
        if not isinstance(sym, list):
            raise PluginError("batch column 'sym' is missing or not a list (it may be left out only with one symbol)")
        self.sym: list[int] = sym
        for name, col in (("sym", self.sym), ("ts", self._ts)):
            if len(col) != n:
                raise PluginError(f"batch column '{name}' has {len(col)} rows, 'price' has {n}")
        optional: dict[str, list[Any]] = {}
        for name in _OPTIONAL_COLUMNS:
            column = columns.get(name)
            if column is not None and (not isinstance(column, list) or len(column) != n):
                raise PluginError(f"batch column '{name}' must be a list of {n} rows")
            # Absent means the contract's default (the host leaves out what is all default): all bars, all 0.0.
            optional[name] = column if column is not None else [2] * n if name == "kind" else [0.0] * n
        self.kind: list[int] = optional["kind"]
        self.size: list[float] = optional["size"]
        self.bid: list[float] = optional["bid"]
        self.ask: list[float] = optional["ask"]
        self.bid_size: list[float] = optional["bid_size"]
        self.ask_size: list[float] = optional["ask_size"]

    @property
    def ts(self) -> list[int] | range:
        """Event time of each row, ns since the Unix epoch."""
        return self._ts

    def __len__(self) -> int:
        return len(self.price)

    def rows_by_symbol(self) -> list[list[int] | range]:
        """Row numbers of each symbol, in order (index = position in `symbols`)."""
        if len(self.symbols) == 1:
            return [range(len(self))]
        out: list[list[int] | range] = [[] for _ in self.symbols]
        for row, s in enumerate(self.sym):
            out[s].append(row)  # type: ignore[union-attr]
        return out

    def events(self, venue: str = "") -> Iterator[MarketEvent]:
        """Rows as MarketEvent objects (the slow, general path)."""
        symbols = self.symbols
        for row in zip(self.kind, self.sym, self.ts, self.price, self.size, self.bid, self.ask, self.bid_size,
                       self.ask_size, strict=True):
            yield MarketEvent(EVENT_KINDS[row[0]], venue, symbols[row[1]], row[2], row[3], row[4], row[5], row[6],
                              row[7], row[8])


def decode_batch(text: str) -> Batch:
    try:
        columns = json.loads(text)
    except ValueError as exc:
        raise PluginError(f"batch input is not valid JSON: {exc}") from None
    if not isinstance(columns, dict):
        raise PluginError("batch input must be a JSON object of columns")
    return Batch(columns)


def encode_signals(batch: Batch, emitted: list[tuple[int, Signal]]) -> str:
    """Signals, each with the row that produced it, to the output columns."""
    index = {name: i for i, name in enumerate(batch.symbols)}
    out: dict[str, list[Any]] = {"row": [], "sym": [], "sizing": [], "amount": [], "limit": [], "group": []}
    for row, sig in emitted:
        if sig.symbol not in index:
            raise PluginError(f"signal for symbol '{sig.symbol}' which is not in the batch")
        out["row"].append(row)
        out["sym"].append(index[sig.symbol])
        out["sizing"].append(0 if sig.sizing == EXPOSURE else 1 if sig.sizing == UNITS else -1)
        out["amount"].append(sig.amount)
        out["limit"].append(sig.limit_price)
        out["group"].append(sig.group)
    return json.dumps(out, separators=(",", ":"))
