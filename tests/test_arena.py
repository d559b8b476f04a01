"""The arena's organisms, variation, evaluation through the engine, cache, lineage and reproducibility."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest
from conftest import fund_an_arena_organism
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.arena import genome as g
from allele.kernel.arena.arena import Arena, ArenaConfig
from allele.kernel.arena.evaluate import Evaluator
from allele.kernel.arena.executor import LocalExecutor
from allele.kernel.arena.organism import OrganismSpec
from allele.kernel.arena.store import ArenaStore
from allele.kernel.backtest import load_bars, parse_data_spec
from allele.kernel.backtest.run import run_backtest
from allele.kernel.plugin.manifest import Manifest, ParamSpec

MANIFEST = Manifest(name="x", version="0.1.0", kind="strategy", author="a", description="d", proof="p.md",
                    parameters=(ParamSpec(name="window", type="int", default=10, min=2, max=1000),
                                ParamSpec(name="z", type="float", default=1.0, min=0.5, max=4.0, step=0.1),
                                ParamSpec(name="short", type="bool", default=False),
                                ParamSpec(name="band", type="enum", default="a", choices=("a", "b", "c"))))
DATA = "synthetic:bars=900,seed=3"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@given(st.integers(0, 10_000))
def test_variation_keeps_types_and_ranges(seed: int) -> None:
    rng = random.Random(seed)
    a, b = g.random_genome(MANIFEST, rng), g.random_genome(MANIFEST, rng)
    for genome in (a, g.mutate(a, MANIFEST, rng), g.crossover(a, b, MANIFEST, rng)):
        assert isinstance(genome["window"], int) and 2 <= genome["window"] <= 1000
        assert isinstance(genome["z"], float) and 0.5 <= genome["z"] <= 4.0
        assert abs(round((genome["z"] - 0.5) / 0.1) * 0.1 + 0.5 - genome["z"]) < 1e-9  # on its step grid
        assert isinstance(genome["short"], bool) and genome["band"] in ("a", "b", "c")
    assert g.mutate(a, MANIFEST, rng) != a  # a child is never a copy


def test_the_same_seed_gives_the_same_genomes() -> None:
    def draw(seed: int) -> list[dict[str, object]]:
        rng = random.Random(seed)
        out = [g.random_genome(MANIFEST, rng) for _ in range(5)]
        return out + [g.mutate(x, MANIFEST, rng) for x in out]

    assert draw(7) == draw(7) and draw(7) != draw(8)


def test_sensor_crossover_swaps_one_feed() -> None:
    child = g.crossover_sensors((("a", "1"), ("b", "2")), (("c", "3"),), random.Random(1))
    assert len(child) == 2 and ("c", "3") in child


def test_fingerprint_is_canonical_and_covers_the_plugin() -> None:
    a = OrganismSpec(strategy="s", plugin_sha256="0" * 64, genome={"x": 1, "y": 2.5})
    b = OrganismSpec(strategy="s", plugin_sha256="0" * 64, genome={"y": 2.5, "x": 1})
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != OrganismSpec(strategy="s", plugin_sha256="1" * 64, genome={"x": 1, "y": 2.5}).fingerprint
    assert a.fingerprint != OrganismSpec(strategy="s", plugin_sha256="0" * 64, genome={"x": 2, "y": 2.5}).fingerprint
    with pytest.raises(ValueError, match="not a finite number"):
        OrganismSpec(strategy="s", plugin_sha256="0" * 64, genome={"x": float("nan")})


def test_an_evaluation_is_the_backtest_of_the_same_organism(built, tmp_path: Path) -> None:
    bars = load_bars(parse_data_spec(DATA))
    evaluator = Evaluator(tmp_path, bars, commission=0.002)
    spec = OrganismSpec(strategy="sma_cross", plugin_sha256=sha(built["sma_cross"]), genome={"fast": 8, "slow": 30})
    result = evaluator.evaluate(spec)
    backtest = asyncio.run(run_backtest(tmp_path, "sma_cross", {"fast": 8, "slow": 30}, parse_data_spec(DATA),
                                        commission=0.002))
    assert result.ok and result.final_equity == pytest.approx(backtest.metrics.final_equity, rel=1e-12)
    assert result.trades == backtest.metrics.trades and len(result.returns) == len(bars) - 1
    # A pooled instance is reset by configure: evaluating again gives the same numbers.
    evaluator.evaluate(OrganismSpec(strategy="sma_cross", plugin_sha256=spec.plugin_sha256,
                                    genome={"fast": 3, "slow": 9}))
    assert evaluator.evaluate(spec) == result
    stillborn = evaluator.evaluate(OrganismSpec(strategy="sma_cross", plugin_sha256=spec.plugin_sha256,
                                                genome={"fast": 30, "slow": 8}))
    assert not stillborn.ok and "must be smaller than slow" in stillborn.error


def _run(home: Path, workers: int, seed: int = 5) -> tuple[list[tuple[object, ...]], int]:
    bars = load_bars(parse_data_spec(DATA))
    with LocalExecutor(home, bars, commission=0.001, workers=workers) as ex:
        arena = Arena(home, bars, ArenaConfig(population=8, generations=3, seed=seed), ex)
        result = arena.run()
    board = [(r["fingerprint"], r["fitness"], r["dsr"], r["funded"]) for r in result.leaderboard]
    return board, result.trials


def test_the_same_seed_gives_the_same_leaderboard_with_one_or_two_workers(built, tmp_path: Path) -> None:
    one, trials = _run(tmp_path / "one", workers=1)
    two, _ = _run(tmp_path / "two", workers=2)
    assert one == two and trials >= 8
    other, _ = _run(tmp_path / "three", workers=1, seed=6)
    assert other != one


def test_evaluations_are_cached_in_the_ledger_and_lineage_recorded(built, tmp_path: Path) -> None:
    bars = load_bars(parse_data_spec(DATA))
    summaries = []
    with LocalExecutor(tmp_path, bars, commission=0.001) as ex:
        arena = Arena(tmp_path, bars, ArenaConfig(population=6, generations=2, seed=1), ex)
        first = arena.run(on_generation=summaries.append)
        again = Arena(tmp_path, bars, ArenaConfig(population=6, generations=2, seed=1), ex)
        repeat = []
        second = again.run(on_generation=repeat.append)
    assert summaries[0].cached == 0
    assert repeat[0].cached == 6 and repeat[1].cached == 6  # the same seed: every organism read back
    assert [r["fingerprint"] for r in first.leaderboard] == [r["fingerprint"] for r in second.leaderboard]
    store = ArenaStore(tmp_path / "trading.db")
    try:
        child = next(r for r in store.standing() if r["generation"] == 1)
        lineage = store.lineage(child["fingerprint"])
        assert lineage and lineage[0]["fingerprint"] == child["fingerprint"]
        assert lineage[0]["operator"] in ("seed", "mutation", "crossover")
        assert all(p in {x["fingerprint"] for x in lineage[1:]} for p in lineage[0]["parents"])
    finally:
        store.close()


def test_arena_cli_run_leaderboard_show_fund_defund(built, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    allele = Path(sys.executable).parent / "allele"
    env = {**os.environ, "ALLELE_HOME": str(tmp_path), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(allele), "arena", *args], env=env, capture_output=True, text=True, timeout=600)

    done = run("run", "--data", DATA, "--population", "6", "--generations", "2", "--seed", "3", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "funded" in report and len(report["generations"]) == 2 and report["trials"] >= 4
    table = run("run", "--data", DATA, "--population", "6", "--generations", "2", "--seed", "3")
    assert table.returncode == 0 and "generation 1:" in table.stderr and "PBO" in table.stderr
    board = json.loads(run("leaderboard", "--json").stdout)
    assert "funded" in board and board["leaderboard"]
    fp = board["leaderboard"][0]["fingerprint"]
    shown = json.loads(run("show", fp[:12], "--json").stdout)
    assert shown["fingerprint"] == fp and shown["lineage"][0]["fingerprint"] == fp
    assert run("fund", fp[:12], "--allocation", "7").returncode == 0
    funded = json.loads(run("leaderboard", "--json").stdout)["funded"]
    assert [r["fingerprint"] for r in funded] == [fp] and funded[0]["allocation"] == 7.0
    assert run("defund", fp[:12]).returncode == 0
    after = json.loads(run("show", fp, "--json").stdout)
    assert after["status"] == "hibernating" and [e["new"] for e in after["events"]] == ["paper", "hibernating"]
    missing = run("show", "nope")
    assert missing.returncode == 2 and "no organism with fingerprint" in missing.stderr
    bad = run("run", "--data", DATA, "--executor", "cloud")
    assert bad.returncode == 2 and "local or ray" in bad.stderr


def test_a_local_ray_instance_gives_the_same_leaderboard(built, tmp_path: Path) -> None:
    """Through the CLI, in subprocesses: Ray installs signal handlers in the driver process, where
    wasmtime needs its own (a trap is a signal), so a Ray driver must not share a process with engines."""
    import json
    import os
    import subprocess
    import sys

    allele = Path(sys.executable).parent / "allele"

    def board(executor: str, home: Path) -> list[tuple[object, ...]]:
        proc = subprocess.run([str(allele), "arena", "run", "--data", DATA, "--population", "8", "--generations",
                               "3", "--seed", "5", "--workers", "2", "--executor", executor, "--json"],
                              env={**os.environ, "ALLELE_HOME": str(home)}, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        return [(r["fingerprint"], r["fitness"], r["dsr"], r["funded"]) for r in report["leaderboard"]]

    local = board("local", tmp_path / "local")
    assert local and board("ray", tmp_path / "ray") == local


def test_funded_organisms_trade_in_the_paper_engine(built, tmp_path: Path) -> None:
    from allele.kernel.engine.config import EngineConfig
    from allele.kernel.engine.session import open_paper_session

    row = fund_an_arena_organism(tmp_path, allocation=12.0)

    async def paper() -> tuple[list[str], dict[str, object], set[str]]:
        session = await open_paper_session(tmp_path, config=EngineConfig(bars=40, speed=0, record=False),
                                           session="arena", start_ns=1_800_000_000_000_000_000)
        try:
            [org] = session.engine.organisms.values()
            await session.run()
            traded = {o.organism for o in await session.engine.ledger.orders()}
            return [org.id, org.allocation, org.plugin_sha256], dict(org.strategy.params), traded
        finally:
            await session.close()

    (org_id, allocation, plugin), params, traded = asyncio.run(paper())
    assert org_id == f"arena-{row['fingerprint'][:12]}" and allocation == 12.0
    assert params == row["spec"]["genome"] and plugin == row["spec"]["plugin_sha256"]
    assert traded <= {org_id}

    # Organisms configured in config.toml win over the arena's.
    (tmp_path / "config.toml").write_text('[[organisms]]\nid = "mine"\nstrategy = "sma_cross"\n')

    async def configured() -> list[str]:
        mine = await open_paper_session(tmp_path, config=EngineConfig(bars=1, speed=0, record=False),
                                        session="mine")
        try:
            return list(mine.engine.organisms)
        finally:
            await mine.close()

    assert asyncio.run(configured()) == ["mine"]
