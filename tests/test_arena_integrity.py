"""The arena's promise, checked statistically on real runs (seeded, so every CI run sees the same seeds):

- null: on pure random walks it funds nothing in at least 95% of seeds;
- power: on a market with a planted, exploitable edge it funds an organism exploiting it in at least 90%.

Default arena settings (population 24, 6 generations, 5 walk-forward windows, DSR threshold 0.95).
"""

from __future__ import annotations

import datetime
import math
import random
from pathlib import Path

import numpy as np

from allele.kernel.arena.arena import Arena, ArenaConfig, ArenaResult
from allele.kernel.arena.executor import LocalExecutor
from allele.kernel.backtest import load_csv

BARS = 1500
REGIME = 60  # bars per trend regime in the planted market


def write_market(path: Path, seed: int, drift: float) -> None:
    """Daily closes, log returns N(mu_t, 1%). drift 0: a pure random walk. drift > 0: mu_t = +-drift, the
    sign redrawn every REGIME bars: trends a trend follower can ride."""
    rng = random.Random(seed)
    rows = ["Date,Open,High,Low,Close,Volume"]
    price, mu = 100.0, 0.0
    day = datetime.date(2015, 1, 1)
    for i in range(BARS):
        if drift and i % REGIME == 0:
            mu = rng.choice((-1.0, 1.0)) * drift
        close = price * math.exp(mu + rng.gauss(0.0, 0.01))
        rows.append(f"{day + datetime.timedelta(days=i)},{price:.6f},{max(price, close) * 1.001:.6f},"
                    f"{min(price, close) * 0.999:.6f},{close:.6f},1000")
        price = close
    path.write_text("\n".join(rows) + "\n")


def arena_run(tmp: Path, seed: int, drift: float) -> ArenaResult:
    home = tmp / f"s{seed}"
    home.mkdir()
    write_market(home / "market.csv", seed, drift)
    bars = load_csv(home / "market.csv")
    with LocalExecutor(home, bars, commission=0.0005) as ex:
        return Arena(home, bars, ArenaConfig(seed=seed), ex).run()


def test_null_random_walks_fund_nothing_in_95_percent_of_seeds(built, tmp_path: Path) -> None:
    seeds = range(20)
    funded = {seed: len(arena_run(tmp_path, seed, drift=0.0).funded) for seed in seeds}
    bad = [s for s, n in funded.items() if n]
    assert len(bad) <= 1, f"funded noise on seeds {bad} ({funded})"


def test_power_a_planted_trend_is_found_and_funded_in_90_percent_of_seeds(built, tmp_path: Path) -> None:
    seeds = range(100, 110)
    hits = []
    for seed in seeds:
        result = arena_run(tmp_path, seed, drift=0.01)
        exploit = [r for r in result.funded
                   if r["strategy"] in ("sma_cross", "momentum_c") and r["oos_sharpe"] > 0.3 and r["dsr"] >= 0.95]
        hits.append(bool(exploit))
        if exploit:  # funded capital respects the global cap
            assert sum(r["allocation"] for r in result.funded) <= 100.0 + 1e-9
            assert np.isfinite(exploit[0]["fitness"]) and exploit[0]["fitness"] > 0
    assert sum(hits) >= 9, f"found the planted edge in {sum(hits)} of {len(hits)} seeds: {hits}"
