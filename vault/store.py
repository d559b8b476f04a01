"""The encrypted credential vault: envelope encryption with AES-256-GCM, unlocked by a passphrase or a key file.

Layout of a vault folder (0700):

    vault.json   the vault (0600): unlock parameters, the wrapped data key, the entries, a manifest MAC
    usage.json   last-used times per entry (0600, no secrets; rewritten on use)
    vault.key    the key file, when the vault is unlocked by one kept in the default place (0600)
    vault.lock   advisory lock serialising writers

Keys: a random 256-bit data key encrypts the entries; it is stored wrapped (AES-256-GCM) by a key-encryption
key (KEK) that is either scrypt(passphrase) or the 32 bytes of a key file. From the data key, HKDF derives the
entry key and the manifest MAC key. Each entry is sealed with a fresh 96-bit nonce and additional data binding
its name, exchange and creation time, so ciphertexts cannot be moved between entries; the manifest MAC (HMAC-
SHA256 over the unlock parameters, the wrapped key and every entry) detects removed, added or altered entries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from allele.vault import files
from allele.vault.errors import (
    EntryExists,
    InvalidEntry,
    UnlockFailed,
    VaultCorrupt,
    VaultError,
    VaultExists,
    VaultLocked,
    VaultNotFound,
)
from allele.vault.files import (
    DEFAULT_KEY_FILE,
    USAGE_FILE,
    VAULT_FILE,
    EntryRecord,
    KeyFileUnlock,
    PassphraseUnlock,
    Sealed,
    VaultFile,
)
from allele.vault.redact import install_redaction, register_secret
from allele.vault.signing import ALGORITHMS, Credentials, CredentialSource, Signer, UnknownAccount

_log = logging.getLogger(__name__)

PASSPHRASE_ENV = "ALLELE_VAULT_PASSPHRASE"
MIN_PASSPHRASE = 8
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-"
EXCHANGE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
MAX_NAME = 64
USAGE_RESOLUTION_S = 1.0  # last_used is rewritten at most this often per entry by one process


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost. Memory is 128 * n * r bytes: the default (n=2**15, r=8) needs 32 MiB per guess.

    Lower costs exist for tests only; a vault records its own parameters, so it opens whatever they were."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        files.check_scrypt_cost(self.n, self.r, self.p)


@dataclass(frozen=True)
class EntryInfo:
    """What may be shown about an entry: never any credential value."""

    name: str
    exchange: str
    created: datetime
    last_used: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "exchange": self.exchange, "created": _iso(self.created),
                "last_used": None if self.last_used is None else _iso(self.last_used)}


def default_vault_dir(home: Path) -> Path:
    """Where a home keeps its vault: `<home>/vault`."""
    return home / "vault"


def list_entries(directory: Path) -> list[EntryInfo]:
    """Entries of the vault in `directory`, sorted by name, read without unlocking; [] if there is no vault.

    Metadata is stored in clear for this purpose; nothing returned here is secret."""
    try:
        doc = files.read_vault_file(directory / VAULT_FILE)
    except FileNotFoundError:
        return []
    return _infos(doc, files.read_usage(directory))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _infos(doc: VaultFile, usage: dict[str, str]) -> list[EntryInfo]:
    return [EntryInfo(e.name, e.exchange, _parse_time(e.created) or datetime.fromtimestamp(0, UTC),
                      _parse_time(usage.get(e.name))) for e in sorted(doc.entries, key=lambda e: e.name)]


def validate_name(name: str) -> str:
    """An entry name: 1-64 of letters, digits and _ . @ -, starting with a letter or digit."""
    if not (0 < len(name) <= MAX_NAME and all(c in NAME_CHARS for c in name) and name[0].isalnum()):
        raise InvalidEntry(f"invalid entry name {name!r}: use 1-{MAX_NAME} letters, digits and _ . @ -, "
                           "starting with a letter or digit")
    return name


def validate_exchange(exchange: str) -> str:
    """An exchange id as ccxt or an exchange plugin spells it: lowercase letters, digits, _ . -."""
    if not (0 < len(exchange) <= MAX_NAME and all(c in EXCHANGE_CHARS for c in exchange)
            and exchange[0].isalnum()):
        raise InvalidEntry(f"invalid exchange id {exchange!r}: use lowercase letters, digits and _ . - "
                           "(the ccxt id, e.g. binance, or the exchange plugin's name)")
    return exchange


def _check_passphrase(passphrase: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE:
        raise VaultError(f"the vault passphrase must be at least {MIN_PASSPHRASE} characters "
                         "(a long passphrase of several words is best)")
    return passphrase


def _derive_kek(passphrase: str, unlock: PassphraseUnlock) -> bytes:
    salt = base64.b64decode(unlock.salt)
    return Scrypt(salt=salt, length=32, n=unlock.n, r=unlock.r, p=unlock.p).derive(passphrase.encode())


def _subkey(data_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"allele-vault/1/" + purpose).derive(data_key)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> Sealed:
    nonce = os.urandom(12)
    return Sealed.of(nonce, AESGCM(key).encrypt(nonce, plaintext, aad))


def _open(key: bytes, sealed: Sealed, aad: bytes) -> bytes:
    """Plaintext, or InvalidTag (also for malformed base64 or nonce, so callers have one failure to report)."""
    try:
        nonce, ciphertext = sealed.raw()
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (ValueError, TypeError):
        raise InvalidTag() from None


def _plaintext(creds: Credentials) -> bytes:
    return json.dumps({"api_key": creds.api_key, "secret": creds.secret, "passphrase": creds.passphrase,
                       "wallet_private_key": creds.wallet_private_key}).encode()


def _entry_aad(name: str, exchange: str, created: str) -> bytes:
    return bytes(files.canonical(["allele-vault/1/entry", name, exchange, created]))


@dataclass(frozen=True)
class _Keys:
    kek: bytes
    data_key: bytes
    entry_key: bytes
    mac_key: bytes

    @staticmethod
    def of(kek: bytes, data_key: bytes) -> _Keys:
        return _Keys(kek, data_key, _subkey(data_key, b"entries"), _subkey(data_key, b"manifest"))

    def __repr__(self) -> str:
        return "_Keys(<redacted>)"


class Vault:
    """An unlocked vault: implements `Signer` and `CredentialSource` for the accounts it stores.

    Secrets are decrypted on each use and not cached; the data key stays in memory while the object lives.
    Every value decrypted is registered with `allele.vault.redact` and scrubbed from the process's logs.
    Safe to share between threads; several processes may use one vault folder (writes take a file lock,
    and a process notices another's changes on its next use)."""

    def __init__(self, directory: Path, doc: VaultFile, keys: _Keys, stamp: tuple[int, int, int]) -> None:
        """Use `Vault.create` or `Vault.open`."""
        self._dir = directory
        self._doc = doc
        self._keys = keys
        self._stamp = stamp
        self._lock = threading.RLock()
        self._usage_written: dict[str, float] = {}

    # -- opening --------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, *, passphrase: str | None = None, key_file: Path | None = None,
               scrypt: ScryptParams = ScryptParams()) -> Vault:
        """A new empty vault in `directory` (created 0700), unlocked by `passphrase` (else $ALLELE_VAULT_PASSPHRASE)
        or by `key_file` (used if it exists, else created with 32 random bytes, 0600). VaultExists if there is
        a vault already; VaultLocked if neither a passphrase nor a key file is given."""
        directory = Path(directory)
        if (directory / VAULT_FILE).exists():
            raise VaultExists(f"a vault already exists at {directory / VAULT_FILE}; open it, or remove the folder "
                              "first if you mean to start over")
        if passphrase is not None and key_file is not None:
            raise VaultError("choose a passphrase or a key file for the vault, not both")
        files.private_dir(directory)
        unlock: PassphraseUnlock | KeyFileUnlock
        if key_file is not None:
            key_file = Path(key_file).absolute()
            kek = files.read_key_file(key_file) if key_file.exists() else files.create_key_file(key_file)
            default = (directory / DEFAULT_KEY_FILE).absolute()
            unlock = KeyFileUnlock(path=None if key_file == default else str(key_file))
        else:
            passphrase = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
            if passphrase is None:
                raise VaultLocked(f"a new vault needs a passphrase (or ${PASSPHRASE_ENV}) or a key file")
            _check_passphrase(passphrase)
            register_secret(passphrase)
            unlock = PassphraseUnlock(salt=base64.b64encode(os.urandom(16)).decode(),
                                      n=scrypt.n, r=scrypt.r, p=scrypt.p)
            kek = _derive_kek(passphrase, unlock)
        install_redaction()
        data_key = AESGCM.generate_key(bit_length=256)
        keys = _Keys.of(kek, data_key)
        with files.locked(directory):
            if (directory / VAULT_FILE).exists():  # lost a race with another creator
                raise VaultExists(f"a vault already exists at {directory / VAULT_FILE}")
            doc = VaultFile(unlock=unlock, data_key=Sealed(nonce="", ciphertext=""))
            doc = doc.model_copy(update={"data_key": _seal(kek, data_key, doc.unlock_aad())})
            vault = cls(directory, doc, keys, (0, 0, 0))
            vault._write(doc)
        return vault

    @classmethod
    def open(cls, directory: Path, *, passphrase: str | None = None, key_file: Path | None = None) -> Vault:
        """Unlock the vault in `directory`.

        A passphrase vault takes `passphrase`, else $ALLELE_VAULT_PASSPHRASE. A key-file vault takes `key_file`,
        else the path recorded at creation, else `<directory>/vault.key`; the key file must be 0600 and yours.
        Raises VaultNotFound, VaultLocked (nothing to unlock with), KeyFileError, UnlockFailed (wrong passphrase
        or key, or the file was modified) or VaultCorrupt (integrity check failed)."""
        directory = Path(directory)
        path = directory / VAULT_FILE
        try:
            doc = files.read_vault_file(path)
            stamp = _stamp_of(path)
        except FileNotFoundError:
            raise VaultNotFound(f"no vault at {directory} (create one with `allele vault init`)") from None
        if isinstance(doc.unlock, PassphraseUnlock):
            if key_file is not None:
                raise VaultError(f"the vault {path} is unlocked by a passphrase, not by a key file")
            passphrase = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
            if passphrase is None:
                raise VaultLocked(f"the vault {path} is locked by a passphrase: enter it, or set ${PASSPHRASE_ENV}")
            register_secret(passphrase)
            kek = _derive_kek(passphrase, doc.unlock)
            what = "wrong passphrase"
        else:
            if passphrase is not None:
                raise VaultError(f"the vault {path} is unlocked by a key file, not by a passphrase")
            key_path = Path(key_file) if key_file is not None else (
                Path(doc.unlock.path) if doc.unlock.path else directory / DEFAULT_KEY_FILE)
            kek = files.read_key_file(key_path)
            what = f"wrong key file ({key_path})"
        install_redaction()
        try:
            data_key = _open(kek, doc.data_key, doc.unlock_aad())
        except InvalidTag:
            raise UnlockFailed(f"cannot unlock {path}: {what} or the vault file was modified") from None
        vault = cls(directory, doc, _Keys.of(kek, data_key), stamp)
        vault._verify(doc)
        return vault

    # -- reading --------------------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def unlock_kind(self) -> str:
        """"passphrase" or "key-file"."""
        return str(self._doc.unlock.kind)

    def __repr__(self) -> str:
        return f"Vault({str(self._dir)!r}, entries={len(self._doc.entries)}, unlock={self.unlock_kind})"

    def entries(self) -> list[EntryInfo]:
        """Every entry's name, exchange, creation and last-use time, sorted by name; no values."""
        with self._lock:
            self._refresh()
            return _infos(self._doc, files.read_usage(self._dir))

    def __contains__(self, name: object) -> bool:
        with self._lock:
            self._refresh()
            return isinstance(name, str) and self._doc.entry(name) is not None

    @contextmanager
    def credentials(self, account: str) -> Iterator[Credentials]:
        """The account's credentials for the duration of the `with` block; records last_used.
        UnknownAccount if the vault has no such entry."""
        creds = self._decrypt(account)
        self._touch(account)
        yield creds

    def sign(self, account: str, algorithm: str, payload: bytes) -> str:
        """Lowercase hex HMAC of `payload` keyed by the account's secret (UTF-8); records last_used."""
        digest = ALGORITHMS.get(algorithm)
        if digest is None:
            raise ValueError(f"unknown signing algorithm '{algorithm}' (known: {', '.join(ALGORITHMS)})")
        creds = self._decrypt(account)
        self._touch(account)
        return hmac.new(creds.secret.encode(), payload, digest).hexdigest()

    def api_key(self, account: str) -> str:
        """The account's API key."""
        return str(self._decrypt(account).api_key)

    # -- writing --------------------------------------------------------------------------------------------
    def add(self, name: str, *, exchange: str, api_key: str, secret: str, passphrase: str = "",
            wallet_private_key: str = "", replace: bool = False) -> EntryInfo:
        """Store an account's credentials. EntryExists if `name` is taken (unless `replace`); InvalidEntry for a
        bad name or exchange id, or an empty API key or secret."""
        validate_name(name)
        validate_exchange(exchange)
        values = {"api_key": api_key, "secret": secret, "passphrase": passphrase,
                  "wallet_private_key": wallet_private_key}
        for field in ("api_key", "secret"):
            if not values[field].strip():
                raise InvalidEntry(f"entry '{name}': the {field.replace('_', ' ')} is empty")
        for field, value in values.items():
            if value != value.strip() or any(c in value for c in "\r\n\0"):
                raise InvalidEntry(f"entry '{name}': the {field.replace('_', ' ')} has leading or trailing "
                                   "whitespace or a line break (a copy-paste slip?)")
            try:
                value.encode()
            except UnicodeEncodeError:
                raise InvalidEntry(f"entry '{name}': the {field.replace('_', ' ')} is not valid text "
                                   "(it holds an unpaired surrogate)") from None
        register_secret(*values.values())
        with self._lock, files.locked(self._dir):
            self._refresh()
            old = self._doc.entry(name)
            if old is not None and not replace:
                raise EntryExists(f"the vault already has an entry '{name}' (exchange {old.exchange}); "
                                  "remove it first, or replace it")
            created = _iso(_now())
            record = EntryRecord(name=name, exchange=exchange, created=created,
                                 sealed=_seal(self._keys.entry_key, _plaintext(Credentials(**values)),
                                              _entry_aad(name, exchange, created)))
            kept = tuple(e for e in self._doc.entries if e.name != name)
            self._write(self._doc.model_copy(update={"entries": tuple(sorted((*kept, record),
                                                                              key=lambda e: e.name))}))
            if old is not None:
                self._forget_usage(name)
        return EntryInfo(name, exchange, _parse_time(created) or _now(), None)

    def remove(self, name: str) -> None:
        """Delete an entry; UnknownAccount if there is none of that name."""
        with self._lock, files.locked(self._dir):
            self._refresh()
            if self._doc.entry(name) is None:
                raise UnknownAccount(name)
            self._write(self._doc.model_copy(update={"entries": tuple(e for e in self._doc.entries
                                                                       if e.name != name)}))
            self._forget_usage(name)

    def rotate(self, new_passphrase: str | None = None, *, scrypt: ScryptParams | None = None) -> int:
        """Re-encrypt everything under a new random data key; returns the number of entries.

        With `new_passphrase`, the vault is from then on unlocked by it (a new salt; a key-file vault becomes a
        passphrase vault, and its key file is no longer needed). Every entry is decrypted first: if any fails
        its check, nothing is written. Other processes holding the vault open must reopen it after a
        passphrase change."""
        with self._lock, files.locked(self._dir):
            self._refresh()
            plain = [(e, self._decrypt_record(e)) for e in self._doc.entries]
            unlock: PassphraseUnlock | KeyFileUnlock = self._doc.unlock
            kek = self._keys.kek
            if new_passphrase is not None:
                _check_passphrase(new_passphrase)
                register_secret(new_passphrase)
                cost = scrypt or (ScryptParams(unlock.n, unlock.r, unlock.p) if isinstance(unlock, PassphraseUnlock)
                                  else ScryptParams())
                unlock = PassphraseUnlock(salt=base64.b64encode(os.urandom(16)).decode(),
                                          n=cost.n, r=cost.r, p=cost.p)
                kek = _derive_kek(new_passphrase, unlock)
            keys = _Keys.of(kek, AESGCM.generate_key(bit_length=256))
            entries = tuple(e.model_copy(update={"sealed": _seal(keys.entry_key, _plaintext(creds),
                                                                 _entry_aad(e.name, e.exchange, e.created))})
                            for e, creds in plain)
            doc = VaultFile(unlock=unlock, data_key=Sealed(nonce="", ciphertext=""), entries=entries)
            doc = doc.model_copy(update={"data_key": _seal(kek, keys.data_key, doc.unlock_aad())})
            self._write(doc, keys)
            return len(entries)

    # -- internals ------------------------------------------------------------------------------------------
    def _mac(self, doc: VaultFile, keys: _Keys | None = None) -> str:
        return hmac.new((keys or self._keys).mac_key, doc.manifest(), hashlib.sha256).hexdigest()

    def _verify(self, doc: VaultFile, keys: _Keys | None = None) -> None:
        if not hmac.compare_digest(self._mac(doc, keys), doc.mac):
            raise VaultCorrupt(f"{self._dir / VAULT_FILE} was modified: its integrity check failed (an entry was "
                               "altered, swapped, added or removed outside Allele); restore it from a backup")

    def _write(self, doc: VaultFile, keys: _Keys | None = None) -> None:
        """Seal `doc` with the manifest MAC, replace the file atomically, and adopt `doc` (and `keys`)."""
        keys = keys or self._keys
        doc = doc.model_copy(update={"mac": self._mac(doc, keys)})
        path = self._dir / VAULT_FILE
        try:
            files.atomic_write(path, doc.model_dump_json(indent=1).encode() + b"\n")
        except OSError as exc:
            raise VaultError(f"cannot write the vault file {path}: {exc.strerror}; the vault is unchanged") from None
        self._doc, self._keys, self._stamp = doc, keys, _stamp_of(path)

    def _refresh(self) -> None:
        """Re-read the vault file if another process (or a restore) changed it since we last read it."""
        path = self._dir / VAULT_FILE
        try:
            stamp = _stamp_of(path)
        except FileNotFoundError:
            raise VaultNotFound(f"the vault file {path} has disappeared") from None
        if stamp == self._stamp:
            return
        doc = files.read_vault_file(path)
        keys = self._keys
        if doc.data_key != self._doc.data_key or doc.unlock != self._doc.unlock:
            try:
                if doc.unlock_aad() != self._doc.unlock_aad():
                    raise InvalidTag()
                keys = _Keys.of(self._keys.kek, _open(self._keys.kek, doc.data_key, doc.unlock_aad()))
            except InvalidTag:
                raise UnlockFailed(f"{path} was re-keyed by another process with a new passphrase or key file "
                                   "(or modified); open the vault again") from None
        self._verify(doc, keys)
        self._doc, self._keys, self._stamp = doc, keys, stamp

    def _decrypt(self, account: str) -> Credentials:
        with self._lock:
            self._refresh()
            record = self._doc.entry(account)
            if record is None:
                raise UnknownAccount(account)
            return self._decrypt_record(record)

    def _decrypt_record(self, record: EntryRecord) -> Credentials:
        try:
            data = _open(self._keys.entry_key, record.sealed,
                         _entry_aad(record.name, record.exchange, record.created))
            values = json.loads(data)
            creds = Credentials(api_key=values["api_key"], secret=values["secret"],
                                passphrase=values.get("passphrase", ""),
                                wallet_private_key=values.get("wallet_private_key", ""))
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise VaultCorrupt(f"{self._dir / VAULT_FILE}: entry '{record.name}' failed its integrity check: "
                               "the vault file was modified; restore it from a backup") from None
        register_secret(creds.api_key, creds.secret, creds.passphrase, creds.wallet_private_key)
        return creds

    def _touch(self, name: str) -> None:
        """Record that `name` was used now (at most once per USAGE_RESOLUTION_S per entry and process)."""
        now = datetime.now(UTC).timestamp()
        with self._lock:
            if now - self._usage_written.get(name, float("-inf")) < USAGE_RESOLUTION_S:
                return
            self._usage_written[name] = now
        try:
            with self._lock, files.locked(self._dir):
                usage = files.read_usage(self._dir)
                usage[name] = _iso(_now())
                files.write_usage(self._dir, usage)
        except OSError as exc:  # bookkeeping only: an order must not fail because last_used could not be saved
            _log.warning("could not record the use of vault entry '%s' in %s: %s", name, self._dir / USAGE_FILE,
                         exc.strerror)

    def _forget_usage(self, name: str) -> None:
        self._usage_written.pop(name, None)
        if (self._dir / USAGE_FILE).exists():
            usage = files.read_usage(self._dir)
            if usage.pop(name, None) is not None:
                files.write_usage(self._dir, usage)


def _stamp_of(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


__all__ = ["PASSPHRASE_ENV", "EntryInfo", "ScryptParams", "Vault", "default_vault_dir",
           "list_entries"]

if TYPE_CHECKING:  # the vault is both ports the kernel codes against
    def _ports(v: Vault) -> tuple[Signer, CredentialSource]:
        return v, v
