"""The vault: real files in temporary folders, real scrypt and AES-GCM, and the `allele vault` command run as a
user runs it (the installed console script in a subprocess, secrets on stdin or typed into a pseudo-terminal)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import os
import pty
import re
import select
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.vault import (
    Credentials,
    EntryInfo,
    InvalidEntry,
    KeyFileError,
    ScryptParams,
    UnknownAccount,
    UnlockFailed,
    Vault,
    VaultCorrupt,
    VaultLocked,
    default_vault_dir,
    list_entries,
)
from allele.vault.redact import MASK, SecretRedactingFilter, register_secret, scoped
from allele.vault.store import EXCHANGE_CHARS, NAME_CHARS

ALLELE = Path(sys.executable).parent / "allele"
CHEAP = ScryptParams(n=2**10, r=8, p=1)  # tests only; the default cost is n=2**15 (32 MiB)
PASS = "correct horse battery staple"
API_KEY, SECRET, API_PASS, WALLET = "AKIA-vault-test-key", "s3cr3t-value-9f8e7d", "api-pass-4411", "0xwallet5566aa"
VALUES = (API_KEY, SECRET, API_PASS, WALLET)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- helpers ---------------------------------------------------------------------------------------------------
def allele(*args: str | Path, home: Path, stdin: str = "", env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ALLELE_VAULT")}
    environ.update({"ALLELE_HOME": str(home), "COLUMNS": "400", **(env or {})})
    return subprocess.run([str(ALLELE), *map(str, args)], input=stdin, env=environ, capture_output=True,
                          text=True, timeout=120)


def flat(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def refused(proc: subprocess.CompletedProcess[str], *parts: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in output
    message = flat(proc.stderr)
    assert message.startswith("error:"), message
    for part in parts:
        assert part in message, (part, message)
    return message


def assert_no_secret(text: str | bytes, *values: str) -> None:
    for value in values or VALUES:
        raw = value.encode()
        for form in (raw, base64.b64encode(raw), raw.hex().encode()):
            haystack = text if isinstance(text, bytes) else text.encode()
            assert form not in haystack, f"secret material found ({form[:4]!r}...)"


def vault_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def new_vault(directory: Path, **kwargs: Any) -> Vault:
    if "key_file" not in kwargs:
        kwargs.setdefault("passphrase", PASS)
        kwargs.setdefault("scrypt", CHEAP)
    return Vault.create(directory, **kwargs)


def add_all(vault: Vault, name: str = "main", exchange: str = "binance") -> EntryInfo:
    return vault.add(name, exchange=exchange, api_key=API_KEY, secret=SECRET, passphrase=API_PASS,
                     wallet_private_key=WALLET)


def edit_vault_file(directory: Path, change: Any) -> None:
    """Rewrite vault.json through `change(doc: dict)`, as an attacker with write access could."""
    path = directory / "vault.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture
def vdir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "vault"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No passphrase from the environment, and the secrets a test registers for redaction are forgotten after
    it (else a property test's one-character "secrets" would mask text in every later test's logs)."""
    monkeypatch.delenv("ALLELE_VAULT_PASSPHRASE", raising=False)
    with scoped():
        yield


# -- the library -----------------------------------------------------------------------------------------------
def test_round_trip_through_a_fresh_open(vdir: Path) -> None:
    info = add_all(new_vault(vdir))
    assert (info.name, info.exchange, info.last_used) == ("main", "binance", None)
    vault = Vault.open(vdir, passphrase=PASS)
    with vault.credentials("main") as creds:
        assert (creds.api_key, creds.secret, creds.passphrase, creds.wallet_private_key) == VALUES
    assert vault.api_key("main") == API_KEY
    assert default_vault_dir(vdir.parent) == vdir


def test_unattended_unlock_reads_the_passphrase_from_the_environment(vdir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    add_all(new_vault(vdir))
    with pytest.raises(VaultLocked, match="ALLELE_VAULT_PASSPHRASE"):
        Vault.open(vdir)
    monkeypatch.setenv("ALLELE_VAULT_PASSPHRASE", PASS)
    assert Vault.open(vdir).api_key("main") == API_KEY


NAMES = st.text(NAME_CHARS, min_size=1, max_size=64).filter(lambda s: s[0].isalnum())
EXCHANGES = st.text(EXCHANGE_CHARS, min_size=1, max_size=20).filter(lambda s: s[0].isalnum())
SECRETS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"), min_size=1,
                  max_size=80).map(str.strip).filter(bool)
OPTIONAL = st.one_of(st.just(""), SECRETS)


@given(name=NAMES, exchange=EXCHANGES, api_key=SECRETS, secret=SECRETS, passphrase=OPTIONAL, wallet=OPTIONAL)
def test_any_name_and_secret_round_trip(tmp_path_factory: pytest.TempPathFactory, name: str, exchange: str,
                                        api_key: str, secret: str, passphrase: str, wallet: str) -> None:
    directory = tmp_path_factory.mktemp("hv") / "vault"
    new_vault(directory).add(name, exchange=exchange, api_key=api_key, secret=secret, passphrase=passphrase,
                             wallet_private_key=wallet)
    vault = Vault.open(directory, passphrase=PASS)
    with vault.credentials(name) as creds:
        assert (creds.api_key, creds.secret, creds.passphrase, creds.wallet_private_key) == (
            api_key, secret, passphrase, wallet)
    assert [(e.name, e.exchange) for e in list_entries(directory)] == [(name, exchange)]
    payload = name.encode()
    assert vault.sign(name, "hmac-sha256", payload) == hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def test_bad_names_exchanges_and_values_are_refused_without_echoing_secrets(vdir: Path) -> None:
    vault = new_vault(vdir)
    for name in ("", "-lead", "has space", "x" * 65, "sl/ash"):
        with pytest.raises(InvalidEntry, match="invalid entry name"):
            vault.add(name, exchange="binance", api_key=API_KEY, secret=SECRET)
    with pytest.raises(InvalidEntry, match="invalid exchange id 'Binance'"):
        vault.add("a", exchange="Binance", api_key=API_KEY, secret=SECRET)
    with pytest.raises(InvalidEntry, match="the secret is empty"):
        vault.add("a", exchange="binance", api_key=API_KEY, secret=" ")
    with pytest.raises(InvalidEntry, match="the secret has leading or trailing whitespace") as caught:
        vault.add("a", exchange="binance", api_key=API_KEY, secret=SECRET + "\n")
    assert_no_secret(str(caught.value))
    assert list_entries(vdir) == []


def test_signature_is_the_hmac_of_the_secret(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault)
    payload = b"GET /api/v3/account?timestamp=1700000000000"
    assert vault.sign("main", "hmac-sha256", payload) == hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    assert vault.sign("main", "hmac-sha512", payload) == hmac.new(SECRET.encode(), payload, hashlib.sha512).hexdigest()
    with pytest.raises(UnknownAccount):
        vault.sign("nobody", "hmac-sha256", payload)
    with pytest.raises(ValueError, match="unknown signing algorithm 'md5'"):
        vault.sign("main", "md5", payload)


def test_wrong_passphrase_is_a_clear_error_naming_the_file(vdir: Path) -> None:
    add_all(new_vault(vdir))
    with pytest.raises(UnlockFailed) as caught:
        Vault.open(vdir, passphrase="not the passphrase")
    message = str(caught.value)
    assert str(vdir / "vault.json") in message and "wrong passphrase or the vault file was modified" in message
    assert_no_secret(message, PASS, "not the passphrase", *VALUES)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_tampered_ciphertext_is_detected(vdir: Path) -> None:
    add_all(new_vault(vdir))
    edit_vault_file(vdir, lambda d: d["entries"][0]["sealed"].update(ciphertext=flip(d["entries"][0]["sealed"]
                                                                                   ["ciphertext"])))
    with pytest.raises(VaultCorrupt, match="was modified: its integrity check failed"):
        Vault.open(vdir, passphrase=PASS)


def test_a_tampered_wrapped_key_fails_to_unlock(vdir: Path) -> None:
    add_all(new_vault(vdir))
    edit_vault_file(vdir, lambda d: d["data_key"].update(ciphertext=flip(d["data_key"]["ciphertext"])))
    with pytest.raises(UnlockFailed, match="wrong passphrase or the vault file was modified"):
        Vault.open(vdir, passphrase=PASS)


def test_a_file_that_is_not_a_vault_is_reported_by_name(vdir: Path) -> None:
    add_all(new_vault(vdir))
    path = vdir / "vault.json"
    good = path.read_text()
    edit_vault_file(vdir, lambda d: d["unlock"].update(n=1000))
    with pytest.raises(VaultCorrupt, match=r"vault\.json is not a readable Allele vault file \(unlock\.passphrase: "
                                           r".*power of two"):
        Vault.open(vdir, passphrase=PASS)
    path.write_text(good[: len(good) // 2])
    for attempt in (lambda: Vault.open(vdir, passphrase=PASS), lambda: list_entries(vdir)):
        with pytest.raises(VaultCorrupt, match=f"{re.escape(str(path))} is not a readable Allele vault file"):
            attempt()


def test_tampering_while_open_is_detected_on_next_use(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault)
    edit_vault_file(vdir, lambda d: d["entries"][0].update(exchange="kraken"))
    with pytest.raises(VaultCorrupt, match="integrity check failed"):
        vault.api_key("main")


def test_entries_cannot_be_swapped(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault, "alice", "binance")
    vault.add("bob", exchange="binance", api_key="bob-key-1234", secret="bob-secret-5678")

    def swap(doc: dict[str, Any]) -> None:
        a, b = doc["entries"]
        a["sealed"], b["sealed"] = b["sealed"], a["sealed"]

    edit_vault_file(vdir, swap)
    with pytest.raises(VaultCorrupt, match="integrity check failed"):
        Vault.open(vdir, passphrase=PASS)


def test_entry_binding_holds_even_with_a_valid_manifest(vdir: Path) -> None:
    """Defence in depth: even if the manifest MAC were recomputed (here with the vault's own key, standing in
    for a bug or a stolen MAC key), a ciphertext moved to another entry's name does not decrypt."""
    vault = new_vault(vdir)
    add_all(vault, "alice", "binance")
    vault.add("bob", exchange="binance", api_key="bob-key-1234", secret="bob-secret-5678")
    doc = vault._doc
    a, b = doc.entries
    swapped = doc.model_copy(update={"entries": (a.model_copy(update={"sealed": b.sealed}),
                                                 b.model_copy(update={"sealed": a.sealed}))})
    vault._write(swapped)
    reopened = Vault.open(vdir, passphrase=PASS)  # the manifest is valid
    for name in ("alice", "bob"):
        with pytest.raises(VaultCorrupt, match=f"entry '{name}' failed its integrity check"):
            reopened.api_key(name)


def test_files_are_0600_and_the_folder_0700_whatever_the_umask(tmp_path: Path) -> None:
    directory = tmp_path / "vault"
    directory.mkdir(mode=0o755)
    old = os.umask(0)
    try:
        os.chmod(directory, 0o755)
        vault = new_vault(directory)
        add_all(vault)
        with vault.credentials("main"):
            pass
        vault.rotate()
        keyed = new_vault(tmp_path / "keyed", key_file=tmp_path / "keyed" / "vault.key")
        add_all(keyed)
    finally:
        os.umask(old)
    for folder in (directory, tmp_path / "keyed"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        names = sorted(p.name for p in folder.iterdir())
        assert "vault.json" in names
        for p in folder.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert "usage.json" in os.listdir(directory) and "vault.key" in os.listdir(tmp_path / "keyed")


def test_key_file_vault_opens_without_a_passphrase_and_refuses_a_readable_key(tmp_path: Path) -> None:
    directory = tmp_path / "vault"
    add_all(new_vault(directory, key_file=directory / "vault.key"))
    assert Vault.open(directory).api_key("main") == API_KEY
    os.chmod(directory / "vault.key", 0o640)
    with pytest.raises(KeyFileError) as caught:
        Vault.open(directory)
    message = str(caught.value)
    assert str(directory / "vault.key") in message and "mode 0640" in message and "chmod 600" in message
    os.chmod(directory / "vault.key", 0o600)
    other = tmp_path / "other.key"
    new_vault(tmp_path / "elsewhere", key_file=other)
    with pytest.raises(UnlockFailed, match=r"wrong key file .*other\.key"):
        Vault.open(directory, key_file=other)
    (tmp_path / "junk.key").write_text("not hex at all\n")
    os.chmod(tmp_path / "junk.key", 0o600)
    with pytest.raises(KeyFileError, match="not an Allele vault key file"):
        Vault.open(directory, key_file=tmp_path / "junk.key")


def test_a_key_file_kept_elsewhere_is_remembered(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "allele.key"
    add_all(new_vault(tmp_path / "vault", key_file=key))
    assert not (tmp_path / "vault" / "vault.key").exists()
    assert Vault.open(tmp_path / "vault").api_key("main") == API_KEY


def test_no_file_in_the_vault_folder_holds_a_secret(tmp_path: Path) -> None:
    for directory, kwargs in ((tmp_path / "p", {}), (tmp_path / "k", {"key_file": tmp_path / "k" / "vault.key"})):
        vault = new_vault(directory, **kwargs)
        add_all(vault)
        with vault.credentials("main"):
            pass
        vault.rotate()
        files = vault_bytes(directory)
        assert {"vault.json", "usage.json"} <= set(files)
        for content in files.values():
            assert_no_secret(content, PASS, *VALUES)


def test_rotate_keeps_every_entry_and_changes_every_ciphertext(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault, "alice")
    vault.add("bob", exchange="okx", api_key="bob-key-1234", secret="bob-secret-5678")
    before = json.loads((vdir / "vault.json").read_text())
    assert vault.rotate() == 2
    after = json.loads((vdir / "vault.json").read_text())
    assert after["data_key"] != before["data_key"]
    assert after["unlock"] == before["unlock"]  # same passphrase and salt
    for old, new in zip(before["entries"], after["entries"], strict=True):
        assert (old["name"], old["exchange"], old["created"]) == (new["name"], new["exchange"], new["created"])
        assert old["sealed"]["ciphertext"] != new["sealed"]["ciphertext"]
    reopened = Vault.open(vdir, passphrase=PASS)
    assert (reopened.api_key("alice"), reopened.api_key("bob")) == (API_KEY, "bob-key-1234")
    with reopened.credentials("bob") as creds:
        assert creds.secret == "bob-secret-5678"


def test_rotate_to_a_new_passphrase(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault)
    other = Vault.open(vdir, passphrase=PASS)  # another process holding the vault open
    vault.rotate("a whole new passphrase")
    with pytest.raises(UnlockFailed, match="wrong passphrase"):
        Vault.open(vdir, passphrase=PASS)
    assert Vault.open(vdir, passphrase="a whole new passphrase").api_key("main") == API_KEY
    with pytest.raises(UnlockFailed, match="re-keyed by another process"):
        other.api_key("main")


def test_a_rotation_by_another_process_is_followed(vdir: Path) -> None:
    first = new_vault(vdir)
    add_all(first)
    second = Vault.open(vdir, passphrase=PASS)
    second.rotate()
    second.add("late", exchange="okx", api_key="late-key-1", secret="late-secret-1")
    assert first.api_key("late") == "late-key-1" and first.api_key("main") == API_KEY


def test_remove(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault, "alice")
    add_all(vault, "bob")
    with vault.credentials("alice"):
        pass
    vault.remove("alice")
    assert [e.name for e in list_entries(vdir)] == ["bob"]
    assert "alice" not in json.loads((vdir / "usage.json").read_text())["last_used"]
    with pytest.raises(UnknownAccount):
        vault.api_key("alice")
    with pytest.raises(UnknownAccount):
        vault.remove("alice")
    assert Vault.open(vdir, passphrase=PASS).api_key("bob") == API_KEY


def test_list_reads_metadata_without_unlocking_and_records_last_use(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault, "alice", "binance")
    add_all(vault, "bob", "okx")
    with vault.credentials("bob"):
        pass
    entries = list_entries(vdir)
    assert [(e.name, e.exchange) for e in entries] == [("alice", "binance"), ("bob", "okx")]
    assert entries[0].last_used is None and entries[1].last_used is not None
    assert entries[1].last_used >= entries[1].created
    assert vault.entries() == entries
    assert_no_secret(repr(entries) + json.dumps([e.to_json() for e in entries]))
    assert list_entries(vdir.parent / "nowhere") == []


def test_concurrent_writers_lose_nothing(vdir: Path) -> None:
    """Two handles (as two processes would have) adding at once: the lock and the re-read keep every entry."""
    first = new_vault(vdir)
    second = Vault.open(vdir, passphrase=PASS)
    errors: list[BaseException] = []

    def add_many(vault: Vault, prefix: str) -> None:
        try:
            for i in range(8):
                vault.add(f"{prefix}{i}", exchange="binance", api_key=f"{prefix}-key-{i}", secret=f"{prefix}-s-{i}")
                with vault.credentials(f"{prefix}{i}"):
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add_many, args=(v, p)) for v, p in ((first, "a"), (second, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reopened = Vault.open(vdir, passphrase=PASS)
    assert [e.name for e in reopened.entries()] == sorted(f"{p}{i}" for p in "ab" for i in range(8))
    assert all(reopened.api_key(f"{p}{i}") == f"{p}-key-{i}" for p in "ab" for i in range(8))
    assert all(e.last_used is not None for e in list_entries(vdir))


def test_a_failure_to_record_last_use_does_not_fail_the_order(vdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    vault = new_vault(vdir)
    add_all(vault)
    (vdir / "usage.json").mkdir()  # cannot be replaced by a file
    with caplog.at_level(logging.WARNING, logger="allele.vault"), vault.credentials("main") as creds:
        assert creds.secret == SECRET
    assert "could not record the use of vault entry 'main'" in caplog.text


def test_reprs_never_show_values(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault)
    with vault.credentials("main") as creds:
        shown = repr(creds) + str(creds) + repr(vault) + str(vault) + repr(vault._keys)
    assert_no_secret(shown)
    assert repr(Credentials(API_KEY, SECRET)) == "Credentials(<redacted>)"


# -- redaction -------------------------------------------------------------------------------------------------
class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_redaction_filter_scrubs_a_registered_secret_from_a_record() -> None:
    secret = "filter-only-secret-7d1c"
    register_secret(secret)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %s with key %s", ("order", secret), None)
    assert SecretRedactingFilter().filter(record)
    assert record.getMessage() == f"sent order with key {MASK}"
    assert secret not in repr(record.args) + str(record.msg)


def test_decrypted_secrets_are_scrubbed_from_every_logger(vdir: Path) -> None:
    vault = new_vault(vdir)
    add_all(vault)
    capture = Capture()
    # A logger that does not propagate to the root: a filter on the root alone would never see it.
    logger = logging.getLogger("allele.test.vault.isolated")
    logger.propagate = False
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        with vault.credentials("main") as creds:
            logger.info("signing with %s / %s", creds.api_key, creds.secret)
            logger.warning(f"inline {creds.wallet_private_key} and {creds.passphrase}")
            logger.debug("dict args %(k)s", {"k": creds.secret})
            try:
                raise RuntimeError(f"exchange said: bad signature for {creds.secret}")
            except RuntimeError:
                logger.exception("order failed")
    finally:
        logger.removeHandler(capture)
    text = "\n".join(capture.lines)
    assert text.count(MASK) >= 6, text
    assert "RuntimeError" in text and "order failed" in text
    assert_no_secret(text)


def test_the_vault_passphrase_is_scrubbed_too(vdir: Path) -> None:
    add_all(new_vault(vdir))
    Vault.open(vdir, passphrase=PASS)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("allele.test.vault").warning("operator typed %r", PASS)
    finally:
        root.removeHandler(handler)
    assert PASS not in stream.getvalue() and MASK in stream.getvalue()


def test_uncaught_exceptions_print_scrubbed_tracebacks(vdir: Path) -> None:
    """A process that dies of an exception whose message holds a decrypted secret (an exchange error quoting a
    signed request, say), in the main thread or another: stderr shows *** instead."""
    add_all(new_vault(vdir))
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from allele.vault import Vault\n"
        f"vault = Vault.open(Path({str(vdir)!r}), passphrase={PASS!r})\n"
        "with vault.credentials('main') as c:\n"
        "    secret = c.secret\n"
        "t = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError('thread saw ' + secret)))\n"
        "t.start(); t.join()\n"
        "raise RuntimeError('exchange rejected signature of ' + secret)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "RuntimeError: thread saw ***" in proc.stderr and "Exception in thread" in proc.stderr
    assert "RuntimeError: exchange rejected signature of ***" in proc.stderr
    assert_no_secret(proc.stderr + proc.stdout)


# -- the command -----------------------------------------------------------------------------------------------
SECRETS_ON_STDIN = f"{API_KEY}\n{SECRET}\n{API_PASS}\n{WALLET}\n"


def test_cli_add_list_remove_rotate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"ALLELE_VAULT_PASSPHRASE": PASS}
    outputs = [ok(allele("vault", "add", "main", "--exchange", "binance", home=home, stdin=SECRETS_ON_STDIN,
                         env=env)),
               ok(allele("vault", "add", "spare", "--exchange", "okx", home=home, stdin="k2-abcdef\ns2-abcdef\n",
                         env=env))]
    assert "stored 'main' (binance): API key, API secret, API passphrase, wallet private key" in flat(outputs[0])
    vdir = home / "vault"
    with Vault.open(vdir, passphrase=PASS).credentials("main") as creds:  # the CLI stored exactly the stdin lines
        assert (creds.api_key, creds.secret, creds.passphrase, creds.wallet_private_key) == VALUES

    table = ok(allele("vault", "list", home=home))  # no passphrase needed to list
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in table.splitlines() if line.count("│") >= 5}
    assert rows["main"][0] == "binance" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows["main"][1])
    assert rows["main"][2] != "never" and rows["spare"] == [rows["spare"][0], rows["spare"][1], "never"]
    listed = json.loads(ok(allele("vault", "list", "--json", home=home)))
    assert [(e["name"], e["exchange"]) for e in listed] == [("main", "binance"), ("spare", "okx")]
    assert set(listed[0]) == {"name", "exchange", "created", "last_used"} and listed[0]["last_used"]
    assert listed[1]["last_used"] is None
    outputs += [table, json.dumps(listed)]

    before = (vdir / "vault.json").read_bytes()
    outputs.append(ok(allele("vault", "rotate", "--change-passphrase", home=home,
                             env={**env, "ALLELE_VAULT_NEW_PASSPHRASE": "the second passphrase"})))
    assert "2 entries re-encrypted under a new data key, and a new passphrase set" in flat(outputs[-1])
    assert (vdir / "vault.json").read_bytes() != before
    outputs.append(ok(allele("vault", "remove", "spare", home=home,
                             env={"ALLELE_VAULT_PASSPHRASE": "the second passphrase"})))
    reopened = Vault.open(vdir, passphrase="the second passphrase")
    assert [e.name for e in reopened.entries()] == ["main"] and reopened.api_key("main") == API_KEY
    for text in outputs:
        assert_no_secret(text, PASS, "the second passphrase", *VALUES)
    for content in vault_bytes(vdir).values():
        assert_no_secret(content, PASS, "the second passphrase", *VALUES)


def test_cli_refusals_are_clear_and_never_echo_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"ALLELE_VAULT_PASSPHRASE": PASS}
    refused(allele("vault", "remove", "main", home=home, env=env), "no vault at", "allele vault init")
    refused(allele("vault", "add", "main", "--exchange", "binance", home=home, stdin=SECRETS_ON_STDIN),
            "no terminal to ask for the vault passphrase", "ALLELE_VAULT_PASSPHRASE")
    message = refused(allele("vault", "add", "main", "--exchange", "binance", home=home, stdin=f"{API_KEY}\n",
                             env=env), "no API secret on stdin", "one value per line")
    assert_no_secret(message)
    ok(allele("vault", "add", "main", "--exchange", "binance", home=home, stdin=SECRETS_ON_STDIN, env=env))
    results = [
        refused(allele("vault", "add", "main", "--exchange", "binance", home=home, stdin=SECRETS_ON_STDIN,
                       env=env), "already has an entry 'main'", "--replace"),
        refused(allele("vault", "add", "x", "--exchange", "binance", home=home, stdin=SECRETS_ON_STDIN + "extra\n",
                       env={"ALLELE_VAULT_PASSPHRASE": "the wrong passphrase"}),
                str(home / "vault" / "vault.json"), "wrong passphrase or the vault file was modified"),
        refused(allele("vault", "remove", "ghost", home=home, env=env), "no entry 'ghost'"),
    ]
    for text in results:
        assert_no_secret(text, PASS, "the wrong passphrase", *VALUES)


def test_cli_key_file_vault_and_permission_refusal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = ok(allele("vault", "init", "--use-key-file", home=home))
    key = home / "vault" / "vault.key"
    assert f"unlocked by the key file {key}" in flat(out)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ok(allele("vault", "add", "main", "--exchange", "binance", home=home, stdin=SECRETS_ON_STDIN))
    assert Vault.open(home / "vault").api_key("main") == API_KEY
    os.chmod(key, 0o644)
    refused(allele("vault", "remove", "main", home=home), str(key), "accessible by group or others",
            "chmod 600")


def test_no_command_takes_a_secret_on_argv() -> None:
    """Every parameter of every vault command (from the click tree the console script runs), and the --help a
    user reads: only names, paths and flags; nothing that takes a secret."""
    import typer.core
    import typer.main

    from allele.kernel.cli import app

    vault_group = typer.main.get_command(app).commands["vault"]  # type: ignore[attr-defined]
    assert isinstance(vault_group, typer.core.TyperGroup)
    assert set(vault_group.commands) == {"init", "add", "list", "remove", "rotate"}
    taking_values: dict[str, set[str]] = {}
    for name, command in vault_group.commands.items():
        for param in command.params:
            flag = isinstance(param, typer.core.TyperOption) and param.is_flag
            if isinstance(param, typer.core.TyperOption) and not flag:
                taking_values.setdefault(name, set()).update(param.opts)
            # Arguments and valued options never name a secret; the one passphrase flag only asks for a prompt.
            assert not re.search(r"secret|api.?key|wallet|private" + ("" if flag else "|passphrase"),
                                 param.name or ""), (name, param.name)
    assert taking_values == {"init": {"--home", "--key-file"}, "add": {"--exchange", "--home", "--key-file"},
                             "list": {"--home"}, "remove": {"--home", "--key-file"},
                             "rotate": {"--home", "--key-file"}}
    shown = ANSI.sub("", ok(subprocess.run([str(ALLELE), "vault", "add", "--help"], capture_output=True, text=True,
                                           env={**os.environ, "COLUMNS": "200"}, timeout=120)))
    assert set(re.findall(r"(--[a-z][a-z-]*)", shown)) == {"--exchange", "--home", "--key-file", "--replace",
                                                           "--help"}
    assert "never from the command line" in flat(ANSI.sub("", ok(subprocess.run(
        [str(ALLELE), "vault", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
        timeout=120))))


def _expect(fd: int, pattern: str, transcript: list[str], timeout: float = 60.0) -> None:
    """Read the terminal until `pattern` has appeared (case-insensitive) since the last expectation."""
    deadline = time.monotonic() + timeout
    buffer = ""
    while pattern.lower() not in ANSI.sub("", buffer).lower():
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        if not ready:
            raise AssertionError(f"no {pattern!r} on the terminal; saw {''.join(transcript) + buffer!r}")
        try:
            chunk = os.read(fd, 4096).decode(errors="replace")
        except OSError:  # EIO: the child closed the terminal
            chunk = ""
        if not chunk:
            raise AssertionError(f"terminal closed before {pattern!r}; saw {''.join(transcript) + buffer!r}")
        buffer += chunk
    transcript.append(buffer)


@pytest.fixture
def terminal_run(tmp_path: Path) -> Iterator[Any]:
    pids: list[int] = []

    def run(*args: str, home: Path) -> int:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes `allele` with the pseudo-terminal as its controlling terminal
            env = {k: v for k, v in os.environ.items() if not k.startswith("ALLELE_VAULT")}
            env.update({"ALLELE_HOME": str(home), "COLUMNS": "200", "TERM": "dumb"})
            os.execve(str(ALLELE), [str(ALLELE), *args], env)
        pids.append(pid)
        return fd

    yield run
    for pid in pids:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_cli_prompts_with_hidden_input_on_a_terminal(tmp_path: Path, terminal_run: Any) -> None:
    home = tmp_path / "home"
    fd = terminal_run("vault", "add", "main", "--exchange", "binance", home=home)
    seen: list[str] = []
    # The trailing ": " matters: getpass prints that space after turning echo off, so answering only then is
    # what a person at the keyboard does, and anything echoed would be a real leak.
    for prompt, answer in (("new vault passphrase", PASS), ("new vault passphrase again", PASS),
                           ("API key", API_KEY), ("API secret", SECRET), ("API secret again", SECRET),
                           ("API passphrase (Enter if none)", ""), ("wallet private key (Enter if none)", WALLET),
                           ("wallet private key again", WALLET)):
        _expect(fd, prompt + ": ", seen)
        os.write(fd, answer.encode() + b"\r")
    _expect(fd, "stored 'main' (binance)", seen)
    transcript = "".join(seen)
    assert_no_secret(transcript, PASS, *VALUES)  # nothing typed was echoed
    with Vault.open(home / "vault", passphrase=PASS).credentials("main") as creds:
        assert (creds.api_key, creds.secret, creds.passphrase, creds.wallet_private_key) == (
            API_KEY, SECRET, "", WALLET)
