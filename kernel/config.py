"""Allele's configuration file, `<ALLELE_HOME>/config.toml`, and the one way to read a table of it.

Each part of Allele owns its table and its pydantic model, and reads it with `load_table`:

    [plugins.limits.strategy]      allele.kernel.plugin.limits.load_limits
    call_fuel = 4_000_000_000

    [risk]                         allele.kernel.risk.load_risk_config
    global_capital_cap = 100.0

A missing file or table means the model's defaults. A bad value is refused with the file,
the table and the key named. This module imports no other part of Allele, so any part can use it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """The configuration file cannot be used as it is."""


def config_path(home: Path) -> Path:
    return home / "config.toml"


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one sentence per problem, each naming the field."""
    parts = []
    for err in exc.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"field '{path}': {msg}" if path else msg)
    return "; ".join(parts)


def load_table(home: Path, table: tuple[str, ...], model: type[M]) -> M:
    """The `[a.b]` table named by `table` (("a", "b")) of `<home>/config.toml`, validated by `model`."""
    path = config_path(home)
    if not path.is_file():
        return model()
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for key in table:
        data = data.get(key, {}) if isinstance(data, dict) else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: [{'.'.join(table)}]: {describe_validation_error(exc)}") from None
