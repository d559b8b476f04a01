"""Capital allocation rules, lifecycle transitions and the generation review."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allele.kernel.arena.allocator import TRANSITIONS, Lifecycle, Transition, allocate, review, transition

# ---------------------------------------------------------------------------------------- allocation


def test_proportional_to_fitness() -> None:
    out = allocate({"a": 1.0, "b": 2.0, "c": 3.0}, 600.0, max_share=1.0)
    assert out == pytest.approx({"a": 100.0, "b": 200.0, "c": 300.0})
    assert list(out) == ["a", "b", "c"]


def test_cap_respected_and_fully_deployed_when_possible() -> None:
    out = allocate({"a": 0.3, "b": 0.7, "c": 0.5}, 1000.0)
    assert math.fsum(out.values()) == pytest.approx(1000.0)
    assert max(out.values()) <= 500.0


def test_max_share_redistributes_excess_proportionally() -> None:
    # raw shares 800 / 100 / 100; a pinned at 500, the remaining 500 split 1:1
    out = allocate({"a": 8.0, "b": 1.0, "c": 1.0}, 1000.0, max_share=0.5)
    assert out == pytest.approx({"a": 500.0, "b": 250.0, "c": 250.0})


def test_redistribution_iterates_until_stable() -> None:
    # max 300 each: raw 500/300/150/50 -> a pinned, 700 over 6:3:1 -> 420 (b pinned) ... -> 300/300/300/100
    out = allocate({"a": 10.0, "b": 6.0, "c": 3.0, "d": 1.0}, 1000.0, max_share=0.3)
    assert out == pytest.approx({"a": 300.0, "b": 300.0, "c": 300.0, "d": 100.0})


def test_everyone_pinned_leaves_cap_undeployed() -> None:
    out = allocate({"a": 1.0}, 1000.0, max_share=0.5)
    assert out == {"a": 500.0}
    out = allocate({"a": 1.0, "b": 5.0}, 1000.0, max_share=0.25)
    assert out == {"a": 250.0, "b": 250.0}


def test_zero_negative_and_non_finite_fitness_get_nothing() -> None:
    out = allocate({"a": 0.0, "b": -1.0, "c": 2.0, "d": math.nan, "e": math.inf, "f": -math.inf}, 100.0,
                   max_share=1.0)
    assert out == {"c": 100.0}


def test_empty_inputs() -> None:
    assert allocate({}, 1000.0) == {}
    assert allocate({"a": -1.0}, 1000.0) == {}
    assert allocate({"a": 1.0}, 0.0) == {}
    assert allocate({"a": 1.0}, 0.0, min_allocation=0.0) == {}


def test_min_allocation_drops_dust_and_redistributes() -> None:
    # raw 99.0 / 0.5 / 0.5 -> b and c below 1.0: c dropped first (tie on fitness, greater fingerprint), then b
    out = allocate({"a": 198.0, "b": 1.0, "c": 1.0}, 100.0, max_share=1.0, min_allocation=1.0)
    assert out == {"a": 100.0}
    # dropping the weakest lifts the next one above the minimum
    out = allocate({"a": 50.0, "b": 45.0, "c": 4.0, "d": 1.0}, 100.0, max_share=1.0, min_allocation=4.02)
    assert set(out) == {"a", "b", "c"}
    assert out == pytest.approx({"a": 50.505050, "b": 45.454545, "c": 4.040404}, rel=1e-6)
    assert math.fsum(out.values()) == pytest.approx(100.0)


def test_allocation_deterministic_and_order_free() -> None:
    funded = {f"f{i:02d}": (i * 7919 % 97) / 10.0 for i in range(40)}
    first = allocate(funded, 12345.0, max_share=0.1, min_allocation=50.0)
    assert allocate(dict(reversed(list(funded.items()))), 12345.0, max_share=0.1, min_allocation=50.0) == first
    assert list(first) == sorted(first)


@pytest.mark.parametrize(
    "kwargs",
    [{"global_cap": -1.0}, {"global_cap": math.inf}, {"max_share": 0.0}, {"max_share": 1.5},
     {"min_allocation": -1.0}, {"min_allocation": math.nan}],
)
def test_allocation_argument_validation(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"global_cap": 100.0, **kwargs}
    with pytest.raises(ValueError):
        allocate({"a": 1.0}, **args)


@given(
    funded=st.dictionaries(
        st.text(alphabet="abcdef0123456789", min_size=1, max_size=6),
        st.floats(min_value=-10.0, max_value=1e6, allow_nan=False),
        max_size=30,
    ),
    cap=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    max_share=st.floats(min_value=0.01, max_value=1.0),
    min_allocation=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
)
def test_property_cap_and_share(funded: dict[str, float], cap: float, max_share: float,
                                min_allocation: float) -> None:
    out = allocate(funded, cap, max_share=max_share, min_allocation=min_allocation)
    tol = 1e-9 * max(cap, 1.0)
    assert math.fsum(out.values()) <= cap + tol
    for fp, amount in out.items():
        assert funded[fp] > 0
        assert 0 < amount <= max_share * cap + tol
        assert amount >= min_allocation


# ---------------------------------------------------------------------------------------- lifecycle


def test_transition_table() -> None:
    assert TRANSITIONS["candidate"] == {"paper"}
    assert TRANSITIONS["paper"] == {"live", "hibernating", "retired"}
    assert TRANSITIONS["live"] == {"hibernating", "paper", "retired"}
    assert TRANSITIONS["hibernating"] == {"paper", "retired"}
    assert TRANSITIONS["retired"] == set()


def test_legal_transition() -> None:
    t = transition("paper", "live", "abc", "funded", 3)
    assert t == Transition("abc", "paper", "live", "funded", 3)


@pytest.mark.parametrize(
    ("old", "new"),
    [("candidate", "live"), ("retired", "paper"), ("hibernating", "live"), ("live", "live"), ("live", "candidate")],
)
def test_illegal_transitions_refused(old: Lifecycle, new: Lifecycle) -> None:
    with pytest.raises(ValueError, match=f"illegal lifecycle move {old} -> {new}"):
        transition(old, new, "abc", "because", 1)


def test_transition_validation() -> None:
    zombie: Any = "zombie"
    with pytest.raises(ValueError, match="not a lifecycle state"):
        transition(zombie, "paper", "abc", "r", 1)
    with pytest.raises(ValueError):
        transition("paper", "live", "", "r", 1)
    with pytest.raises(ValueError):
        transition("paper", "live", "abc", "", 1)
    with pytest.raises(ValueError):
        transition("paper", "live", "abc", "r", -1)


# ---------------------------------------------------------------------------------------- review


def test_review_rules() -> None:
    current: dict[str, Lifecycle] = {
        "cand_funded": "candidate",
        "cand_idle": "candidate",
        "paper_funded": "paper",
        "paper_idle": "paper",
        "paper_unmeasured": "paper",
        "paper_losing": "paper",
        "live_ok": "live",
        "live_losing": "live",
        "live_dropped": "live",
        "live_nan": "live",
        "hib_refunded": "hibernating",
        "hib_idle": "hibernating",
        "retired": "retired",
    }
    live_fitness = {"paper_losing": -0.3, "live_ok": 0.4, "live_losing": -0.12, "live_dropped": 0.2,
                    "live_nan": math.nan, "paper_funded": 0.1}
    funded = {"cand_funded", "paper_funded", "paper_unmeasured", "paper_losing", "live_ok", "live_losing", "live_nan",
              "hib_refunded", "retired", "unknown"}
    moves = review(current, live_fitness, funded, generation=7)
    got = {t.fingerprint: (t.old, t.new) for t in moves}
    assert got == {
        "cand_funded": ("candidate", "paper"),
        "paper_funded": ("paper", "live"),
        "paper_losing": ("paper", "hibernating"),
        "live_losing": ("live", "hibernating"),
        "live_dropped": ("live", "paper"),
        "live_nan": ("live", "hibernating"),
        "hib_refunded": ("hibernating", "paper"),
    }
    assert [t.fingerprint for t in moves] == sorted(got)
    assert all(t.generation == 7 for t in moves)
    reasons = {t.fingerprint: t.reason for t in moves}
    assert reasons["live_losing"] == "defunded: live fitness -0.12 <= 0"
    assert reasons["paper_funded"].startswith("funded, paper fitness 0.1 > 0")
    assert reasons["live_dropped"].startswith("defunded:")


def test_review_zero_live_fitness_hibernates() -> None:
    (t,) = review({"x": "live"}, {"x": 0.0}, {"x"}, generation=1)
    assert (t.old, t.new, t.reason) == ("live", "hibernating", "defunded: live fitness 0 <= 0")


def test_review_empty_and_unknown_state() -> None:
    assert review({}, {}, set(), 0) == []
    zombie: Any = "zombie"
    with pytest.raises(ValueError, match="unknown state"):
        review({"x": zombie}, {}, set(), 0)
