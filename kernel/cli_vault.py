"""`allele vault`: exchange credentials, encrypted at rest (see docs/vault.md).

    allele vault init [--key-file PATH | --use-key-file]     create the vault (passphrase, or a key file)
    allele vault add NAME --exchange ID [--replace]          secrets from hidden prompts, or stdin lines
    allele vault list [--json]                               names, exchange, created, last used; never values
    allele vault remove NAME
    allele vault rotate [--change-passphrase]                new data key, every entry re-encrypted

No command takes a secret on its command line: argv is visible to every user of the machine (ps, /proc)
and lands in shell history. Secrets come from hidden prompts when stdin is a terminal, otherwise from stdin,
one value per line: API key, API secret, then optionally the API passphrase and the wallet private key.
The vault passphrase comes from $ALLELE_VAULT_PASSPHRASE or a hidden prompt; a key-file vault needs neither.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from allele.kernel import cli as _cli
from allele.kernel.cli import JsonFlag, _fail, _print_json, out
from allele.kernel.paths import allele_home
from allele.vault import (
    PASSPHRASE_ENV,
    UnknownAccount,
    Vault,
    VaultError,
    default_vault_dir,
    list_entries,
)
from allele.vault.files import VAULT_FILE, PassphraseUnlock, read_vault_file
from allele.vault.store import validate_exchange, validate_name

NEW_PASSPHRASE_ENV = "ALLELE_VAULT_NEW_PASSPHRASE"
STDIN_FIELDS = ("API key", "API secret", "API passphrase", "wallet private key")

app: typer.Typer = _cli.app
vault_app = typer.Typer(help="Exchange credentials, encrypted at rest; secrets are read from prompts or stdin, "
                             "never from the command line.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")

HomeOption = Annotated[Path | None, typer.Option("--home", help="runtime home (default: $ALLELE_HOME, else "
                                                                "./.allele); the vault is <home>/vault")]
KeyFileOption = Annotated[Path | None, typer.Option("--key-file", help="the vault's key file, if it is not "
                                                                       "<home>/vault/vault.key")]


def _dir(home: Path | None) -> Path:
    return Path(default_vault_dir(home.expanduser().resolve() if home is not None else allele_home()))


def _interactive() -> bool:
    return sys.stdin.isatty()


def _prompt_secret(label: str, *, confirm: bool, optional: bool = False) -> str:
    """A hidden prompt; with `confirm`, asked twice (an empty optional answer is not re-asked)."""
    value: str = typer.prompt(label + (" (Enter if none)" if optional else ""), hide_input=True,
                              default="" if optional else None, show_default=False)
    if confirm and value:
        again: str = typer.prompt(f"{label} again", hide_input=True)
        if again != value:
            raise _fail(f"the two entries of the {label} differ; nothing was changed")
    return value.strip()


def _vault_passphrase(*, new: bool, env: str = PASSPHRASE_ENV) -> str:
    """From `env`, else a hidden prompt (twice for a new passphrase); refuses when there is no terminal."""
    value = os.environ.get(env)
    if value is not None:
        return value
    if not _interactive():
        raise _fail(f"no terminal to ask for the vault passphrase: set ${env}")
    return _prompt_secret("new vault passphrase" if new else "vault passphrase", confirm=new)


def _open(home: Path | None, key_file: Path | None) -> Vault:
    directory = _dir(home)
    try:
        doc = read_vault_file(directory / VAULT_FILE)
    except FileNotFoundError:
        raise _fail(f"no vault at {directory}: create one with `allele vault init` "
                    "(or `allele vault add`, which creates it)") from None
    except VaultError as exc:
        raise _fail(str(exc)) from None
    passphrase = None
    if isinstance(doc.unlock, PassphraseUnlock) and key_file is None:
        passphrase = _vault_passphrase(new=False)
    try:
        return Vault.open(directory, passphrase=passphrase, key_file=key_file)
    except VaultError as exc:
        raise _fail(str(exc)) from None


def _create(home: Path | None, key_file: Path | None) -> Vault:
    directory = _dir(home)
    try:
        if key_file is not None:
            vault = Vault.create(directory, key_file=key_file)
        else:
            vault = Vault.create(directory, passphrase=_vault_passphrase(new=True))
    except VaultError as exc:
        raise _fail(str(exc)) from None
    how = (f"the key file {key_file.absolute()} (mode 0600)" if key_file is not None
           else f"a passphrase (give it in ${PASSPHRASE_ENV} for unattended starts)")
    out.print(f"created the vault {directory / VAULT_FILE}, unlocked by {how}")
    out.print("back up the vault folder; keep the passphrase or key file apart from that backup")
    return vault


def _read_secrets() -> tuple[str, str, str, str]:
    """(api key, secret, passphrase, wallet key): hidden prompts on a terminal, else stdin lines."""
    if _interactive():
        return (_prompt_secret("API key", confirm=False), _prompt_secret("API secret", confirm=True),
                _prompt_secret("API passphrase", confirm=True, optional=True),
                _prompt_secret("wallet private key", confirm=True, optional=True))
    lines = [line.strip() for line in sys.stdin.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) > len(STDIN_FIELDS):
        raise _fail(f"stdin has {len(lines)} lines; expected at most {len(STDIN_FIELDS)}, one value per line: "
                    + ", ".join(STDIN_FIELDS))
    values = [*lines, "", "", "", ""][:4]
    for label, value in zip(STDIN_FIELDS[:2], values[:2], strict=True):
        if not value:
            raise _fail(f"no {label} on stdin: give one value per line: {', '.join(STDIN_FIELDS)} "
                        "(the last two may be left out)")
    return values[0], values[1], values[2], values[3]


@vault_app.command("init")
def init(home: HomeOption = None,
         key_file: Annotated[Path | None, typer.Option("--key-file", help="unlock by this key file (created "
                                                                          "if missing, mode 0600) instead of "
                                                                          "a passphrase")] = None,
         use_key_file: Annotated[bool, typer.Option("--use-key-file", help="unlock by a new key file at "
                                                                           "<home>/vault/vault.key")] = False) -> None:
    """Create the vault, unlocked by a passphrase ($ALLELE_VAULT_PASSPHRASE or a prompt) or by a key file."""
    if use_key_file and key_file is None:
        key_file = _dir(home) / "vault.key"
    _create(home, key_file)


@vault_app.command("add")
def add(name: Annotated[str, typer.Argument(help="entry name, as plugins and config name the account")],
        exchange: Annotated[str, typer.Option("--exchange", help="exchange id (ccxt id or exchange plugin name)")],
        home: HomeOption = None, key_file: KeyFileOption = None,
        replace: Annotated[bool, typer.Option("--replace", help="overwrite an entry of the same name")] = False
        ) -> None:
    """Store an account's credentials: hidden prompts on a terminal, else stdin lines (API key, API secret, then
    optionally the API passphrase and the wallet private key). Creates the vault if there is none."""
    try:  # refuse bad input before asking for any secret
        validate_name(name)
        validate_exchange(exchange)
        taken = any(e.name == name for e in list_entries(_dir(home)))
    except VaultError as exc:
        raise _fail(str(exc)) from None
    if taken and not replace:
        raise _fail(f"the vault {_dir(home) / VAULT_FILE} already has an entry '{name}'; remove it first, "
                    "or pass --replace")
    if not (_dir(home) / VAULT_FILE).exists():
        vault = _create(home, key_file)
    else:
        vault = _open(home, key_file)
    api_key, secret, passphrase, wallet = _read_secrets()
    try:
        vault.add(name, exchange=exchange, api_key=api_key, secret=secret, passphrase=passphrase,
                  wallet_private_key=wallet, replace=replace)
    except VaultError as exc:
        raise _fail(str(exc)) from None
    extras = [label for label, v in (("API passphrase", passphrase), ("wallet private key", wallet)) if v]
    out.print(f"stored '{name}' ({exchange}): API key, API secret" + "".join(f", {e}" for e in extras)
              + f", encrypted in {vault.directory / VAULT_FILE}")


@vault_app.command("list")
def list_(home: HomeOption = None, as_json: JsonFlag = False) -> None:
    """Entries: name, exchange, created, last used. Never a credential value; needs no passphrase."""
    directory = _dir(home)
    try:
        entries = list_entries(directory)
    except VaultError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json([e.to_json() for e in entries])
        return
    if not (directory / VAULT_FILE).exists():
        out.print(f"no vault at {directory} (create one with `allele vault init`)")
        return
    if not entries:
        out.print(f"the vault {directory / VAULT_FILE} has no entries (add one with `allele vault add`)")
        return
    table = Table("name", "exchange", "created", "last used", title=str(directory / VAULT_FILE))
    for e in entries:
        row = e.to_json()
        table.add_row(row["name"], row["exchange"], row["created"], row["last_used"] or "never")
    out.print(table)


@vault_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="entry to delete")], home: HomeOption = None,
           key_file: KeyFileOption = None) -> None:
    """Delete an entry (unlocking the vault first, so only its owner can)."""
    vault = _open(home, key_file)
    try:
        vault.remove(name)
    except UnknownAccount:
        raise _fail(f"the vault {vault.directory / VAULT_FILE} has no entry '{name}' "
                    "(see `allele vault list`)") from None
    except VaultError as exc:
        raise _fail(str(exc)) from None
    out.print(f"removed '{name}' from {vault.directory / VAULT_FILE}")


@vault_app.command("rotate")
def rotate(home: HomeOption = None, key_file: KeyFileOption = None,
           change_passphrase: Annotated[bool, typer.Option("--change-passphrase",
                                                           help="also set a new vault passphrase (asked for, "
                                                                f"or taken from ${NEW_PASSPHRASE_ENV})")] = False
           ) -> None:
    """Re-encrypt every entry under a new random data key; optionally change the vault passphrase."""
    vault = _open(home, key_file)
    fresh = _vault_passphrase(new=True, env=NEW_PASSPHRASE_ENV) if change_passphrase else None
    try:
        count = vault.rotate(fresh)
    except VaultError as exc:
        raise _fail(str(exc)) from None
    out.print(f"rotated {vault.directory / VAULT_FILE}: {count} entr{'y' if count == 1 else 'ies'} re-encrypted "
              "under a new data key" + (", and a new passphrase set" if fresh else ""))
    if fresh:
        out.print("processes that hold the vault open (a running engine) must reopen it with the new passphrase")
