"""sma_cross: always in the market, on the side of the fast average.

Long (+1 exposure) once the fast simple moving average is above the slow one,
short (-1) once it is below; a signal is emitted only when that side changes.
No signal until `slow` prices of a symbol have been seen. Proof document:
docs/strategies/sma_cross.md.
"""

from __future__ import annotations

from collections import deque
from itertools import accumulate, islice, repeat
from operator import gt, lt, mul, sub

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

_NEVER = 1 << 62  # "no such row"


def _first_true(flags: list[bool], start: int) -> int:
    try:
        return flags.index(True, start)
    except ValueError:
        return _NEVER


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
        # fast avg vs slow avg, as fast_sum * (slow / fast) vs slow_sum: one multiplication per bar, which
        # matters in the batch path, where every float created costs ~0.25 µs inside wasm.
        scaled_fast = (total - sums[-1 - fast]) * (slow / fast)
        slow_sum = total - sums[-1 - slow]
        side = 1 if scaled_fast > slow_sum else -1 if scaled_fast < slow_sum else st.side
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
            sums = list(st.sums)
            kept = len(sums)
            sums.extend(islice(accumulate(own, initial=sums[-1]), 1, None))
            start = max(0, slow - kept)  # first new price with a full slow window
            first = kept + start
            newest = sums[first:]
            scaled_fast = list(map(mul, map(sub, newest, sums[first - fast:len(sums) - fast]), repeat(slow / fast)))
            slow_sums = list(map(sub, newest, sums[first - slow:len(sums) - slow]))
            above = list(map(gt, scaled_fast, slow_sums))
            below = list(map(lt, scaled_fast, slow_sums))  # neither: equal averages keep the side
            # Find each change of side with list.index: a C-level scan that creates no objects, so the
            # Python loop runs once per change (a few % of bars), not once per bar.
            long_sig = exposure(symbol, 1, "fast above slow")
            short_sig = exposure(symbol, -1, "fast below slow")
            side = st.side
            at = 0
            while True:
                nxt = _first_true(below, at) if side == 1 else _first_true(above, at) if side == -1 else \
                    min(_first_true(above, at), _first_true(below, at))
                if nxt == _NEVER:
                    break
                side = 1 if above[nxt] else -1
                out.append((rows[start + nxt], long_sig if side == 1 else short_sig))
                at = nxt + 1
            st.sums.extend(islice(sums, kept, None))
            st.count += len(own)
            st.side = side
        if len(batch.symbols) > 1:
            out.sort(key=lambda item: item[0])
        return out


StrategyApi = export_strategy(SmaCross)
