"""The vault's on-disk pieces: the file format, atomic private writes, key files, the lock.

Everything here is about bytes on disk; the cryptography and the policy live in `store.py`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from allele.vault.errors import KeyFileError, VaultCorrupt, VaultError

VAULT_FILE = "vault.json"
USAGE_FILE = "usage.json"
LOCK_FILE = "vault.lock"
DEFAULT_KEY_FILE = "vault.key"
FORMAT: Literal["allele-vault"] = "allele-vault"
VERSION: Literal[1] = 1
KEY_BYTES = 32


MAX_SCRYPT_MEMORY = 1 << 30


def check_scrypt_cost(n: int, r: int, p: int) -> None:
    """ValueError unless n is a power of two above 1 and one derivation needs at most 1 GiB (128·n·r·p bytes)."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two above 1, not {n}")
    if r < 1 or p < 1 or 128 * n * r * p > MAX_SCRYPT_MEMORY:
        raise ValueError(f"scrypt cost n={n}, r={r}, p={p} is out of range (r, p >= 1; at most 1 GiB)")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sealed(_Model):
    """AES-256-GCM output: a 96-bit random nonce and the ciphertext with its 128-bit tag, base64."""

    nonce: str
    ciphertext: str

    @staticmethod
    def of(nonce: bytes, ciphertext: bytes) -> Sealed:
        return Sealed(nonce=base64.b64encode(nonce).decode(), ciphertext=base64.b64encode(ciphertext).decode())

    def raw(self) -> tuple[bytes, bytes]:
        return base64.b64decode(self.nonce, validate=True), base64.b64decode(self.ciphertext, validate=True)


class PassphraseUnlock(_Model):
    """The key-encryption key is scrypt(passphrase, salt, n, r, p)."""

    kind: Literal["passphrase"] = "passphrase"
    kdf: Literal["scrypt"] = "scrypt"
    salt: str
    n: int = Field(ge=2, le=2**24)
    r: int = Field(ge=1, le=64)
    p: int = Field(ge=1, le=16)

    @model_validator(mode="after")
    def _sane(self) -> PassphraseUnlock:
        check_scrypt_cost(self.n, self.r, self.p)
        try:
            salt = base64.b64decode(self.salt, validate=True)
        except ValueError:
            raise ValueError("salt is not base64") from None
        if len(salt) < 16:
            raise ValueError("salt is shorter than 16 bytes")
        return self


class KeyFileUnlock(_Model):
    """The key-encryption key is the 32 random bytes of a key file.

    `path` is a hint for where the key file lives when it is not `<vault dir>/vault.key`; it is
    not authenticated (moving the key file only needs this edited, and a wrong file fails to unlock).
    """

    kind: Literal["key-file"] = "key-file"
    path: str | None = None

    def authenticated(self) -> dict[str, Any]:
        return {"kind": self.kind}


Unlock = Annotated[PassphraseUnlock | KeyFileUnlock, Field(discriminator="kind")]


class EntryRecord(_Model):
    """One account: metadata in clear (listable without the key), credentials sealed with the data key."""

    name: str
    exchange: str
    created: str
    sealed: Sealed


class VaultFile(_Model):
    format: Literal["allele-vault"] = FORMAT
    version: Literal[1] = VERSION
    unlock: Unlock
    data_key: Sealed
    entries: tuple[EntryRecord, ...] = ()
    mac: str = ""

    def unlock_aad(self) -> bytes:
        """What the wrapped data key is bound to: the format and the unlock parameters (not a key-file hint)."""
        u = self.unlock.authenticated() if isinstance(self.unlock, KeyFileUnlock) else self.unlock.model_dump()
        return canonical({"format": self.format, "version": self.version, "unlock": u})

    def manifest(self) -> bytes:
        """Everything the manifest MAC covers: unlock parameters, wrapped key and every entry."""
        return canonical({"aad": self.unlock_aad().decode(), "data_key": self.data_key.model_dump(),
                          "entries": [e.model_dump() for e in self.entries]})

    def entry(self, name: str) -> EntryRecord | None:
        return next((e for e in self.entries if e.name == name), None)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def read_vault_file(path: Path) -> VaultFile:
    """The parsed vault file. FileNotFoundError if absent; VaultCorrupt (naming the file and the bad fields,
    never their values) if it is not a vault file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise VaultError(f"cannot read the vault file {path}: {exc.strerror}") from None
    try:
        return VaultFile.model_validate_json(raw)
    except ValidationError as exc:
        where = "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors(include_input=False)[:5])
        raise VaultCorrupt(f"{path} is not a readable Allele vault file ({where}); restore it from a backup") from None


def read_usage(directory: Path) -> dict[str, str]:
    """{entry name: ISO time last used}; an unreadable usage file counts as empty (it holds no secrets and is
    rewritten on the next use)."""
    try:
        data = json.loads((directory / USAGE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    used = data.get("last_used") if isinstance(data, dict) else None
    if not isinstance(used, dict):
        return {}
    return {k: v for k, v in used.items() if isinstance(k, str) and isinstance(v, str)}


def write_usage(directory: Path, usage: dict[str, str]) -> None:
    atomic_write(directory / USAGE_FILE, canonical({"last_used": dict(sorted(usage.items()))}) + b"\n")


def private_dir(directory: Path) -> None:
    """Create `directory` (and parents) and make it 0700: only the owner may list or enter it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` as a 0600 file, all or nothing: a temporary file in the same folder, fsync,
    os.replace, then fsync of the folder so the rename survives a crash."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on the vault folder: one writer at a time across processes."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def create_key_file(path: Path) -> bytes:
    """A new key file of 32 random bytes (64 hex digits), mode 0600; refuses to overwrite an existing one."""
    if path.exists():
        raise KeyFileError(f"key file {path} already exists; not overwriting it (use it, or choose another path)")
    if not path.parent.exists():
        private_dir(path.parent)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key


def read_key_file(path: Path) -> bytes:
    """The 32-byte key in `path`. Refuses (KeyFileError naming the file and the fix) a missing file, a file
    another user owns, or one that group or others may read or write."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} not found (pass --key-file, or restore it from your backup)") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if st.st_uid != os.getuid():
        raise KeyFileError(f"key file {path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
                           "refusing to use it")
    if st.st_mode & 0o077:
        raise KeyFileError(f"key file {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                           f"refusing to use it: run `chmod 600 {path}`, and consider the key exposed")
    text = path.read_text(errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"key file {path} is not an Allele vault key file (expected {2 * KEY_BYTES} hex digits)")
    return key
