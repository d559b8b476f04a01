"""The engine's settings: the `[engine]` table and the `[[organisms]]` list of config.toml.

    [engine]
    seed = 7                      # synthetic market and venue latency
    speed = 1.0                   # event-time seconds per wall-clock second; 0 = as fast as possible

    [[organisms]]
    id = "sma-btc"
    strategy = "sma_cross"
    params = { fast = 10, slow = 30 }
    symbols = ["BTC-USD"]

With no `[[organisms]]`, `DEFAULT_ORGANISMS` trade (the bundled strategies). Every key can be
overridden by an `ALLELE_ENGINE__<KEY>` environment variable (see `allele.kernel.config`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from allele.kernel.config import ConfigError, config_path, describe_validation_error, load_table, read_config

M = TypeVar("M", bound=BaseModel)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"{value!r} is not {what} id (letters, digits, _ . -; at most 64)")
    return value


class EngineConfig(BaseModel):
    """How a session runs; every field is documented in the README's configuration table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["paper", "live"] = Field(
        "paper", description="paper: the simulated venue; live: confirms real-money trading on [exchange]")
    seed: int = Field(7, ge=0, description="seed of the synthetic market and of the venue's latency draws")
    symbols: tuple[str, ...] = Field(("BTC-USD", "ETH-USD"), min_length=1,
                                     description="continuous symbols of the synthetic market")
    binary_markets: bool = Field(True, description="also list the synthetic binary-outcome markets")
    bar_ms: int = Field(1000, gt=0, description="event-time length of one synthetic bar, in milliseconds")
    speed: float = Field(1.0, ge=0, description="event-time seconds per wall-clock second; 0 = as fast as possible")
    bars: int = Field(0, ge=0, description="stop after this many bars; 0 = run until stopped")
    batch_events: int = Field(256, ge=1, le=100_000,
                              description="market events per strategy batch call; 1 = one on-event call per event")
    order_kernel: Literal["software", "rtl-sim"] = Field(
        "software", description="which order kernel sits behind the port: the Python reference model ('software') "
        "or the Verilog RTL of hw/ in an Icarus + cocotb simulation ('rtl-sim'; needs iverilog and the source tree)")
    order_kernel_slots: int = Field(256, gt=0, le=65_536, description="order table size (open orders at once)")
    order_ttl_s: float = Field(60.0, gt=0, description="deadline of a resting limit order, in event-time seconds")
    latency_us: int = Field(200, ge=0, description="simulated one-way network latency (base), in microseconds")
    jitter_us: int = Field(50, ge=0, description="median of the simulated latency's lognormal jitter, microseconds")
    maker_fee: float = Field(0.0002, ge=-0.01, le=0.01, description="simulated venue maker fee (rate on notional)")
    taker_fee: float = Field(0.0005, ge=0, le=0.01, description="simulated venue taker fee (rate on notional)")
    record: bool = Field(True, description="append raw frames and events to .allele/historical/ (the firehose)")
    firehose_max_mb: int = Field(64, gt=0,
                                 description="rotate a firehose file at this size (MiB); closed files are gzipped")
    ledger_sync: Literal["full", "normal"] = Field(
        "full", description="SQLite synchronous mode of the ledger: full = every commit is fsynced")
    status_interval_s: float = Field(1.0, gt=0, description="how often the engine writes .allele/engine.json")
    equity_interval_s: float = Field(60.0, gt=0, description="event-time interval between equity samples written "
                                                            "to the ledger (P&L history, the arena's live fitness)")


class OrganismSpec(BaseModel):
    """One organism: a strategy (by name or .wasm path), its genome, what it trades, its capital."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    strategy: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    symbols: tuple[str, ...] = Field(default=(), description="symbols it trades; empty = every venue symbol it accepts")
    binary: bool = Field(False, description="trade the binary-outcome markets instead of the continuous symbols")
    allocation: float | None = Field(None, gt=0, description="USD; None = an equal share of the global capital cap")
    sensors: tuple[str, ...] = Field(default=(), description="ids of the [[sensors]] whose readings it receives")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v, "an organism")


class SensorSpec(BaseModel):
    """One sensor feed: a sensor plugin (by name or .wasm path), its parameters, how often it is polled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    sensor: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    poll_s: float = Field(60.0, gt=0, description="event-time seconds between two polls")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v, "a sensor")


DEFAULT_ORGANISMS: tuple[OrganismSpec, ...] = (
    OrganismSpec(id="sma-cross", strategy="sma_cross", params={"fast": 10, "slow": 30}),
    OrganismSpec(id="mean-reversion", strategy="mean_reversion", params={"window": 30, "allow_short": True}),
    OrganismSpec(id="momentum-c", strategy="momentum_c"),
    OrganismSpec(id="completeness-arb", strategy="completeness_arb", binary=True, params={"outcomes": 3}),
)


def load_engine_config(home: Path) -> EngineConfig:
    """`[engine]` of `<home>/config.toml` with `ALLELE_ENGINE__*` overrides; ConfigError names a bad key."""
    config: EngineConfig = load_table(home, ("engine",), EngineConfig)
    return config


def _load_list(home: Path, key: str, model: type[M]) -> tuple[M, ...] | None:
    raw = read_config(home).get(key)
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{config_path(home)}: {key} must be a non-empty array of tables ([[{key}]])")
    specs = []
    for i, item in enumerate(raw):
        try:
            specs.append(model.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(f"{config_path(home)}: {key}[{i}]: {describe_validation_error(exc)}") from None
    ids = [str(getattr(s, "id")) for s in specs]  # noqa: B009 - M is any spec model with an id
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"{config_path(home)}: {key} ids repeat: {', '.join(repeated)}")
    return tuple(specs)


def load_organisms(home: Path) -> tuple[OrganismSpec, ...]:
    """`[[organisms]]` of `<home>/config.toml`, or `DEFAULT_ORGANISMS` when there are none."""
    return _load_list(home, "organisms", OrganismSpec) or DEFAULT_ORGANISMS


def load_sensors(home: Path) -> tuple[SensorSpec, ...]:
    """`[[sensors]]` of `<home>/config.toml` (none by default: the bundled sensor needs a klines endpoint)."""
    return _load_list(home, "sensors", SensorSpec) or ()
