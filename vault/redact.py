"""Keep decrypted secrets out of logs.

The vault calls `register_secret` for every value it decrypts (API key, secret, passphrase,
wallet key) and for the vault passphrase it was given, then `install_redaction()`. From then
on every log record the process creates has each registered value replaced by "***" in its
message, its arguments, its exception text and its stack text; so has the traceback of an uncaught
exception (sys.excepthook and threading.excepthook).

Two hooks, because a filter alone is not enough: a `logging.Filter` on a logger only sees
records logged *to that logger*, not ones propagated from child loggers, and loggers such as
uvicorn's have their own handlers. So `install_redaction` wraps the log-record factory (every
record, whichever logger creates it, is scrubbed at birth) and also adds `SecretRedactingFilter`
to the root logger and its handlers (records built by hand and passed to `handle()`).
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

MASK = "***"

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_installed = False


def register_secret(*values: str) -> None:
    """Remember values to scrub from every log record from now on (empty strings are ignored)."""
    global _secrets
    fresh = {v for v in values if v}
    if fresh - _secrets:
        with _lock:
            _secrets = _secrets | fresh


@contextmanager
def scoped() -> Iterator[None]:
    """Forget, on exit, every secret registered inside the block. For tests, whose throwaway values (a
    property test's "0") must not go on masking the logs of later tests in the same process."""
    global _secrets
    saved = _secrets
    try:
        yield
    finally:
        with _lock:
            _secrets = saved


def registered_count() -> int:
    """How many distinct secret values are being scrubbed (the values themselves are not exposed)."""
    return len(_secrets)


def scrub(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with every registered secret (longest first, so a secret containing another goes whole) masked."""
    for secret in sorted(_secrets if secrets is None else secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _contains_secret(text: str) -> bool:
    return any(s in text for s in _secrets)


def scrub_record(record: logging.LogRecord) -> None:
    """Rewrite `record` in place so that no registered secret survives in anything a handler formats."""
    if not _secrets:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string: handlers would fail the same way; scrub the parts
        message = " ".join([str(record.msg), *map(str, record.args or ())])
    if _contains_secret(message) or (record.args and _contains_secret(str(record.args))):
        # The merged message is what handlers print; args are cleared so no handler can re-merge raw values.
        record.msg = scrub(message)
        record.args = ()
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if _contains_secret(text):
            record.exc_text = scrub(text)
            record.exc_info = None  # the formatter now prints the scrubbed exc_text instead of re-formatting
    elif record.exc_text and _contains_secret(record.exc_text):
        record.exc_text = scrub(record.exc_text)
    if record.stack_info and _contains_secret(record.stack_info):
        record.stack_info = scrub(record.stack_info)


class SecretRedactingFilter(logging.Filter):
    """Replaces every registered secret with "***" in a record; never drops the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


_FILTER = SecretRedactingFilter()


def install_redaction() -> None:
    """Scrub registered secrets from every log record of this process (idempotent).

    Wraps the log-record factory and adds the filter to the root logger and each of its handlers.
    """
    global _installed
    with _lock:
        root = logging.getLogger()
        if _FILTER not in root.filters:
            root.addFilter(_FILTER)
        for handler in root.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
        if _installed:
            return
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _install_excepthooks()
        _installed = True


def _install_excepthooks() -> None:
    """Uncaught exceptions (main thread and other threads) print their traceback scrubbed."""
    previous_sys = sys.excepthook
    previous_thread = threading.excepthook

    def sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if not _secrets:
            previous_sys(exc_type, exc, tb)
            return
        sys.stderr.write(scrub("".join(traceback.format_exception(exc_type, exc, tb))))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if not _secrets or args.exc_type is SystemExit:
            previous_thread(args)
            return
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        sys.stderr.write(f"Exception in thread {name}:\n" + scrub(text))

    sys.excepthook = sys_hook
    threading.excepthook = thread_hook
