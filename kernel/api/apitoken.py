"""The API token: `<home>/api.token`, generated at the first start, readable by its owner only (0600).

Every REST and WebSocket request must present it. It is never hard-coded, never logged, and reaches
the browser only in a URL fragment (`#token=`), which browsers do not send to the server.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

TOKEN_FILE = "api.token"


class TokenError(RuntimeError):
    """The token file cannot be used; the message names the file and the fix."""


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def read_token(home: Path) -> str | None:
    """The token, or None when none was generated yet. Refuses a token file others can read."""
    path = token_path(home)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise TokenError(f"{path} is readable by other users (mode {mode:04o}); run `chmod 600 {path}` or delete "
                         "it to have a new token generated at the next start")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 32:
        raise TokenError(f"{path} does not hold a usable token; delete it to have a new one generated")
    return token


def ensure_token(home: Path) -> str:
    """The existing token, or a new one (`secrets.token_urlsafe(32)`) written 0600 with O_EXCL, so two
    processes starting at once never end up with different tokens."""
    existing = read_token(home)
    if existing is not None:
        return existing
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(token_path(home), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        again = read_token(home)
        if again is None:
            raise TokenError(f"{token_path(home)} vanished while being created; start again") from None
        return again
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token
