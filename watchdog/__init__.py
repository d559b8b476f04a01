"""allele.watchdog: the supervisor process that watches the engine's heartbeats and restarts it.

- `heartbeat`: the engine's side (a heartbeat datagram every second from its event loop);
- `supervisor`: the watchdog (spawns the engine, restarts it on crash, hang or exit, with backoff);
- `state`: `watchdog.json`, `read_state(home)` for the CLI and the API;
- `config`: the `[watchdog]` table of config.toml.

`allele start` runs it; `python -m allele.watchdog` runs it on its own (containers, see docs/home-server.md).
"""
