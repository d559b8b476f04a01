"""The firehose: an append-only JSONL recording of a trading session, and its reader.

Everything a session sees (raw venue frames, normalized market events, order updates, and a header
describing how to rebuild the venue) is appended to the firehose as one JSON object per line, so that
`allele replay` can run the session again from the recording alone.

File layout::

    <directory>/                     the recordings directory (one per home)
        <session>/                   one directory per session
            000001.jsonl.gz          closed files: gzip, never modified again
            000002.jsonl.gz
            000003.jsonl             the file being written (plain, until closed)

Files are numbered from 000001 in the order they were written; a session is read by concatenating
them in numeric order (plain or gzipped, by their suffix). A file is rotated once it holds
`max_bytes` bytes of JSON lines: it is closed, compressed to `NNNNNN.jsonl.gz` and the next file is
opened. Compression writes `NNNNNN.jsonl.gz.tmp`, fsyncs it, renames it into place and only then
removes the plain file, so a crash leaves either the plain file, or both (identical content), never a
half-written `.gz` under its final name. `recover` finishes what a crashed session left behind.

Lines: compact JSON (no spaces), one object per line, terminated by ``\\n``, ASCII only (non-ASCII
characters are escaped). Every record has a ``"k"`` key naming its kind:

    ``"header"``  free-form; by convention the first record of a session (`SessionInfo.header`)
    ``"event"``   a `MarketEvent` (`event_record` / `event_from_record`)
    ``"update"``  an `OrderUpdate` (`update_record` / `update_from_record`)
    ``"frame"``   a raw venue frame: {"k": "frame", "venue", "ts", "raw"} (`frame_record`)

Numbers: NaN and infinities are refused when writing (JSON has no such values); finite floats are
written in their shortest round-trip form, so they read back bit-exactly (including -0.0).

Crash tails: writes are buffered, so a crash can cut the last line of the last file. The reader drops
an undecodable last line of the last file (and a truncated gzip stream at the end of the last file),
with a warning on the ``allele.firehose`` logger; the same damage anywhere else is a `RecordingError`
naming the file and line. A resumed session (``resume=True``) first removes such a tail, since its
file is no longer the last one.

A `Firehose` is not thread-safe: one writer per session, driven by the engine's event loop. The file
being written holds an exclusive advisory lock (POSIX), so `recover` and a resuming writer skip or
refuse it instead of compressing it under a live writer.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import shutil
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, cast, get_args

from allele.kernel.domain import EventKind, MarketEvent, OrderStatus, OrderUpdate

if sys.platform != "win32":
    import fcntl

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HEADER",
    "Firehose",
    "FirehoseError",
    "Frame",
    "RecordingError",
    "SessionInfo",
    "decode_record",
    "event_from_record",
    "event_record",
    "frame_from_record",
    "frame_record",
    "list_sessions",
    "read_recording",
    "recover",
    "update_from_record",
    "update_record",
]

log = logging.getLogger("allele.firehose")

DEFAULT_MAX_BYTES: Final = 64 * 2**20
HEADER: Final = "header"
_PLAIN: Final = ".jsonl"
_GZ: Final = ".jsonl.gz"
_TMP: Final = ".jsonl.gz.tmp"
_NAME = re.compile(r"^(\d{6,})\.jsonl(\.gz)?$")
_CHUNK: Final = 1 << 16


class FirehoseError(Exception):
    """The firehose cannot be opened or written as asked (existing session, live writer, closed)."""


class RecordingError(ValueError):
    """A recording, or a record in it, cannot be read."""


# --- files -------------------------------------------------------------------------------------------


def _number(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def _file_name(number: int, *, gz: bool) -> str:
    return f"{number:06d}{_GZ if gz else _PLAIN}"


def _recording_files(session_dir: Path) -> list[Path]:
    """Recording files of a session in numeric order, one per number (the .gz when both exist)."""
    by_number: dict[int, Path] = {}
    for p in session_dir.iterdir():
        n = _number(p)
        if n is None or not p.is_file():
            continue
        if n not in by_number or p.name.endswith(_GZ):
            by_number[n] = p
    return [by_number[n] for n in sorted(by_number)]


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":  # directories cannot be opened for fsync there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(f: IO[bytes], *, exclusive: bool) -> bool:
    """Take an advisory lock on an open file without waiting; False if another open file holds one."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(f.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_gzip(dest: Path, source: IO[bytes] | bytes) -> None:
    """Write `source` gzipped to `dest` atomically: temp file, fsync, rename, fsync of the directory."""
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            if isinstance(source, bytes):
                gz.write(source)
            else:
                shutil.copyfileobj(source, gz, _CHUNK)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def _compress(plain: Path) -> Path:
    """Replace a closed plain file by its .gz (see the module docstring for the crash-safe order)."""
    dest = plain.with_name(plain.name[: -len(_PLAIN)] + _GZ)
    with open(plain, "rb") as src:
        _write_gzip(dest, src)
    plain.unlink()
    _fsync_dir(plain.parent)
    return dest


def _same_content(plain: Path, gz_path: Path) -> bool:
    try:
        with open(plain, "rb") as a, gzip.open(gz_path, "rb") as b:
            while True:
                x, y = a.read(_CHUNK), b.read(_CHUNK)
                # gzip reads may come back shorter than asked: compare on the plain file's chunking
                while len(y) < len(x):
                    more = b.read(len(x) - len(y))
                    if not more:
                        break
                    y += more
                if x != y:
                    return False
                if not x:
                    return True
    except (OSError, EOFError, zlib.error):
        return False


def _recover_plain(plain: Path) -> bool:
    """Compress a plain file left behind, unless a live writer holds it. True if it was compressed."""
    with open(plain, "rb") as probe:
        if not _try_lock(probe, exclusive=False):
            log.info("firehose: %s is being written by a live session; left as is", plain)
            return False
        gz_path = plain.with_name(plain.name[: -len(_PLAIN)] + _GZ)
        if gz_path.exists() and _same_content(plain, gz_path):
            # a crash between the rename and the removal: the .gz is complete, the plain copy redundant
            plain.unlink()
            _fsync_dir(plain.parent)
        else:
            _compress(plain)
    return True


def recover(directory: Path) -> list[Path]:
    """Compress the plain `.jsonl` files that crashed sessions left in `directory`'s session directories.

    `directory` is a recordings directory (its session subdirectories are searched); a session directory
    itself is accepted too. A truncated last line is kept as is in the compressed file (the reader drops
    it). Files held by a live writer are skipped. Returns the plain files that were compressed (they no
    longer exist; each is now `<name>.gz`), in path order.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    dirs = [directory, *sorted(p for p in directory.iterdir() if p.is_dir())]
    done: list[Path] = []
    for d in dirs:
        for plain in sorted(p for p in d.iterdir() if p.is_file() and _NAME.match(p.name) and p.suffix == _PLAIN):
            if _recover_plain(plain):
                log.warning("firehose: recovered %s left by a crashed session", plain)
                done.append(plain)
    return done


# --- writer ------------------------------------------------------------------------------------------


def _non_finite_fields(record: Mapping[str, Any]) -> list[str]:
    return [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]


class Firehose:
    """Append-only JSONL recorder of one session: ``<directory>/<session>/NNNNNN.jsonl[.gz]``.

    Opening refuses a session directory that already has files, unless `resume` is true: then any
    leftover plain file is compressed, a crash tail of the last file is removed, and numbering continues
    after the existing files. Use as a context manager, or call `close()`: it compresses the last file.
    """

    def __init__(self, directory: Path, session: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 resume: bool = False) -> None:
        if not session or session in (".", "..") or any(c in session for c in "/\\\0"):
            raise ValueError(f"firehose session name {session!r} is not a plain directory name")
        if max_bytes <= 0:
            raise ValueError(f"firehose max_bytes must be positive, got {max_bytes}")
        self._dir = Path(directory) / session
        self._max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._size = 0
        self._closed = False
        self._next = 1
        if self._dir.is_dir() and any(self._dir.iterdir()):
            if not resume:
                raise FirehoseError(
                    f"firehose session directory {self._dir} already has files: choose another session name, "
                    f"pass resume=True to append to it, or move it away")
            self._next = self._prepare_resume()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._open_next()

    @property
    def session_dir(self) -> Path:
        return self._dir

    @property
    def current(self) -> Path | None:
        """The plain file being written, or None (closed, or rotated and nothing appended since)."""
        return self._path

    def _prepare_resume(self) -> int:
        for plain in sorted(p for p in self._dir.iterdir() if _NAME.match(p.name) and p.suffix == _PLAIN):
            if not _recover_plain(plain):
                raise FirehoseError(f"firehose session {self._dir} is being written by another process "
                                    f"({plain.name} is locked); cannot resume it")
        files = _recording_files(self._dir)
        if not files:
            return 1
        _drop_crash_tail(files[-1])
        return max(n for p in files if (n := _number(p)) is not None) + 1

    def _open_next(self) -> None:
        path = self._dir / _file_name(self._next, gz=False)
        f = open(path, "xb", buffering=_CHUNK)  # owned by the Firehose until close()
        if not _try_lock(f, exclusive=True):  # cannot happen for a file we just created, unless raced
            f.close()
            raise FirehoseError(f"firehose file {path} is locked by another writer")
        self._file, self._path, self._size = f, path, 0
        self._next += 1

    def _close_current(self) -> None:
        f, path = self._file, self._path
        if f is None or path is None:
            return
        self._file = self._path = None
        try:
            f.flush()
            _compress(path)  # the lock is held until the plain file is gone
        finally:
            f.close()

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record (a JSON object with a string ``"k"``) as one compact line.

        Raises ValueError, and writes nothing, if the record has no ``"k"`` or holds a NaN or infinity.
        """
        if self._closed:
            raise FirehoseError(f"firehose {self._dir} is closed")
        kind = record.get("k")
        if not isinstance(kind, str):
            raise ValueError(f"firehose record has no string 'k' (its kind): {dict(record)!r:.200}")
        try:
            line = json.dumps(record if isinstance(record, dict) else dict(record),
                              separators=(",", ":"), allow_nan=False)
        except ValueError as exc:
            fields = _non_finite_fields(record)
            where = f" in {', '.join(fields)}" if fields else ""
            raise ValueError(f"firehose {kind!r} record holds a non-finite number{where} "
                             f"(NaN or infinity cannot be recorded): {exc}") from exc
        data = (line + "\n").encode("ascii")
        if self._file is None:
            self._open_next()
        assert self._file is not None
        self._file.write(data)
        self._size += len(data)
        if self._size >= self._max_bytes:
            self._close_current()

    def flush(self) -> None:
        """Push buffered lines to the operating system (no fsync)."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and compress the last file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_current()

    def __enter__(self) -> Firehose:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- reader ------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in a recording")


def _decode_line(line: bytes) -> dict[str, Any]:
    value = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(value, dict):
        raise ValueError(f"a line must hold a JSON object, not {type(value).__name__}")
    return value


def _open_recording(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _read_file(path: Path, *, last: bool) -> Iterator[dict[str, Any]]:
    """Records of one file; the crash tail is tolerated only when `last`."""
    pending: tuple[int, Exception] | None = None  # an undecodable line: fatal unless it is the file's last
    lineno = 0
    buf = b""
    truncated: EOFError | None = None

    def decode(line: bytes) -> dict[str, Any] | None:
        nonlocal pending
        if pending is not None:
            n, exc = pending
            raise RecordingError(f"{path}: line {n} is not a JSON record: {exc}") from exc
        try:
            return _decode_line(line)
        except ValueError as exc:  # includes UnicodeDecodeError and json.JSONDecodeError
            pending = (lineno, exc)
            return None

    with _open_recording(path) as f:
        while True:
            try:
                chunk = f.read(_CHUNK)
            except EOFError as exc:  # a gzip stream cut short
                truncated = exc
                break
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise RecordingError(f"{path}: corrupt gzip data after line {lineno}: {exc}") from exc
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                lineno += 1
                record = decode(line)
                if record is not None:
                    yield record
    if buf:  # a last line without its newline
        lineno += 1
        record = decode(buf)
        if record is not None:  # a whole JSON object, only the newline missing: keep it
            yield record
    if truncated is not None and pending is None:
        pending = (lineno + 1, truncated)
    if pending is None:
        return
    n, err = pending
    if not last:
        if isinstance(err, EOFError):
            raise RecordingError(f"{path}: gzip stream is truncated after line {n - 1}: {err}") from err
        raise RecordingError(f"{path}: line {n} is not a JSON record: {err}") from err
    log.warning("firehose: dropped the crash tail of %s at line %d (%s)", path, n, err)


def _files_of(path: Path) -> list[Path]:
    if not path.exists():
        raise RecordingError(f"no recording at {path}: the path does not exist")
    if path.is_dir():
        files = _recording_files(path)
        if not files:
            hint = (" (it holds directories: is it the recordings directory rather than a session?)"
                    if any(p.is_dir() for p in path.iterdir()) else "")
            raise RecordingError(f"{path} holds no recording files (NNNNNN.jsonl[.gz]){hint}")
        return files
    if not (path.name.endswith(_PLAIN) or path.name.endswith(_GZ)):
        raise RecordingError(f"{path} is not a recording file (.jsonl or .jsonl.gz)")
    return [path]


def read_recording(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a session directory, or of one `.jsonl` / `.jsonl.gz` file, in order.

    Checks `path` at once (RecordingError if it is missing or holds no recording); reads lazily.
    An undecodable last line of the last file is a crash tail: dropped with a warning. Any other
    undecodable line, or a gzip stream truncated anywhere but at the end of the last file, raises
    `RecordingError` naming the file and line.
    """
    files = _files_of(Path(path))

    def records() -> Iterator[dict[str, Any]]:
        for i, f in enumerate(files):
            yield from _read_file(f, last=i == len(files) - 1)

    return records()


def _drop_crash_tail(path: Path) -> None:
    """Rewrite the last file of a resumed session without its crash tail (if it has one)."""
    data = b""
    truncated = False
    with _open_recording(path) as f:
        while True:
            try:
                chunk = f.read(_CHUNK)
            except EOFError:
                truncated = True
                break
            if not chunk:
                break
            data += chunk
    head, sep, tail = data.rpartition(b"\n")
    if tail:  # unterminated last line: keep it if it is a whole record
        try:
            _decode_line(tail)
            good = data + b"\n"
        except ValueError:
            good = head + sep
    else:
        last = head.rpartition(b"\n")[2]
        try:
            if head:
                _decode_line(last)
            good = data
        except ValueError:
            good = head[: len(head) - len(last)]
    if good == data and not truncated:
        return
    assert path.name.endswith(_GZ), path  # plain leftovers were compressed before
    log.warning("firehose: resuming %s: rewrote it without its crash tail (%d bytes dropped)", path,
                max(0, len(data) - len(good)))
    _write_gzip(path, good)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A recorded session, as `allele replay` lists it."""

    name: str
    path: Path
    files: int  # recording files
    bytes: int  # on disk, compressed or not
    header: dict[str, Any] | None  # the first record, if its "k" is "header"


def _first_record(path: Path) -> dict[str, Any] | None:
    files = _recording_files(path)
    if not files:
        return None
    try:
        with _open_recording(files[0]) as f:
            line = f.readline()
        return _decode_line(line) if line.endswith(b"\n") else None
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        log.warning("firehose: cannot read the header of %s: %s", files[0], exc)
        return None


def list_sessions(directory: Path) -> list[SessionInfo]:
    """The sessions recorded under `directory` (those with at least one recording file), by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    sessions: list[SessionInfo] = []
    for d in sorted(p for p in directory.iterdir() if p.is_dir()):
        files = _recording_files(d)
        if not files:
            continue
        first = _first_record(d)
        header = first if first is not None and first.get("k") == HEADER else None
        sessions.append(SessionInfo(d.name, d, len(files), sum(f.stat().st_size for f in files), header))
    return sessions


# --- records -----------------------------------------------------------------------------------------

_EVENT_KINDS: Final = frozenset(get_args(EventKind))
_STATUSES: Final = frozenset(get_args(OrderStatus))
_EVENT_FLOATS: Final = ("price", "size", "bid", "ask", "bid_size", "ask_size")
_EVENT_OPTIONAL: Final = ("size", "bid", "ask", "bid_size", "ask_size")
_UPDATE_FLOATS: Final = ("fill_quantity", "fill_price", "fee")


@dataclass(frozen=True, slots=True)
class Frame:
    """A raw frame as a venue sent it (text), with the time it was received."""

    venue: str
    ts_ns: int
    raw: str


def _is_default_zero(v: float) -> bool:
    """0.0 but not -0.0: omitting -0.0 would lose its sign on the way back."""
    return v == 0.0 and math.copysign(1.0, v) > 0


def event_record(e: MarketEvent) -> dict[str, Any]:
    """{"k": "event", kind, venue, symbol, ts_ns, price, and the other floats unless they are 0.0}."""
    d: dict[str, Any] = {"k": "event", "kind": e.kind, "venue": e.venue, "symbol": e.symbol, "ts_ns": e.ts_ns,
                         "price": e.price}
    for name in _EVENT_OPTIONAL:
        v = getattr(e, name)
        if not _is_default_zero(v):
            d[name] = v
    return d


def update_record(u: OrderUpdate) -> dict[str, Any]:
    """{"k": "update", client_order_id, venue_order_id, symbol, status, and the rest unless default}."""
    d: dict[str, Any] = {"k": "update", "client_order_id": u.client_order_id, "venue_order_id": u.venue_order_id,
                         "symbol": u.symbol, "status": u.status}
    for name in _UPDATE_FLOATS:
        v = getattr(u, name)
        if not _is_default_zero(v):
            d[name] = v
    if u.fee_currency:
        d["fee_currency"] = u.fee_currency
    if u.ts_ns:
        d["ts_ns"] = u.ts_ns
    if u.reason:
        d["reason"] = u.reason
    return d


def frame_record(venue: str, ts_ns: int, raw: str) -> dict[str, Any]:
    """{"k": "frame", "venue", "ts", "raw"}: a raw venue frame, received at `ts_ns`."""
    return {"k": "frame", "venue": venue, "ts": ts_ns, "raw": raw}


class _Fields:
    """Typed access to a record's fields; every problem is a RecordingError naming the key."""

    def __init__(self, d: Mapping[str, Any], kind: str, allowed: frozenset[str]) -> None:
        k = d.get("k")
        if k != kind:
            raise RecordingError(f"expected a {kind!r} record, got 'k'={k!r}")
        extra = sorted(set(d) - allowed - {"k"})
        if extra:
            raise RecordingError(f"{kind!r} record has unknown keys {extra}")
        self.d, self.kind = d, kind

    def _get(self, key: str, default: Any) -> Any:
        if key in self.d:
            return self.d[key]
        if default is None:
            raise RecordingError(f"{self.kind!r} record is missing key {key!r}")
        return default

    def text(self, key: str, default: str | None = None, *, choices: frozenset[str] | None = None) -> Any:
        v = self._get(key, default)
        if not isinstance(v, str):
            raise RecordingError(f"{self.kind!r} record key {key!r} must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise RecordingError(f"{self.kind!r} record key {key!r} has unknown value {v!r}")
        return v

    def integer(self, key: str, default: int | None = None) -> int:
        v = self._get(key, default)
        if not isinstance(v, int) or isinstance(v, bool):
            raise RecordingError(f"{self.kind!r} record key {key!r} must be an integer, got {v!r}")
        return v

    def number(self, key: str, default: float | None = None) -> float:
        v = self._get(key, default)
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise RecordingError(f"{self.kind!r} record key {key!r} must be a number, got {v!r}")
        try:
            return float(v)
        except OverflowError as exc:
            raise RecordingError(f"{self.kind!r} record key {key!r} is out of range: {v!r}") from exc


_EVENT_KEYS: Final = frozenset(("kind", "venue", "symbol", "ts_ns", *_EVENT_FLOATS))
_UPDATE_KEYS: Final = frozenset(("client_order_id", "venue_order_id", "symbol", "status", *_UPDATE_FLOATS,
                                 "fee_currency", "ts_ns", "reason"))


def event_from_record(d: Mapping[str, Any]) -> MarketEvent:
    f = _Fields(d, "event", _EVENT_KEYS)
    return MarketEvent(kind=f.text("kind", choices=_EVENT_KINDS), venue=f.text("venue"), symbol=f.text("symbol"),
                       ts_ns=f.integer("ts_ns"), price=f.number("price"),
                       **{name: f.number(name, 0.0) for name in _EVENT_OPTIONAL})


def update_from_record(d: Mapping[str, Any]) -> OrderUpdate:
    f = _Fields(d, "update", _UPDATE_KEYS)
    return OrderUpdate(client_order_id=f.text("client_order_id"), venue_order_id=f.text("venue_order_id"),
                       symbol=f.text("symbol"), status=f.text("status", choices=_STATUSES),
                       fill_quantity=f.number("fill_quantity", 0.0), fill_price=f.number("fill_price", 0.0),
                       fee=f.number("fee", 0.0), fee_currency=f.text("fee_currency", ""), ts_ns=f.integer("ts_ns", 0),
                       reason=f.text("reason", ""))


def frame_from_record(d: Mapping[str, Any]) -> Frame:
    f = _Fields(d, "frame", frozenset(("venue", "ts", "raw")))
    return Frame(venue=f.text("venue"), ts_ns=f.integer("ts"), raw=f.text("raw"))


def decode_record(d: Mapping[str, Any]) -> MarketEvent | OrderUpdate | Frame:
    """The domain object of an "event", "update" or "frame" record; RecordingError for any other "k"."""
    k = d.get("k")
    if k == "event":
        return event_from_record(d)
    if k == "update":
        return update_from_record(d)
    if k == "frame":
        return frame_from_record(d)
    raise RecordingError(f"unknown record kind 'k'={k!r}")
