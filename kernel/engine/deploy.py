"""Deploying a plugin: validate it, check a strategy's proof document, install it under
`<home>/plugins/<kind>/<name>-<sha12>.wasm` and register it in the ledger.

Used by `allele deploy` and by the API's upload endpoint, so both refuse and accept the same plugins:

    deployment = install_plugin(host, wasm, proof=None, allow_unproven=False)   # DeployError when refused
    await record_deployment(ledger, deployment, actor="cli")

A running engine notices the new file (it watches `<home>/plugins/strategies`) and hot-swaps it in for
the organisms that trade a strategy of that name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allele.kernel.ledger import Ledger
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin.errors import PluginLoadError
from allele.kernel.plugin.host import LoadedPlugin, PluginHost
from allele.kernel.sdk.build import KIND_DIRS

PROOF_TEMPLATE_MARK = "Replace every line below."


class DeployError(ValueError):
    """The plugin was not deployed; the message says why and what to do."""


class UnprovenError(DeployError):
    """A strategy without a usable proof document; `problem` says what is wrong with it. The caller words the
    fix (a CLI flag, an upload field)."""

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(f"strategy {plugin} refused: {problem}")
        self.plugin = plugin
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Deployment:
    """A plugin installed under the home: where it went, its proof copy, why it is unproven (if it is)."""

    loaded: LoadedPlugin
    target: Path
    proof: Path | None
    unproven: str | None

    def describe(self) -> dict[str, Any]:
        return {"deployed": str(self.target), "proof": None if self.proof is None else str(self.proof),
                "unproven": self.unproven, **self.loaded.describe()}


def deployed_path(home: Path, loaded: LoadedPlugin) -> Path:
    """Where a plugin is installed: named by its content hash, so two versions never collide."""
    kind_dir: str = KIND_DIRS[loaded.kind]
    return home / "plugins" / kind_dir / f"{loaded.name}-{loaded.sha256[:12]}.wasm"


def find_proof(loaded: LoadedPlugin, wasm: Path, given: Path | None,
               search: Sequence[Path] | None = None) -> Path | None:
    """The strategy's proof document: `given`, else the manifest's `proof` path looked up in `search`
    (default: next to the .wasm, its parent folder (a build's `<src>/build/x.wasm`), the current folder,
    Allele's tree)."""
    if given is not None:
        return given if given.is_file() else None
    name = loaded.manifest.proof
    if not name:
        return None
    rel = Path(name)
    bases = search if search is not None else (wasm.parent, wasm.parent.parent, Path.cwd(), SOURCE_ROOT)
    for base in bases:
        for candidate in (base / rel, base / rel.name):
            if candidate.is_file():
                return candidate
    return None


def check_proof(path: Path) -> str | None:
    """Why `path` is not a usable proof document, or None."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text.strip()) < 200:
        return f"{path.name} is too short to be a proof document ({len(text.strip())} characters)"
    if PROOF_TEMPLATE_MARK in text:
        return f"{path.name} is still the unedited template from `allele new`"
    return None


def install_plugin(host: PluginHost, wasm: Path, *, proof: Path | None = None, allow_unproven: bool = False,
                   search: Sequence[Path] | None = None) -> Deployment:
    """Validate `wasm` with `host` and install it under `host.home`. Blocking (a first load compiles).

    A strategy needs a proof document (`proof`, else found through its manifest, see `find_proof`) that is
    not the unedited template, unless `allow_unproven` (UnprovenError otherwise). Raises DeployError naming
    the plugin and what is wrong."""
    if not wasm.is_file():
        raise DeployError(f"{wasm} is not a file: give the path of a plugin .wasm")
    try:
        loaded = host.load(wasm)
    except PluginLoadError as exc:
        raise DeployError(str(exc)) from None
    proof_path: Path | None = None
    unproven: str | None = None
    if loaded.kind == "strategy":
        proof_path = find_proof(loaded, wasm, proof, search)
        if proof_path is None:
            unproven = (f"its proof document '{loaded.manifest.proof}' was not found next to {wasm.name}, in its "
                        "parent folder, here, or in Allele's tree")
        else:
            unproven = check_proof(proof_path)
        if unproven is not None and not allow_unproven:
            raise UnprovenError(loaded.name, unproven)
        if unproven is not None:
            proof_path = None
    target = deployed_path(host.home, loaded)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(wasm, tmp)
    proof_copy = None
    if proof_path is not None:
        proof_copy = target.with_suffix(".proof.md")
        shutil.copyfile(proof_path, proof_copy)
    os.replace(tmp, target)  # atomic: a running engine never sees half a file
    return Deployment(loaded, target, proof_copy, unproven)


async def record_deployment(ledger: Ledger, deployment: Deployment, actor: str) -> None:
    """Register the plugin in the ledger's registry and audit log (`actor`: cli, api, ...)."""
    loaded = deployment.loaded
    await ledger.record_plugin(loaded.sha256, loaded.name, loaded.kind, loaded.manifest.version, deployment.target)
    await ledger.audit(actor, "deploy", {"plugin": loaded.name, "sha256": loaded.sha256,
                                         "unproven": deployment.unproven is not None})
