"""`allele ui`: open the dashboard of the running engine's API in a browser, logged in.

The token travels in the URL's fragment (`#token=...`): browsers never send a fragment to the server,
so it does not reach any log. The dashboard reads it and sends it as `Authorization: Bearer`.
"""

from __future__ import annotations

import os
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer

from allele.kernel import cli as _cli
from allele.kernel.api.apitoken import TokenError, read_token, token_path
from allele.kernel.api.server import read_info
from allele.kernel.cli import JsonFlag, _fail, _print_json, out
from allele.kernel.paths import allele_home

app: typer.Typer = _cli.app  # annotated: mypy sees the cross-package import as Any


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dashboard_url(home: Path) -> tuple[str, str]:
    """(the dashboard URL with the token in its fragment, the API's base URL); typer.Exit when none runs."""
    info = read_info(home)
    if info is None or not _alive(info.get("pid")):
        raise _fail(f"no API is running for {home}: start the engine with `allele start` (the API runs inside "
                    "it; [api] enabled = true in config.toml)", code=1)
    try:
        token = read_token(home)
    except TokenError as exc:
        raise _fail(str(exc), code=1) from None
    if token is None:
        raise _fail(f"{token_path(home)} is missing although an API runs: restart the engine to generate it", code=1)
    base = str(info["url"])
    return f"{base}/#token={token}", base


@app.command()
def ui(print_url: Annotated[bool, typer.Option("--print-url", help="print the URL instead of opening a browser")]
       = False, as_json: JsonFlag = False) -> None:
    """Open the dashboard of the running engine in a browser (the URL carries the API token)."""
    home = allele_home()
    url, base = dashboard_url(home)
    if as_json:
        _print_json({"url": url, "api": base, "docs": f"{base}/docs", "token_file": str(token_path(home))})
        return
    if print_url:
        out.print(url, soft_wrap=True)
        return
    if not webbrowser.open(url):
        out.print("no browser could be started here; open this URL (it carries the API token, keep it private):")
        out.print(url, soft_wrap=True)
        return
    out.print(f"opened the dashboard at {base} in your browser")
