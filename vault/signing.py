"""The signing port: the host signs for a plugin; the secret never crosses into it.

`Signer` is what the exchange capability calls. `MemorySigner` holds secrets
in process memory (tests, paper sessions); the encrypted on-disk vault
implements the same protocol.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Protocol

ALGORITHMS = {"hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}


class UnknownAccount(KeyError):
    """No credentials are stored for the account a plugin named."""


class Signer(Protocol):
    def sign(self, account: str, algorithm: str, payload: bytes) -> str:
        """Lowercase hex signature of `payload` with `account`'s secret; UnknownAccount if none."""
        ...

    def api_key(self, account: str) -> str:
        """The account's public API key, substituted for `{{api-key}}` when a request is sent."""
        ...


class MemorySigner:
    """Secrets held in memory: {account: (api_key, secret)}."""

    def __init__(self, accounts: Mapping[str, tuple[str, bytes]]) -> None:
        self._accounts = dict(accounts)

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"MemorySigner(accounts={sorted(self._accounts)})"

    def sign(self, account: str, algorithm: str, payload: bytes) -> str:
        if account not in self._accounts:
            raise UnknownAccount(account)
        digest = ALGORITHMS.get(algorithm)
        if digest is None:
            raise ValueError(f"unknown signing algorithm '{algorithm}' (known: {', '.join(ALGORITHMS)})")
        return hmac.new(self._accounts[account][1], payload, digest).hexdigest()

    def api_key(self, account: str) -> str:
        if account not in self._accounts:
            raise UnknownAccount(account)
        return self._accounts[account][0]
