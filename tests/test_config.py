"""config.toml: plugin budgets per kind, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from allele.kernel.config import ConfigError
from allele.kernel.plugin.limits import load_limits


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_limits(tmp_path).strategy.call_fuel == 2_000_000_000


def test_limits_per_kind_are_read(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[plugins.limits.sensor]\nmemory_bytes = 100_000_000\n")
    limits = load_limits(tmp_path)
    assert limits.sensor.memory_bytes == 100_000_000
    assert limits.strategy.memory_bytes == 512 * 2**20  # other kinds keep their defaults


@pytest.mark.parametrize(("text", "expected"), [
    ("[plugins.limits.strategy]\ncall_fuel = -5\n", "field 'strategy.call_fuel': Input should be greater than 0"),
    ("[plugins.limits.strategy]\nmemory = 5\n", "field 'strategy.memory': Extra inputs are not permitted"),
    ("[plugins.limits.robot]\ncall_fuel = 5\n", "field 'robot'"),
    ("[plugins.limits.strategy]\ncall_fuel = \"lots\"\n", "field 'strategy.call_fuel'"),
    ("[plugins.limits\n", "is not valid TOML"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_limits(tmp_path)
    assert expected in str(info.value) and "config.toml" in str(info.value)


def test_environment_overrides_a_key_and_names_the_variable_when_bad(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from allele.kernel.risk import load_risk_config

    (tmp_path / "config.toml").write_text("[risk]\nglobal_capital_cap = 50.0\nhalt_drawdown = 0.4\n")
    monkeypatch.setenv("ALLELE_RISK__GLOBAL_CAPITAL_CAP", "250")
    cfg = load_risk_config(tmp_path)
    assert (cfg.global_capital_cap, cfg.halt_drawdown) == (250.0, 0.4)
    monkeypatch.setenv("ALLELE_RISK__GLOBAL_CAPITAL_CAP", "lots")
    with pytest.raises(ConfigError) as info:
        load_risk_config(tmp_path)
    assert "ALLELE_RISK__" in str(info.value) and "global_capital_cap" in str(info.value)


def test_environment_overrides_a_nested_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLELE_PLUGINS__LIMITS__SENSOR__MAX_ITEMS", "7")
    limits = load_limits(tmp_path)
    assert limits.sensor.max_items == 7 and limits.strategy.max_items != 7
