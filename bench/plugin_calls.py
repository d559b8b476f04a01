"""Benchmark: what it costs to run a strategy component, through wasmtime directly and through the kernel.

    .venv/bin/python bench/plugin_calls.py [--bars N] [--json]

One run on one component (plugins/strategies/sma_cross, built if needed) measures:

1. load: `PluginHost.load` with an empty compile cache (compile + serialize) and from the cache;
2. on-event: µs per call through wasmtime.component directly ("raw") and through
   `StrategyPlugin.on_event` ("kernel"), rounds interleaved; goal kernel/raw <= 1.3x;
3. on-batch: `StrategyPlugin.on_batch` over N synthetic bars, split into host JSON encode,
   guest call and host result checks; goal >= 500,000 bars/s per core for the guest part;
4. native: the same strategy code run by CPython in this process (allele.kernel.sdk.testing.load_native).

It asserts nothing about speed: it exits non-zero only if something fails. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from wasmtime import Config, Engine, Store
from wasmtime.component import Component, Func, Linker, Record, Variant

from allele.kernel.domain import MarketEvent
from allele.kernel.plugin import checks
from allele.kernel.plugin.cache import WASMTIME_VERSION
from allele.kernel.plugin.host import PluginHost, StrategyPlugin
from allele.kernel.sdk.build import build_plugin
from allele.kernel.sdk.testing import load_native

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "plugins" / "strategies" / "sma_cross"
WASM = ROOT / "build" / "plugins" / "strategies" / "sma_cross.wasm"

EVENT_GOAL = 1.3  # kernel / raw, per on-event call
BLOCK = 50  # on-event calls timed in one go before switching path
BATCH_GOAL = 500_000  # bars/s per core, guest part of on-batch
RAW_FUEL = 10**18  # set once on the raw store: never runs out during the benchmark
DEFAULT_PARAMS = {"fast": 10, "slow": 30}  # sma_cross's manifest defaults, set explicitly
EVERY_CALL_PARAMS = {"fast": 2, "slow": 3}  # with prices alternating a, b, a, b: one signal per call
SYMBOL = "BTC-USDT"
TS_START = 1_700_000_000_000_000_000  # 2023-11-14, ns
BAR_NS = 60_000_000_000  # one-minute bars

err = Console(stderr=True)


# -- raw wasmtime ------------------------------------------------------------------------

class RawStrategy:
    """sma_cross driven through wasmtime.component with nothing of the kernel in between."""

    def __init__(self, artifact: Path) -> None:
        config = Config()
        config.consume_fuel = True  # the host's engine configuration (kernel/plugin/component.py new_engine)
        self.engine = Engine(config)
        started = time.perf_counter()
        self.component = Component.deserialize_file(self.engine, str(artifact))
        self.deserialize_s = time.perf_counter() - started
        self.store = Store(self.engine)
        self.store.set_fuel(RAW_FUEL)
        self.now_ns = 0
        linker = Linker(self.engine)
        with linker.root() as root:
            with root.add_instance("allele:plugin/log@0.1.0") as log:
                log.add_func("write", lambda _s, _level, _message: None)
            with root.add_instance("allele:plugin/clock@0.1.0") as clock:
                clock.add_func("now-ns", lambda _s: self.now_ns)
        instance = linker.instantiate(self.store, self.component)
        iface = instance.get_export_index(self.store, "allele:plugin/strategy-api@0.1.0")
        self.funcs: dict[str, Func] = {}
        for name in ("configure", "reset", "on-event", "on-batch"):
            index = instance.get_export_index(self.store, name, iface)
            func = instance.get_func(self.store, index) if index is not None else None
            if func is None:
                raise RuntimeError(f"the component exports no strategy-api.{name}")
            self.funcs[name] = func

    def call(self, name: str, *args: Any) -> Any:
        func = self.funcs[name]
        out = func(self.store, *args)
        func.post_return(self.store)
        return out

    def configure(self, params: dict[str, int]) -> None:
        values = []
        for k, v in params.items():
            rec = Record()
            rec.__dict__.update({"name": k, "value": v})
            values.append(rec)
        out = self.call("configure", values)
        if isinstance(out, str):
            raise RuntimeError(f"raw configure refused: {out}")

    def reset(self) -> None:
        self.call("reset")

    def on_batch(self, text: str) -> str:
        out = self.call("on-batch", text)
        if not isinstance(out, Variant) or out.tag != "ok":
            raise RuntimeError(f"raw on-batch failed: {getattr(out, 'payload', out)!r}")
        return str(out.payload)


def market_variant(e: MarketEvent) -> Variant:
    """The on-event argument, built as the host builds it (kernel/plugin/component.py)."""
    rec = Record()
    rec.__dict__.update({"kind": e.kind, "venue": e.venue, "symbol": e.symbol, "ts-ns": e.ts_ns, "price": e.price,
                         "size": e.size, "bid": e.bid, "ask": e.ask, "bid-size": e.bid_size,
                         "ask-size": e.ask_size})
    return Variant("market", rec)


# -- timed loops ---------------------------------------------------------------------------

def raw_events(raw: RawStrategy, events: list[MarketEvent]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and signals of one on-event call per event, straight through wasmtime."""
    func, store = raw.funcs["on-event"], raw.store
    signals = 0
    cpu, started = time.process_time(), time.perf_counter()
    for e in events:
        raw.now_ns = e.ts_ns
        out = func(store, market_variant(e))
        func.post_return(store)
        signals += len(out)
    return time.perf_counter() - started, time.process_time() - cpu, signals


def kernel_events(sma: StrategyPlugin, events: list[MarketEvent]) -> tuple[float, float, int]:
    """The same through the kernel: StrategyPlugin.on_event."""
    on_event = sma.on_event
    signals = 0
    cpu, started = time.process_time(), time.perf_counter()
    for e in events:
        signals += len(on_event(e))
    return time.perf_counter() - started, time.process_time() - cpu, signals


def raw_floor(raw: RawStrategy, calls: int) -> float:
    """µs per `reset` call: no argument, no result, almost no guest work (the crossing floor)."""
    func, store = raw.funcs["reset"], raw.store
    started = time.perf_counter()
    for _ in range(calls):
        func(store)
        func.post_return(store)
    return (time.perf_counter() - started) / calls * 1e6


def raw_split(raw: RawStrategy, events: list[MarketEvent]) -> dict[str, float]:
    """µs per raw on-event call spent inside wasmtime's C call (guest code plus the canonical ABI, in Rust)
    and in post_return; the rest of the raw call is wasmtime-py converting values in Python. A diagnostic
    pass of its own: it wraps the two C functions with a timer, which adds well under 1 µs per call."""
    from wasmtime import _ffi

    ffi: Any = _ffi  # patched below, then restored

    spent = {"call": 0.0, "post_return": 0.0}
    originals = {"call": ffi.wasmtime_component_func_call, "post_return": ffi.wasmtime_component_func_post_return}

    def timer(key: str) -> Callable[..., Any]:
        original = originals[key]

        def wrapped(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args)
            finally:
                spent[key] += time.perf_counter() - started
        return wrapped

    ffi.wasmtime_component_func_call = timer("call")
    ffi.wasmtime_component_func_post_return = timer("post_return")
    fuel = raw.store.get_fuel()
    try:
        total, _, _ = raw_events(raw, events)
    finally:
        ffi.wasmtime_component_func_call = originals["call"]
        ffi.wasmtime_component_func_post_return = originals["post_return"]
    n = len(events)
    inside = (spent["call"] + spent["post_return"]) / n * 1e6
    return {"total_us": total / n * 1e6, "wasmtime_c_call_us": spent["call"] / n * 1e6,
            "post_return_us": spent["post_return"] / n * 1e6, "python_conversion_us": total / n * 1e6 - inside,
            "fuel_per_call": (fuel - raw.store.get_fuel()) / n}


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def timed_cpu(fn: Callable[..., Any], *args: Any) -> tuple[float, float, Any]:
    """Wall and CPU seconds: on a shared machine the CPU figure shows what one core does when it is ours."""
    cpu, started = time.process_time(), time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, time.process_time() - cpu, out


# -- data ------------------------------------------------------------------------------------

def random_walk(n: int, seed: int) -> list[float]:
    """Seeded geometric random walk, 0.1% per bar, prices rounded to 4 decimals like venue data."""
    rng = random.Random(seed)
    gauss = rng.gauss
    p = 100.0
    out = []
    for _ in range(n):
        p *= 1.0 + gauss(0.0, 0.001)
        out.append(round(p, 4))
    return out


def events_from(prices: list[float], first_row: int = 0) -> list[MarketEvent]:
    return [MarketEvent("bar", "bench", SYMBOL, TS_START + (first_row + i) * BAR_NS, p, 1.0)
            for i, p in enumerate(prices)]


def ts_list(n: int, seed: int) -> list[int]:
    """Realistic 19-digit event times: one-minute bars with up to 1 ms of ns-resolution jitter, ascending."""
    rng = random.Random(seed)
    jitter = rng.randrange
    return [TS_START + i * BAR_NS + jitter(1_000_000) for i in range(n)]


# -- phases ------------------------------------------------------------------------------------

def phase_load(tmp: Path) -> tuple[dict[str, Any], PluginHost, Any]:
    cache_dir = tmp / "cache"  # does not exist yet: the first load compiles and serializes
    started = time.perf_counter()
    cold_host = PluginHost(tmp / "home", cache_dir=cache_dir)
    cold_host.load(WASM)
    cold_s = time.perf_counter() - started
    cold_misses = cold_host.cache.misses
    del cold_host
    gc.collect()
    cached_runs = []
    host, loaded = None, None
    for _ in range(3):
        started = time.perf_counter()
        host = PluginHost(tmp / "home", cache_dir=cache_dir)
        loaded = host.load(WASM)
        cached_runs.append(time.perf_counter() - started)
        if host.cache.hits != 1:
            raise RuntimeError("the second load did not come from the compile cache")
    assert host is not None and loaded is not None
    instantiate_s, _ = timed(host.strategy, loaded)
    cached_s = statistics.median(cached_runs)
    artifact = host.cache.path_for(loaded.sha256)
    return ({"cold_s": cold_s, "cold_compiled": cold_misses == 1, "cached_s": cached_s, "cached_runs_s": cached_runs,
             "cold_over_cached": cold_s / cached_s, "instantiate_s": instantiate_s, "wasm_bytes": loaded.size,
             "artifact_bytes": artifact.stat().st_size}, host, loaded)


def event_rounds(raw: RawStrategy, sma: StrategyPlugin, events: list[MarketEvent], calls: int, rounds: int,
                 warmup: int) -> dict[str, Any]:
    raw_events(raw, events[:warmup])
    kernel_events(sma, events[:warmup])
    us: dict[str, list[float]] = {"raw": [], "kernel": [], "raw_cpu": [], "kernel_cpu": []}
    raw_sig = kernel_sig = 0
    for r in range(rounds):
        chunk = events[warmup + r * calls: warmup + (r + 1) * calls]  # both instances see the same events
        spent = dict.fromkeys(us, 0.0)
        # Interleaved finely: blocks of BLOCK calls, raw then kernel, then kernel then raw, ... so that a
        # machine that is slower for a while (a shared one) slows both paths alike.
        for b, start in enumerate(range(0, len(chunk), BLOCK)):
            block = chunk[start:start + BLOCK]
            if b % 2:
                tk, ck, sk = kernel_events(sma, block)
                tr, cr, sr = raw_events(raw, block)
            else:
                tr, cr, sr = raw_events(raw, block)
                tk, ck, sk = kernel_events(sma, block)
            for key, value in (("raw", tr), ("kernel", tk), ("raw_cpu", cr), ("kernel_cpu", ck)):
                spent[key] += value
            raw_sig += sr
            kernel_sig += sk
        for key, value in spent.items():
            us[key].append(value / len(chunk) * 1e6)
    med = {k: statistics.median(v) for k, v in us.items()}
    split_events = events[warmup + rounds * calls:] or events[warmup:warmup + calls]
    return {"raw_us": med["raw"], "kernel_us": med["kernel"], "kernel_over_raw": med["kernel"] / med["raw"],
            "overhead_us": med["kernel"] - med["raw"],
            "raw_cpu_us": med["raw_cpu"], "kernel_cpu_us": med["kernel_cpu"],
            "kernel_over_raw_cpu": med["kernel_cpu"] / med["raw_cpu"],
            "overhead_cpu_us": med["kernel_cpu"] - med["raw_cpu"],
            "pair_ratios": (pairs := [k / r for r, k in zip(us["raw"], us["kernel"], strict=True)]),
            "pair_ratio_median": statistics.median(pairs),
            "rounds_us": us, "rounds": rounds, "signals_per_call": kernel_sig / (calls * rounds),
            "signals_match": raw_sig == kernel_sig, "raw_split": raw_split(raw, split_events)}


def phase_events(raw: RawStrategy, sma: StrategyPlugin, calls: int, rounds: int, seed: int) -> dict[str, Any]:
    warmup = 200
    floor_us = statistics.median(raw_floor(raw, 500) for _ in range(3))  # before the rounds: reset clears state
    raw.configure(DEFAULT_PARAMS)
    sma.configure(DEFAULT_PARAMS)
    n = warmup + calls * (rounds + 1)  # the last `calls` events feed the raw_split pass
    occasional = event_rounds(raw, sma, events_from(random_walk(n, seed)), calls, rounds, warmup)
    raw.configure(EVERY_CALL_PARAMS)
    sma.configure(EVERY_CALL_PARAMS)
    every_rounds = max(1, min(rounds, 3))
    alternating = [100.0 + (i % 2) for i in range(warmup + calls * (every_rounds + 1))]
    every = event_rounds(raw, sma, events_from(alternating), calls, every_rounds, warmup)
    return {"calls_per_round": calls, "rounds": rounds, "call_floor_us": floor_us, "occasional": occasional,
            "every_call": every, "goal_kernel_over_raw": EVENT_GOAL,
            "goal_met": occasional["kernel_over_raw_cpu"] <= EVENT_GOAL,
            "goal_met_wall": occasional["kernel_over_raw"] <= EVENT_GOAL}


def encode_columns(columns: dict[str, Any]) -> str:
    return json.dumps(columns, separators=(",", ":"))  # as StrategyPlugin.on_batch encodes them


BATCH_PARTS = ("encode_s", "guest_s", "guest_cpu_s", "checks_s", "end_to_end_s", "end_to_end_cpu_s", "native_decode_s",
               "native_decode_cpu_s", "native_strategy_s", "native_strategy_cpu_s", "native_encode_s",
               "native_encode_cpu_s")


def batch_round(raw: RawStrategy, sma: StrategyPlugin, native: Any, columns: dict[str, Any],
                parts: dict[str, list[float]], counts: dict[str, int]) -> int:
    """One round of each measurement on `columns`, appended to `parts`. Returns the JSON size in bytes."""
    from allele_guest import decode_batch, encode_signals  # on sys.path once sdk.testing is imported

    n = len(columns["price"])
    gc.collect()
    t, text = timed(encode_columns, columns)
    parts["encode_s"].append(t)
    text_bytes = len(text)
    raw.reset()
    fuel = raw.store.get_fuel()
    t, cpu, out = timed_cpu(raw.on_batch, text)
    parts["guest_s"].append(t)
    parts["guest_cpu_s"].append(cpu)
    counts["fuel"] = fuel - raw.store.get_fuel()
    t, sigs = timed(checks.batch_signals, out, n, columns["symbols"], sma.limits)
    parts["checks_s"].append(t)
    counts["raw"] = len(sigs)
    del out, sigs
    sma.reset()
    t, cpu, sigs = timed_cpu(sma.on_batch, columns)
    parts["end_to_end_s"].append(t)
    parts["end_to_end_cpu_s"].append(cpu)
    counts["kernel"] = len(sigs)
    del sigs
    native.reset()
    t, cpu, batch = timed_cpu(decode_batch, text)  # the guest's own first step, natively
    parts["native_decode_s"].append(t)
    parts["native_decode_cpu_s"].append(cpu)
    del text
    t, cpu, emitted = timed_cpu(native.on_batch, batch)
    parts["native_strategy_s"].append(t)
    parts["native_strategy_cpu_s"].append(cpu)
    t, cpu, _ = timed_cpu(encode_signals, batch, emitted)
    parts["native_encode_s"].append(t)
    parts["native_encode_cpu_s"].append(cpu)
    counts["native"] = len(emitted)
    return text_bytes


def batch_summary(parts: dict[str, list[float]], counts: dict[str, int], n: int, text_bytes: int) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in parts.items()}
    native_full = med["native_decode_s"] + med["native_strategy_s"] + med["native_encode_s"]
    native_full_cpu = med["native_decode_cpu_s"] + med["native_strategy_cpu_s"] + med["native_encode_cpu_s"]
    return {
        "bars": n, "rounds": len(parts["guest_s"]), "json_bytes": text_bytes, **med,
        "other_s": med["end_to_end_s"] - med["encode_s"] - med["guest_s"] - med["checks_s"],
        "guest_bars_per_s": n / med["guest_s"], "end_to_end_bars_per_s": n / med["end_to_end_s"],
        "guest_bars_per_cpu_s": n / med["guest_cpu_s"], "end_to_end_bars_per_cpu_s": n / med["end_to_end_cpu_s"],
        "native_strategy_bars_per_s": n / med["native_strategy_s"],
        "native_strategy_bars_per_cpu_s": n / med["native_strategy_cpu_s"],
        "native_full_s": native_full, "native_full_bars_per_s": n / native_full,
        "native_full_cpu_s": native_full_cpu, "native_full_bars_per_cpu_s": n / native_full_cpu,
        "guest_over_native_full": med["guest_s"] / native_full,
        "guest_over_native_strategy": med["guest_s"] / med["native_strategy_s"],
        "guest_over_native_full_cpu": med["guest_cpu_s"] / native_full_cpu,
        "guest_over_native_strategy_cpu": med["guest_cpu_s"] / med["native_strategy_cpu_s"],
        "rounds_s": parts, "signals": counts["kernel"], "fuel_per_bar": counts["fuel"] / n,
        "signals_match": counts["raw"] == counts["kernel"] == counts["native"],
        "goal_bars_per_s": BATCH_GOAL, "goal_met": n / med["guest_cpu_s"] >= BATCH_GOAL,
        "goal_met_wall": n / med["guest_s"] >= BATCH_GOAL,
    }


def phase_batch(raw: RawStrategy, sma: StrategyPlugin, bars: int, rounds: int, seed: int) -> dict[str, Any]:
    native = load_native(PLUGIN_DIR).SmaCross()
    for target in (raw, sma, native):
        target.configure(DEFAULT_PARAMS)
    prices = random_walk(bars, seed + 1)
    formats: dict[str, dict[str, Any]] = {
        "ts_start_step": {"symbols": [SYMBOL], "ts": {"start": TS_START, "step": BAR_NS}, "price": prices},
        "ts_list": {"symbols": [SYMBOL], "ts": ts_list(bars, seed + 2), "price": prices},
    }
    parts: dict[str, dict[str, list[float]]] = {key: {k: [] for k in BATCH_PARTS} for key in formats}
    counts: dict[str, dict[str, int]] = {key: {} for key in formats}
    sizes = dict.fromkeys(formats, 0)
    for r in range(rounds):  # formats interleaved too, so machine noise hits both alike
        for key, columns in formats.items():
            err.print(f"  on-batch round {r + 1}/{rounds}, {bars:,} bars, {key}")
            sizes[key] = batch_round(raw, sma, native, columns, parts[key], counts[key])
    return {key: batch_summary(parts[key], counts[key], bars, sizes[key]) for key in formats}


# -- report ---------------------------------------------------------------------------------------

def _met(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]not met[/red]"


def print_tables(r: dict[str, Any]) -> None:
    out = Console(width=max(Console().width, 120))
    m = r["machine"]
    out.print(f"[bold]Allele plugin call benchmark[/bold]: sma_cross, wasmtime {m['wasmtime']}, Python "
              f"{m['python']}, {m['cpus']} CPUs, load average {m['loadavg_start'][0]:.2f} → "
              f"{m['loadavg_end'][0]:.2f}, {r['total_s']:.0f} s")

    ld = r["load"]
    t = Table(title="1. Loading the component (PluginHost.load)", title_justify="left")
    for col in ("", "time", "note"):
        t.add_column(col, justify="right" if col == "time" else "left")
    t.add_row("cold (empty cache)", f"{ld['cold_s']:.2f} s",
              f"compile + serialize, {ld['wasm_bytes'] / 1e6:.1f} MB wasm")
    t.add_row("from cache", f"{ld['cached_s'] * 1e3:.0f} ms",
              f"deserialize + instantiate, {ld['artifact_bytes'] / 1e6:.1f} MB artifact, median of 3")
    t.add_row("cold / cached", f"{ld['cold_over_cached']:.0f}x", "")
    t.add_row("instantiate (host.strategy)", f"{ld['instantiate_s'] * 1e3:.1f} ms", "")
    out.print(t)

    ev = r["on_event"]
    t = Table(title=f"2. on-event, µs per call (median of rounds of {ev['calls_per_round']:,} calls per path, "
                    f"interleaved in blocks of {BLOCK})",
              title_justify="left")
    for col in ("prices", "rounds", "clock", "raw", "kernel", "kernel/raw", "overhead", "signals/call",
                f"goal ≤ {EVENT_GOAL}x"):
        t.add_column(col, justify="left" if col in ("prices", "clock") else "right")
    for label, key in (("random walk", "occasional"), ("alternating", "every_call")):
        e = ev[key]
        for clock, sfx in (("wall", ""), ("CPU", "_cpu")):
            ratio = e[f"kernel_over_raw{sfx}"]
            goal = "(info)" if key == "every_call" else _met(ratio <= EVENT_GOAL) if sfx else "(see CPU)"
            t.add_row(label if not sfx else "", str(e["rounds"]) if not sfx else "", clock, f"{e[f'raw{sfx}_us']:.0f}",
                      f"{e[f'kernel{sfx}_us']:.0f}", f"{ratio:.2f}x", f"{e[f'overhead{sfx}_us']:+.0f} µs",
                      f"{e['signals_per_call']:.3f}" if not sfx else "", goal)
    out.print(t)
    out.print("  raw = wasmtime.component Func call + post_return; kernel = StrategyPlugin.on_event(MarketEvent); "
              "kernel/raw = ratio of the medians;\n  the goal is judged on process CPU time, which a shared machine "
              "disturbs less than wall time")
    out.print(f"  call floor (raw `reset`: no argument, no result): {ev['call_floor_us']:.0f} µs")
    for label, key in (("random walk", "occasional"), ("alternating", "every_call")):
        sp = ev[key]["raw_split"]
        out.print(f"  raw call split, {label}: {sp['total_us']:.0f} µs = {sp['wasmtime_c_call_us']:.0f} in wasmtime's "
                  f"C call (guest + canonical ABI) + {sp['post_return_us']:.0f} post_return + "
                  f"{sp['python_conversion_us']:.0f} wasmtime-py value conversion in Python; "
                  f"{sp['fuel_per_call']:,.0f} fuel/call")

    for key, label in (("ts_start_step", 'ts as {"start","step"}'), ("ts_list", "ts as a list of ns timestamps")):
        b = r["on_batch"][key]
        t = Table(title=f"3. on-batch, {b['bars']:,} bars, {label} (median of {b['rounds']} rounds, "
                        f"{b['json_bytes'] / 1e6:.1f} MB JSON, {b['signals']:,} signals)", title_justify="left")
        for col in ("part", "seconds", "bars/s", "note"):
            t.add_column(col, justify="left" if col in ("part", "note") else "right")
        t.add_row("host JSON encode", f"{b['encode_s']:.3f}", f"{b['bars'] / b['encode_s']:,.0f}", "json.dumps")
        t.add_row("guest call (wall)", f"{b['guest_s']:.3f}", f"{b['guest_bars_per_s']:,.0f}",
                  f"raw Func call + post_return; {b['fuel_per_bar']:,.0f} fuel/bar")
        t.add_row("guest call (CPU)", f"{b['guest_cpu_s']:.3f}", f"{b['guest_bars_per_cpu_s']:,.0f}",
                  f"process CPU time of the same calls; goal ≥ {BATCH_GOAL:,} bars/s per core: {_met(b['goal_met'])}")
        t.add_row("host result checks", f"{b['checks_s']:.3f}", "", "checks.batch_signals")
        t.add_row("end to end (wall)", f"{b['end_to_end_s']:.3f}", f"{b['end_to_end_bars_per_s']:,.0f}",
                  f"StrategyPlugin.on_batch (unaccounted {b['other_s']:+.3f} s)")
        t.add_row("end to end (CPU)", f"{b['end_to_end_cpu_s']:.3f}", f"{b['end_to_end_bars_per_cpu_s']:,.0f}", "")
        t.add_row("native: strategy only (CPU)", f"{b['native_strategy_cpu_s']:.3f}",
                  f"{b['native_strategy_bars_per_cpu_s']:,.0f}",
                  f"on_batch on a decoded Batch; guest/native {b['guest_over_native_strategy_cpu']:.1f}x "
                  f"(wall {b['guest_over_native_strategy']:.1f}x)")
        t.add_row("native: decode+strategy+encode (CPU)", f"{b['native_full_cpu_s']:.3f}",
                  f"{b['native_full_bars_per_cpu_s']:,.0f}",
                  f"the guest's work, in CPython; guest/native {b['guest_over_native_full_cpu']:.1f}x "
                  f"(wall {b['guest_over_native_full']:.1f}x)")
        out.print(t)

    warnings = [w for w in r["warnings"]]
    for w in warnings:
        out.print(f"[yellow]warning:[/yellow] {w}")


# -- main --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=1_000_000, help="bars per on-batch call (default 1,000,000)")
    ap.add_argument("--calls", type=int, default=2_000, help="on-event calls per round and path (default 2,000)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="on-event rounds (default 5; at most 3 for the every-call variant)")
    ap.add_argument("--batch-rounds", type=int, default=3, help="on-batch rounds per ts format (default 3)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args(argv)
    if args.bars < 100 or args.calls < 1 or args.rounds < 1 or args.batch_rounds < 1:
        ap.error("--bars must be >= 100; --calls, --rounds and --batch-rounds >= 1")

    started = time.perf_counter()
    result: dict[str, Any] = {"machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "wasmtime": WASMTIME_VERSION,
        "platform": platform.platform(), "loadavg_start": os.getloadavg()}, "bars": args.bars, "seed": args.seed}
    warnings: list[str] = []

    err.print("[1/4] building sma_cross (skipped if up to date)")
    built = build_plugin(PLUGIN_DIR, WASM)
    result["build"] = {"skipped": built.skipped, "seconds": built.seconds, "wasm": str(built.output)}

    with tempfile.TemporaryDirectory(prefix="allele-bench-") as tmp_name:
        tmp = Path(tmp_name)
        err.print("      loading: cold (compiles, ~10-40 s) then from the cache")
        result["load"], host, loaded = phase_load(tmp)
        if not result["load"]["cold_compiled"]:
            warnings.append("the cold load did not compile (cache not empty?)")
        sma = host.strategy(loaded)
        raw = RawStrategy(host.cache.path_for(loaded.sha256))
        result["load"]["raw_deserialize_s"] = raw.deserialize_s

        err.print(f"[2/4] on-event: {args.rounds} rounds of {args.calls:,} calls, raw and kernel interleaved")
        result["on_event"] = phase_events(raw, sma, args.calls, args.rounds, args.seed)
        for key in ("occasional", "every_call"):
            if not result["on_event"][key]["signals_match"]:
                warnings.append(f"on-event ({key}): raw and kernel emitted different signal counts")

        err.print("[3/4] on-batch (guest, kernel) and [4/4] native baseline, interleaved")
        result["on_batch"] = phase_batch(raw, sma, args.bars, args.batch_rounds, args.seed)
        for key, b in result["on_batch"].items():
            if not b["signals_match"]:
                warnings.append(f"on-batch ({key}): raw, kernel and native emitted different signal counts")
        if host.quarantined:
            warnings.append(f"the kernel quarantined an instance: {host.quarantined[-1].reason}")

    result["machine"]["loadavg_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - started
    result["warnings"] = warnings
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
