"""The `allele` command. Sub-commands follow the plugin author's and operator's workflow:

    allele new strategy my_idea      scaffold a plugin folder
    allele build my_idea             build it to a .wasm (idempotent)
    allele inspect my_idea.wasm      ABI, world, manifest, imports, exports, hash
    allele deploy my_idea.wasm       validate and install it under .allele/plugins/
    allele status                    deployed plugins and quarantined instances
    allele start                     build the bundled plugins and load everything
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from allele.kernel.config import ConfigError
from allele.kernel.paths import SOURCE_ROOT, allele_home
from allele.kernel.plugin.errors import PluginLoadError
from allele.kernel.plugin.host import LoadedPlugin, PluginHost
from allele.kernel.plugin.limits import load_limits
from allele.kernel.sdk.build import BuildError, build_many, build_plugin, bundled_plugin_dirs
from allele.kernel.sdk.scaffold import KINDS, scaffold

app = typer.Typer(help="Allele: sandboxed WebAssembly strategies, a genetic arena, a verified order kernel.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Markup off: paths, manifests and quarantine reasons come from users and plugins, and a "[/x]" in them
# must print as text, not be parsed as styling. Styling is applied through Text objects only.
out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)

BUNDLED_BUILD_DIR = SOURCE_ROOT / "build" / "plugins"
JsonFlag = Annotated[bool, typer.Option("--json", help="print machine-readable JSON instead of a table")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(Text("error: ", style="bold red") + Text(message))
    return typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
def new(kind: Annotated[str, typer.Argument(help="strategy, sensor or exchange")],
        name: Annotated[str, typer.Argument(help="plugin name: lowercase letters, digits, _")],
        directory: Annotated[Path, typer.Option("--dir", help="where to create the folder")] = Path("."),
        author: Annotated[str, typer.Option(help="author recorded in the manifest")] = "you") -> None:
    """Scaffold a plugin folder: app.py (code and manifest), proof.md, and a test."""
    if kind not in KINDS:
        raise _fail(f"unknown kind '{kind}': choose one of {', '.join(KINDS)}")
    try:
        target = scaffold(kind, name, directory, author)
    except (ValueError, FileExistsError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"created {target}/ with app.py, proof.md and test_{name}.py")
    out.print(f"next: edit app.py, then `allele build {target}` and `pytest {target}`")


@app.command()
def build(directory: Annotated[Path | None, typer.Argument(help="plugin folder (app.py or one .c file)")] = None,
          output: Annotated[Path | None, typer.Option("-o", "--output", help="output .wasm")] = None,
          bundled: Annotated[bool, typer.Option("--bundled", help="build every plugin under plugins/")] = False,
          force: Annotated[bool, typer.Option(help="rebuild even if nothing changed")] = False,
          wasi: Annotated[bool, typer.Option(help="keep WASI imports (the host refuses such plugins; "
                                                  "for testing that refusal)")] = False) -> None:
    """Build a plugin folder to a .wasm; skipped when its inputs are unchanged."""
    try:
        if bundled:
            with out.status("building bundled plugins") as status:
                results = build_many(bundled_plugin_dirs(), BUNDLED_BUILD_DIR,
                                     progress=lambda m: status.update(m))
            for r in results:
                state = "up to date" if r.skipped else f"built in {r.seconds:.1f} s"
                out.print(f"  {r.kind:9s} {r.source.name:20s} {state:18s} {r.output.relative_to(SOURCE_ROOT)}")
            return
        if directory is None:
            raise _fail("give a plugin folder, or --bundled")
        with out.status(f"building {directory}") as status:
            result = build_plugin(directory, output, stub_wasi=not wasi, force=force,
                                  progress=lambda m: status.update(m))
    except BuildError as exc:
        raise _fail(str(exc)) from None
    state = "up to date" if result.skipped else f"built in {result.seconds:.1f} s"
    out.print(f"{result.output} ({result.kind}, {result.size / 2**20:.1f} MiB): {state}")


def _host(home: Path | None = None) -> PluginHost:
    home = home or allele_home()
    try:
        return PluginHost(home, limits=load_limits(home))
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _load(host: PluginHost, path: Path) -> LoadedPlugin:
    if not path.exists():
        raise _fail(f"{path} does not exist")
    if not path.is_file():
        raise _fail(f"{path} is not a file: give the path of a plugin .wasm")
    try:
        with out.status(f"loading {path.name} (the first load of a component compiles it: ~10 s)"):
            return host.load(path)
    except PluginLoadError as exc:
        raise _fail(str(exc)) from None


@app.command()
def inspect(wasm: Annotated[Path, typer.Argument(help="a plugin .wasm")], as_json: JsonFlag = False) -> None:
    """Show a plugin's ABI, world, manifest, imports, exports, sha256 and size."""
    loaded = _load(_host(), wasm)
    info = loaded.describe()
    if as_json:
        _print_json(info)
        return
    m = loaded.manifest
    table = Table(show_header=False, box=None)
    for key, value in (("file", info["source"]), ("sha256", info["sha256"]), ("size", f"{info['size']:,} bytes"),
                       ("abi", info["abi"]), ("world", info["world"] or "(extism: JSON payloads)"),
                       ("kind", info["kind"]), ("name", f"{m.name} {m.version} by {m.author}"),
                       ("description", m.description), ("symbols", ", ".join(m.symbols) or "-"),
                       ("sensor inputs", ", ".join(m.sensor_inputs) or "-"),
                       ("allowed hosts", ", ".join(m.allowed_hosts) or "-"), ("proof", m.proof or "-"),
                       ("imports", "\n".join(info["imports"]) or "-"), ("exports", "\n".join(info["exports"]))):
        table.add_row(Text(key, style="bold"), str(value))
    out.print(table)
    if m.parameters:
        params = Table("parameter", "type", "default", "min", "max", "step", "choices", title="genome")
        for p in m.parameters:
            params.add_row(p.name, p.type, str(p.default), *(("-" if v is None else f"{v:g}")
                                                            for v in (p.min, p.max, p.step)), ", ".join(p.choices))
        out.print(params)


# The trading workflow (start, stop, status, deploy, backtest, replay, kill-switch, ledger) registers on `app`.
import allele.kernel.cli_api  # noqa: E402  (`allele ui`)
import allele.kernel.cli_vault  # noqa: E402,F401  (`allele vault`)
from allele.kernel import cli_arena, cli_home, cli_trading, cli_venue  # noqa: E402,F401

if __name__ == "__main__":
    app()
