"""Allele's configuration file, `<ALLELE_HOME>/config.toml`, and the one way to read a table of it.

Each part of Allele owns its table and its pydantic model, and reads it with `load_table`:

    [plugins.limits.strategy]      allele.kernel.plugin.limits.load_limits
    call_fuel = 4_000_000_000

    [risk]                         allele.kernel.risk.load_risk_config
    global_capital_cap = 100.0

A missing file or table means the model's defaults. A bad value is refused with the file,
the table and the key named. This module imports no other part of Allele, so any part can use it.

Environment variables override the file, key by key: `ALLELE_<TABLE>__<KEY>`, the table path
joined by `__`, upper case (`ALLELE_RISK__GLOBAL_CAPITAL_CAP=250`,
`ALLELE_ENGINE__SEED=3`, `ALLELE_PLUGINS__LIMITS__STRATEGY__CALL_FUEL=4e9`). The value is read as
a TOML value (`3`, `0.5`, `true`, `["BTC-USD"]`), and as a plain string if it is not one.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
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


def env_prefix(table: tuple[str, ...]) -> str:
    """`ALLELE_RISK__` for ("risk",): the prefix of the variables that override that table's keys."""
    return "ALLELE_" + "".join(f"{part.upper()}__" for part in table)


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(table: tuple[str, ...], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keys of `table` (and of its sub-tables, `__`-separated) set by environment variables."""
    env = os.environ if environ is None else environ
    prefix = env_prefix(table)
    out: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(prefix) or len(name) == len(prefix):
            continue
        *parents, key = name[len(prefix):].lower().split("__")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = _env_value(raw)
    return out


def _merge(base: Any, over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base) if isinstance(base, dict) else {}
    for key, value in over.items():
        merged[key] = _merge(merged.get(key), value) if isinstance(value, dict) else value
    return merged


def read_config(home: Path) -> dict[str, Any]:
    """The whole config.toml as a dict ({} when there is none)."""
    path = config_path(home)
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load_table(home: Path, table: tuple[str, ...], model: type[M]) -> M:
    """The `[a.b]` table named by `table` (("a", "b")) of `<home>/config.toml`, validated by `model`,
    with environment overrides applied."""
    path = config_path(home)
    data: Any = read_config(home)
    for key in table:
        data = data.get(key, {}) if isinstance(data, dict) else {}
    overrides = env_overrides(table)
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = f"{path} or {env_prefix(table)}* environment variables" if overrides else str(path)
        raise ConfigError(f"{where}: [{'.'.join(table)}]: {describe_validation_error(exc)}") from None
