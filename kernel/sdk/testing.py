"""Helpers for testing a plugin: natively, and as a built component through the host.

    from allele.kernel.sdk.testing import load_native

    strategy = load_native("plugins/strategies/sma_cross").SmaCross()
    strategy.configure({"fast": 5, "slow": 20})

`load_native` imports the plugin's `app.py` in this Python process with a
stand-in host (event clock, allow-listed fetch over urllib, HMAC signing with
test secrets), so plugin logic is unit-tested at native speed.

`load_component` builds the folder (skipped when nothing changed) and runs
the component through the real PluginHost, budgets and capabilities included:

    strategy = load_component("plugins/strategies/sma_cross", home=tmp_path)
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from allele.kernel.paths import GUEST_SDK_DIR, compile_cache_dir
from allele.kernel.plugin.capabilities import url_allowed
from allele.kernel.plugin.host import PluginHost, PluginInstance
from allele.kernel.plugin.limits import Limits
from allele.kernel.sdk.build import build_plugin
from allele.vault.signing import Signer

if str(GUEST_SDK_DIR) not in sys.path:
    sys.path.insert(0, str(GUEST_SDK_DIR))

import allele_guest
from allele_guest.model import HttpResponse, PluginError


@dataclass
class NativeHost:
    """A stand-in for the host's capabilities, for native unit tests."""

    clock_ns: int = 0
    allowed_hosts: tuple[str, ...] = ()
    secrets: dict[str, bytes] = field(default_factory=dict)
    signing_allowed: bool = True
    logs: list[tuple[str, str]] = field(default_factory=list)

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def now_ns(self) -> int:
        return self.clock_ns

    def fetch(self, method: str, url: str, headers: list[tuple[str, str]], body: str) -> HttpResponse:
        if not url_allowed(url, frozenset(self.allowed_hosts)):  # the host's own rule
            raise PluginError(f"'{url}' is not on the plugin's allowed_hosts {list(self.allowed_hosts)}")
        req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return HttpResponse(resp.status, list(resp.headers.items()), resp.read().decode())
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, list(exc.headers.items()), exc.read().decode())
        except OSError as exc:
            raise PluginError(f"request to {url} failed: {exc}") from None

    def sign(self, account: str, algorithm: str, payload: str) -> str:
        if not self.signing_allowed:
            raise PluginError("signing refused: no order is being executed")
        secret = self.secrets.get(account)
        if secret is None:
            raise PluginError(f"no secret for account '{account}'")
        digest = {"hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}[algorithm]
        return hmac.new(secret, payload.encode(), digest).hexdigest()


def load_native(plugin_dir: str | Path, host: NativeHost | None = None) -> ModuleType:
    """Import `<plugin_dir>/app.py` natively, with `host` standing in for Allele."""
    app = Path(plugin_dir) / "app.py"
    if not app.is_file():
        raise FileNotFoundError(f"{app} does not exist: a plugin folder holds its code in app.py")
    allele_guest.host.attach(host or NativeHost())
    name = f"allele_native_{Path(plugin_dir).resolve().name}"
    spec = importlib.util.spec_from_file_location(name, app)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_component(plugin_dir: str | Path, *, home: Path, signer: Signer | None = None,
                   limits: Limits | None = None, configure: dict[str, object] | None = None) -> Any:
    """Build `plugin_dir` if needed and return a running instance through a PluginHost at `home`.

    The result is a StrategyPlugin, SensorPlugin or ExchangePlugin, by the plugin's kind. Compiled
    components are cached in `<plugin_dir>/build/cache` (or $ALLELE_COMPILE_CACHE) across test runs.
    """
    built = build_plugin(plugin_dir)
    cache = compile_cache_dir(home) if "ALLELE_COMPILE_CACHE" in os.environ else built.output.parent / "cache"
    host = PluginHost(home, signer=signer, limits=limits, cache_dir=cache)
    instance: PluginInstance = host.instantiate(host.load(built.output))
    if configure:
        instance.configure(dict(configure))
    return instance
