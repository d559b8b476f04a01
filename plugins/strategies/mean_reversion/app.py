"""mean_reversion: fade moves of more than `entry_z` standard deviations from a rolling mean.

Per symbol, once the window is full, z = (price - mean) / std over the last
`window` prices (population standard deviation; std 0 means no action):

    flat  and z <= -entry_z                -> long  (+1 exposure)
    flat  and z >= +entry_z and allow_short -> short (-1)
    long  and z >= -exit_z                 -> flat  (0)
    short and z <= +exit_z                 -> flat  (0)

An exit and an entry are tested on the same z, in that order, so a long whose
z jumps to >= +entry_z goes straight to short (one signal, -1). A signal is
emitted only when the target changes. Readings are ignored; every market event
kind contributes its `price` (trade print, quote mid, bar close).

`band` chooses which prices the statistics cover:
  "zscore"    the `window` prices *before* the current one: the price is scored
              against a distribution it did not help form, so |z| is unbounded.
  "bollinger" the `window` prices *including* the current one, as John
              Bollinger defines his bands (population std). |z| is then at most
              sqrt(window - 1) (Samuelson's inequality), so reset() refuses an
              entry_z above that: it could never trade.

Proof document: docs/strategies/mean_reversion.md.
"""

from __future__ import annotations

import math
from collections import deque

from allele_guest import (
    Batch,
    Manifest,
    MarketEvent,
    Param,
    PluginError,
    Reading,
    Signal,
    Strategy,
    export_strategy,
    exposure,
)

_NAMES = {1: "long", 0: "flat", -1: "short"}


class _Window:
    """Rolling statistics of one symbol.

    The sums are kept over prices minus a shift `k` (a recent window mean), so
    the variance is a difference of numbers of the variance's own scale, not of
    the price's square. Every `window` prices the sums are recomputed exactly
    (math.fsum) around a fresh shift, so rounding errors of the sliding updates
    never accumulate for more than one window.
    """

    __slots__ = ("k", "last", "pos", "q", "run", "s", "since", "win")

    def __init__(self, window: int) -> None:
        self.win: deque[float] = deque(maxlen=window)
        self.k = 0.0  # shift
        self.s = 0.0  # sum of (x - k) over the window
        self.q = 0.0  # sum of (x - k) ** 2 over the window
        self.since = 0  # prices added since the last exact recomputation
        self.run = 0  # how many of the latest prices are equal (a constant window has std 0)
        self.last = math.nan
        self.pos = 0  # current target: -1, 0, 1


class MeanReversion(Strategy):
    manifest = Manifest(
        name="mean_reversion", version="0.1.0", kind="strategy", author="Allele",
        description="Long when the price is entry_z standard deviations below its rolling mean (short when above, "
                    "if allowed); flat again once it is back within exit_z.",
        parameters=(
            Param.int("window", 20, 5, 500, description="prices in the rolling mean and standard deviation"),
            Param.float("entry_z", 2.0, 0.5, 4.0, 0.1, description="enter when |z| reaches this many std"),
            Param.float("exit_z", 0.5, -1.0, 3.0, 0.1,
                        description="leave when z is back within this (negative: past the mean); < entry_z"),
            Param.bool("allow_short", False, description="take the short side when z >= entry_z"),
            Param.enum("band", "zscore", ("zscore", "bollinger"),
                       description="zscore: stats of the window before the price; bollinger: window includes it"),
        ),
        symbols=("*",),
        proof="docs/strategies/mean_reversion.md",
    )

    def reset(self) -> None:
        p = self.params
        if p["exit_z"] >= p["entry_z"]:
            raise PluginError(f"exit_z ({p['exit_z']}) must be smaller than entry_z ({p['entry_z']})")
        if p["band"] == "bollinger":
            bound = math.sqrt(p["window"] - 1)
            if p["entry_z"] > bound:
                raise PluginError(f"entry_z ({p['entry_z']}) is unreachable with band 'bollinger' and window "
                                  f"{p['window']}: |z| cannot exceed sqrt(window - 1) = {bound:.3f}")
        self._state: dict[str, _Window] = {}

    def _advance(self, st: _Window, prices: list[float] | tuple[float, ...]) -> list[tuple[int, int, float]]:
        """Feed prices of one symbol; return (index, new target, z) for each change of target.

        The live path calls this with one price, the batch path with all of a
        symbol's prices: the same code, hence the same arithmetic, on both.
        """
        p = self.params
        n: int = p["window"]
        entry: float = p["entry_z"]
        exit_: float = p["exit_z"]
        short: bool = p["allow_short"]
        include = p["band"] == "bollinger"
        win, k, s, q, since, run, last, pos = st.win, st.k, st.s, st.q, st.since, st.run, st.last, st.pos
        fsum, sqrt, nan = math.fsum, math.sqrt, math.nan
        full = len(win) == n
        out: list[tuple[int, int, float]] = []
        for i, x in enumerate(prices):
            if x - x != 0.0:  # NaN or infinite: skip the price entirely
                continue
            x = float(x)
            z = nan
            if full:
                if not include and run < n:  # zscore: the window before x
                    m = s / n
                    var = (q - s * m) / n
                    if var > 0.0:
                        z = (x - k - m) / sqrt(var)
                d = x - k
                o = win[0] - k
                s += d - o
                q += d * d - o * o
            else:
                if not win:
                    k = x
                d = x - k
                s += d
                q += d * d
            win.append(x)
            if x == last:
                run += 1
            else:
                run = 1
                last = x
            since += 1
            if since == n:
                k = fsum(win) / n
                devs = [w - k for w in win]
                s = fsum(devs)
                q = fsum([v * v for v in devs])
                since = 0
                full = True
            if include and full and run < n:  # bollinger: the window ending with x
                m = s / n
                var = (q - s * m) / n
                if var > 0.0:
                    z = (x - k - m) / sqrt(var)
            if z != z:  # no z: window not full yet, or std 0
                continue
            new = pos
            if (pos > 0 and z >= -exit_) or (pos < 0 and z <= exit_):
                new = 0
            if new == 0:
                if z <= -entry:
                    new = 1
                elif short and z >= entry:
                    new = -1
            if new != pos:
                pos = new
                out.append((i, new, z))
        st.k, st.s, st.q, st.since, st.run, st.last, st.pos = k, s, q, since, run, last, pos
        return out

    def _signal(self, symbol: str, target: int, z: float) -> Signal:
        return exposure(symbol, target, f"z={z:.3f} ({self.params['band']}): {_NAMES[target]}")

    def _window(self, symbol: str) -> _Window:
        st = self._state.get(symbol)
        if st is None:
            st = self._state[symbol] = _Window(self.params["window"])
        return st

    def on_event(self, event: MarketEvent | Reading) -> list[Signal]:
        if not isinstance(event, MarketEvent):
            return []
        return [self._signal(event.symbol, t, z) for _, t, z in self._advance(self._window(event.symbol),
                                                                                (event.price,))]

    def on_batch(self, batch: Batch) -> list[tuple[int, Signal]]:
        prices = batch.price
        single = len(batch.symbols) == 1
        out: list[tuple[int, Signal]] = []
        for symbol, rows in zip(batch.symbols, batch.rows_by_symbol(), strict=True):
            if not rows:
                continue
            own = prices if single else [prices[r] for r in rows]
            for i, t, z in self._advance(self._window(symbol), own):
                out.append((rows[i], self._signal(symbol, t, z)))
        if not single:
            out.sort(key=lambda item: item[0])
        return out


StrategyApi = export_strategy(MeanReversion)
