"""Load-time validation: every way a file can fail to be a plugin is refused with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from allele.kernel.plugin import PluginHost, PluginLoadError
from allele.kernel.plugin.binary import detect_abi


def test_not_wasm_is_refused_naming_the_bytes(host: PluginHost, tmp_path: Path) -> None:
    path = tmp_path / "readme.wasm"
    path.write_text("# not a plugin\n")
    with pytest.raises(PluginLoadError, match=r"readme\.wasm: is not WebAssembly \(it starts with 23 20 6e 6f"):
        host.load(path)


def test_empty_file_is_refused(host: PluginHost, tmp_path: Path) -> None:
    path = tmp_path / "empty.wasm"
    path.write_bytes(b"")
    with pytest.raises(PluginLoadError, match="0 bytes long: too short"):
        host.load(path)


def test_missing_file_is_refused(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(PluginLoadError, match="cannot be read"):
        host.load(tmp_path / "nowhere.wasm")


def test_unknown_wasm_version_is_refused() -> None:
    with pytest.raises(PluginLoadError, match="unknown WebAssembly version/layer 02 00 00 00"):
        detect_abi(b"\0asm\x02\x00\x00\x00rest", "odd.wasm")


def test_truncated_component_is_refused(host: PluginHost, built, tmp_path: Path) -> None:
    data = built["sma_cross"].read_bytes()
    path = tmp_path / "cut.wasm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PluginLoadError, match=r"cut\.wasm: is not a valid component .*truncated or corrupted"):
        host.load(path)


def test_truncated_extism_module_is_refused(host: PluginHost, built, tmp_path: Path) -> None:
    data = built["momentum_c"].read_bytes()
    path = tmp_path / "cut_c.wasm"
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(PluginLoadError, match=r"is not a valid WebAssembly module"):
        host.load(path)


def test_component_of_a_foreign_world_is_refused(host: PluginHost, built) -> None:
    with pytest.raises(PluginLoadError, match=r"not a component of a known Allele world: it exports .*spin"):
        host.load(built["foreign_world"])


def test_missing_exports_are_named(host: PluginHost, built) -> None:
    with pytest.raises(PluginLoadError,
                       match=r"exports allele:plugin/strategy-api@0.1.0 without on-event, on-batch"):
        host.load(built["partial_strategy"])


def test_wasi_imports_are_refused_naming_the_import(host: PluginHost, built) -> None:
    with pytest.raises(PluginLoadError) as info:
        host.load(built["wasi_snoop"])
    message = str(info.value)
    assert "imports 'wasi:" in message and "which a strategy plugin may not use" in message
    assert "allele build" in message  # says what to do


def test_inconsistent_parameter_range_is_refused_naming_the_field(host: PluginHost, built) -> None:
    with pytest.raises(PluginLoadError) as info:
        host.load(built["bad_manifest"])
    message = str(info.value)
    assert "invalid manifest" in message and "field 'parameters[0]'" in message
    assert "min 50.0 is greater than max 5.0" in message


def test_a_refused_plugin_does_not_disturb_a_loaded_one(host: PluginHost, built) -> None:
    sma = host.strategy(host.load(built["sma_cross"]))
    for name in ("wasi_snoop", "bad_manifest", "foreign_world", "partial_strategy"):
        with pytest.raises(PluginLoadError):
            host.load(built[name])
    sma.configure({"fast": 2, "slow": 3})
    assert sma.on_batch({"symbols": ["X"], "ts": [1, 2, 3, 4], "price": [1.0, 2.0, 3.0, 4.0]})[0].row == 2
