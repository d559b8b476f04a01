"""The vault's errors. Every message names the file or entry concerned and says what to do; none ever
contains a secret, a key, a passphrase or decrypted bytes (they are raised `from None` where a lower-level
exception could carry data)."""

from __future__ import annotations


class VaultError(Exception):
    """Base class: something the operator must fix before the vault can be used."""


class VaultNotFound(VaultError):
    """There is no vault file in the folder."""


class VaultExists(VaultError):
    """`create` was asked to create a vault where one already is."""


class VaultLocked(VaultError):
    """No passphrase or key file was available to unlock the vault."""


class UnlockFailed(VaultError):
    """The data key could not be unwrapped: a wrong passphrase or key file, or the vault file was modified."""


class VaultCorrupt(VaultError):
    """The vault file fails its integrity check or is not a vault file."""


class KeyFileError(VaultError):
    """A key file is missing, malformed, or not private (0600, owned by the user)."""


class EntryExists(VaultError):
    """An entry of that name is already stored."""


class InvalidEntry(VaultError, ValueError):
    """A name, exchange id or credential value that cannot be stored."""
