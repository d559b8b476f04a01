"""The watchdog's settings: the `[watchdog]` table of `<home>/config.toml`.

    [watchdog]
    enabled = true                 # `allele start` runs the engine under the watchdog
    heartbeat_interval_s = 1.0     # how often the engine sends a heartbeat
    hang_timeout_s = 10.0          # no heartbeat for this long = hung: killed and restarted
    startup_timeout_s = 600.0      # first heartbeat of a (re)started engine (the first start compiles plugins)
    backoff_initial_s = 1.0        # wait before the first restart; doubles on each restart in a row
    backoff_max_s = 60.0
    healthy_reset_s = 60.0         # running this long without trouble resets the backoff
    max_restarts = 5               # more restarts than this within restart_window_s: give up
    restart_window_s = 300.0
    restart_command = "podman restart allele-engine"   # container mode; unset = spawn the engine itself

Every key can be overridden by an `ALLELE_WATCHDOG__<KEY>` environment variable.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from allele.kernel.config import load_table


class WatchdogConfig(BaseModel):
    """How the watchdog watches and restarts the engine (see the module docstring for the TOML form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="`allele start` runs the engine under the watchdog "
                                            "(false: as `allele start --no-watchdog`)")
    heartbeat_interval_s: float = Field(1.0, gt=0, le=60, description="how often the engine sends a heartbeat")
    hang_timeout_s: float = Field(10.0, gt=0, description="no heartbeat for this long: the engine is hung, "
                                                         "killed and restarted")
    startup_timeout_s: float = Field(600.0, gt=0, description="how long a (re)started engine may take to send "
                                                             "its first heartbeat (the first start compiles plugins)")
    backoff_initial_s: float = Field(1.0, ge=0, description="wait before a restart; doubles on each restart in a row")
    backoff_max_s: float = Field(60.0, ge=0, description="the longest wait before a restart")
    healthy_reset_s: float = Field(60.0, gt=0, description="running this long without a restart resets the backoff")
    max_restarts: int = Field(5, ge=1, description="more restarts than this within restart_window_s: the watchdog "
                                                   "gives up (state gave-up) instead of spinning")
    restart_window_s: float = Field(300.0, gt=0, description="the window max_restarts counts over")
    stop_timeout_s: float = Field(30.0, gt=0, description="how long a SIGTERMed engine may take to stop cleanly "
                                                          "before it is killed")
    restart_command: str | None = Field(None, description="container mode: a command run to restart the engine "
                                                          "(e.g. `podman restart allele-engine`); the watchdog "
                                                          "then only watches heartbeats. Unset: the watchdog "
                                                          "spawns the engine itself")

    @field_validator("restart_command")
    @classmethod
    def _command(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            shlex.split(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a valid command line ({exc})") from None
        return v

    @model_validator(mode="after")
    def _ordered(self) -> WatchdogConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s:g}) is below backoff_initial_s "
                             f"({self.backoff_initial_s:g})")
        if self.hang_timeout_s <= self.heartbeat_interval_s:
            raise ValueError(f"hang_timeout_s ({self.hang_timeout_s:g}) must exceed heartbeat_interval_s "
                             f"({self.heartbeat_interval_s:g}), or every engine looks hung")
        return self


def load_watchdog_config(home: Path) -> WatchdogConfig:
    """`[watchdog]` of `<home>/config.toml` with `ALLELE_WATCHDOG__*` overrides; ConfigError names a bad key."""
    config: WatchdogConfig = load_table(home, ("watchdog",), WatchdogConfig)
    return config
