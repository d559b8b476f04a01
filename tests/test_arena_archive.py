"""The MAP-Elites archive: niches, elitism per niche, determinism, persistence."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest

from allele.kernel.arena.archive import Archive, Behaviour, Bins

SLOW = Behaviour(turnover=0.002, holding_bars=100.0, beta=0.8, exposure=0.9, venue="sim")
FAST = Behaviour(turnover=0.3, holding_bars=1.0, beta=0.0, exposure=0.2, venue="sim")


def test_niche_binning_lower_edges_inclusive() -> None:
    a = Archive()
    assert a.niche(SLOW) == (1, 3, 3, 3, "sim")
    assert a.niche(FAST) == (4, 0, 2, 0, "sim")
    on_edges = Behaviour(turnover=0.001, holding_bars=2.0, beta=-0.5, exposure=0.25, venue="x")
    assert a.niche(on_edges) == (1, 1, 1, 1, "x")
    below = Behaviour(turnover=0.0, holding_bars=0.0, beta=-3.0, exposure=0.0, venue="x")
    assert a.niche(below) == (0, 0, 0, 0, "x")


def test_venue_separates_niches() -> None:
    a = Archive()
    other = Behaviour(SLOW.turnover, SLOW.holding_bars, SLOW.beta, SLOW.exposure, "binance")
    assert a.offer("a", SLOW, 1.0) and a.offer("b", other, 0.5)
    assert len(a) == 2


def test_different_niches_both_survive() -> None:
    a = Archive()
    assert a.offer("strong", FAST, 10.0)
    assert a.offer("weak", SLOW, -3.0)
    assert len(a) == 2
    assert {e.fingerprint for e in a.elites()} == {"strong", "weak"}


def test_same_niche_keeps_the_better() -> None:
    a = Archive()
    similar = Behaviour(0.003, 120.0, 0.9, 0.95, "sim")
    assert a.niche(similar) == a.niche(SLOW)
    assert a.offer("first", SLOW, 1.0)
    assert not a.offer("worse", similar, 0.5)
    assert a.offer("better", similar, 2.0)
    assert not a.offer("first", SLOW, 1.5)  # the old incumbent does not come back with less than the best
    (elite,) = a.elites()
    assert (elite.fingerprint, elite.value, elite.behaviour) == ("better", 2.0, similar)


def test_ties_go_to_lower_fingerprint() -> None:
    a = Archive()
    assert a.offer("bbb", SLOW, 1.0)
    assert not a.offer("ccc", SLOW, 1.0)
    assert a.offer("aaa", SLOW, 1.0)
    assert a.elites()[0].fingerprint == "aaa"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_never_enters(value: float) -> None:
    a = Archive()
    assert not a.offer("x", SLOW, value)
    assert len(a) == 0
    a.offer("y", SLOW, -100.0)
    assert not a.offer("x", SLOW, value)
    assert a.elites()[0].fingerprint == "y"


def test_determinism_independent_of_order() -> None:
    offers = [
        ("a", SLOW, 1.0), ("b", SLOW, 1.0), ("c", FAST, 2.0), ("d", FAST, 3.0),
        ("e", Behaviour(0.02, 20.0, 0.1, 0.5, "sim"), 0.1), ("f", Behaviour(0.02, 20.0, 0.2, 0.6, "sim"), 0.1),
    ]
    results = set()
    for perm in itertools.permutations(offers):
        a = Archive()
        for fp, b, v in perm:
            a.offer(fp, b, v)
        results.add(a.to_json())
    assert len(results) == 1
    a = Archive.from_json(results.pop())
    assert [e.fingerprint for e in a.elites()] == ["a", "e", "d"]  # sorted by niche
    assert [e.niche for e in a.elites()] == sorted(e.niche for e in a.elites())


def test_json_round_trip() -> None:
    bins = Bins(turnover=(0.01, 0.1), holding_bars=(5.0,), beta=(0.0,), exposure=(0.5,))
    a = Archive(bins)
    a.offer("a", SLOW, 1.2345678901234567)
    a.offer("b", FAST, -0.1)
    a.offer("c", Behaviour(0.05, 3.0, -0.2, 0.4, "kraken"), 0.3)
    text = a.to_json()
    b = Archive.from_json(text)
    assert b.bins == bins
    assert b.elites() == a.elites()
    assert b.to_json() == text
    assert b.grid() == a.grid()


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        Archive.from_json("{}")
    with pytest.raises(ValueError):
        Archive.from_json("not json")
    a = Archive()
    a.offer("a", SLOW, 1.0)
    body = json.loads(a.to_json())
    body["elites"].append(dict(body["elites"][0], fingerprint="b"))
    with pytest.raises(ValueError, match="claim niche"):
        Archive.from_json(json.dumps(body))


def test_grid_is_json_able_with_labels() -> None:
    a = Archive()
    a.offer("a", SLOW, 1.0)
    a.offer("b", FAST, 2.0)
    grid = json.loads(json.dumps(a.grid()))
    assert grid["descriptors"] == ["turnover", "holding_bars", "beta", "exposure", "venue"]
    assert grid["bins"]["turnover"] == [0.001, 0.01, 0.05, 0.2]
    cell = grid["cells"][0]
    assert cell["fingerprint"] == "a" and cell["value"] == 1.0
    assert cell["niche"] == [1, 3, 3, 3, "sim"]
    assert cell["labels"] == {"turnover": "[0.001, 0.01)", "holding_bars": "[50, 250)", "beta": ">=0.5",
                              "exposure": ">=0.75", "venue": "sim"}
    assert grid["cells"][1]["labels"]["holding_bars"] == "<2"


@pytest.mark.parametrize(
    "kwargs",
    [{"turnover": -0.1}, {"holding_bars": math.nan}, {"beta": math.inf}, {"exposure": 1.1}, {"venue": ""}],
)
def test_behaviour_validation(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"turnover": 0.01, "holding_bars": 5.0, "beta": 0.0, "exposure": 0.5, "venue": "sim"}
    with pytest.raises(ValueError):
        Behaviour(**{**base, **kwargs})


def test_bins_validation() -> None:
    with pytest.raises(ValueError):
        Bins(turnover=(0.1, 0.01))
    with pytest.raises(ValueError):
        Bins(beta=())
    with pytest.raises(ValueError):
        Archive().offer("", SLOW, 1.0)
