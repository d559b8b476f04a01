"""The risk gate: each rule at its boundary, rule order, the kill-switch file, and a property
that no accepted opening order pushes total committed capital above the global cap."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from allele.kernel.config import ConfigError
from allele.kernel.risk import (
    KillSwitch,
    OrderIntent,
    RiskConfig,
    RiskDecision,
    RiskGate,
    RiskState,
    killswitch,
    load_risk_config,
)

NOW = 1_000 * 1_000_000_000
SEC = 1_000_000_000
GATE = RiskGate(RiskConfig())


def intent(**kw: Any) -> OrderIntent:
    base: dict[str, Any] = dict(
        organism="a", symbol="BTC", side="buy", quantity=1.0, limit_price=None, reference_price=10.0,
        kind="spot", reduces=False, ts_ns=NOW,
    )
    base.update(kw)
    return OrderIntent(**base)


def state(**kw: Any) -> RiskState:
    base: dict[str, Any] = dict(allocations={"a": 50.0, "b": 50.0}, equity_high_water=100.0, equity=100.0)
    base.update(kw)
    return RiskState(**base)


def decide(i: OrderIntent, s: RiskState, gate: RiskGate = GATE) -> RiskDecision:
    return gate.decide(i, s)


def refused(d: RiskDecision, rule: str, reason: str) -> None:
    assert not d.accepted, d
    assert d.rule == rule, d
    assert d.reason == reason
    assert d.quantity == 0.0


def test_plain_order_is_accepted_with_its_quantity() -> None:
    assert decide(intent(), state()) == RiskDecision(True, "accepted", "accepted", 1.0)


# --- 1 kill switch -------------------------------------------------------------------------

def test_kill_switch_refuses_everything_even_reductions() -> None:
    s = state(kill_switch=True, kill_switch_reason="manual", positions={"a": {"BTC": 2.0}})
    refused(decide(intent(), s), "kill_switch", "kill switch: engaged (manual); no order may be sent")
    refused(decide(intent(side="sell", reduces=True), s), "kill_switch",
            "kill switch: engaged (manual); no order may be sent")
    assert decide(intent(), state(kill_switch=False)).accepted


# --- 2 reduce only -------------------------------------------------------------------------

def test_a_reduction_must_be_backed_by_the_position() -> None:
    s = state(positions={"a": {"BTC": 2.0}})
    assert decide(intent(side="sell", quantity=2.0, reduces=True), s).accepted
    refused(decide(intent(side="sell", quantity=2.5, reduces=True), s), "reduce_only",
            "reduce only: sell 2.5 BTC does not reduce a's position of 2")
    refused(decide(intent(side="buy", reduces=True), s), "reduce_only",
            "reduce only: buy 1 BTC does not reduce a's position of 2")
    refused(decide(intent(side="sell", reduces=True), state()), "reduce_only",
            "reduce only: sell 1 BTC does not reduce a's position of 0")
    # another organism's position does not back this one's reduction
    refused(decide(intent(organism="b", side="sell", reduces=True), s), "reduce_only",
            "reduce only: sell 1 BTC does not reduce b's position of 0")
    assert decide(intent(side="buy", reduces=True), state(positions={"a": {"BTC": -1.0}})).accepted


# --- 3 halt --------------------------------------------------------------------------------

def test_halt_refuses_openings_at_the_halt_drawdown_and_allows_reductions() -> None:
    halted = state(equity=70.0, positions={"a": {"BTC": 3.0}})
    refused(decide(intent(), halted), "drawdown_halt",
            "drawdown halt: drawdown 30.00% >= 30.00%; only reducing orders pass")
    d = decide(intent(side="sell", quantity=3.0, reduces=True), state(equity=10.0, positions={"a": {"BTC": 3.0}}))
    assert d == RiskDecision(True, "accepted", "accepted: reduces a position", 3.0)
    # just under the halt: accepted, scaled by the deepest stage
    d = decide(intent(quantity=4.0), state(equity=70.01))
    assert d.accepted and d.rule == "drawdown_derisk" and d.quantity == 1.0


# --- 4 asymmetric-risk ban -----------------------------------------------------------------

def test_binary_buy_allowed_at_the_max_price_refused_above() -> None:
    assert decide(intent(kind="binary", limit_price=0.90, reference_price=0.90), state()).accepted
    refused(decide(intent(kind="binary", limit_price=0.91, reference_price=0.91), state()), "asymmetric_risk_ban",
            "asymmetric risk ban: buying binary BTC at 0.91 > 0.9 (risks 0.91 to win 0.09)")
    # a market order is judged at its reference price
    refused(decide(intent(kind="binary", reference_price=0.95), state()), "asymmetric_risk_ban",
            "asymmetric risk ban: buying binary BTC at 0.95 > 0.9 (risks 0.95 to win 0.05)")


def test_selling_a_binary_you_hold_is_allowed_at_any_price() -> None:
    s = state(positions={"a": {"BTC": 5.0}})
    assert decide(intent(kind="binary", side="sell", quantity=5.0, reference_price=0.97, reduces=True), s).accepted
    assert decide(intent(kind="binary", side="sell", quantity=5.0, reference_price=0.02, reduces=True), s).accepted


def test_opening_binary_short_is_the_mirrored_bet() -> None:
    assert decide(intent(kind="binary", side="sell", reference_price=0.10), state()).accepted
    refused(decide(intent(kind="binary", side="sell", reference_price=0.09), state()), "asymmetric_risk_ban",
            "asymmetric risk ban: selling binary BTC at 0.09 < 0.1 (risks 0.91 to win 0.09)")


def test_naked_option_sale_refused_covered_sale_and_buys_allowed() -> None:
    refused(decide(intent(kind="option", side="sell"), state()), "asymmetric_risk_ban",
            "asymmetric risk ban: selling option BTC naked (unbounded loss for a premium)")
    assert decide(intent(kind="option", side="sell", reduces=True), state(positions={"a": {"BTC": 1.0}})).accepted
    assert decide(intent(kind="option", side="buy"), state()).accepted


def test_ban_can_be_switched_off() -> None:
    gate = RiskGate(RiskConfig(asymmetric_risk_ban=False))
    assert gate.decide(intent(kind="binary", reference_price=0.99), state()).accepted
    assert gate.decide(intent(kind="option", side="sell"), state()).accepted


# --- 5, 6 fat finger -----------------------------------------------------------------------

def test_max_order_quantity() -> None:
    assert decide(intent(quantity=10_000.0, reference_price=0.001), state()).accepted
    refused(decide(intent(quantity=10_000.5, reference_price=0.001), state()), "max_order_quantity",
            "max order quantity: 10000.5 > 10000")


def test_max_order_notional_applies_to_reductions_too() -> None:
    assert decide(intent(quantity=5.0), state()).accepted
    refused(decide(intent(quantity=5.1), state()), "max_order_notional", "max order notional: 51.00 > 50.00 USD")
    refused(decide(intent(side="sell", quantity=6.0, reduces=True), state(positions={"a": {"BTC": 6.0}})),
            "max_order_notional", "max order notional: 60.00 > 50.00 USD")


# --- 7 price band --------------------------------------------------------------------------

def test_price_band_vs_last_trade() -> None:
    s = state(last_trade={"BTC": 100.0})
    assert decide(intent(quantity=0.1, limit_price=110.0, reference_price=100.0), s).accepted
    assert decide(intent(quantity=0.1, limit_price=90.0, reference_price=100.0), s).accepted
    refused(decide(intent(quantity=0.1, limit_price=110.5, reference_price=100.0), s), "price_band",
            "price band: limit 110.5 is 10.50% from last trade 100 > 10.00%")
    # the last trade wins over the intent's own reference price
    refused(decide(intent(quantity=0.1, limit_price=120.0, reference_price=120.0), s), "price_band",
            "price band: limit 120 is 20.00% from last trade 100 > 10.00%")
    # without a last trade, the reference price is the anchor; market orders have no band
    assert decide(intent(limit_price=11.0, reference_price=10.0), state()).accepted
    refused(decide(intent(limit_price=11.5, reference_price=10.0), state()), "price_band",
            "price band: limit 11.5 is 15.00% from last trade 10 > 10.00%")
    assert decide(intent(quantity=0.1, reference_price=150.0), s).accepted


# --- 8 rate limit --------------------------------------------------------------------------

def test_rate_limit_counts_the_organisms_orders_in_the_last_60s_of_event_time() -> None:
    gate = RiskGate(RiskConfig(orders_per_minute=3))
    two_inside = (NOW - 60 * SEC, NOW - 60 * SEC + 1, NOW - 1)  # the first is exactly 60 s old: out
    assert gate.decide(intent(), state(recent_orders={"a": two_inside})).accepted
    three_inside = (*two_inside, NOW)
    refused(gate.decide(intent(), state(recent_orders={"a": three_inside})), "rate_limit",
            "rate limit: a sent 3 orders in the last 60 s >= 3")
    # per organism: a's orders do not limit b
    assert gate.decide(intent(organism="b"), state(recent_orders={"a": three_inside})).accepted
    # the window slides with event time
    assert gate.decide(intent(ts_ns=NOW + 60 * SEC + 1), state(recent_orders={"a": three_inside})).accepted


# --- 9 allocation --------------------------------------------------------------------------

def test_organism_allocation_boundary() -> None:
    assert decide(intent(quantity=1.0), state(committed={"a": 40.0}, committed_total=40.0)).accepted
    refused(decide(intent(quantity=1.01), state(committed={"a": 40.0}, committed_total=40.0)),
            "organism_allocation", "organism allocation: a committed 40.00 + 10.10 > 50.00 USD")
    refused(decide(intent(organism="nobody"), state()), "organism_allocation",
            "organism allocation: nobody committed 0.00 + 10.00 > 0.00 USD")


# --- 10 global cap -------------------------------------------------------------------------

def test_global_cap_aggregates_across_organisms_and_open_orders() -> None:
    s = state(allocations={"a": 60.0, "b": 60.0}, committed={"a": 50.0, "b": 45.0}, committed_total=95.0)
    # b: 45 + 10 <= 60 of its own allocation, but 95 + 10 > 100 overall
    refused(decide(intent(organism="b"), s), "global_capital_cap",
            "global capital cap: committed 95.00 + 10.00 > 100.00 USD")
    assert decide(intent(organism="b", quantity=0.5), s).accepted  # 95 + 5 == 100: at the cap


def test_global_cap_over_a_sequence_of_orders_from_two_organisms() -> None:
    """Each accepted order is committed into the next snapshot, as the engine does."""
    allocations = {"a": 70.0, "b": 70.0}
    committed: dict[str, float] = {"a": 0.0, "b": 0.0}
    decisions = []
    for org in ["a", "b", "a", "b", "a", "b"]:
        s = state(allocations=allocations, committed=dict(committed), committed_total=sum(committed.values()))
        d = decide(intent(organism=org, quantity=2.0), s)  # 20 USD each
        decisions.append(d.accepted)
        if d.accepted:
            committed[org] += 20.0
    assert decisions == [True, True, True, True, True, False]
    assert sum(committed.values()) == 100.0


def test_reducing_orders_pass_every_capital_rule() -> None:
    over = state(allocations={"a": 10.0}, committed={"a": 500.0}, committed_total=500.0,
                 positions={"a": {"BTC": 4.0}}, equity=75.0)  # also inside a derisk stage
    d = decide(intent(side="sell", quantity=4.0, reduces=True), over)
    assert d == RiskDecision(True, "accepted", "accepted: reduces a position", 4.0)
    refused(decide(intent(), over), "organism_allocation", "organism allocation: a committed 500.00 + 2.50 > 10.00 USD")


# --- 11 staged de-risking ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("equity", "quantity"),
    [(100.0, 4.0), (90.01, 4.0), (90.0, 2.0), (80.01, 2.0), (80.0, 1.0), (120.0, 4.0)],
)
def test_staged_derisking_scales_opening_quantity(equity: float, quantity: float) -> None:
    d = decide(intent(quantity=4.0), state(equity=equity))
    assert d.accepted and d.quantity == quantity
    assert d.rule == ("accepted" if quantity == 4.0 else "drawdown_derisk")


def test_derisk_reason_and_capital_judged_on_the_scaled_quantity() -> None:
    s = state(equity=90.0, committed={"a": 45.0}, committed_total=45.0)
    d = decide(intent(quantity=1.0), s)  # 10 USD unscaled would exceed 50; 5 USD scaled fits
    assert d == RiskDecision(True, "drawdown_derisk",
                             "drawdown derisk: drawdown 10.00%, quantity 1 scaled by 0.5 to 0.5", 0.5)


# --- rule order, validation, fail closed ---------------------------------------------------

def test_first_failing_rule_is_reported() -> None:
    s = state(kill_switch=True, equity=10.0, committed_total=1e9)
    assert decide(intent(kind="binary", reference_price=0.99, quantity=1e9), s).rule == "kill_switch"
    s = state(equity=10.0, committed_total=1e9)
    assert decide(intent(kind="binary", reference_price=0.99, quantity=1e9), s).rule == "drawdown_halt"
    s = state(committed_total=1e9)
    assert decide(intent(kind="binary", reference_price=0.99, quantity=1e9), s).rule == "asymmetric_risk_ban"
    assert decide(intent(quantity=1e9), s).rule == "max_order_quantity"
    assert decide(intent(quantity=100.0), s).rule == "max_order_notional"
    assert decide(intent(limit_price=20.0), s).rule == "price_band"
    assert decide(intent(), s).rule == "global_capital_cap"


def test_nan_in_the_state_fails_closed() -> None:
    assert decide(intent(), state(committed_total=math.nan)).rule == "global_capital_cap"
    assert decide(intent(), state(committed={"a": math.nan})).rule == "organism_allocation"
    assert decide(intent(), state(equity=math.nan)).rule == "drawdown_halt"


@pytest.mark.parametrize(
    "bad", [{"quantity": 0.0}, {"quantity": -1.0}, {"quantity": math.nan}, {"reference_price": math.inf},
            {"limit_price": 0.0}],
)
def test_invalid_intents_are_refused_at_construction(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        intent(**bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drawdown_stages": ((0.2, 0.5), (0.1, 0.25))}, "above the previous stage"),
        ({"drawdown_stages": ((0.1, 0.5), (0.2, 0.75))}, "stages only shrink"),
        ({"halt_drawdown": 0.15}, "must be above the last stage's drawdown 0.2"),
        ({"binary_max_price": 1.0}, "less than 1"),
        ({"global_cap": 5.0}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RiskConfig(**kwargs)


def test_config_defaults_are_documented() -> None:
    cfg = RiskConfig()
    assert (cfg.global_capital_cap, cfg.binary_max_price, cfg.halt_drawdown) == (100.0, 0.90, 0.30)
    assert cfg.drawdown_stages == ((0.10, 0.5), (0.20, 0.25))
    assert all(f.description for f in RiskConfig.model_fields.values())


def test_risk_table_of_config_toml(tmp_path: Path) -> None:
    assert load_risk_config(tmp_path) == RiskConfig()
    (tmp_path / "config.toml").write_text(
        "[plugins.limits.strategy]\ncall_fuel = 5\n\n[risk]\nglobal_capital_cap = 250.0\n"
        "drawdown_stages = [[0.05, 0.5], [0.15, 0.2]]\nhalt_drawdown = 0.25\n",
        encoding="utf-8",
    )
    cfg = load_risk_config(tmp_path)
    assert cfg.global_capital_cap == 250.0 and cfg.drawdown_stages == ((0.05, 0.5), (0.15, 0.2))
    (tmp_path / "config.toml").write_text("[risk]\nhalt_drawdown = 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.toml: \[risk\]: .*halt_drawdown 0.1 must be above"):
        load_risk_config(tmp_path)


# --- kill switch file ----------------------------------------------------------------------

def test_kill_switch_file_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert not killswitch.engaged(home) and killswitch.reason(home) is None
    killswitch.engage(home, "operator: venue outage")
    assert killswitch.engaged(home)
    assert (home / "KILL_SWITCH").read_text(encoding="utf-8") == "operator: venue outage"
    assert killswitch.reason(home) == "operator: venue outage"
    killswitch.engage(home, "again")
    assert killswitch.reason(home) == "again"
    assert [p.name for p in home.iterdir()] == ["KILL_SWITCH"]  # no temporary file left behind
    killswitch.clear(home)
    assert not killswitch.engaged(home)
    killswitch.clear(home)  # clearing twice is fine


def test_kill_switch_by_touch_and_through_the_class(tmp_path: Path) -> None:
    switch = KillSwitch(tmp_path)
    (tmp_path / "KILL_SWITCH").touch()
    assert switch.engaged and switch.reason == ""
    switch.clear()
    assert not switch.engaged
    switch.engage("cli")
    assert switch.reason == "cli"
    s = state(kill_switch=switch.engaged, kill_switch_reason=switch.reason or "")
    refused(decide(intent(), s), "kill_switch", "kill switch: engaged (cli); no order may be sent")


# --- property ------------------------------------------------------------------------------

ORGS = ["a", "b", "c"]
money = st.floats(0.0, 150.0, allow_nan=False)


@st.composite
def intents(draw: st.DrawFn) -> OrderIntent:
    ref = draw(st.floats(0.01, 20.0))
    limit = draw(st.none() | st.floats(0.85, 1.15).map(lambda f: ref * f))  # mostly inside the band
    return OrderIntent(
        organism=draw(st.sampled_from(ORGS)), symbol=draw(st.sampled_from(["X", "Y"])),
        side=draw(st.sampled_from(["buy", "sell"])), quantity=draw(st.floats(0.001, 5.0)),
        limit_price=limit, reference_price=ref, kind=draw(st.sampled_from(["spot", "perp", "binary", "option"])),
        reduces=draw(st.booleans()), ts_ns=draw(st.integers(0, 2 * 10**11)),
    )


@st.composite
def states(draw: st.DrawFn) -> RiskState:
    committed = {o: draw(st.floats(0.0, 60.0)) for o in ORGS}
    hwm = draw(st.floats(0.0, 200.0))
    return RiskState(
        committed=committed,
        committed_total=sum(committed.values()) + draw(st.floats(0.0, 60.0)),  # open orders / other holders on top
        allocations={o: draw(money) for o in ORGS},
        positions={o: {s: draw(st.floats(-10.0, 10.0)) for s in ["X", "Y"]} for o in ORGS},
        last_trade=draw(st.dictionaries(st.sampled_from(["X", "Y"]), st.floats(0.01, 20.0))),
        equity_high_water=hwm, equity=hwm * draw(st.floats(0.6, 1.2)),  # drawdowns from 0 to 40%
        recent_orders={o: tuple(draw(st.lists(st.integers(0, 2 * 10**11), max_size=35))) for o in ORGS},
        kill_switch=draw(st.sampled_from([False] * 9 + [True])),  # rarely, so the other rules get exercised
    )


@settings(max_examples=500)
@given(i=intents(), s=states(), cap=st.floats(1.0, 400.0), per_minute=st.integers(1, 30))
def test_no_accepted_opening_breaches_the_cap_and_decisions_are_deterministic(
    i: OrderIntent, s: RiskState, cap: float, per_minute: int
) -> None:
    def config() -> RiskConfig:
        return RiskConfig(global_capital_cap=cap, max_order_notional=1e6, orders_per_minute=per_minute)

    gate = RiskGate(config())
    d = gate.decide(i, s)
    assert d == gate.decide(i, s) == RiskGate(config()).decide(i, s)
    assert 0.0 <= d.quantity <= i.quantity
    if not d.accepted:
        assert d.quantity == 0.0 and d.reason
    elif i.reduces:
        assert d.quantity == i.quantity and abs(s.position(i.organism, i.symbol)) >= i.quantity
    else:
        assert s.committed_total + d.quantity * i.price <= cap
        assert s.committed[i.organism] + d.quantity * i.price <= s.allocations[i.organism]
        assert not s.kill_switch and s.drawdown < 0.30
