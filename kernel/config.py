"""Allele's configuration file, `<ALLELE_HOME>/config.toml`.

Only the plugin budgets live here so far:

    [plugins.limits.strategy]
    call_fuel = 4_000_000_000
    memory_bytes = 268_435_456

A missing file means the defaults. A bad value is refused with the file, the
table and the key named.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from allele.kernel.plugin.limits import Limits
from allele.kernel.plugin.manifest import describe_validation_error


class ConfigError(ValueError):
    """The configuration file cannot be used as it is."""


def config_path(home: Path) -> Path:
    return home / "config.toml"


def load_limits(home: Path) -> Limits:
    path = config_path(home)
    if not path.is_file():
        return Limits()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("plugins", {}).get("limits", {})
    try:
        return Limits.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(f"{path}: [plugins.limits]: {describe_validation_error(exc)}") from None
