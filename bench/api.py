"""Benchmark: the operator's API of a trading engine, measured from a second process on loopback.

    .venv/bin/python bench/api.py [--rate 500] [--seconds 5] [--rounds 2] [--clients 50] [--speed 50] [--json]

Starts `allele start --no-watchdog` (the engine, with the API inside it) in a temporary ALLELE_HOME, paced at
`--speed` event-seconds per second, waits until it has traded, then, from this process:

1. REST latency, open loop, `--rounds` rounds (endpoints interleaved): requests are scheduled at `--rate` per
   second for `--seconds`, whatever the answers' pace, and each latency is measured from the scheduled time
   (so a stall counts against every request it delays: no coordinated omission; what is unanswered 10 s
   after the end is counted); 32 keep-alive connections, HTTP/1.1 on h11 (httpx's own parser, without
   httpx's per-request CPU cost). Endpoints: /api/health (the baseline: token check + a constant answer),
   /api/status, /api/positions. Figures: p50/p99/max in ms over all rounds, achieved rate, errors; ratios
   of p50 and p99 to the baseline's.
2. WebSocket fan-out: 1 client, then `--clients` clients, subscribed to every topic, for `--seconds`.
   Figures: messages/s delivered (total, per client, slowest client), messages/s the bus published
   (its seq delta), the share of published messages each client got, gap notices (slow-client drops),
   and the engine's events/s meanwhile (its counters), with ratios of the N-client run to the 1-client run
   and of the engine's rate to its rate with no client at all (measured just before).

It asserts nothing about speed; it exits non-zero only if the engine or a request fails outright.
Results also go to build/bench/api.json. See docs/api.md (Benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
ALLELE = Path(sys.executable).with_name("allele")
CONNECTIONS = 32  # keep-alive connections of the REST load generator


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LeanClient:
    """Keep-alive HTTP/1.1 GETs over a fixed set of connections, on h11 directly.

    The load generator shares 2 CPUs with the engine it measures: httpx (httpcore, anyio) costs a few ms of CPU
    per request here, enough to make the client the bottleneck well below 500 requests/s. h11 alone is the
    same HTTP/1.1 state machine that httpx uses, without the layers above it."""

    def __init__(self, host: str, port: int, token: str, connections: int) -> None:
        self.host, self.port, self.connections = host, port, connections
        self.headers = [("Host", f"{host}:{port}"), ("Authorization", f"Bearer {token}")]
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = \
            asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.connections):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.pool.put_nowait((reader, writer, h11.Connection(h11.CLIENT)))

    async def close(self) -> None:
        while not self.pool.empty():
            _r, writer, _c = self.pool.get_nowait()
            writer.close()

    async def get(self, path: str) -> int:
        """The status code of GET `path` (the body is read and dropped)."""
        reader, writer, conn = await self.pool.get()
        try:
            writer.write(conn.send(h11.Request(method="GET", target=path, headers=self.headers)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65_536)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.EndOfMessage):
                    break
            conn.start_next_cycle()
        except BaseException:
            writer.close()  # a connection in an unknown state is not reused; a fresh one replaces it
            reader, writer = await asyncio.open_connection(self.host, self.port)
            conn = h11.Connection(h11.CLIENT)
            raise
        finally:
            self.pool.put_nowait((reader, writer, conn))
        return status


async def rest_load(client: LeanClient, path: str, rate: float, seconds: float,
                    grace: float = 10.0) -> dict[str, Any]:
    """Open-loop load on `path`: request i is due at start + i/rate; latency runs from when it was due."""
    n = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            status = await client.get(path)  # time queued for a connection counts: latency runs from `due`
        except (OSError, h11.ProtocolError):
            errors += 1
            return
        if status != 200:
            errors += 1
            return
        latencies.append((time.perf_counter() - due) * 1000)

    # A server that cannot keep up would make the queue (and the run) grow without end: what is not answered
    # `grace` seconds after the last request was due is cancelled and counted as unanswered.
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    _done, late = await asyncio.wait(tasks, timeout=seconds + grace + 0.05)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    wall = time.perf_counter() - start
    return {"path": path, "requests": n, "ok": len(latencies), "errors": errors, "unanswered": len(late),
            "achieved_rps": len(latencies) / wall, "wall_s": wall, "latencies_ms": latencies,
            "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies, default=float("nan"))}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per endpoint over its rounds: percentiles over every latency of every round."""
    latencies = [x for r in results for x in r["latencies_ms"]]
    return {"path": results[0]["path"], "rounds": len(results), "requests": sum(r["requests"] for r in results),
            "ok": len(latencies), "errors": sum(r["errors"] for r in results),
            "unanswered": sum(r["unanswered"] for r in results),
            "achieved_rps": len(latencies) / sum(r["wall_s"] for r in results),
            "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies, default=float("nan")),
            "p50_ms_by_round": [r["p50_ms"] for r in results], "p99_ms_by_round": [r["p99_ms"] for r in results]}


async def fanout(ws_url: str, token: str, api: httpx.AsyncClient, clients: int, seconds: float) -> dict[str, Any]:
    counts = [0] * clients
    gaps = [0] * clients
    ready = asyncio.Event()
    connected = 0
    stop = asyncio.Event()

    async def client(i: int) -> None:
        nonlocal connected
        async with connect(ws_url, subprotocols=["allele.bearer", token], max_size=None,  # type: ignore[list-item]
                           max_queue=None) as ws:
            await ws.recv()  # hello
            connected += 1
            if connected == clients:
                ready.set()
            await ready.wait()
            while not stop.is_set():
                try:
                    frame = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                if not measuring:
                    continue
                data = json.loads(frame)
                if isinstance(data, list):
                    counts[i] += len(data)
                elif data.get("type") == "gap":
                    gaps[i] += 1

    measuring = False
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(0.5)
    before = (await api.get("/api/status")).json()
    measuring = True
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    wall = time.perf_counter() - t0
    after = (await api.get("/api/status")).json()
    stop.set()
    await asyncio.gather(*tasks)
    published = (after["seq"] - before["seq"]) / wall
    per_client = [c / wall for c in counts]
    return {"clients": clients, "delivered_per_s": sum(per_client), "per_client_per_s": sum(per_client) / clients,
            "slowest_client_per_s": min(per_client), "published_per_s": published,
            "delivered_share": (sum(per_client) / clients) / published if published else float("nan"),
            "gap_notices": sum(gaps),
            "engine_events_per_s": (after["counters"]["events"] - before["counters"]["events"]) / wall}


def start_engine(home: Path, speed: float) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    (home / "config.toml").write_text(f"[engine]\nspeed = {speed}\nledger_sync = \"normal\"\n\n[api]\nport = 0\n")
    out = (home / "engine.out").open("wb")
    # The shared compile cache: without it the engine compiles each component (~10 s apiece) before it starts.
    env = {"ALLELE_COMPILE_CACHE": str(ROOT / "build" / "compile-cache"), **os.environ, "ALLELE_HOME": str(home)}
    proc = subprocess.Popen([str(ALLELE), "start", "--no-watchdog"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the engine exited: {(home / 'engine.out').read_text()}")
        try:
            info: dict[str, Any] = json.loads((home / "api.json").read_text())
            if info["pid"] == proc.pid:
                return proc, info
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the engine's API did not come up within 300 s")


async def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    proc, info = start_engine(home, args.speed)
    token = (home / "api.token").read_text().strip()
    try:
        lean = LeanClient(info["host"], info["port"], token, CONNECTIONS)
        await lean.open()
        async with httpx.AsyncClient(base_url=info["url"], headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as api:
            log("waiting for the engine to trade ...")
            while (await api.get("/api/status")).json()["counters"]["fills"] < 5:
                await asyncio.sleep(0.5)
            await rest_load(lean, "/api/health", args.rate, 1.0)  # warm-up: code paths
            # Rounds interleave the endpoints, so a slow spell of the shared machine hits each of them.
            runs: dict[str, list[dict[str, Any]]] = {}
            for r in range(args.rounds):
                for path in ("/api/health", "/api/status", "/api/positions"):
                    log(f"round {r + 1}/{args.rounds}: REST {path} at {args.rate:g} requests/s for {args.seconds:g} s")
                    runs.setdefault(path, []).append(await rest_load(lean, path, args.rate, args.seconds))
            await lean.close()
            rest = {path: merge(results) for path, results in runs.items()}
            base = rest["/api/health"]
            for r in rest.values():
                r["p50_vs_health"] = r["p50_ms"] / base["p50_ms"]
                r["p99_vs_health"] = r["p99_ms"] / base["p99_ms"]
            ws_url = info["url"].replace("http://", "ws://") + "/ws"
            log(f"engine alone (no stream client) for {args.seconds:g} s ...")
            before = (await api.get("/api/status")).json()
            t0 = time.perf_counter()
            await asyncio.sleep(args.seconds)
            after = (await api.get("/api/status")).json()
            alone = (after["counters"]["events"] - before["counters"]["events"]) / (time.perf_counter() - t0)
            log(f"WebSocket fan-out: 1 client for {args.seconds:g} s ...")
            one = await fanout(ws_url, token, api, 1, args.seconds)
            log(f"WebSocket fan-out: {args.clients} clients for {args.seconds:g} s ...")
            many = await fanout(ws_url, token, api, args.clients, args.seconds)
            ratios = {"per_client_rate": many["per_client_per_s"] / one["per_client_per_s"],
                      "engine_events_per_s": many["engine_events_per_s"] / one["engine_events_per_s"],
                      "engine_events_per_s_vs_alone": many["engine_events_per_s"] / alone}
            status = (await api.get("/api/status")).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    engine = {"speed": args.speed, **{k: status["counters"][k] for k in ("events", "orders", "fills")}}
    return {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "load_average": os.getloadavg(), "options": vars(args), "engine": engine,
            "rest": rest,
            "fanout": {"engine_alone_events_per_s": alone, "one": one, "many": many, "ratios": ratios}}


def report(result: dict[str, Any]) -> None:
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in result['load_average'])} "
          f"on {result['machine']['cpus']} CPUs (other work on the machine shows in every figure)")
    print(f"engine paced at speed {result['engine']['speed']:g}; it traded {result['engine']['orders']} orders, "
          f"{result['engine']['fills']} fills over {result['engine']['events']} events during the run")
    print(f"\nREST, open loop at {result['options']['rate']:g} requests/s, {result['options']['rounds']} rounds of "
          f"{result['options']['seconds']:g} s per endpoint, latency from the scheduled time (ms):")
    print(f"{'endpoint':16s} {'p50':>8s} {'p99':>8s} {'max':>8s} {'ok/s':>6s} {'errors':>6s} {'unanswered':>10s} "
          f"{'p50/health':>10s} {'p99/health':>10s}")
    for path, r in result["rest"].items():
        print(f"{path:16s} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.2f} {r['achieved_rps']:6.0f} "
              f"{r['errors']:6d} {r['unanswered']:10d} {r['p50_vs_health']:10.2f} {r['p99_vs_health']:10.2f}")
    print("\nWebSocket fan-out, every topic (messages/s):")
    print(f"{'clients':>7s} {'delivered':>10s} {'per client':>10s} {'slowest':>8s} {'published':>9s} {'share':>6s} "
          f"{'gaps':>5s} {'engine ev/s':>11s}")
    for row in (result["fanout"]["one"], result["fanout"]["many"]):
        print(f"{row['clients']:7d} {row['delivered_per_s']:10.0f} {row['per_client_per_s']:10.0f} "
              f"{row['slowest_client_per_s']:8.0f} {row['published_per_s']:9.0f} {row['delivered_share']:6.2f} "
              f"{row['gap_notices']:5d} {row['engine_events_per_s']:11.0f}")
    ratios = result["fanout"]["ratios"]
    print(f"engine alone (no stream client): {result['fanout']['engine_alone_events_per_s']:.0f} events/s")
    print(f"ratios {result['fanout']['many']['clients']} clients / 1 client: per-client rate "
          f"{ratios['per_client_rate']:.2f}, engine events/s {ratios['engine_events_per_s']:.2f} "
          f"({ratios['engine_events_per_s_vs_alone']:.2f} of the engine alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="REST requests per second (default 500)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="REST rounds, endpoints interleaved (default 2)")
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients of the fan-out (default 50)")
    parser.add_argument("--speed", type=float, default=50.0,
                        help="engine pace, event-seconds per second (default 50; 0 = as fast as possible)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="allele-bench-api-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    out = ROOT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "api.json").write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        report(result)


if __name__ == "__main__":
    main()
