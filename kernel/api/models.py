"""Response and request bodies of the REST API (what /docs shows). Money and quantities from the ledger are
decimals, sent as strings so that nothing is rounded; the engine's live marks are floats."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    ok: bool
    seq: int = Field(description="the bus's latest sequence number")
    engine_running: bool


class KillSwitch(BaseModel):
    engaged: bool
    reason: str
    applied: bool = Field(True, description="the running engine has acted on the switch (it polls every 0.2 s)")
    file: str = Field(description="the flag file the CLI, the API and the engine share")


class ParamsIn(BaseModel):
    """New values for some of an organism's strategy parameters (the others keep theirs)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(description="parameter name -> value, checked against the plugin's manifest")


class Reconfigured(BaseModel):
    organism: str
    sha256: str = Field(description="the plugin it runs (unchanged)")
    params: dict[str, Any] = Field(description="every parameter of the new instance")
    applied: bool = Field(description="the engine has swapped the new instance in (at its next chunk of events)")


class KillSwitchIn(BaseModel):
    """Engage (true) or clear (false) the kill switch."""

    model_config = ConfigDict(extra="forbid")

    engaged: bool
    reason: str = Field("engaged from the API", max_length=500)


class Organism(BaseModel):
    id: str
    strategy: str
    plugin_sha256: str
    params: dict[str, Any]
    symbols: list[str]
    active: bool
    quarantined: bool
    allocation: float
    equity: float
    cash: float
    fees: float
    positions: dict[str, float]
    open_orders: int
    signals: int
    rank: int = Field(description="1 = highest equity")


class Status(BaseModel):
    state: str
    session: str
    pid: int
    event_time_ns: int
    uptime_s: float
    counters: dict[str, int]
    kill_switch: KillSwitch
    equity: float
    high_water: float
    organisms: list[Organism]
    seq: int
    stream_clients: int


class Position(BaseModel):
    organism: str
    symbol: str
    quantity: Decimal
    avg_price: Decimal
    realized_pnl: Decimal
    mark: float | None = Field(description="the engine's last price of the symbol")
    unrealized_pnl: float | None


class Order(BaseModel):
    client_order_id: str
    organism: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: str
    status: str
    filled_quantity: Decimal
    ts_ns: int
    deadline_ns: int
    venue_order_id: str


class Fill(BaseModel):
    client_order_id: str
    fill_id: str
    organism: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    ts_ns: int


class Pnl(BaseModel):
    organism: str
    cash: float
    equity: float
    fees: float
    realized_pnl: Decimal
    unrealized_pnl: float
    allocation: float


class EquityPoint(BaseModel):
    ts_ns: int
    equity: float


class PnlHistory(BaseModel):
    organism: str = Field(description="an organism id, or * for the whole portfolio")
    points: list[EquityPoint] = Field(description="equity sampled in event time, oldest first")
    current: EquityPoint


class RiskState(BaseModel):
    kill_switch: KillSwitch
    config: dict[str, Any]
    equity: float
    high_water: float
    drawdown: float
    open_orders: int
    refused: int
    kernel_rejects: int


class Rejection(BaseModel):
    ts_ns: int
    organism: str
    symbol: str
    rule: str
    reason: str


class Plugin(BaseModel):
    name: str
    kind: str
    version: str
    sha256: str
    path: str
    deployed: bool = Field(description="installed under .allele/plugins (not a bundled build)")
    organisms: list[str] = Field(description="organisms running it now")
    proof_url: str | None = Field(None, description="where its proof document is served (strategies), if it has one")


class BookLevel(BaseModel):
    price: float
    quantity: float


class Book(BaseModel):
    """The simulated venue's order book for one symbol: the best `depth` price levels of each side."""

    symbol: str
    ts_ns: int = Field(description="event time of the snapshot")
    bids: list[BookLevel] = Field(description="best (highest) first")
    asks: list[BookLevel] = Field(description="best (lowest) first")


class ArenaArchive(BaseModel):
    """The MAP-Elites archive of the latest arena run: bin edges and one cell per occupied niche."""

    run_id: str
    finished_ns: int | None
    descriptors: list[str]
    bins: dict[str, list[float]]
    cells: list[dict[str, Any]]


class Deployed(BaseModel):
    name: str
    kind: str
    version: str
    sha256: str
    deployed: str
    proof: str | None
    unproven: str | None
    hot_swap: bool = Field(description="an organism trades a strategy of that name: the engine swaps it in")


class VaultEntry(BaseModel):
    name: str
    exchange: str | None = None
    created: Any = None
    last_used: Any = None


class Vault(BaseModel):
    entries: list[VaultEntry] = Field(description="entry names and metadata; never a secret value")
    note: str | None = None


class Watchdog(BaseModel):
    state: dict[str, Any] | None
    note: str | None = None


class StreamEvent(BaseModel):
    seq: int
    topic: str
    data: dict[str, Any]


class Backfill(BaseModel):
    since: int
    last_seq: int
    events: list[StreamEvent]
    complete: bool = Field(description="false when older messages are gone (ticks are never kept)")


class Standing(BaseModel):
    fingerprint: str
    spec: dict[str, Any]
    status: str
    allocation: float
    fitness: float | None
    sortino: float | None
    dsr: float | None
    oos_sharpe: float | None
    trades: int | None
    protected: bool
    funded: bool
    reason: str | None
    run_id: str | None
    generation: int | None


class LineageNode(BaseModel):
    fingerprint: str
    parents: list[str]
    operator: str
    generation: int
    run_id: str
    detail: dict[str, Any]
