"""The `[api]` table of config.toml: the operator's API that runs inside the engine process.

    [api]
    enabled = true
    host = "127.0.0.1"          # loopback only unless you mean it
    port = 8765                 # 0 = any free port (written to .allele/api.json)
    max_upload_bytes = 67108864

Every key can be overridden by an `ALLELE_API__<KEY>` environment variable (see `allele.kernel.config`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from allele.kernel.config import load_table


class ApiConfig(BaseModel):
    """How the API serves; `allele start` runs it next to the engine when `enabled`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="serve the REST + WebSocket API from the engine process")
    host: str = Field("127.0.0.1", min_length=1,
                      description="address to bind; the default keeps the API on this machine")
    port: int = Field(8765, ge=0, le=65_535, description="TCP port; 0 = any free port (see .allele/api.json)")
    max_upload_bytes: int = Field(64 * 2**20, gt=0, description="largest plugin upload accepted, in bytes")
    ws_buffer: int = Field(65_536, ge=1024, le=4_194_304,
                           description="messages the stream keeps for slow and reconnecting clients")
    ws_batch: int = Field(1024, ge=1, le=100_000, description="most messages sent in one WebSocket frame")
    ws_flush_ms: int = Field(50, ge=0, le=1000,
                             description="stream clients are sent what is new at most this often; 0 = per message")


def load_api_config(home: Path) -> ApiConfig:
    """`[api]` of `<home>/config.toml` with `ALLELE_API__*` overrides; ConfigError names a bad key."""
    config: ApiConfig = load_table(home, ("api",), ApiConfig)
    return config
