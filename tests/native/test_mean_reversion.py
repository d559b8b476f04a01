"""mean_reversion strategy, natively: thresholds, parameter checks, batch path == event path."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from allele.kernel.sdk.testing import load_native
from allele_guest import EXPOSURE, MarketEvent, PluginError, Reading, Strategy, decode_batch, encode_signals

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "strategies" / "mean_reversion"
app = load_native(PLUGIN)


def make(**params: Any) -> Any:
    s = app.MeanReversion()
    if params:
        s.configure(params)
    return s


def bar(symbol: str, price: float, ts: int = 0) -> MarketEvent:
    return MarketEvent("bar", "", symbol, ts, price)


def feed(s: Any, prices: list[float], symbol: str = "X") -> list[tuple[int, float]]:
    """(index of the price, target) of every signal, through the live path."""
    out = []
    for i, p in enumerate(prices):
        for sig in s.on_event(bar(symbol, p, i)):
            assert sig.symbol == symbol and sig.sizing == EXPOSURE and sig.limit_price is None and sig.group == ""
            out.append((i, sig.amount))
    return out


def reference(prices: list[float], window: int, entry_z: float, exit_z: float, allow_short: bool,
              band: str) -> list[tuple[int, float]]:
    """The rules of the proof document, written the slow and obvious way (statistics module)."""
    hist: list[float] = []
    pos = 0
    out = []
    for i, p in enumerate(prices):
        if band == "bollinger":
            hist.append(p)
            w = hist[-window:] if len(hist) >= window else None
        else:
            w = hist[-window:] if len(hist) >= window else None
            hist.append(p)
        if w is None:
            continue
        sd = statistics.pstdev(w)
        if sd == 0:
            continue
        z = (p - statistics.fmean(w)) / sd
        new = pos
        if (pos > 0 and z >= -exit_z) or (pos < 0 and z <= exit_z):
            new = 0
        if new == 0:
            if z <= -entry_z:
                new = 1
            elif allow_short and z >= entry_z:
                new = -1
        if new != pos:
            pos = new
            out.append((i, float(new)))
    return out


def ou_prices(n: int, seed: int, level: float = 100.0, vol: float = 1.0, theta: float = 0.1) -> list[float]:
    """A mean-reverting (Ornstein-Uhlenbeck) series: plenty of entries and exits."""
    rng = random.Random(seed)
    x, out = level, []
    for _ in range(n):
        x += theta * (level - x) + rng.gauss(0.0, vol)
        out.append(x)
    return out


def z_of(window: list[float], p: float) -> float:
    return (p - statistics.fmean(window)) / statistics.pstdev(window)


# ---------------------------------------------------------------- thresholds


def test_defaults_and_manifest() -> None:
    s = make()
    assert s.params == {"window": 20, "entry_z": 2.0, "exit_z": 0.5, "allow_short": False, "band": "zscore"}
    m = s.manifest
    assert m.name == "mean_reversion" and m.kind == "strategy"
    assert m.proof == "docs/strategies/mean_reversion.md"
    assert (PLUGIN.parents[2] / m.proof).is_file()
    assert {p.name for p in m.parameters} == {"window", "entry_z", "exit_z", "allow_short", "band"}


def test_entry_is_inclusive_at_exactly_entry_z() -> None:
    # Window of 6 alternating -1/+1: mean 0 and population std 1 exactly, so -2 has z = -2 exactly.
    base = [-1.0, 1.0] * 3
    assert feed(make(window=6, entry_z=2.0), [*base, -2.0]) == [(6, 1.0)]
    assert feed(make(window=6, entry_z=2.1), [*base, -2.0]) == []
    # Sample std (n-1) would make |z| < 2 here: this pins the population definition.
    assert abs(-2.0 / statistics.stdev(base)) < 2.0


def test_zscore_scores_the_price_against_the_previous_window() -> None:
    base = [10.0, 11.0, 10.0, 11.0, 10.0]
    s = make(window=5, entry_z=2.0, exit_z=0.5)
    assert feed(s, base) == []  # no z before window + 1 prices
    z = z_of(base, 9.0)
    assert z < -2.0
    out = s.on_event(bar("X", 9.0))
    assert [sig.amount for sig in out] == [1.0]
    assert out[0].note.startswith(f"z={z:.3f} (zscore)")


def test_bollinger_includes_the_current_price() -> None:
    # With the price inside its own window, |z| <= sqrt(n - 1); a lone outlier reaches that bound.
    n = 10
    prices = [5.0] * (n - 1) + [4.0]
    assert math.isclose(-z_of(prices, 4.0), math.sqrt(n - 1))
    assert feed(make(window=n, entry_z=2.9, band="bollinger"), prices) == [(n - 1, 1.0)]
    # The same prices under "zscore": the window before 4.0 is not full yet.
    assert feed(make(window=n, entry_z=2.9, band="zscore"), prices) == []
    # ... and one more price: 4.0 again scores against nine 5.0 and one 4.0.
    assert feed(make(window=n, entry_z=2.9, band="zscore"), [*prices, 4.0]) == [(n, 1.0)]


def test_long_exit_direction_at_exit_z() -> None:
    base = [-1.0, 1.0] * 3
    window_after = [1.0, -1.0, 1.0, -1.0, 1.0, -2.0]
    z = z_of(window_after, -0.9)  # about -0.6: inside -entry_z, near -exit_z
    assert -2.0 < z < 0
    # Long exits once z >= -exit_z.
    exits = make(window=6, entry_z=2.0, exit_z=-z + 1e-6)
    assert feed(exits, [*base, -2.0, -0.9]) == [(6, 1.0), (7, 0.0)]
    stays = make(window=6, entry_z=2.0, exit_z=-z - 1e-6)
    assert feed(stays, [*base, -2.0, -0.9]) == [(6, 1.0)]


def test_short_side_only_when_allowed_and_exit_at_exit_z() -> None:
    base = [-1.0, 1.0] * 3
    assert feed(make(window=6, entry_z=2.0), [*base, 2.0]) == []
    short = make(window=6, entry_z=2.0, allow_short=True)
    assert feed(short, [*base, 2.0]) == [(6, -1.0)]
    window_after = [1.0, -1.0, 1.0, -1.0, 1.0, 2.0]
    z = z_of(window_after, 0.9)
    exits = make(window=6, entry_z=2.0, exit_z=z + 1e-6, allow_short=True)
    assert feed(exits, [*base, 2.0, 0.9]) == [(6, -1.0), (7, 0.0)]
    stays = make(window=6, entry_z=2.0, exit_z=z - 1e-6, allow_short=True)
    assert feed(stays, [*base, 2.0, 0.9]) == [(6, -1.0)]


def test_long_flips_straight_to_short_in_one_signal() -> None:
    base = [-1.0, 1.0] * 3
    window_after = [1.0, -1.0, 1.0, -1.0, 1.0, -2.0]
    assert z_of(window_after, 5.0) > 2.0
    s = make(window=6, entry_z=2.0, exit_z=0.5, allow_short=True)
    assert feed(s, [*base, -2.0, 5.0]) == [(6, 1.0), (7, -1.0)]
    # Without shorting the same move only closes the long.
    s = make(window=6, entry_z=2.0, exit_z=0.5, allow_short=False)
    assert feed(s, [*base, -2.0, 5.0]) == [(6, 1.0), (7, 0.0)]


def test_constant_window_has_no_z() -> None:
    for band in ("zscore", "bollinger"):
        s = make(window=5, entry_z=1.0, exit_z=0.0, allow_short=True, band=band)
        assert feed(s, [7.0] * 50) == []
    # zscore: a jump after a constant window scores against std 0: no action, and the
    # window is then no longer constant, so the next price does get a z.
    s = make(window=5, entry_z=1.0, exit_z=0.0, band="zscore")
    assert feed(s, [7.0] * 5 + [1.0, 0.0]) == [(6, 1.0)]


def test_signal_only_when_target_changes_and_matches_reference() -> None:
    prices = ou_prices(3000, seed=7)
    for band in ("zscore", "bollinger"):
        for short in (False, True):
            params = {"window": 25, "entry_z": 1.8, "exit_z": 0.3, "allow_short": short, "band": band}
            got = feed(make(**params), prices)
            assert got == reference(prices, **params)
            assert len(got) > 50
            targets = [t for _, t in got]
            assert all(a != b for a, b in zip([0.0, *targets], targets, strict=False))  # every signal is a change
            assert set(targets) <= ({-1.0, 0.0, 1.0} if short else {0.0, 1.0})


@pytest.mark.parametrize("level,vol", [(50_000.0, 5.0), (1e6, 1e-3), (0.001, 1e-6)])
def test_precision_at_any_price_level(level: float, vol: float) -> None:
    # The rolling sums are shifted and recomputed each window; a naive sum of squares at
    # 1e6 with moves of 1e-3 would have lost every digit of the variance.
    prices = ou_prices(5000, seed=11, level=level, vol=vol)
    params = {"window": 40, "entry_z": 2.0, "exit_z": 0.0, "allow_short": True, "band": "zscore"}
    got = feed(make(**params), prices)
    assert got == reference(prices, **params)
    assert len(got) > 20


def test_symbols_are_independent_and_readings_ignored() -> None:
    a, b = ou_prices(800, seed=1), ou_prices(800, seed=2, level=30.0)
    s = make(window=15, allow_short=True)
    mixed: dict[str, list[tuple[int, float]]] = {"A": [], "B": []}
    for i, (pa, pb) in enumerate(zip(a, b, strict=True)):
        assert s.on_event(Reading("vol", "dvol", "A", i, -1e9)) == []
        for sym, p in (("A", pa), ("B", pb)):
            mixed[sym] += [(i, sig.amount) for sig in s.on_event(bar(sym, p, i))]
    assert mixed["A"] == feed(make(window=15, allow_short=True), a)
    assert mixed["B"] == feed(make(window=15, allow_short=True), b)


def test_non_finite_prices_are_skipped() -> None:
    prices = ou_prices(600, seed=3)
    dirty = []
    for i, p in enumerate(prices):
        dirty.append(p)
        if i % 97 == 0:
            dirty.append(math.nan if i % 2 else math.inf)
    clean_targets = [t for _, t in feed(make(window=10), prices)]
    assert clean_targets and [t for _, t in feed(make(window=10), dirty)] == clean_targets


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize("entry,exit_", [(1.0, 1.0), (1.0, 1.5), (2.0, 3.0)])
def test_exit_z_not_below_entry_z_is_refused_and_previous_params_kept(entry: float, exit_: float) -> None:
    s = make(window=6, entry_z=2.0, exit_z=0.5)
    before = dict(s.params)
    with pytest.raises(PluginError, match="exit_z"):
        s.configure({"entry_z": entry, "exit_z": exit_})
    assert s.params == before
    assert feed(s, [-1.0, 1.0] * 3 + [-2.0]) == [(6, 1.0)]  # still working, with the old values


def test_unreachable_bollinger_entry_is_refused() -> None:
    s = make(window=10, entry_z=2.0, band="bollinger")
    with pytest.raises(PluginError, match="unreachable"):
        s.configure({"entry_z": 3.1})  # |z| <= sqrt(10 - 1) = 3 when the price is in its own window
    assert s.params["entry_z"] == 2.0
    s.configure({"entry_z": 3.0})
    with pytest.raises(PluginError, match="unreachable"):
        s.configure({"window": 9})
    assert s.params["window"] == 10
    make(window=10, entry_z=4.0, band="zscore")  # no bound when the price is outside its window
    make(window=17, entry_z=4.0, band="bollinger")


@pytest.mark.parametrize("bad", [{"window": 4}, {"window": 501}, {"entry_z": 4.5}, {"exit_z": -1.5},
                                 {"band": "keltner"}, {"allow_short": 1}, {"depth": 3}])
def test_out_of_range_values_are_refused(bad: dict[str, Any]) -> None:
    s = make()
    with pytest.raises(PluginError):
        s.configure(bad)
    assert s.params == make().params


def test_configure_resets_state() -> None:
    s = make(window=6)
    feed(s, [-1.0, 1.0] * 3 + [-2.0])
    s.configure({"window": 6})
    assert feed(s, [-1.0, 1.0] * 3 + [-2.0]) == [(6, 1.0)]  # long again: it forgot the first one


# ---------------------------------------------------------------- batch == live


def batch_columns(rows: list[tuple[str, float]], symbols: list[str], ts0: int, *, spaced: bool,
                  kinds: bool) -> dict[str, Any]:
    cols: dict[str, Any] = {"symbols": symbols, "price": [p for _, p in rows]}
    index = {s: i for i, s in enumerate(symbols)}
    if len(symbols) > 1 or ts0 % 2:
        cols["sym"] = [index[s] for s, _ in rows]
    cols["ts"] = {"start": ts0, "step": 1_000_000_000} if spaced else \
        [ts0 + i * 1_000_000_000 for i in range(len(rows))]
    if kinds:
        cols["kind"] = [i % 3 for i in range(len(rows))]
    return cols


@pytest.mark.parametrize("band", ["zscore", "bollinger"])
@pytest.mark.parametrize("symbols", [["BTC-USDT"], ["BTC-USDT", "ETH-USDT", "SOL-USDT"]])
def test_batch_path_equals_event_path(band: str, symbols: list[str]) -> None:
    rng = random.Random(42)
    series = {s: iter(ou_prices(6000, seed=i, level=10.0 * (i + 1), vol=0.5 * (i + 1)))
              for i, s in enumerate(symbols)}
    rows = [(sym, next(series[sym])) for sym in (rng.choice(symbols) for _ in range(6000))]
    params = {"window": 30, "entry_z": 1.7, "exit_z": 0.2, "allow_short": True, "band": band}

    live = make(**params)
    expected = [(r, sig) for r, (sym, p) in enumerate(rows) for sig in live.on_event(bar(sym, p, r))]
    assert len(expected) > 100

    cuts = [0, 1, 29, 31, 1500, 1501, 4000, len(rows)]  # batches of 1, 28, 2, ... rows
    for override in (True, False):
        s = make(**params)
        got = []
        for k, (lo, hi) in enumerate(itertools.pairwise(cuts)):
            text = json.dumps(batch_columns(rows[lo:hi], symbols, lo, spaced=k % 2 == 0, kinds=k % 3 == 0))
            batch = decode_batch(text)
            emitted = s.on_batch(batch) if override else Strategy.on_batch(s, batch)
            encoded = json.loads(encode_signals(batch, emitted))
            assert encoded["row"] == [r for r, _ in emitted]
            got += [(lo + r, sig) for r, sig in emitted]
        assert got == expected  # same rows, same signals, same notes


def test_batch_override_continues_the_live_state() -> None:
    prices = ou_prices(400, seed=5)
    live = make(window=12, allow_short=True)
    expected = feed(live, prices)
    s = make(window=12, allow_short=True)
    first = feed(s, prices[:150])
    batch = decode_batch(json.dumps({"symbols": ["X"], "ts": {"start": 0, "step": 1}, "price": prices[150:]}))
    rest = [(150 + r, sig.amount) for r, sig in s.on_batch(batch)]
    assert first + rest == expected
