"""The `allele` command, run as a user runs it: the installed console script in a subprocess, with its own
ALLELE_HOME. (The compile cache is shared through ALLELE_COMPILE_CACHE, set by conftest and inherited.)"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from allele.kernel.domain import MarketEvent
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin import PluginCallError, PluginHost

ALLELE = Path(sys.executable).parent / "allele"
BUNDLED = ("sma_cross", "mean_reversion", "completeness_arb", "momentum_c", "realized_vol", "binance_spot")
MOMENTUM_C = SOURCE_ROOT / "plugins" / "strategies" / "momentum_c" / "momentum_c.c"
BAR = MarketEvent("bar", "sim", "X", 1_700_000_000_000_000_000, 100.0)
COMPONENT_MAGIC = b"\0asm\x0d\0\x01\0"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDE = 400  # COLUMNS for runs whose output names a long temporary path or holds a table


def allele(*args: str | Path, home: Path, cwd: Path | None = None,
           columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALLELE_HOME": str(home)}
    if columns is not None:  # a wide terminal, so that table cells are not wrapped
        env["COLUMNS"] = str(columns)
    return subprocess.run([str(ALLELE), *map(str, args)], env=env, capture_output=True, text=True, cwd=cwd)


def flat(text: str) -> str:
    """Output with rich's line wrapping (and any colour codes) undone."""
    return " ".join(ANSI.sub("", text).split())


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr


def assert_refused(proc: subprocess.CompletedProcess[str], *parts: str, plugin_traceback: bool = False) -> str:
    """Exit code 2, an error on stderr naming every part, and no Python traceback of Allele itself (a build
    error may quote the traceback of the plugin's own app.py: `plugin_traceback`)."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if plugin_traceback:
        assert "kernel/" not in output and "site-packages" not in output, output
    else:
        assert "Traceback" not in output, output
    message = flat(proc.stderr)
    assert message.startswith("error:"), message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert_ok(proc)
    return json.loads(proc.stdout)


def json_documents(text: str) -> list[Any]:
    """Every JSON document printed one after another (`allele start --json` prints two)."""
    decoder = json.JSONDecoder()
    docs, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# -- inspect ----------------------------------------------------------------------------------------------------


def test_inspect_json_describes_a_component(built, home: Path) -> None:
    wasm = built["sma_cross"]
    info = as_json(allele("inspect", wasm, "--json", home=home))
    assert info["abi"] == "component"
    assert info["kind"] == "strategy"
    assert info["world"] == "allele:plugin/strategy@0.1.0"
    assert info["source"] == str(wasm)
    assert info["sha256"] == sha256(wasm)
    assert info["size"] == wasm.stat().st_size
    manifest = info["manifest"]
    assert (manifest["name"], manifest["kind"], manifest["version"]) == ("sma_cross", "strategy", "0.1.0")
    params = {p["name"]: p for p in manifest["parameters"]}
    assert list(params) == ["fast", "slow"]
    assert {k: params["fast"][k] for k in ("type", "default", "min", "max", "step")} == \
        {"type": "int", "default": 10, "min": 2, "max": 200, "step": 1}
    assert {k: params["slow"][k] for k in ("type", "default", "min", "max", "step")} == \
        {"type": "int", "default": 30, "min": 3, "max": 1000, "step": 1}
    # A strategy gets logging, the event clock and the shared types: nothing else, no WASI.
    assert sorted(info["imports"]) == ["allele:plugin/clock@0.1.0", "allele:plugin/log@0.1.0",
                                       "allele:plugin/types@0.1.0"]
    assert "allele:plugin/strategy-api@0.1.0" in info["exports"]
    assert not home.exists() or not list(home.rglob("*.wasm"))  # inspecting installs nothing


def test_inspect_table_names_the_plugin_and_its_genome(built, home: Path) -> None:
    proc = allele("inspect", built["sma_cross"], home=home, columns=WIDE)
    assert_ok(proc)
    text = flat(proc.stdout)
    for part in ("sma_cross 0.1.0 by Allele", "component", "allele:plugin/strategy@0.1.0", "genome",
                 "allele:plugin/clock@0.1.0", sha256(built["sma_cross"])):
        assert part in text, part
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.count("│") > 2}
    assert {"fast", "slow"} <= set(rows)
    assert [c.strip() for c in rows["fast"].split("│")[1:7]] == ["fast", "int", "10", "2", "200", "1"]
    assert [c.strip() for c in rows["slow"].split("│")[1:7]] == ["slow", "int", "30", "3", "1000", "1"]


def test_inspect_extism_plugin(built, home: Path) -> None:
    wasm = built["momentum_c"]
    info = as_json(allele("inspect", wasm, "--json", home=home))
    assert info["abi"] == "extism"
    assert info["kind"] == "strategy"
    assert info["world"] is None
    assert info["manifest"]["name"] == "momentum_c"
    assert [p["name"] for p in info["manifest"]["parameters"]] == ["lookback", "threshold"]
    assert info["sha256"] == sha256(wasm)
    assert info["size"] == wasm.stat().st_size
    assert {"manifest", "configure", "on_event", "on_batch"} <= set(info["exports"])
    assert not any(i.startswith("wasi") for i in info["imports"])

    proc = allele("inspect", wasm, home=home, columns=WIDE)
    assert_ok(proc)
    assert "extism" in proc.stdout and "momentum_c" in proc.stdout and "lookback" in proc.stdout


def test_inspect_refuses_a_file_that_is_not_wasm(tmp_path: Path, home: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not a plugin\n")
    proc = allele("inspect", notes, home=home)
    assert_refused(proc, "notes.txt", "is not WebAssembly", "it starts with 74 68 65 73")
    proc = allele("inspect", notes, home=home, columns=WIDE)
    assert_refused(proc, f"{notes}: is not WebAssembly")
    assert proc.stdout == ""


def test_inspect_refuses_an_empty_file(tmp_path: Path, home: Path) -> None:
    empty = tmp_path / "empty.wasm"
    empty.write_bytes(b"")
    assert_refused(allele("inspect", empty, home=home), "0 bytes long", "too short to be WebAssembly")


def test_inspect_refuses_a_missing_file(tmp_path: Path, home: Path) -> None:
    assert_refused(allele("inspect", tmp_path / "nowhere.wasm", home=home), "nowhere.wasm", "does not exist")


def test_inspect_refuses_a_wasi_importing_component_naming_the_import(built, home: Path) -> None:
    for args in (("inspect", built["wasi_snoop"]), ("inspect", built["wasi_snoop"], "--json")):
        proc = allele(*args, home=home)
        message = assert_refused(proc, "wasi_snoop.wasm", "imports 'wasi:", "which a strategy plugin may not use",
                                 "allele build")
        assert re.search(r"imports 'wasi:[a-z-]+/[a-z-]+@[0-9.]+'", message), message
        assert proc.stdout == ""  # --json prints nothing to parse when refused


def test_inspect_refuses_a_component_of_a_foreign_world(built, home: Path) -> None:
    assert_refused(allele("inspect", built["foreign_world"], home=home), "not a component of a known Allele world")


def test_inspect_refuses_an_invalid_manifest_naming_the_field(built, home: Path) -> None:
    assert_refused(allele("inspect", built["bad_manifest"], home=home), "invalid manifest", "parameters[0]",
                   "min 50.0 is greater than max 5.0")


@pytest.mark.parametrize(("config", "parts"), [
    ("[plugins.limits.strategy\ncall_fuel = 1\n", ("config.toml is not valid TOML", "line 1")),
    ("[plugins.limits.strategy]\ncall_fuel = \"lots\"\n", ("config.toml", "strategy.call_fuel")),
])
def test_a_bad_config_file_is_refused_naming_it(built, home: Path, config: str, parts: tuple[str, ...]) -> None:
    home.mkdir()
    (home / "config.toml").write_text(config)
    for command in ("inspect", "deploy"):
        assert_refused(allele(command, built["momentum_c"], home=home, columns=WIDE), *parts)
    assert not list(home.rglob("*.wasm"))


# -- deploy and status ------------------------------------------------------------------------------------------


def test_deploy_installs_under_home_named_by_content_hash(built, home: Path) -> None:
    expected = []
    for name, kind_dir in (("sma_cross", "strategies"), ("momentum_c", "strategies"), ("realized_vol", "sensors"),
                           ("binance_spot", "exchanges")):
        wasm = built[name]
        proc = allele("deploy", wasm, home=home)
        assert_ok(proc)
        target = home.resolve() / "plugins" / kind_dir / f"{name}-{sha256(wasm)[:12]}.wasm"
        assert target.read_bytes() == wasm.read_bytes()
        assert "deployed" in proc.stdout and name in proc.stdout
        expected.append(str(target))

    status = as_json(allele("status", "--json", home=home))
    assert status["home"] == str(home.resolve())
    assert sorted(status["deployed"]) == sorted(expected)
    assert status["quarantined"] == []

    # Deploying the same file again replaces it in place: still one copy.
    again = as_json(allele("deploy", built["sma_cross"], "--json", home=home))
    assert again["deployed"] == expected[0]
    assert again["sha256"] == sha256(built["sma_cross"]) and again["manifest"]["name"] == "sma_cross"
    assert sorted(as_json(allele("status", "--json", home=home))["deployed"]) == sorted(expected)

    table = allele("status", home=home, columns=WIDE)
    assert_ok(table)
    assert "deployed plugins: 4" in table.stdout
    assert all(path in table.stdout for path in expected)
    assert "quarantined instances: none" in table.stdout


def test_deploy_refuses_a_plugin_and_installs_nothing(built, tmp_path: Path, home: Path) -> None:
    assert_refused(allele("deploy", built["wasi_snoop"], home=home), "imports 'wasi:")
    assert_refused(allele("deploy", built["bad_manifest"], home=home), "invalid manifest")
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"MZ\x90\x00 definitely not wasm")
    assert_refused(allele("deploy", junk, home=home), "is not WebAssembly")
    assert_refused(allele("deploy", tmp_path / "nowhere.wasm", home=home), "does not exist")
    assert not home.exists() or not list(home.rglob("*.wasm"))
    assert as_json(allele("status", "--json", home=home))["deployed"] == []


def test_status_of_a_fresh_home(home: Path) -> None:
    status = as_json(allele("status", "--json", home=home))
    assert status == {"home": str(home.resolve()), "engine": None, "kill_switch": {"engaged": False, "reason": ""},
                      "ledger": None, "deployed": [], "quarantined": [], "watchdog": None}
    proc = allele("status", home=home)
    assert_ok(proc)
    assert "deployed plugins: 0" in proc.stdout and "quarantined instances: none" in proc.stdout


def test_status_lists_a_quarantined_instance(make_host: Callable[..., PluginHost], built) -> None:
    host = make_host()
    healthy = host.strategy(host.load(built["sma_cross"]))
    looper = host.strategy(host.load(built["looper"]))
    with pytest.raises(PluginCallError) as info:
        looper.on_event(BAR)
    assert info.value.quarantined
    healthy.configure({"fast": 3, "slow": 8})  # the host keeps serving the others

    status = as_json(allele("status", "--json", home=host.home))
    [record] = status["quarantined"]
    assert record["instance"] == looper.instance_id
    assert record["plugin"] == "looper"
    assert record["sha256"] == sha256(built["looper"])
    assert record["call"] == "on-event"
    assert "exceeded its fuel budget" in record["reason"]
    assert record["reason"] == looper.quarantine_reason

    table = allele("status", home=host.home, columns=WIDE)
    assert_ok(table)
    assert "quarantined instances (1)" in table.stdout
    row = next(line for line in table.stdout.splitlines() if looper.instance_id in line)
    assert "on-event" in row and sha256(built["looper"])[:12] in row and looper.quarantine_reason in row


def test_status_skips_a_torn_last_line_of_the_quarantine_log(make_host: Callable[..., PluginHost], built) -> None:
    host = make_host()
    looper = host.strategy(host.load(built["looper"]))
    with pytest.raises(PluginCallError):
        looper.on_batch({"symbols": ["X"], "ts": {"start": 0, "step": 60}, "price": [1.0, 2.0]})
    with open(host.home / "quarantine.jsonl", "a", encoding="utf-8") as f:
        f.write('{"ts": 1.0, "plugin": "loo')  # a crash mid-write
    status = as_json(allele("status", "--json", home=host.home))
    assert [(q["instance"], q["call"]) for q in status["quarantined"]] == [(looper.instance_id, "on-batch")]
    assert_ok(allele("status", home=host.home))


# -- new and build ----------------------------------------------------------------------------------------------


def test_new_creates_a_plugin_folder(tmp_path: Path, home: Path) -> None:
    proc = allele("new", "strategy", "my_idea", "--dir", "work", home=home, cwd=tmp_path)
    assert_ok(proc)
    folder = tmp_path / "work" / "my_idea"
    assert sorted(p.name for p in folder.iterdir()) == ["app.py", "proof.md", "test_my_idea.py"]
    app = (folder / "app.py").read_text()
    assert 'name="my_idea"' in app and "class MyIdea(Strategy)" in app
    assert app.rstrip().endswith("StrategyApi = export_strategy(MyIdea)")
    assert (folder / "proof.md").read_text().startswith("# my_idea")
    assert "load_native(HERE).MyIdea()" in (folder / "test_my_idea.py").read_text()
    assert "created" in flat(proc.stdout) and "allele build" in flat(proc.stdout)

    author = allele("new", "sensor", "my_feed", "--dir", tmp_path, "--author", "Ada", home=home)
    assert_ok(author)
    assert 'author="Ada"' in (tmp_path / "my_feed" / "app.py").read_text()


def test_new_refuses_an_existing_folder(tmp_path: Path, home: Path) -> None:
    assert_ok(allele("new", "strategy", "my_idea", "--dir", tmp_path, home=home))
    app = tmp_path / "my_idea" / "app.py"
    app.write_text("# my own work\n")
    for kind in ("strategy", "exchange"):
        assert_refused(allele("new", kind, "my_idea", "--dir", tmp_path, home=home, columns=WIDE),
                       f"{tmp_path / 'my_idea'} already exists")
    assert app.read_text() == "# my own work\n"  # nothing overwritten
    (tmp_path / "taken").write_text("a file, not a folder")
    assert_refused(allele("new", "strategy", "taken", "--dir", tmp_path, home=home, columns=WIDE),
                   f"{tmp_path / 'taken'} already exists")


@pytest.mark.parametrize("name", ["My-Idea", "my-idea", "MyIdea", "1idea", "_idea", "my idea", "x" * 65, ""])
def test_new_refuses_a_bad_name(tmp_path: Path, home: Path, name: str) -> None:
    assert_refused(allele("new", "strategy", name, "--dir", tmp_path, home=home),
                   f"'{name}' is not a plugin name", "lowercase letters, digits and _")
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_an_unknown_kind(tmp_path: Path, home: Path) -> None:
    assert_refused(allele("new", "gadget", "my_idea", "--dir", tmp_path, home=home),
                   "unknown kind 'gadget'", "strategy, sensor, exchange")
    assert_refused(allele("new", "strategies", "my_idea", "--dir", tmp_path, home=home), "unknown kind 'strategies'")
    assert list(tmp_path.iterdir()) == []


def test_build_refuses_what_is_not_a_plugin_folder(tmp_path: Path, home: Path) -> None:
    assert_refused(allele("build", home=home), "give a plugin folder, or --bundled")
    assert_refused(allele("build", tmp_path / "nowhere", home=home), "is not a folder")
    (tmp_path / "empty").mkdir()
    assert_refused(allele("build", tmp_path / "empty", home=home), "is not a plugin folder", "app.py", ".c file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "app.py").write_text("import numpy_does_not_exist\n"
                                                "from allele_guest import export_strategy\n"
                                                "StrategyApi = export_strategy(object)\n")
    message = assert_refused(allele("build", tmp_path / "broken", home=home), "fails to import",
                             "No module named 'numpy_does_not_exist'", plugin_traceback=True)
    assert 'app.py", line 1' in message
    assert not list(tmp_path.rglob("*.wasm"))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name"), [("strategy", "my_idea"), ("sensor", "my_feed"), ("exchange", "my_venue")])
def test_new_build_inspect_and_test_a_scaffolded_plugin(tmp_path: Path, home: Path, kind: str, name: str) -> None:
    assert_ok(allele("new", kind, name, "--dir", "work", home=home, cwd=tmp_path))
    folder = tmp_path / "work" / name

    first = allele("build", f"work/{name}", home=home, cwd=tmp_path)
    assert_ok(first)
    wasm = folder / "build" / f"{name}.wasm"
    assert wasm.read_bytes()[:8] == COMPONENT_MAGIC
    assert "built in" in flat(first.stdout) and f"({kind}," in flat(first.stdout)
    built_bytes = wasm.read_bytes()

    second = allele("build", folder, home=home)
    assert_ok(second)
    assert "up to date" in flat(second.stdout)
    assert wasm.read_bytes() == built_bytes

    info = as_json(allele("inspect", wasm, "--json", home=home))
    assert (info["abi"], info["kind"], info["world"]) == ("component", kind, f"allele:plugin/{kind}@0.1.0")
    assert info["manifest"]["name"] == name and info["manifest"]["proof"] == "proof.md"
    assert info["sha256"] == sha256(wasm)

    tests = subprocess.run([sys.executable, "-m", "pytest", f"work/{name}", "-q", "-p", "no:cacheprovider"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    assert wasm.read_bytes() == built_bytes  # the generated test reused the build


# -- start ------------------------------------------------------------------------------------------------------


def test_start_lists_bundled_and_deployed_plugins(built, home: Path) -> None:
    deployed = as_json(allele("deploy", built["momentum_c"], "--json", home=home))["deployed"]
    junk = home / "plugins" / "sensors" / "junk.wasm"
    junk.parent.mkdir(parents=True)
    junk.write_text("not wasm at all")

    proc = allele("start", "--bars", "20", "--speed", "0", "--json", home=home)
    assert_ok(proc)
    report, final = json_documents(proc.stdout)
    assert report["home"] == str(home.resolve())
    assert final["stopped"]["session"] == report["session"]
    assert final["stopped"]["counters"]["events"] > 0
    rows = report["plugins"]
    bundled = [r for r in rows if r["path"].startswith(str(SOURCE_ROOT / "build" / "plugins"))]
    assert sorted(r["name"] for r in bundled) == sorted(BUNDLED)
    for row in bundled:
        assert row["status"] == "ok", row
        assert row["sha256"] == sha256(Path(row["path"]))
        assert row["abi"] == ("extism" if row["name"] == "momentum_c" else "component")
    assert {r["name"]: r["kind"] for r in bundled} == {
        "sma_cross": "strategy", "mean_reversion": "strategy", "completeness_arb": "strategy",
        "momentum_c": "strategy", "realized_vol": "sensor", "binance_spot": "exchange"}

    [mine] = [r for r in rows if r["path"] == deployed]
    assert (mine["name"], mine["abi"], mine["status"]) == ("momentum_c", "extism", "ok")
    assert mine["sha256"] == sha256(built["momentum_c"])
    [bad] = [r for r in rows if r["path"] == str(junk.resolve())]
    assert bad["status"].startswith("refused:") and "is not WebAssembly" in bad["status"]
    assert len(rows) == len(BUNDLED) + 2

    table = allele("start", "--bars", "20", "--speed", "0", home=home, columns=WIDE)
    assert_ok(table)
    for name in BUNDLED:
        assert re.search(rf"│ {name} +│.*│ ok +│", table.stdout), name
    assert re.search(r"stopped session p[0-9-]+: [0-9]+ events", table.stdout), table.stdout


# -- known bugs: plugin- and user-supplied text is rendered as rich markup ----------------------------------------


def _c_variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """Build a copy of momentum_c whose C source has `old` replaced by `new` (in the manifest string)."""
    from allele.kernel.sdk.build import build_plugin

    folder = tmp_path / name
    folder.mkdir()
    source = MOMENTUM_C.read_text()
    assert old in source
    (folder / f"{name}.c").write_text(source.replace(old, new, 1))
    return build_plugin(folder).output


def test_new_reports_a_name_with_brackets_verbatim(tmp_path: Path, home: Path) -> None:
    assert_refused(allele("new", "strategy", "x[/y]", "--dir", tmp_path, home=home), "'x[/y]' is not a plugin name")


def test_errors_name_a_path_with_brackets_verbatim(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "a[b]"
    folder.mkdir()
    (folder / "x.wasm").write_text("not wasm")
    assert_refused(allele("inspect", folder / "x.wasm", home=home), "a[b]/x.wasm")


def test_inspect_prints_manifest_text_verbatim(tmp_path: Path, home: Path) -> None:
    wasm = _c_variant(tmp_path, "markup", '\\"author\\":\\"Allele\\"', '\\"author\\":\\"[/oops]\\"')
    assert as_json(allele("inspect", wasm, "--json", home=home))["manifest"]["author"] == "[/oops]"
    proc = allele("inspect", wasm, home=home, columns=WIDE)
    assert_ok(proc)
    assert "by [/oops]" in proc.stdout


def test_status_prints_a_reason_quoting_plugin_output_verbatim(home: Path) -> None:
    home.mkdir()
    reason = "returned a malformed result: signal[0].sizing must be 'exposure' or 'units', got '[/oops]'"
    record = {"ts": 1.0, "plugin": "evil", "sha256": "ab" * 32, "instance": "evil#1", "call": "on-event",
              "reason": reason}
    (home / "quarantine.jsonl").write_text(json.dumps(record) + "\n")
    assert as_json(allele("status", "--json", home=home))["quarantined"] == [record]
    proc = allele("status", home=home, columns=WIDE)
    assert_ok(proc)
    assert reason in proc.stdout


def test_deploy_refuses_a_plugin_name_with_a_trailing_newline(tmp_path: Path, home: Path) -> None:
    wasm = _c_variant(tmp_path, "newline", '{\\"name\\":\\"momentum_c\\"', '{\\"name\\":\\"evil\\\\n\\"')
    assert_refused(allele("deploy", wasm, home=home), "is not a plugin name")
    assert not home.exists() or not list(home.rglob("*.wasm"))
