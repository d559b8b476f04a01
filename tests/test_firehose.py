"""The firehose on real files: records round-trip exactly, rotation compresses, the reader tolerates
a crash tail only at the very end, and crashed sessions are recovered."""

from __future__ import annotations

import gzip
import json
import logging
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.domain import MarketEvent, OrderUpdate
from allele.kernel.engine.firehose import (
    Firehose,
    FirehoseError,
    Frame,
    RecordingError,
    SessionInfo,
    decode_record,
    event_from_record,
    event_record,
    frame_from_record,
    frame_record,
    list_sessions,
    read_recording,
    recover,
    update_from_record,
    update_record,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=20)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)

events = st.builds(
    MarketEvent, kind=st.sampled_from(["trade", "quote", "bar"]), venue=text, symbol=text, ts_ns=ints,
    price=finite, size=finite | st.just(0.0), bid=finite | st.just(0.0), ask=finite | st.just(-0.0),
    bid_size=finite, ask_size=finite)
updates = st.builds(
    OrderUpdate, client_order_id=text, venue_order_id=text, symbol=text,
    status=st.sampled_from(["accepted", "partially-filled", "filled", "cancelled", "rejected", "expired"]),
    fill_quantity=finite | st.just(0.0), fill_price=finite, fee=finite | st.just(-0.0), fee_currency=text,
    ts_ns=ints, reason=text)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def through_json(record: dict[str, Any]) -> dict[str, Any]:
    """What the reader gets back for `record`: the same line encoding and decoding as the firehose."""
    out = json.loads(json.dumps(record, separators=(",", ":"), allow_nan=False))
    assert isinstance(out, dict)
    return out


def event(i: int, price: float = 100.0) -> MarketEvent:
    return MarketEvent("trade", "sim", "BTC-USD", 1_000 + i, price, size=0.5)


def records(n: int) -> list[dict[str, Any]]:
    return [event_record(event(i, 100.0 + i / 7)) for i in range(n)]


def write_session(root: Path, session: str, recs: list[dict[str, Any]], **kwargs: Any) -> Path:
    with Firehose(root, session, **kwargs) as fh:
        for r in recs:
            fh.append(r)
    return root / session


# --- records -----------------------------------------------------------------------------------------


@given(events)
def test_event_round_trip_is_exact(e: MarketEvent) -> None:
    back = event_from_record(through_json(event_record(e)))
    assert back == e
    for name in ("price", "size", "bid", "ask", "bid_size", "ask_size"):
        assert bits(getattr(back, name)) == bits(getattr(e, name)), name  # -0.0 keeps its sign
    assert decode_record(through_json(event_record(e))) == e


@given(updates)
def test_update_round_trip_is_exact(u: OrderUpdate) -> None:
    back = update_from_record(through_json(update_record(u)))
    assert back == u
    for name in ("fill_quantity", "fill_price", "fee"):
        assert bits(getattr(back, name)) == bits(getattr(u, name)), name
    assert decode_record(through_json(update_record(u))) == u


@given(st.lists(events | updates, max_size=30))
def test_records_round_trip_through_files(tmp_path_factory: pytest.TempPathFactory,
                                          items: list[MarketEvent | OrderUpdate]) -> None:
    root = tmp_path_factory.mktemp("rec")
    recs = [event_record(x) if isinstance(x, MarketEvent) else update_record(x) for x in items]
    session = write_session(root, "s", recs, max_bytes=512)
    assert [decode_record(r) for r in read_recording(session)] == items


def test_default_fields_are_omitted() -> None:
    assert event_record(MarketEvent("trade", "v", "X", 5, 1.5)) == {
        "k": "event", "kind": "trade", "venue": "v", "symbol": "X", "ts_ns": 5, "price": 1.5}
    assert event_record(MarketEvent("quote", "v", "X", 5, 1.5, ask=-0.0))["ask"] == -0.0
    assert update_record(OrderUpdate("c1", "v1", "X", "accepted")) == {
        "k": "update", "client_order_id": "c1", "venue_order_id": "v1", "symbol": "X", "status": "accepted"}


def test_frame_record() -> None:
    rec = frame_record("binance", 123, '{"e":"trade","p":"1.0"}\n')
    assert rec == {"k": "frame", "venue": "binance", "ts": 123, "raw": '{"e":"trade","p":"1.0"}\n'}
    assert frame_from_record(through_json(rec)) == Frame("binance", 123, '{"e":"trade","p":"1.0"}\n')


def test_bad_records_name_the_key() -> None:
    good = event_record(event(0))
    with pytest.raises(RecordingError, match="'price'"):
        event_from_record({k: v for k, v in good.items() if k != "price"})
    with pytest.raises(RecordingError, match="'ts_ns'"):
        event_from_record({**good, "ts_ns": "soon"})
    with pytest.raises(RecordingError, match="'kind'"):
        event_from_record({**good, "kind": "rumour"})
    with pytest.raises(RecordingError, match="'status'"):
        update_from_record({"k": "update", "client_order_id": "c", "venue_order_id": "v", "symbol": "X"})
    with pytest.raises(RecordingError, match="'mood'"):
        decode_record({"k": "mood"})
    with pytest.raises(RecordingError, match="'k'"):
        event_from_record({**good, "k": "update"})
    with pytest.raises(RecordingError, match="unknown keys"):
        event_from_record({**good, "prize": 1.0})
    assert issubclass(RecordingError, ValueError)


# --- writer ------------------------------------------------------------------------------------------


def test_lines_are_compact_json(tmp_path: Path) -> None:
    fh = Firehose(tmp_path, "s")
    fh.append({"k": "header", "venue": {"name": "sim", "symbols": ["A", "B"]}})
    fh.append(event_record(event(0)))
    fh.flush()
    assert fh.current == tmp_path / "s" / "000001.jsonl"
    lines = (tmp_path / "s" / "000001.jsonl").read_bytes().split(b"\n")
    assert lines[0] == b'{"k":"header","venue":{"name":"sim","symbols":["A","B"]}}'
    assert lines[1].startswith(b'{"k":"event","kind":"trade",') and lines[2] == b""
    fh.close()
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["000001.jsonl.gz"]


def test_rotation_compresses_all_but_the_last_and_close_compresses_it(tmp_path: Path) -> None:
    recs = records(200)
    fh = Firehose(tmp_path, "s", max_bytes=1000)
    for r in recs:
        fh.append(r)
    fh.flush()
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert len(names) >= 5
    assert all(n.endswith(".jsonl.gz") for n in names[:-1])
    assert names[-1].endswith(".jsonl")
    assert names == [f"{i:06d}.jsonl.gz" for i in range(1, len(names))] + [f"{len(names):06d}.jsonl"]
    for p in sorted((tmp_path / "s").glob("*.gz")):  # each rotated file holds about max_bytes
        assert 1000 <= len(gzip.decompress(p.read_bytes())) < 1000 + 200
    fh.close()
    fh.close()  # idempotent
    after = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert after == [f"{i:06d}.jsonl.gz" for i in range(1, len(names) + 1)]
    assert list(read_recording(tmp_path / "s")) == recs
    with pytest.raises(FirehoseError, match="closed"):
        fh.append(recs[0])


def test_reader_reads_single_files_plain_and_gzipped(tmp_path: Path) -> None:
    recs = records(50)
    session = write_session(tmp_path, "s", recs, max_bytes=1500)
    files = sorted(session.iterdir())
    assert len(files) > 2
    first = list(read_recording(files[0]))
    assert first == recs[: len(first)]
    plain = tmp_path / "000001.jsonl"
    plain.write_bytes(gzip.decompress(files[0].read_bytes()))
    assert list(read_recording(plain)) == first


def test_reader_orders_files_numerically(tmp_path: Path) -> None:
    session = tmp_path / "s"
    session.mkdir()
    (session / "1000000.jsonl").write_text('{"k":"x","n":3}\n')  # past 999999: seven digits
    (session / "000010.jsonl.gz").write_bytes(gzip.compress(b'{"k":"x","n":2}\n'))
    (session / "000002.jsonl").write_text('{"k":"x","n":1}\n')
    (session / "notes.txt").write_text("not a recording\n")
    assert [r["n"] for r in read_recording(session)] == [1, 2, 3]


def test_refuses_an_existing_session(tmp_path: Path) -> None:
    write_session(tmp_path, "s", records(3))
    with pytest.raises(FirehoseError, match=r"(?s)already has files.*resume=True") as info:
        Firehose(tmp_path, "s")
    assert str(tmp_path / "s") in str(info.value)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["000001.jsonl.gz"]
    Firehose(tmp_path, "other").close()  # an empty session directory is not refused either
    (tmp_path / "empty").mkdir()
    Firehose(tmp_path, "empty").close()


def test_resume_continues_numbering(tmp_path: Path) -> None:
    recs = records(60)
    write_session(tmp_path, "s", recs[:30], max_bytes=1000)
    before = sorted(p.name for p in (tmp_path / "s").iterdir())
    with Firehose(tmp_path, "s", max_bytes=1000, resume=True) as fh:
        assert fh.current == tmp_path / "s" / f"{len(before) + 1:06d}.jsonl"
        for r in recs[30:]:
            fh.append(r)
    after = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert after[: len(before)] == before and len(after) > len(before)
    assert after == [f"{i:06d}.jsonl.gz" for i in range(1, len(after) + 1)]
    assert list(read_recording(tmp_path / "s")) == recs


def test_invalid_arguments(tmp_path: Path) -> None:
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(ValueError, match="session name"):
            Firehose(tmp_path, bad)
    with pytest.raises(ValueError, match="max_bytes"):
        Firehose(tmp_path, "s", max_bytes=0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(tmp_path: Path, value: float) -> None:
    with Firehose(tmp_path, "s") as fh:
        fh.append(event_record(event(0)))
        with pytest.raises(ValueError, match=r"'event' record holds a non-finite number in price"):
            fh.append(event_record(event(1, price=value)))
        with pytest.raises(ValueError, match="'header'"):
            fh.append({"k": "header", "nested": {"x": value}})
        with pytest.raises(ValueError, match="'k'"):
            fh.append({"price": 1.0})
        fh.append(event_record(event(2)))
    assert list(read_recording(tmp_path / "s")) == [event_record(event(0)), event_record(event(2))]


# --- crash tails and damage --------------------------------------------------------------------------


def crashed_session(root: Path, recs: list[dict[str, Any]], tail: bytes, max_bytes: int = 1000) -> Path:
    """A session whose writer died: rotated files compressed, the last one plain with `tail` appended."""
    fh = Firehose(root, "s", max_bytes=max_bytes)
    for r in recs:
        fh.append(r)
    fh.flush()
    current = fh.current
    assert current is not None
    with open(current, "ab") as f:
        f.write(tail)
    f = fh._file  # the process dies: no close(), no compression
    assert f is not None
    f.close()
    return root / "s"


def test_crash_tail_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = records(40)
    session = crashed_session(tmp_path, recs, b'{"k":"event","kind":"tra')
    assert any(p.suffix == ".jsonl" for p in session.iterdir())
    with caplog.at_level(logging.WARNING, logger="allele.firehose"):
        assert list(read_recording(session)) == recs
    warnings = [r for r in caplog.records if r.name == "allele.firehose" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "crash tail" in warnings[0].getMessage()


def test_complete_last_line_without_newline_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = records(5)
    extra = {"k": "x", "n": 1}
    session = crashed_session(tmp_path, recs, json.dumps(extra).encode())
    with caplog.at_level(logging.WARNING, logger="allele.firehose"):
        assert list(read_recording(session)) == [*recs, extra]
    assert not caplog.records


def test_garbled_middle_line_is_an_error(tmp_path: Path) -> None:
    session = tmp_path / "s"
    session.mkdir()
    (session / "000001.jsonl").write_text('{"k":"x","n":1}\n{"k":"x","n":2}\n')
    (session / "000002.jsonl").write_text('{"k":"x","n":3}\n{"k":"x",garbage\n{"k":"x","n":5}\n')
    got: list[dict[str, Any]] = []
    with pytest.raises(RecordingError, match=r"000002\.jsonl: line 2 "):
        got.extend(read_recording(session))
    assert [r["n"] for r in got] == [1, 2, 3]


def test_garbled_last_line_of_an_earlier_file_is_an_error(tmp_path: Path) -> None:
    session = tmp_path / "s"
    session.mkdir()
    (session / "000001.jsonl.gz").write_bytes(gzip.compress(b'{"k":"x","n":1}\n{"k":"x","n'))
    (session / "000002.jsonl.gz").write_bytes(gzip.compress(b'{"k":"x","n":3}\n'))
    with pytest.raises(RecordingError, match=r"000001\.jsonl\.gz: line 2 "):
        list(read_recording(session))
    # the same damage in the last file is a crash tail
    assert list(read_recording(session / "000001.jsonl.gz")) == [{"k": "x", "n": 1}]


def test_truncated_gzip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = records(300)
    session = write_session(tmp_path, "s", recs, max_bytes=4000)
    files = sorted(session.iterdir())
    assert len(files) >= 3
    # the last file cut short: every complete line before the cut is read, the rest is a crash tail
    last = files[-1]
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])
    with caplog.at_level(logging.WARNING, logger="allele.firehose"):
        got = list(read_recording(session))
    assert len(recs) - 30 < len(got) < len(recs) and got == recs[: len(got)]
    assert any("crash tail" in r.getMessage() for r in caplog.records)
    # a middle file cut short is damage
    middle = files[1]
    middle.write_bytes(middle.read_bytes()[:-20])
    with pytest.raises(RecordingError, match=r"000002\.jsonl\.gz: gzip stream is truncated"):
        list(read_recording(session))


def test_missing_or_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="nowhere"):
        read_recording(tmp_path / "nowhere")  # checked at once, not on first iteration
    (tmp_path / "root" / "s").mkdir(parents=True)
    with pytest.raises(RecordingError, match="recordings directory rather than a session"):
        read_recording(tmp_path / "root")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(RecordingError, match=r"x\.csv"):
        read_recording(tmp_path / "x.csv")


# --- recovery ----------------------------------------------------------------------------------------


def test_recover_compresses_leftovers_and_keeps_the_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = records(40)
    session = crashed_session(tmp_path, recs, b'{"k":"ev')
    plain = [p for p in session.iterdir() if p.suffix == ".jsonl"]
    raw = plain[0].read_bytes()
    other = write_session(tmp_path, "clean", records(3))
    before_clean = sorted(other.iterdir())

    assert recover(tmp_path) == plain
    assert not plain[0].exists()
    assert gzip.decompress(plain[0].with_name(plain[0].name + ".gz").read_bytes()) == raw  # tail kept as is
    assert all(p.name.endswith(".jsonl.gz") for p in session.iterdir())
    assert sorted(other.iterdir()) == before_clean
    with caplog.at_level(logging.WARNING, logger="allele.firehose"):
        assert list(read_recording(session)) == recs
    assert recover(tmp_path) == []


def test_recover_after_a_crash_between_rename_and_removal(tmp_path: Path) -> None:
    session = tmp_path / "s"
    session.mkdir()
    content = b'{"k":"x","n":1}\n'
    (session / "000001.jsonl").write_bytes(content)
    (session / "000001.jsonl.gz").write_bytes(gzip.compress(content))
    assert list(read_recording(session)) == [{"k": "x", "n": 1}]  # read once, not twice
    assert recover(tmp_path) == [session / "000001.jsonl"]
    assert [p.name for p in session.iterdir()] == ["000001.jsonl.gz"]
    assert gzip.decompress((session / "000001.jsonl.gz").read_bytes()) == content


def test_recover_leaves_a_live_session_alone(tmp_path: Path) -> None:
    with Firehose(tmp_path, "live") as fh:
        fh.append(event_record(event(0)))
        fh.flush()
        assert recover(tmp_path) == []
        assert fh.current is not None and fh.current.exists()
        with pytest.raises(FirehoseError):
            Firehose(tmp_path, "live", resume=True)
        fh.append(event_record(event(1)))
    assert list(read_recording(tmp_path / "live")) == [event_record(event(0)), event_record(event(1))]


def test_resume_after_a_crash_removes_the_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = records(60)
    crashed_session(tmp_path, recs[:30], b'{"k":"event","ki')
    with caplog.at_level(logging.WARNING, logger="allele.firehose"):
        with Firehose(tmp_path, "s", max_bytes=1000, resume=True) as fh:
            for r in recs[30:]:
                fh.append(r)
    assert any("without its crash tail" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="allele.firehose"):
        assert list(read_recording(tmp_path / "s")) == recs  # no error: the old tail is gone
    assert not caplog.records


# --- listing -----------------------------------------------------------------------------------------


def test_list_sessions(tmp_path: Path) -> None:
    header = {"k": "header", "source": {"kind": "synthetic", "seed": 7}}
    write_session(tmp_path, "b-run", [header, *records(100)], max_bytes=2000)
    write_session(tmp_path, "a-run", records(2))
    (tmp_path / "empty").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    sessions = list_sessions(tmp_path)
    assert [s.name for s in sessions] == ["a-run", "b-run"]
    a, b = sessions
    assert isinstance(a, SessionInfo)
    assert a.header is None and a.files == 1 and a.path == tmp_path / "a-run"
    assert b.header == header
    assert b.files == len(list((tmp_path / "b-run").iterdir())) > 1
    assert b.bytes == sum(p.stat().st_size for p in (tmp_path / "b-run").iterdir())
    assert list_sessions(tmp_path / "missing") == []
