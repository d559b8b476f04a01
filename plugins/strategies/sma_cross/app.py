"""sma_cross: always in the market, on the side of the fast average.

Long (+1 exposure) once the fast simple moving average is above the slow one,
short (-1) once it is below; a signal is emitted only when that side changes.
No signal until `slow` prices of a symbol have been seen. Proof document:
docs/strategies/sma_cross.md.
"""

from __future__ import annotations

from collections import deque
from itertools import accumulate, compress, repeat
from operator import gt, mul, ne, sub

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


class _Averages:
    """Cumulative price sums of one symbol: the last `slow` + 1 of them.

    Both averages are differences of cumulative sums. The batch path computes
    the same sums with itertools.accumulate (the same additions in the same
    order), which is what lets it run without a Python-level loop per bar.
    """

    __slots__ = ("count", "side", "sums")

    def __init__(self, slow: int) -> None:
        self.sums: deque[float] = deque([0.0], maxlen=slow + 1)
        self.count = 0
        self.side = 0


class SmaCross(Strategy):
    manifest = Manifest(
        name="sma_cross", version="0.1.0", kind="strategy", author="Allele",
        description="Long when the fast SMA is above the slow SMA, short when below; always in the market.",
        parameters=(
            Param.int("fast", 10, 2, 200, description="bars in the fast average"),
            Param.int("slow", 30, 3, 1000, description="bars in the slow average; must exceed fast"),
        ),
        symbols=("*",),
        proof="docs/strategies/sma_cross.md",
    )

    def reset(self) -> None:
        if self.params["fast"] >= self.params["slow"]:
            raise PluginError(f"fast ({self.params['fast']}) must be smaller than slow ({self.params['slow']})")
        self._state: dict[str, _Averages] = {}

    def _update(self, st: _Averages, price: float) -> int:
        """Add one price; return the new side (+1/-1) if it changed, else 0."""
        fast, slow = self.params["fast"], self.params["slow"]
        sums = st.sums
        total = sums[-1] + price
        sums.append(total)
        st.count += 1
        if st.count < slow:
            return 0
        diff = (total - sums[-1 - fast]) * slow - (total - sums[-1 - slow]) * fast  # sign of fast avg - slow avg
        side = 1 if diff > 0 else -1 if diff < 0 else st.side
        if side != st.side:
            st.side = side
            return side
        return 0

    def on_event(self, event: MarketEvent | Reading) -> list[Signal]:
        if not isinstance(event, MarketEvent):
            return []
        st = self._state.get(event.symbol)
        if st is None:
            st = self._state[event.symbol] = _Averages(self.params["slow"])
        side = self._update(st, event.price)
        return [exposure(event.symbol, side, "fast above slow" if side > 0 else "fast below slow")] if side else []

    def on_batch(self, batch: Batch) -> list[tuple[int, Signal]]:
        fast, slow = self.params["fast"], self.params["slow"]
        prices = batch.price
        out: list[tuple[int, Signal]] = []
        for symbol, rows in zip(batch.symbols, batch.rows_by_symbol(), strict=True):
            st = self._state.get(symbol)
            if st is None:
                st = self._state[symbol] = _Averages(slow)
            own = prices if len(batch.symbols) == 1 else [prices[r] for r in rows]
            history = list(st.sums)
            sums = history + list(accumulate(own, initial=history[-1]))[1:]
            start = max(0, slow - len(history))  # first new price with a full slow window
            first = len(history) + start
            diffs = list(map(sub,
                             map(mul, map(sub, sums[first:], sums[first - fast:len(sums) - fast]), repeat(slow)),
                             map(mul, map(sub, sums[first:], sums[first - slow:len(sums) - slow]), repeat(fast))))
            nonzero = list(compress(range(len(diffs)), diffs))  # diff == 0 keeps the side
            up = list(map(gt, compress(diffs, diffs), repeat(0.0)))
            side = st.side
            changes = list(compress(range(1, len(up)), map(ne, up[1:], up[:-1])))
            if up and (side == 0 or (side > 0) != up[0]):
                changes.insert(0, 0)
            long_sig = exposure(symbol, 1, "fast above slow")
            short_sig = exposure(symbol, -1, "fast below slow")
            for c in changes:
                out.append((rows[start + nonzero[c]], long_sig if up[c] else short_sig))
            if up:
                side = 1 if up[-1] else -1
            st.sums.extend(sums[len(history):])
            st.count += len(own)
            st.side = side
        if len(batch.symbols) > 1:
            out.sort(key=lambda item: item[0])
        return out


StrategyApi = export_strategy(SmaCross)
