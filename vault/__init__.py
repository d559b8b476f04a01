"""allele.vault: credentials the host uses on a plugin's behalf; plugins never see them.

`Vault` (encrypted at rest, see docs/vault.md) implements the `Signer` and `CredentialSource` ports of
`allele.vault.signing`; `list_entries` lists a vault's entries without unlocking it.
"""

from allele.vault.errors import (
    EntryExists,
    InvalidEntry,
    KeyFileError,
    UnlockFailed,
    VaultCorrupt,
    VaultError,
    VaultExists,
    VaultLocked,
    VaultNotFound,
)
from allele.vault.signing import Credentials, CredentialSource, MemorySigner, Signer, UnknownAccount
from allele.vault.store import PASSPHRASE_ENV, EntryInfo, ScryptParams, Vault, default_vault_dir, list_entries

__all__ = ["PASSPHRASE_ENV", "CredentialSource", "Credentials", "EntryExists", "EntryInfo", "InvalidEntry",
           "KeyFileError", "MemorySigner", "ScryptParams", "Signer", "UnknownAccount", "UnlockFailed", "Vault",
           "VaultCorrupt", "VaultError", "VaultExists", "VaultLocked", "VaultNotFound", "default_vault_dir",
           "list_entries"]
