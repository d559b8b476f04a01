"""Bar data for backtests: CSV loading and its error messages, the --data argument, synthetic bars, BarSource."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allele.kernel.backtest.data import (
    DAY_NS,
    SUB_BARS,
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
from allele.kernel.domain import MarketEvent
from allele.kernel.engine.ports import EventSource
from allele.kernel.market import SyntheticMarket

GOOD = """Date,Open,High,Low,Close,Volume
2020-01-02,100,110,95,105,1000
2020-01-03,105,108,101,102.5,1500.5
2020-01-06,102.5,103,99,100,0
"""


def ns(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000


def write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- CSV happy paths -------------------------------------------------------------------------------


def test_load_csv_reads_every_column(tmp_path: Path) -> None:
    bars = load_csv(write(tmp_path, GOOD))
    assert bars.symbol == "prices"
    assert len(bars) == 3
    assert bars.ts_ns == (ns("2020-01-02"), ns("2020-01-03"), ns("2020-01-06"))
    assert bars.open == (100.0, 105.0, 102.5)
    assert bars.high == (110.0, 108.0, 103.0)
    assert bars.low == (95.0, 101.0, 99.0)
    assert bars.close == (105.0, 102.5, 100.0)
    assert bars.volume == (1000.0, 1500.5, 0.0)


def test_load_csv_symbol_override_header_case_whitespace_bom_crlf_blank_lines(tmp_path: Path) -> None:
    text = "\ufeff date , OPEN,high ,Low,close,VOLUME\r\n2020-01-02,1,2,0.5,1.5,3\r\n\r\n2020-01-03,1.5,2,1,2,4\r\n\r\n"
    bars = load_csv(write(tmp_path, text), symbol="AAPL")
    assert bars.symbol == "AAPL"
    assert bars.close == (1.5, 2.0)
    assert bars.ts_ns == (ns("2020-01-02"), ns("2020-01-03"))


@pytest.mark.parametrize("index_name", ["", "Unnamed: 0"])
def test_load_csv_tolerates_a_leading_unnamed_index_column(tmp_path: Path, index_name: str) -> None:
    text = f"{index_name},Date,Open,High,Low,Close,Volume\n0,2020-01-02,1,2,0.5,1.5,3\n1,2020-01-03,1.5,2,1,2,4\n"
    bars = load_csv(write(tmp_path, text))
    assert bars.open == (1.0, 1.5)
    assert bars.volume == (3.0, 4.0)


def test_load_csv_datetimes_with_and_without_time_zone(tmp_path: Path) -> None:
    text = ("Date,Open,High,Low,Close,Volume\n"
            "2020-01-02T14:30:00,1,1,1,1,1\n"
            "2020-01-02 15:30:00+02:00,1,1,1,1,1\n"   # 13:30 UTC: earlier than the first row -> must fail
            )
    with pytest.raises(DataError, match=r"line 3, column Date"):
        load_csv(write(tmp_path, text))
    text = ("Date,Open,High,Low,Close,Volume\n"
            "2020-01-02T14:30:00,1,1,1,1,1\n"
            "2020-01-02 17:30:00+02:00,1,1,1,1,1\n"
            "2020-01-02T16:00:00Z,1,1,1,1,1\n")
    bars = load_csv(write(tmp_path, text))
    assert bars.ts_ns == (ns("2020-01-02T14:30:00"), ns("2020-01-02T15:30:00"), ns("2020-01-02T16:00:00"))


# --- CSV errors: every one names the file, the line and the column --------------------------------

HEAD = "Date,Open,High,Low,Close,Volume\n"
ROW = "2020-01-02,100,110,95,105,1000\n"

BAD_ROWS = [
    # (file text, line, column, a phrase of the explanation)
    (HEAD + ROW + "2020-01-03,abc,110,95,105,1000\n", 3, "Open", "'abc' is not a number"),
    (HEAD + ROW + "2020-01-03,100,110,95,1.234.5,1000\n", 3, "Close", "'1.234.5' is not a number"),
    (HEAD + ROW + "2020-01-03,100,,95,105,1000\n", 3, "High", "empty value"),
    (HEAD + ROW + "2020-01-03,100,110,95,105,nan\n", 3, "Volume", "not a finite number"),
    (HEAD + ROW + "2020-01-03,100,110,95,105,inf\n", 3, "Volume", "not a finite number"),
    (HEAD + ROW + "2020-01-03,100,110,95,105,-1\n", 3, "Volume", ">= 0"),
    (HEAD + ROW + "2020-01-03,0,110,95,105,1\n", 3, "Open", "> 0"),
    (HEAD + ROW + "2020-01-03,-5,110,-9,105,1\n", 3, "Open", "> 0"),
    (HEAD + ROW + "2020-01-03,100,104,95,105,1\n", 3, "High", "below max(Open, Close)"),
    (HEAD + ROW + "2020-01-03,100,110,101,105,1\n", 3, "Low", "above min(Open, Close)"),
    (HEAD + ROW + "31/01/2020,100,110,95,105,1\n", 3, "Date", "not an ISO date"),
    (HEAD + ROW + "2020-02-30,100,110,95,105,1\n", 3, "Date", "not an ISO date"),
    (HEAD + ROW + ",100,110,95,105,1\n", 3, "Date", "empty value"),
    (HEAD + ROW + "2020-01-02,100,110,95,105,1\n", 3, "Date", "is not after the date on line 2"),
    (HEAD + ROW + "2020-01-01,100,110,95,105,1\n", 3, "Date", "sort the rows oldest first"),
    (HEAD + ROW + "2020-01-03,100,110,95\n", 3, "Close", "missing value"),
    (HEAD + ROW + "2020-01-03,100,110,95,105,1,7\n", 3, "7", "unexpected extra value '7'"),
    (HEAD + ROW, 3, "Date", "at least 2 bars"),
    (HEAD, 2, "Date", "at least 2 bars"),
    ("", 1, "Date", "the file is empty"),
    ("Date,Open,High,Low,Adj Close,Volume\n" + ROW, 1, "5", "'Adj Close' where 'Close' belongs"),
    ("Date,Open,High,Low,Close\n" + ROW, 1, "6", "missing 'Volume'"),
    ("Date,Open,High,Low,Close,Volume,Adj Close\n" + ROW, 1, "7", "extra column 'Adj Close'"),
    ("Open,Date,High,Low,Close,Volume\n" + ROW, 1, "1", "'Open' where 'Date' belongs"),
    ("\n\n" + HEAD + "\n" + ROW + "2020-01-03,1,1,1,x,1\n", 6, "Close", "'x' is not a number"),
]


@pytest.mark.parametrize(("text", "line", "column", "phrase"), BAD_ROWS)
def test_every_csv_error_names_file_line_and_column(tmp_path: Path, text: str, line: int, column: str,
                                                    phrase: str) -> None:
    path = write(tmp_path, text, name="broken.csv")
    with pytest.raises(DataError) as info:
        load_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path} line {line}, column {column}: "), message
    assert phrase in message
    assert isinstance(info.value, ValueError)


def test_csv_errors_for_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        load_csv(tmp_path / "nope.csv")
    path = tmp_path / "latin.csv"
    path.write_bytes((HEAD + ROW).encode() + b"2020-01-03,1,1,1,1,1\xe9\n")
    with pytest.raises(DataError, match=r"latin\.csv line 3: byte 0xe9 is not UTF-8"):
        load_csv(path)


def test_bars_validation() -> None:
    ok = Bars("X", (1, 2), (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (0.0, 0.0))
    assert len(ok) == 2
    with pytest.raises(DataError, match="at least 2"):
        Bars("X", (1,), (1.0,), (1.0,), (1.0,), (1.0,), (0.0,))
    with pytest.raises(DataError, match="close has 1 values but ts_ns has 2"):
        Bars("X", (1, 2), (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (1.0,), (0.0, 0.0))
    with pytest.raises(DataError, match="strictly increasing"):
        Bars("X", (2, 2), (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (0.0, 0.0))
    with pytest.raises(DataError, match=r"bar 1 .*High"):
        Bars("X", (1, 2), (1.0, 2.0), (1.0, 1.5), (1.0, 1.0), (1.0, 2.0), (0.0, 0.0))
    with pytest.raises(DataError, match=r"bar 0 .*Close"):
        Bars("X", (1, 2), (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), (float("nan"), 2.0), (0.0, 0.0))


# --- the --data argument ---------------------------------------------------------------------------


def test_parse_data_spec_synthetic_defaults() -> None:
    for text in ("synthetic", "synthetic:", " synthetic: "):
        spec = parse_data_spec(text)
        assert spec.kind == "synthetic"
        assert spec.synthetic == SyntheticSpec("BTC-USD", 2000, 1, DAY_NS, ns("2020-01-01"))


def test_parse_data_spec_synthetic_values() -> None:
    spec = parse_data_spec("synthetic:symbol=ETH-USD, bars=500,seed=-7,bar=15m,start=2021-06-01")
    assert spec.synthetic == SyntheticSpec("ETH-USD", 500, -7, 15 * 60 * 1_000_000_000, ns("2021-06-01"))
    assert parse_data_spec("synthetic:bar=1h").synthetic == SyntheticSpec(bar_ns=3_600_000_000_000)
    assert parse_data_spec("synthetic:bar=2w").synthetic == SyntheticSpec(bar_ns=14 * DAY_NS)
    assert parse_data_spec("synthetic:bar=30s").synthetic == SyntheticSpec(bar_ns=30_000_000_000)
    assert parse_data_spec("synthetic:start=2020-03-01T12:00:00Z").synthetic == SyntheticSpec(
        start_ns=ns("2020-03-01T12:00:00"))


@pytest.mark.parametrize(("text", "key"), [
    ("synthetic:bras=10", "bras"),
    ("synthetic:bars=ten", "bars"),
    ("synthetic:bars=1", "bars"),
    ("synthetic:bars=2.5", "bars"),
    ("synthetic:seed=x", "seed"),
    ("synthetic:bar=1y", "bar"),
    ("synthetic:bar=0d", "bar"),
    ("synthetic:bar=d", "bar"),
    ("synthetic:start=yesterday", "start"),
    ("synthetic:symbol=", "symbol"),
    ("synthetic:symbol=A B", "symbol"),
])
def test_parse_data_spec_synthetic_errors_name_the_key_and_list_valid_ones(text: str, key: str) -> None:
    with pytest.raises(DataError) as info:
        parse_data_spec(text)
    message = str(info.value)
    assert repr(key) in message or f"{key}=" in message or f"{key} has no value" in message, message
    if key == "bras":
        for valid in ("symbol", "bars", "seed", "bar", "start"):
            assert valid in message


def test_parse_data_spec_synthetic_syntax_errors() -> None:
    with pytest.raises(DataError, match=r"'bars' is not key=value; valid keys: symbol"):
        parse_data_spec("synthetic:bars")
    with pytest.raises(DataError, match=r"key 'seed' given twice"):
        parse_data_spec("synthetic:seed=1,seed=2")


def test_parse_data_spec_paths(tmp_path: Path) -> None:
    csv_path = write(tmp_path, GOOD)
    assert parse_data_spec(str(csv_path)) == DataSpec("csv", path=csv_path)
    upper = write(tmp_path, GOOD, name="UPPER.CSV")
    assert parse_data_spec(str(upper)).kind == "csv"
    recording_dir = tmp_path / "run-1"
    recording_dir.mkdir()
    assert parse_data_spec(str(recording_dir)) == DataSpec("recording", path=recording_dir)
    for name in ("events.jsonl", "events.jsonl.gz"):
        (tmp_path / name).write_bytes(b"")
        assert parse_data_spec(str(tmp_path / name)) == DataSpec("recording", path=tmp_path / name)
    with pytest.raises(DataError, match="no such file"):
        parse_data_spec(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="no such recording"):
        parse_data_spec(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match=r"not a \.csv file, a recording"):
        parse_data_spec(str(tmp_path / "prices.xlsx"))
    with pytest.raises(DataError, match="--data is empty"):
        parse_data_spec("  ")


def test_load_bars_from_specs(tmp_path: Path) -> None:
    csv_path = write(tmp_path, GOOD)
    assert load_bars(parse_data_spec(str(csv_path))) == load_csv(csv_path)
    assert load_bars(parse_data_spec(str(csv_path)), symbol="SPY").symbol == "SPY"
    assert load_bars(parse_data_spec("synthetic:bars=5")) == synthetic_bars(SyntheticSpec(bars=5))
    (tmp_path / "rec").mkdir()
    with pytest.raises(DataError, match="recording"):
        load_bars(parse_data_spec(str(tmp_path / "rec")))
    described = parse_data_spec("synthetic:bars=5,seed=3").describe()
    assert described["kind"] == "synthetic" and described["seed"] == 3 and described["bars"] == 5
    json.dumps(described)


# --- synthetic bars --------------------------------------------------------------------------------


def test_synthetic_bars_aggregate_the_generator_trades() -> None:
    spec = SyntheticSpec(symbol="SOL-USD", bars=30, seed=5, bar_ns=3_600_000_000_000, start_ns=ns("2022-01-01"))
    bars = synthetic_bars(spec)
    market = SyntheticMarket(5, symbols=["SOL-USD"], start_ns=spec.start_ns, bar_ns=spec.bar_ns // SUB_BARS,
                             binary_events=())
    trades = [e for e in market.events(30 * SUB_BARS) if e.kind == "trade"]
    assert len(trades) == 30 * SUB_BARS
    for i in range(30):
        group = trades[SUB_BARS * i: SUB_BARS * (i + 1)]
        assert bars.ts_ns[i] == spec.start_ns + i * spec.bar_ns == group[0].ts_ns
        assert bars.open[i] == group[0].price
        assert bars.close[i] == group[-1].price
        assert bars.high[i] == max(t.price for t in group)
        assert bars.low[i] == min(t.price for t in group)
        assert bars.volume[i] == pytest.approx(sum(t.size for t in group))
    assert bars.symbol == "SOL-USD"
    # Four prints per bar: the OHLC of most bars are not all equal.
    assert sum(1 for i in range(30) if bars.high[i] > bars.low[i]) > 20


@settings(max_examples=25)
@given(seed=st.integers(-10_000, 10_000), n=st.integers(2, 60),
       bar=st.sampled_from(["1m", "1h", "1d", "30s"]))
def test_synthetic_bars_are_deterministic_and_valid(seed: int, n: int, bar: str) -> None:
    spec = parse_data_spec(f"synthetic:seed={seed},bars={n},bar={bar}").synthetic
    assert spec is not None
    a, b = synthetic_bars(spec), synthetic_bars(spec)
    assert a == b
    assert len(a) == n
    for i in range(n):
        assert 0 < a.low[i] <= min(a.open[i], a.close[i]) <= max(a.open[i], a.close[i]) <= a.high[i]
        assert a.volume[i] > 0
        if i:
            assert a.ts_ns[i] - a.ts_ns[i - 1] == spec.bar_ns


def test_synthetic_bars_differ_by_seed() -> None:
    a = synthetic_bars(SyntheticSpec(bars=50, seed=1))
    b = synthetic_bars(SyntheticSpec(bars=50, seed=2))
    assert a.close != b.close
    assert a.ts_ns == b.ts_ns


# --- BarSource -------------------------------------------------------------------------------------


def test_bar_source_emits_one_bar_event_per_bar(tmp_path: Path) -> None:
    bars = load_csv(write(tmp_path, GOOD), symbol="SPY")
    source = BarSource(bars, origin={"kind": "csv", "path": "prices.csv"})
    assert isinstance(source, EventSource)
    events = list(source.events())
    assert events == [
        MarketEvent("bar", "backtest", "SPY", ns("2020-01-02"), 105.0, 1000.0),
        MarketEvent("bar", "backtest", "SPY", ns("2020-01-03"), 102.5, 1500.5),
        MarketEvent("bar", "backtest", "SPY", ns("2020-01-06"), 100.0, 0.0),
    ]
    assert list(source.events()) == events  # re-iterable
    described = source.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["symbol"] == "SPY" and described["bars"] == 3
    assert described["data"] == {"kind": "csv", "path": "prices.csv"}
    assert re.fullmatch(r"\d+", str(described["first_ts_ns"]))
