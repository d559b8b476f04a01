"""The `[exchange]` table of config.toml: which real venue a live session trades, and how.

    [exchange]
    id = "binance"            # any ccxt exchange id
    account = "binance-main"  # the vault entry whose credentials sign orders
    market_type = "spot"      # or "swap" (perpetuals)
    sandbox = true            # the venue's testnet (the default)
    allow_live = false        # must be true, with sandbox = false, to trade real money
    symbols = ["BTC-USDT"]    # Allele symbols: BASE-QUOTE (spot), BASE-QUOTE-PERP (perpetual swaps)
    # urls = { public = "http://127.0.0.1:8765/api/v3", private = "http://127.0.0.1:8765/api/v3",
    #          ws = { spot = "ws://127.0.0.1:8765/stream/ws" } }   # `allele venue emulator` prints these

Every key can be overridden by `ALLELE_EXCHANGE__<KEY>` (see `allele.kernel.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from allele.kernel.config import load_table


class ExchangeSettings(BaseModel):
    """How the ccxt adapter reaches one venue. Live trading needs both `sandbox = false` and `allow_live = true`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field("binance", min_length=1, description="ccxt exchange id (binance, okx, bybit, kraken, ...)")
    account: str = Field("", description="vault account whose credentials sign orders")
    market_type: Literal["spot", "swap"] = Field("spot", description="spot markets or perpetual swaps")
    sandbox: bool = Field(True, description="trade on the venue's testnet/sandbox (the default)")
    allow_live: bool = Field(False, description="required, with sandbox = false, to trade with real money")
    symbols: tuple[str, ...] = Field((), description="Allele symbols to trade: BTC-USDT, BTC-USDT-PERP")
    urls: dict[str, Any] = Field(default_factory=dict,
                                 description="overrides of the ccxt client's urls['api'] entries (the emulator)")
    options: dict[str, Any] = Field(default_factory=dict, description="extra ccxt options")
    timeout_ms: int = Field(10_000, gt=0, description="HTTP timeout of one request")
    retries: int = Field(5, ge=0, le=20, description="retries of a request refused for rate or network reasons")
    backoff_s: float = Field(0.5, gt=0, description="first back-off delay; doubles per retry")
    backoff_max_s: float = Field(30.0, gt=0, description="longest back-off delay")
    poll_s: float = Field(1.0, gt=0, description="REST polling interval (fallback data, open-order status)")
    user_stream: bool = Field(True, description="follow our orders on the venue's user data stream (ccxt.pro "
                                                "watch_orders) where it has one; polling is the fallback")
    stream_poll_s: float = Field(30.0, gt=0, description="open-order polling interval while the user data stream "
                                                         "is up (a safety net)")

    @field_validator("id")
    @classmethod
    def _known(cls, value: str) -> str:
        import ccxt

        if value not in ccxt.exchanges:
            raise ValueError(f"'{value}' is not a ccxt exchange id (see ccxt.exchanges, e.g. binance, okx, bybit)")
        return value

    @model_validator(mode="after")
    def _live_is_explicit(self) -> ExchangeSettings:
        if not self.sandbox and not self.allow_live:
            raise ValueError("sandbox = false trades real money: also set allow_live = true in [exchange] if that "
                             "is what you want (the global capital cap and the risk gate still apply)")
        return self

    @property
    def live(self) -> bool:
        """Real money: neither the venue's sandbox nor a URL override (the emulator)."""
        return not self.sandbox and not self.urls

    def describe(self) -> dict[str, Any]:
        """JSON-able, secret-free: what a session header records."""
        return {"id": self.id, "account": self.account, "market_type": self.market_type, "sandbox": self.sandbox,
                "live": self.live, "symbols": list(self.symbols), "urls": self.urls}


def load_exchange_settings(home: Path) -> ExchangeSettings:
    """`[exchange]` of `<home>/config.toml` with `ALLELE_EXCHANGE__*` overrides; ConfigError names a bad key."""
    settings: ExchangeSettings = load_table(home, ("exchange",), ExchangeSettings)
    return settings
