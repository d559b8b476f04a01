"""The credential ports: the host signs for a plugin; the secret never crosses into it.

`Signer` is what the exchange capability of a WASM exchange plugin calls.
`CredentialSource` is what the ccxt path calls, once per order execution: it yields the
account's `Credentials` for the duration of a `with` block, and the caller drops the
authenticated client when the block ends. `MemorySigner` holds secrets in process memory
(tests); the encrypted on-disk vault (`allele.vault`) implements both protocols.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

ALGORITHMS = {"hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}


class UnknownAccount(KeyError):
    """No credentials are stored for the account a plugin named."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """One account's credentials, as an execution call sees them; never printed."""

    api_key: str
    secret: str
    passphrase: str = ""
    wallet_private_key: str = ""

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"


class CredentialSource(Protocol):
    def credentials(self, account: str) -> AbstractContextManager[Credentials]:
        """The account's credentials for the duration of a `with` block; UnknownAccount if none."""
        ...


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

    @contextmanager
    def credentials(self, account: str) -> Iterator[Credentials]:
        if account not in self._accounts:
            raise UnknownAccount(account)
        api_key, secret = self._accounts[account]
        yield Credentials(api_key=api_key, secret=secret.decode())
