"""Constrained-random order flows, scoreboarded frame by frame against the Python model.

Environment (set by tests/test_hw_kernel.py): OK_SEEDS (comma-separated), OK_ORDERS (NEW_ORDER frames
per seed, at least), OK_SLOTS (the RTL's N), OK_REPORT (a JSON file for counts, coverage and latency),
OK_COVERAGE ("0": do not fail on coverage holes, for odd table sizes), OK_STALL (the probability that
out_ready is low in a clock, applied to every second seed, so that back-pressure is scoreboarded
as well; the other seeds run unstalled and give the decision latency).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import cocotb
from okbench import RunStats, Stimulus, compare, coverage_report, reset, restart, run_frames, sample_coverage

from allele.kernel.orders.frames import MsgType


@cocotb.test()
async def random_flows(dut: Any) -> None:
    seeds = [int(s) for s in os.environ.get("OK_SEEDS", "1").split(",")]
    per_seed = int(os.environ.get("OK_ORDERS", "1000"))
    slots = int(os.environ.get("OK_SLOTS", "8"))
    stall_p = float(os.environ.get("OK_STALL", "0.3"))
    chunk = 2000
    await reset(dut)
    orders = 0
    frames_total = 0
    outs_total = 0
    stats = RunStats()
    decision_lat: list[int] = []
    stalled_seeds: list[int] = []
    for n_seed, seed in enumerate(seeds):
        await restart(dut)
        stim = Stimulus(seed, slots)
        stall = stall_p if n_seed % 2 == 1 else 0.0
        if stall:
            stalled_seeds.append(seed)
        rng = random.Random(seed * 7919)
        done = 0
        while stim.orders < per_seed:
            frames, expected = stim.stream(chunk)
            local = RunStats()
            got = await run_frames(dut, frames, local, stall=stall, rng=rng)
            compare(frames, expected, got, context=f"seed {seed}, frames {done}..: ")
            sample_coverage(got)
            for k, fr in enumerate(frames):
                if fr[0] == MsgType.NEW_ORDER:
                    orders += 1
                    # the decision is the first frame after any expiry triples
                    sweep = sum(1 for x in got[k] if x[0] == MsgType.EXPIRED)
                    if sweep == 0 and not stall:
                        decision_lat.append(local.first_out_at[k] - local.taken_at[k])
            stats.cycles += local.cycles
            frames_total += len(frames)
            outs_total += sum(len(g) for g in got)
            done += len(frames)
    summary, missing = coverage_report()
    report = {
        "seeds": seeds, "frames": frames_total, "orders": orders, "outbound_frames": outs_total,
        "cycles": stats.cycles, "backpressure": {"seeds": stalled_seeds, "out_ready_low_probability": stall_p},
        "coverage": {k: {"hit": h, "bins": b} for k, (h, b) in summary.items()},
        "missing_bins": missing,
        "decision_latency_cycles": {"min": min(decision_lat), "max": max(decision_lat)},
    }
    dut._log.info("random flows: %s", json.dumps(report))
    out = os.environ.get("OK_REPORT")
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
    if os.environ.get("OK_COVERAGE", "1") == "1":
        assert not missing, f"functional coverage holes: {missing}"
