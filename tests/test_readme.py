"""The README documents every configuration key, with the default the code actually uses."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel

from allele.kernel.api.config import ApiConfig
from allele.kernel.engine.config import EngineConfig, OrganismSpec, SensorSpec
from allele.kernel.exchange.settings import ExchangeSettings
from allele.kernel.paths import SOURCE_ROOT
from allele.kernel.plugin.limits import KindLimits
from allele.kernel.risk import RiskConfig
from allele.watchdog.config import WatchdogConfig

README = (SOURCE_ROOT / "README.md").read_text()


def rows() -> dict[str, str]:
    found = {}
    for line in README.splitlines():
        m = re.match(r"\| `([a-z_]+)` \| ([^|]+) \|", line)
        if m:
            found.setdefault(m.group(1), m.group(2).strip())
    return found


@pytest.mark.parametrize("model", [EngineConfig, OrganismSpec, SensorSpec, RiskConfig, KindLimits, ExchangeSettings,
                                   ApiConfig, WatchdogConfig],
                         ids=lambda m: m.__name__)
def test_every_key_is_in_a_readme_table(model: type[BaseModel]) -> None:
    documented = rows()
    missing = [name for name in model.model_fields if name not in documented]
    assert missing == [], f"README lacks {model.__name__} keys {missing}"


def test_engine_defaults_in_the_readme_are_the_real_ones() -> None:
    documented = rows()
    for name, field in EngineConfig.model_fields.items():
        default = field.default
        text = json.dumps(list(default) if isinstance(default, tuple) else default)
        assert documented[name] == text, f"[engine] {name}: README says {documented[name]}, the code {text}"


def test_risk_defaults_in_the_readme_are_the_real_ones() -> None:
    documented = rows()
    for name, field in RiskConfig.model_fields.items():
        default = field.default
        shown = documented[name].replace(",", "")  # 10,000 -> 10000
        if isinstance(default, tuple):
            assert json.loads(documented[name]) == [list(stage) for stage in default], name
        elif isinstance(default, bool):
            assert shown == str(default).lower(), name
        else:
            assert float(shown) == float(default), f"[risk] {name}: README says {documented[name]}, code {default}"
