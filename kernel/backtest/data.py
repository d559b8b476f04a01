"""Bar data for `allele backtest`: OHLCV bars from a CSV file or the synthetic market, and the `--data` argument.

    spec = parse_data_spec("prices.csv")                 # or "synthetic:symbol=ETH-USD,bars=500,bar=1h,seed=7"
    bars = load_bars(spec)                               # a validated `Bars`
    source = BarSource(bars, origin=spec.describe())     # the engine's EventSource: one "bar" event per bar

Timestamps are nanoseconds since the Unix epoch, UTC. A bar's `ts_ns` is the time the bar
opens (a CSV date 2020-01-31 is 2020-01-31T00:00:00Z); the engine sees the whole bar (its
close) at that timestamp, and the backtest venue fills an order sent then at the NEXT bar's
open, so no order ever trades on a price that was known when it was sent.

Every problem with the input is a `DataError` (a ValueError) whose message says where it is
(file, line, column) and what to do about it, so the CLI can print it as it is.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from allele.kernel.domain import MarketEvent
from allele.kernel.market import SyntheticMarket

HEADER: tuple[str, ...] = ("Date", "Open", "High", "Low", "Close", "Volume")
SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
_UNIT_NS: Mapping[str, int] = {"s": SECOND_NS, "m": 60 * SECOND_NS, "h": 3_600 * SECOND_NS, "d": DAY_NS,
                               "w": 7 * DAY_NS}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_Fail = Callable[[int, str, str], "DataError"]

SUB_BARS = 4
"""Generator bars per synthetic output bar: SyntheticMarket prints one trade per bar, so one output bar
aggregates `SUB_BARS` generator bars of `bar_ns / SUB_BARS` (open = first trade, high/low = extremes,
close = last trade, volume = sum of trade sizes). Four trades give distinct open, high, low and close
(except when the rounded prices happen to coincide) at a quarter of the cost of a finer resolution."""


class DataError(ValueError):
    """Bad input data or a bad `--data` argument; the message says where and what to do."""


# --- bars ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bars:
    """OHLCV bars of one symbol, oldest first. Validated on construction (DataError naming the bar)."""

    symbol: str
    ts_ns: tuple[int, ...]
    open: tuple[float, ...]
    high: tuple[float, ...]
    low: tuple[float, ...]
    close: tuple[float, ...]
    volume: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.ts_ns)
        columns = {"open": self.open, "high": self.high, "low": self.low, "close": self.close,
                   "volume": self.volume}
        for name, values in columns.items():
            if len(values) != n:
                raise DataError(f"bars of {self.symbol}: {name} has {len(values)} values but ts_ns has {n}")
        if n < 2:
            raise DataError(f"bars of {self.symbol}: {n} bar(s); a backtest needs at least 2")
        if not self.symbol:
            raise DataError("bars: the symbol is empty")
        for i in range(n):
            if i and self.ts_ns[i] <= self.ts_ns[i - 1]:
                raise DataError(f"bars of {self.symbol}: bar {i} at ts_ns {self.ts_ns[i]} is not after bar {i - 1} "
                                f"at {self.ts_ns[i - 1]}; timestamps must be strictly increasing")
            problem = _bar_problem(self.open[i], self.high[i], self.low[i], self.close[i], self.volume[i])
            if problem is not None:
                raise DataError(f"bars of {self.symbol}: bar {i} (ts_ns {self.ts_ns[i]}), {problem[0]}: {problem[1]}")

    def __len__(self) -> int:
        return len(self.ts_ns)


def _bar_problem(o: float, h: float, lo: float, c: float, v: float) -> tuple[str, str] | None:
    """The first thing wrong with one bar, as (column, explanation), or None."""
    for name, price in (("Open", o), ("High", h), ("Low", lo), ("Close", c)):
        if not math.isfinite(price) or price <= 0:
            return name, f"price {price} must be a finite number > 0"
    if not math.isfinite(v) or v < 0:
        return "Volume", f"volume {v} must be a finite number >= 0"
    if lo > min(o, c):
        return "Low", f"Low {lo} is above min(Open, Close) = {min(o, c)}; check the column order"
    if h < max(o, c):
        return "High", f"High {h} is below max(Open, Close) = {max(o, c)}; check the column order"
    return None


# --- CSV -------------------------------------------------------------------------------------------


def load_csv(path: Path, symbol: str | None = None) -> Bars:
    """Read daily (or intraday) bars from a CSV file with the header `Date,Open,High,Low,Close,Volume`.

    Header names are matched case-insensitively after trimming whitespace; one extra leading
    column with an empty name (or pandas' "Unnamed: 0"), as `DataFrame.to_csv` writes for its
    index, is tolerated and ignored. Date is an ISO date (2020-01-31, midnight UTC) or an ISO
    datetime (2020-01-31T14:30:00, 2020-01-31 14:30:00+02:00, ...Z); a datetime without a time
    zone is UTC. Rows must be oldest first with no duplicate dates; blank lines are skipped.
    `symbol` defaults to the file name without its extension.
    """
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{where}: no such file; check the path given to --data") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a directory, not a CSV file") from None
    except OSError as e:
        raise DataError(f"{where}: cannot read the file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{where} line {line}: byte {raw[e.start]:#04x} is not UTF-8 text; save the file as UTF-8 "
                        "(or plain ASCII) CSV") from None

    def fail(line: int, column: str, message: str) -> DataError:
        return DataError(f"{where} line {line}, column {column}: {message}")

    reader = csv.reader(io.StringIO(text, newline=""))
    ts: list[int] = []
    cols: list[list[float]] = [[], [], [], [], []]
    header: list[str] | None = None
    skip_index = False
    prev_line = 0
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                skip_index = _check_header(header, line, fail)
                continue
            cells = [cell.strip() for cell in row]
            if skip_index:
                cells = cells[1:]
            if len(cells) < len(HEADER):
                raise fail(line, HEADER[len(cells)], f"missing value: the row has {len(cells)} of the "
                                                     f"{len(HEADER)} values {','.join(HEADER)}")
            if len(cells) > len(HEADER):
                raise fail(line, str(len(HEADER) + 1 + skip_index),
                           f"unexpected extra value {cells[len(HEADER)]!r}: a row has exactly the "
                           f"{len(HEADER)} values {','.join(HEADER)}")
            column = HEADER[0]
            try:
                t = _parse_ts(cells[0])
                values: list[float] = []
                for i in range(1, len(HEADER)):
                    column = HEADER[i]
                    values.append(_parse_number(cells[i]))
            except _CellError as e:
                raise fail(line, column, str(e)) from None
            problem = _bar_problem(*values)
            if problem is not None:
                raise fail(line, *problem)
            if ts and t <= ts[-1]:
                raise fail(line, "Date", f"{cells[0]!r} is not after the date on line {prev_line} "
                                         f"({_format_ts(ts[-1])}); sort the rows oldest first and remove duplicates")
            ts.append(t)
            for out, value in zip(cols, values, strict=True):
                out.append(value)
            prev_line = line
    except csv.Error as e:
        raise DataError(f"{where} line {reader.line_num}: not valid CSV ({e})") from None
    if header is None:
        raise fail(1, HEADER[0], f"the file is empty; it needs the header {','.join(HEADER)} and at least 2 rows")
    if len(ts) < 2:
        raise fail(max(prev_line, 1) + 1, HEADER[0], f"{len(ts)} data row(s); a backtest needs at least 2 bars")
    name = path.stem if symbol is None else symbol
    return Bars(name, tuple(ts), *(tuple(c) for c in cols))


def _check_header(header: list[str], line: int, fail: _Fail) -> bool:
    """Check the header; True if it has an extra leading index column to skip."""
    names = [h.lower() for h in header]
    expected = [h.lower() for h in HEADER]
    skip = len(names) == len(expected) + 1 and (names[0] == "" or re.fullmatch(r"unnamed: ?0", names[0]) is not None)
    if skip:
        names = names[1:]
    for i, want in enumerate(expected):
        col = i + 1 + skip
        if i >= len(names):
            raise fail(line, str(col), f"header is missing {HEADER[i]!r}: it must be exactly {','.join(HEADER)}")
        if names[i] != want:
            raise fail(line, str(col), f"header has {header[i + skip]!r} where {HEADER[i]!r} belongs: it must be "
                                       f"exactly {','.join(HEADER)} (rename or drop other columns, e.g. Adj Close)")
    if len(names) > len(expected):
        col = len(expected) + 1 + skip
        raise fail(line, str(col), f"header has an extra column {header[col - 1]!r}: it must be exactly "
                                   f"{','.join(HEADER)} (drop the other columns)")
    return skip


class _CellError(Exception):
    """A bad cell; the caller adds file, line and column."""


def _parse_number(cell: str) -> float:
    if not cell:
        raise _CellError("empty value; every row needs a number here")
    try:
        value = float(cell)
    except ValueError:
        raise _CellError(f"{cell!r} is not a number (use a plain decimal such as 123.45, no thousands separators or "
                   "currency signs)") from None
    if not math.isfinite(value):
        raise _CellError(f"{cell!r} is not a finite number")
    return value


def _parse_ts(cell: str) -> int:
    if not cell:
        raise _CellError("empty value; every row needs a date such as 2020-01-31")
    try:
        return to_ns(parse_datetime(cell))
    except ValueError:
        raise _CellError(f"{cell!r} is not an ISO date or datetime (e.g. 2020-01-31 or 2020-01-31T14:30:00Z)") from None


def parse_datetime(text: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (naive = UTC) as an aware datetime; ValueError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    if not re.match(r"\d{4}-\d{2}-\d{2}[T ]", text):
        raise ValueError(f"not an ISO date or datetime: {text!r}")
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def to_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (microsecond resolution)."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND_NS + delta.microseconds * 1_000


def _format_ts(ts_ns: int) -> str:
    dt = datetime.fromtimestamp(ts_ns // SECOND_NS, tz=UTC)
    return dt.date().isoformat() if ts_ns % DAY_NS == 0 else dt.isoformat()


# --- the --data argument ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Synthetic bars: `bars` bars of `bar_ns` each from `start_ns`, generated with `seed`."""

    symbol: str = "BTC-USD"
    bars: int = 2000
    seed: int = 1
    bar_ns: int = DAY_NS
    start_ns: int = 18_262 * DAY_NS  # 2020-01-01T00:00:00Z

    def __post_init__(self) -> None:
        if self.bars < 2:
            raise DataError(f"synthetic: bars={self.bars}; a backtest needs at least 2")
        if self.bar_ns < SUB_BARS * 2 or self.bar_ns % SUB_BARS:
            raise DataError(f"synthetic: bar length {self.bar_ns} ns is too short or not a multiple of {SUB_BARS}")
        if not self.symbol:
            raise DataError("synthetic: symbol is empty")


SYNTHETIC_KEYS: Mapping[str, str] = {
    "symbol": "instrument name (default BTC-USD)",
    "bars": "number of bars, at least 2 (default 2000)",
    "seed": "integer random seed (default 1)",
    "bar": "bar length: a number and s, m, h, d or w, e.g. 1m, 15m, 1h, 1d (default 1d)",
    "start": "first bar's ISO date or datetime, UTC (default 2020-01-01)",
}


@dataclass(frozen=True)
class DataSpec:
    """What `--data` named: a CSV file, a recording (directory or .jsonl[.gz]) or synthetic bars."""

    kind: Literal["csv", "recording", "synthetic"]
    path: Path | None = None
    synthetic: SyntheticSpec | None = field(default=None)

    def describe(self) -> dict[str, object]:
        """JSON-able: what the data was, enough to load it again."""
        if self.synthetic is not None:
            s = self.synthetic
            return {"kind": "synthetic", "symbol": s.symbol, "bars": s.bars, "seed": s.seed, "bar_ns": s.bar_ns,
                    "start_ns": s.start_ns, "sub_bars": SUB_BARS}
        return {"kind": self.kind, "path": str(self.path)}


def parse_data_spec(spec: str) -> DataSpec:
    """Parse the `--data` argument.

    - `synthetic` or `synthetic:key=value,...` with keys symbol, bars, seed, bar, start (see `SYNTHETIC_KEYS`);
    - a path ending in `.csv` -> kind "csv" (the file must exist);
    - a directory, or a path ending in `.jsonl` or `.jsonl.gz` -> kind "recording" (must exist; not read here).
    """
    text = spec.strip()
    if text == "synthetic" or text.startswith("synthetic:"):
        return DataSpec("synthetic", synthetic=_parse_synthetic(text.removeprefix("synthetic").removeprefix(":")))
    if not text:
        raise DataError("--data is empty; give a .csv file, a recording (directory or .jsonl/.jsonl.gz) or "
                        "synthetic:bars=2000,seed=1")
    path = Path(text).expanduser()
    name = path.name.lower()
    if path.is_dir() or name.endswith((".jsonl", ".jsonl.gz")):
        if not path.exists():
            raise DataError(f"--data {text}: no such recording; check the path")
        return DataSpec("recording", path=path)
    if name.endswith(".csv"):
        if not path.is_file():
            raise DataError(f"--data {text}: no such file; check the path")
        return DataSpec("csv", path=path)
    raise DataError(f"--data {text}: not a .csv file, a recording (a directory or a .jsonl/.jsonl.gz file) or "
                    "synthetic:KEY=VALUE,... (keys: " + ", ".join(SYNTHETIC_KEYS) + ")")


def _parse_synthetic(body: str) -> SyntheticSpec:
    valid = "valid keys: " + "; ".join(f"{k} = {v}" for k, v in SYNTHETIC_KEYS.items())
    values: dict[str, str] = {}
    for part in body.split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq:
            raise DataError(f"synthetic: {part!r} is not key=value; {valid}")
        if key not in SYNTHETIC_KEYS:
            raise DataError(f"synthetic: unknown key {key!r}; {valid}")
        if key in values:
            raise DataError(f"synthetic: key {key!r} given twice")
        if not value:
            raise DataError(f"synthetic: {key} has no value; {key} is the {SYNTHETIC_KEYS[key]}")
        values[key] = value

    def bad(key: str) -> DataError:
        return DataError(f"synthetic: {key}={values[key]!r} is not valid; {key} is the {SYNTHETIC_KEYS[key]}")

    def integer(key: str) -> int | None:
        if key not in values:
            return None
        if re.fullmatch(r"[+-]?\d+", values[key]) is None:
            raise bad(key)
        return int(values[key])

    default = SyntheticSpec()
    symbol = values.get("symbol", default.symbol)
    if re.search(r"[\s=:]", symbol):
        raise bad("symbol")
    bars = integer("bars")
    if bars is not None and bars < 2:
        raise bad("bars")
    seed = integer("seed")
    bar_ns = default.bar_ns
    if "bar" in values:
        m = re.fullmatch(r"(\d+)([smhdw])", values["bar"].lower())
        if m is None or int(m[1]) == 0:
            raise bad("bar")
        bar_ns = int(m[1]) * _UNIT_NS[m[2]]
    start_ns = default.start_ns
    if "start" in values:
        try:
            start_ns = to_ns(parse_datetime(values["start"]))
        except ValueError:
            raise bad("start") from None
    return SyntheticSpec(symbol=symbol, bars=default.bars if bars is None else bars,
                         seed=default.seed if seed is None else seed, bar_ns=bar_ns, start_ns=start_ns)


# --- synthetic bars --------------------------------------------------------------------------------


def synthetic_bars(spec: SyntheticSpec) -> Bars:
    """OHLCV bars from `SyntheticMarket` trade prints, `SUB_BARS` generator bars per output bar.

    Output bar i opens at `start_ns + i × bar_ns`; it aggregates the trades of generator bars
    `SUB_BARS × i ... SUB_BARS × i + SUB_BARS − 1` (each `bar_ns / SUB_BARS` long). The same spec
    gives the same bars; a different seed gives different ones.
    """
    sub_ns = spec.bar_ns // SUB_BARS
    market = SyntheticMarket(spec.seed, symbols=[spec.symbol], start_ns=spec.start_ns, bar_ns=sub_ns,
                             binary_events=())
    ts: list[int] = []
    o: list[float] = []
    h: list[float] = []
    lo: list[float] = []
    c: list[float] = []
    v: list[float] = []
    for i in range(spec.bars):
        prices: list[float] = []
        volume = Decimal(0)
        for event in market.events(SUB_BARS):
            if event.kind == "trade":
                prices.append(event.price)
                volume += Decimal(repr(event.size))
        ts.append(spec.start_ns + i * spec.bar_ns)
        o.append(prices[0])
        h.append(max(prices))
        lo.append(min(prices))
        c.append(prices[-1])
        v.append(float(volume))
    return Bars(spec.symbol, tuple(ts), tuple(o), tuple(h), tuple(lo), tuple(c), tuple(v))


def load_bars(spec: DataSpec, symbol: str | None = None) -> Bars:
    """The bars of a "csv" or "synthetic" spec (`symbol` overrides a CSV file's); DataError for a recording."""
    if spec.kind == "synthetic" and spec.synthetic is not None:
        return synthetic_bars(spec.synthetic)
    if spec.kind == "csv" and spec.path is not None:
        return load_csv(spec.path, symbol)
    raise DataError(f"--data {spec.path}: a recording is replayed, not loaded as bars")


# --- the event source ------------------------------------------------------------------------------


class BarSource:
    """The backtest's EventSource: one `MarketEvent(kind="bar")` per bar, price = close, size = volume."""

    def __init__(self, bars: Bars, origin: Mapping[str, object] | None = None, venue: str = "backtest") -> None:
        self.bars = bars
        self.origin = dict(origin or {})
        self.venue = venue

    def events(self) -> Iterator[MarketEvent]:
        b = self.bars
        for i in range(len(b)):
            yield MarketEvent("bar", self.venue, b.symbol, b.ts_ns[i], b.close[i], b.volume[i])

    def describe(self) -> dict[str, object]:
        b = self.bars
        return {"source": "bars", "venue": self.venue, "symbol": b.symbol, "bars": len(b),
                "first_ts_ns": b.ts_ns[0], "last_ts_ns": b.ts_ns[-1], "data": dict(self.origin)}
