"""`allele build` as a library (kernel.sdk.build): clear errors for what cannot be built, idempotent builds of
Python components, and C plugins compiled to Extism modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin import PluginHost
from allele.kernel.sdk.build import BuildError, build_plugin
from allele.kernel.sdk.scaffold import scaffold

CORE_MODULE_MAGIC = b"\0asm\x01\0\0\0"
COMPONENT_MAGIC = b"\0asm\x0d\0\x01\0"
MOMENTUM_C = SOURCE_ROOT / "plugins" / "strategies" / "momentum_c"
EXPORT_LINE = "from allele_guest import export_strategy\nStrategyApi = export_strategy(object)\n"


def plugin_folder(tmp_path: Path, app: str, name: str = "plugin") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.py").write_text(app)
    return folder


def no_output(folder: Path) -> bool:
    return not list(folder.rglob("*.wasm")) and not list(folder.rglob("*.inputs"))


# -- what cannot be built ---------------------------------------------------------------------------------------


def test_an_app_that_fails_to_import_names_the_missing_module(tmp_path: Path) -> None:
    folder = plugin_folder(tmp_path, "import numpy_does_not_exist\n" + EXPORT_LINE)
    with pytest.raises(BuildError) as info:
        build_plugin(folder)
    message = str(info.value)
    assert f"{folder / 'app.py'} fails to import, so it cannot be built" in message
    assert "ModuleNotFoundError: No module named 'numpy_does_not_exist'" in message
    assert 'app.py", line 1' in message  # the traceback's end, where the cause is
    assert no_output(folder)


def test_an_app_that_raises_at_import_shows_the_exception(tmp_path: Path) -> None:
    folder = plugin_folder(tmp_path, EXPORT_LINE + "LIMITS = {'a': 1}['b']\n")
    with pytest.raises(BuildError, match=r"fails to import") as info:
        build_plugin(folder)
    assert "KeyError: 'b'" in str(info.value)
    assert no_output(folder)


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = plugin_folder(tmp_path, "x = 1\n\ndef on_event(self:\n    return []\n" + EXPORT_LINE)
    with pytest.raises(BuildError) as info:
        build_plugin(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'app.py'}:3: syntax error")
    assert no_output(folder)


@pytest.mark.parametrize("files", [[], ["README.md"], ["a.c", "b.c"], ["notes.txt", "helper.h"]])
def test_a_folder_without_app_py_or_one_c_file_is_not_a_plugin(tmp_path: Path, files: list[str]) -> None:
    folder = tmp_path / "thing"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("/* nothing */\n")
    with pytest.raises(BuildError) as info:
        build_plugin(folder)
    assert str(info.value) == (f"{folder} is not a plugin folder: it needs an app.py (Python) "
                               "or exactly one .c file (C)")
    assert no_output(folder)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"nowhere is not a folder"):
        build_plugin(tmp_path / "nowhere")
    (tmp_path / "app.py").write_text(EXPORT_LINE)
    with pytest.raises(BuildError, match=r"app\.py is not a folder"):
        build_plugin(tmp_path / "app.py")


@pytest.mark.parametrize("app", [
    "from allele_guest import Strategy\n\nclass MyStrategy(Strategy):\n    pass\n",
    "from allele_guest import export_strategy\n\nclass MyStrategy:\n    pass\n\nexport_strategy(MyStrategy)\n",
    "from allele_guest import export_strategy\n\ndef f():\n    StrategyApi = export_strategy(object)\n",
    "from allele_guest import export_strategy\n\nstrategy_api = export_strategy(object)\n",
])
def test_an_app_exporting_no_plugin_is_told_how_to_end(tmp_path: Path, app: str) -> None:
    folder = plugin_folder(tmp_path, app)
    with pytest.raises(BuildError) as info:
        build_plugin(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'app.py'} exports no plugin")
    assert "end it with `StrategyApi = export_strategy(MyStrategy)`" in message
    assert "SensorApi = export_sensor(...)" in message and "ExchangeApi = export_exchange(...)" in message
    assert no_output(folder)


# -- idempotence ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_scaffolded_plugin_builds_once_until_its_sources_change(tmp_path: Path) -> None:
    folder = scaffold("strategy", "my_idea", tmp_path)
    wasm = folder / "build" / "my_idea.wasm"

    first = build_plugin(folder)
    assert (first.source, first.output, first.kind, first.language) == (folder.resolve(), wasm.resolve(),
                                                                          "strategy", "python")
    assert not first.skipped
    assert wasm.read_bytes()[:8] == COMPONENT_MAGIC and first.size == wasm.stat().st_size
    original = wasm.read_bytes()

    second = build_plugin(folder)
    assert second.skipped and second.output == first.output and second.kind == "strategy"
    assert wasm.read_bytes() == original

    # Neither the tests, nor the proof document, nor rewriting a source with the same content are inputs.
    test_file = folder / "test_my_idea.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_more() -> None:\n    pass\n")
    (folder / "proof.md").write_text("# my_idea\n\nAn edge, at last.\n")
    app = folder / "app.py"
    app.write_text(app.read_text())
    (folder / "__pycache__").mkdir(exist_ok=True)
    (folder / "__pycache__" / "app.py").write_text("# a stray copy\n")
    assert build_plugin(folder).skipped

    app.write_text(app.read_text().replace("Long when the price is above", "Long if the price is above"))
    third = build_plugin(folder)
    assert not third.skipped
    assert build_plugin(folder).skipped

    # A new helper module next to app.py is an input too.
    (folder / "helpers.py").write_text("TWO = 2\n")
    assert not build_plugin(folder).skipped
    assert build_plugin(folder).skipped

    forced = build_plugin(folder, force=True)
    assert not forced.skipped and wasm.read_bytes()[:8] == COMPONENT_MAGIC
    assert build_plugin(folder).skipped


# -- C plugins --------------------------------------------------------------------------------------------------


@pytest.fixture
def c_plugin(tmp_path: Path) -> Path:
    folder = tmp_path / "momentum_c"
    shutil.copytree(MOMENTUM_C, folder, ignore=shutil.ignore_patterns("build", "__pycache__"))
    return folder


def test_a_c_plugin_builds_to_an_extism_module(c_plugin: Path, host: PluginHost) -> None:
    result = build_plugin(c_plugin)
    wasm = c_plugin / "build" / "momentum_c.wasm"
    assert (result.output, result.kind, result.language, result.skipped) == (wasm.resolve(), "strategy", "c", False)
    assert wasm.read_bytes()[:8] == CORE_MODULE_MAGIC

    loaded = host.load(wasm)
    assert (loaded.abi, loaded.kind, loaded.name) == ("extism", "strategy", "momentum_c")

    assert build_plugin(c_plugin).skipped
    source = c_plugin / "momentum_c.c"
    source.write_text(source.read_text() + "\n/* a comment changes the inputs */\n")
    assert not build_plugin(c_plugin).skipped
    assert not build_plugin(c_plugin, force=True).skipped

    elsewhere = c_plugin.parent / "out" / "mc.wasm"
    other = build_plugin(c_plugin, elsewhere)
    assert other.output == elsewhere.resolve() and not other.skipped
    assert elsewhere.read_bytes()[:8] == CORE_MODULE_MAGIC


def test_a_c_compile_error_is_reported_with_the_compilers_message(c_plugin: Path) -> None:
    source = c_plugin / "momentum_c.c"
    good = source.read_text()
    assert not build_plugin(c_plugin).skipped
    line = len(good.splitlines()) + 1
    source.write_text(good.rstrip("\n") + "\nstatic int broken(void) { return undeclared_symbol + 1; }\n")
    with pytest.raises(BuildError) as info:
        build_plugin(c_plugin)
    message = str(info.value)
    assert message.startswith(f"building {c_plugin} failed:")
    assert f"momentum_c.c:{line}:" in message and "use of undeclared identifier 'undeclared_symbol'" in message
    assert not (c_plugin / "build" / "momentum_c.wasm.inputs").exists()  # no stale stamp

    # Fixed again: rebuilt (not mistaken for up to date), then up to date.
    source.write_text(good)
    assert not build_plugin(c_plugin).skipped
    assert build_plugin(c_plugin).skipped


def test_a_c_plugin_must_declare_its_kind(tmp_path: Path) -> None:
    folder = tmp_path / "kindless"
    folder.mkdir()
    (folder / "kindless.c").write_text('static const char M[] = "{\\"name\\":\\"kindless\\"}";\n')
    with pytest.raises(BuildError, match=r"kindless: cannot find the plugin kind in its manifest string"):
        build_plugin(folder)
    assert no_output(folder)
