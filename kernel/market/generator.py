"""SyntheticMarket: a seeded, regime-switching market data stream for backtests and the simulated venue.

    market = SyntheticMarket(seed=42, symbols=["BTC-USD", "ETH-USD"], start_ns=0, bar_ns=1_000_000_000)
    for event in market.events(bars=1000):   # MarketEvents, in time order
        ...

The model, per bar of `bar_ns` nanoseconds:

Continuous symbols. Each symbol has a hidden regime, a Markov chain over "trending-up",
"trending-down", "mean-reverting" and "high-volatility": it stays with probability
`regime_stay` and otherwise jumps to one of the other three, uniformly. The log price
moves by `drift + reversion × (anchor − log price) + vol × z`, z standard normal
(GBM with regime-dependent drift and volatility; `anchor` is the log price when the
current regime began, so a mean-reverting spell pulls back toward where it started).
Per bar the symbol prints one "trade" (at the fair price rounded to the tick, size
lognormal in lots) and then one "quote": bid and ask a regime-dependent half spread
below and above the fair price, on the tick grid, ask > bid > 0.

Binary-outcome markets. Each event ("ELECTION" with outcomes "RED", "BLUE", ...) lists
one symbol per outcome, "EVENT:OUTCOME". Fair probabilities are a softmax of logits
that random-walk (clamped so no outcome drifts to certainty). Normally each outcome's
ask is its probability plus an equal share of an overround drawn in
`overround` (rounded up to the tick), so the asks sum above 1 and buying every outcome
loses money. With a rate set by `arb_rate` a completeness-arbitrage window opens for
`arb_window_bars` bars: the asks are scaled so that they sum to `1 − completeness_fee − gap`,
gap in [0.002, 0.02], so buying one of each outcome and holding to settlement pays
more than it costs after fees. `arb_rate` is the long-run fraction of bars (per event)
that lie in such a window. Every bar each outcome quotes; sometimes it also trades at
its bid or ask. The one winning outcome of each event is drawn at construction from
the opening probabilities (`winner`, `settlement`); prices do not know it.

Determinism: there is no clock and no global random state. Each symbol and event draws
from its own `random.Random` seeded by (`seed`, its name), so the same seed gives the
same stream, different seeds differ, and adding a symbol does not change the others.
Within a bar, events are spread evenly over the bar and appear in the order: continuous
symbols as given, then binary events as given (each outcome in order).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from allele.kernel.domain import MarketEvent

Regime = Literal["trending-up", "trending-down", "mean-reverting", "high-volatility"]
REGIMES: tuple[Regime, ...] = ("trending-up", "trending-down", "mean-reverting", "high-volatility")


@dataclass(frozen=True, slots=True)
class RegimeParams:
    """Per-bar log-return drift and volatility, pull toward the regime's anchor, and half spread in basis points."""

    drift: float
    vol: float
    reversion: float = 0.0
    half_spread_bps: float = 2.0


DEFAULT_REGIMES: Mapping[Regime, RegimeParams] = {
    "trending-up": RegimeParams(drift=0.0004, vol=0.002),
    "trending-down": RegimeParams(drift=-0.0004, vol=0.002),
    "mean-reverting": RegimeParams(drift=0.0, vol=0.0015, reversion=0.05),
    "high-volatility": RegimeParams(drift=0.0, vol=0.006, half_spread_bps=8.0),
}

DEFAULT_BINARY_EVENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ELECTION", ("RED", "BLUE", "OTHER")),
    ("FINAL", ("HOME", "AWAY")),
)

BINARY_TICK = 0.001
_LOGIT_BOUND = 2.0  # keeps every outcome's probability above ~1% and below ~98%
_LOGIT_STEP = 0.05


@dataclass(slots=True)
class _Continuous:
    symbol: str
    rng: random.Random
    log_price: float
    regime: Regime
    anchor: float


@dataclass(slots=True)
class _Binary:
    name: str
    outcomes: tuple[str, ...]
    rng: random.Random
    logits: list[float]
    winner: str
    arb_bars_left: int = 0


class SyntheticMarket:
    """A seeded generator of trades and quotes for continuous symbols and binary-outcome markets."""

    def __init__(self, seed: int, symbols: Sequence[str] = ("BTC-USD", "ETH-USD"), start_ns: int = 0,
                 bar_ns: int = 1_000_000_000, *, venue: str = "synthetic",
                 start_prices: Mapping[str, float] | None = None, tick_size: float = 0.01, lot_size: float = 0.001,
                 regimes: Mapping[Regime, RegimeParams] = DEFAULT_REGIMES, regime_stay: float = 0.98,
                 binary_events: Sequence[tuple[str, Sequence[str]]] = DEFAULT_BINARY_EVENTS,
                 arb_rate: float = 0.01, arb_window_bars: int = 2, completeness_fee: float = 0.02,
                 overround: tuple[float, float] = (0.02, 0.06)) -> None:
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols listed twice: {list(symbols)}")
        if not 0.0 <= arb_rate < 1.0:
            raise ValueError(f"arb_rate is a fraction of bars in [0, 1), got {arb_rate}")
        if arb_window_bars < 1:
            raise ValueError(f"arb_window_bars must be at least 1, got {arb_window_bars}")
        if not 0.0 <= regime_stay <= 1.0:
            raise ValueError(f"regime_stay is a probability, got {regime_stay}")
        if not 0.0 <= completeness_fee < 0.9:
            raise ValueError(f"completeness_fee must be in [0, 0.9), got {completeness_fee}")
        if not 0.0 < overround[0] <= overround[1]:
            raise ValueError(f"overround must be a positive (low, high) range, got {overround}")
        if set(regimes) != set(REGIMES):
            raise ValueError(f"regimes must define exactly {list(REGIMES)}")
        self.seed = seed
        self.venue = venue
        self.start_ns = start_ns
        self.bar_ns = bar_ns
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.regimes = dict(regimes)
        self.regime_stay = regime_stay
        self.arb_rate = arb_rate
        self.arb_window_bars = arb_window_bars
        self.completeness_fee = completeness_fee
        self.overround = overround
        # Chance that a window opens on a bar outside one, chosen so that the long-run fraction of bars inside
        # windows is arb_rate: windows of D bars after geometric gaps give fraction qD / (1 - q + qD).
        d = arb_window_bars
        self._arb_start = arb_rate / (d * (1.0 - arb_rate) + arb_rate)
        self.bar = 0
        """Number of bars generated so far."""
        self._bar_ts = start_ns
        self._slot = 0

        prices = start_prices or {}
        self._continuous: list[_Continuous] = []
        for symbol in symbols:
            rng = random.Random(f"{seed}:{symbol}")
            price = prices.get(symbol) or 100.0 * math.exp(rng.uniform(-1.0, 2.0))
            if not (price > 0 and math.isfinite(price)):
                raise ValueError(f"start price of {symbol} must be positive, got {price}")
            regime = rng.choice(REGIMES)
            self._continuous.append(_Continuous(symbol, rng, math.log(price), regime, math.log(price)))

        self._binary: list[_Binary] = []
        seen: set[str] = set(symbols)
        for name, outcomes in binary_events:
            if len(outcomes) < 2 or len(set(outcomes)) != len(outcomes):
                raise ValueError(f"binary event {name} needs at least two distinct outcomes, got {list(outcomes)}")
            for outcome in outcomes:
                if f"{name}:{outcome}" in seen:
                    raise ValueError(f"symbol {name}:{outcome} listed twice")
                seen.add(f"{name}:{outcome}")
            rng = random.Random(f"{seed}:{name}")
            logits = [rng.uniform(-1.0, 1.0) for _ in outcomes]
            winner = rng.choices(list(outcomes), weights=_softmax(logits))[0]
            self._binary.append(_Binary(name, tuple(outcomes), rng, logits, winner))

        per_bar = 2 * len(self._continuous) + 2 * sum(len(b.outcomes) for b in self._binary)
        if bar_ns < per_bar:
            raise ValueError(f"bar_ns {bar_ns} is too short for up to {per_bar} distinct event times per bar")
        self._spacing = bar_ns // max(per_bar, 1)

    # --- queries -------------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """Continuous symbols, in emission order."""
        return tuple(c.symbol for c in self._continuous)

    @property
    def binary_events(self) -> tuple[str, ...]:
        return tuple(b.name for b in self._binary)

    @property
    def binary_symbols(self) -> tuple[str, ...]:
        return tuple(f"{b.name}:{o}" for b in self._binary for o in b.outcomes)

    def outcomes(self, event: str) -> tuple[str, ...]:
        return self._event(event).outcomes

    def regime(self, symbol: str) -> Regime:
        """The regime the symbol's last bar was generated in."""
        for c in self._continuous:
            if c.symbol == symbol:
                return c.regime
        raise KeyError(f"unknown symbol {symbol!r}")

    def winner(self, event: str) -> str:
        """The one outcome of `event` that settles at 1."""
        return self._event(event).winner

    def settlement(self, symbol: str) -> float:
        """Settlement value of a binary symbol "EVENT:OUTCOME": 1.0 for the winner, 0.0 otherwise."""
        name, _, outcome = symbol.partition(":")
        binary = self._event(name)
        if outcome not in binary.outcomes:
            raise KeyError(f"unknown outcome {symbol!r}")
        return 1.0 if outcome == binary.winner else 0.0

    def in_arb_window(self, event: str) -> bool:
        """Whether the last bar of `event` quoted a completeness-arbitrage window."""
        return self._event(event).arb_bars_left > 0

    def fair_probabilities(self, event: str) -> dict[str, float]:
        binary = self._event(event)
        return dict(zip(binary.outcomes, _softmax(binary.logits), strict=True))

    def _event(self, event: str) -> _Binary:
        for b in self._binary:
            if b.name == event:
                return b
        raise KeyError(f"unknown binary event {event!r}")

    # --- generation ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[MarketEvent]:
        """The endless stream, bar after bar."""
        while True:
            yield from self.step()

    def events(self, bars: int) -> Iterator[MarketEvent]:
        """The next `bars` bars of events."""
        for _ in range(bars):
            yield from self.step()

    def step(self) -> list[MarketEvent]:
        """Generate one bar: every continuous symbol, then every binary event, in time order."""
        self._bar_ts = self.start_ns + self.bar * self.bar_ns
        self._slot = 0
        out: list[MarketEvent] = []
        for c in self._continuous:
            self._step_continuous(c, out)
        for b in self._binary:
            self._step_binary(b, out)
        self.bar += 1
        return out

    def _next_ts(self) -> int:
        ts = self._bar_ts + self._slot * self._spacing
        self._slot += 1
        return ts

    def _step_continuous(self, c: _Continuous, out: list[MarketEvent]) -> None:
        rng = c.rng
        if self.bar and rng.random() > self.regime_stay:
            c.regime = rng.choice([r for r in REGIMES if r != c.regime])
            c.anchor = c.log_price
        p = self.regimes[c.regime]
        c.log_price += p.drift + p.reversion * (c.anchor - c.log_price) + p.vol * rng.gauss(0.0, 1.0)
        fair = math.exp(c.log_price)
        tick = self.tick_size
        price = _grid(max(round(fair / tick), 1), tick)
        size = _grid(max(round(rng.lognormvariate(0.0, 1.0) / self.lot_size), 1), self.lot_size)
        out.append(MarketEvent("trade", self.venue, c.symbol, self._next_ts(), price, size))
        half = max(fair * p.half_spread_bps / 1e4, tick)
        bid_ticks = max(math.floor((fair - half) / tick), 1)
        ask_ticks = max(math.ceil((fair + half) / tick), bid_ticks + 1)
        bid_size = _grid(max(round(rng.lognormvariate(1.0, 0.5) / self.lot_size), 1), self.lot_size)
        ask_size = _grid(max(round(rng.lognormvariate(1.0, 0.5) / self.lot_size), 1), self.lot_size)
        bid, ask = _grid(bid_ticks, tick), _grid(ask_ticks, tick)
        out.append(MarketEvent("quote", self.venue, c.symbol, self._next_ts(), (bid + ask) / 2, 0.0,
                               bid, ask, bid_size, ask_size))

    def _step_binary(self, b: _Binary, out: list[MarketEvent]) -> None:
        rng = b.rng
        if self.bar:
            b.logits = [min(max(x + rng.gauss(0.0, _LOGIT_STEP), -_LOGIT_BOUND), _LOGIT_BOUND) for x in b.logits]
        if b.arb_bars_left > 0:
            b.arb_bars_left -= 1
        if b.arb_bars_left == 0 and rng.random() < self._arb_start:
            b.arb_bars_left = self.arb_window_bars
        probs = _softmax(b.logits)
        n = len(probs)
        max_ticks = round(1 / BINARY_TICK) - 1
        if b.arb_bars_left > 0:
            total = 1.0 - self.completeness_fee - rng.uniform(0.002, 0.02)
            # Rounding down keeps the sum at or below the target.
            asks = [max(math.floor(p * total / BINARY_TICK), 2) for p in probs]
        else:
            over = rng.uniform(*self.overround)
            # Rounding up keeps the sum at or above 1 + overround, before the cap at one tick below 1.
            asks = [min(math.ceil((p + over / n) / BINARY_TICK), max_ticks) for p in probs]
        for outcome, p, ask_ticks in zip(b.outcomes, probs, asks, strict=True):
            half_spread = rng.uniform(0.002, 0.01)
            bid_ticks = min(max(math.floor((p - half_spread) / BINARY_TICK), 1), ask_ticks - 1)
            bid, ask = _grid(bid_ticks, BINARY_TICK), _grid(ask_ticks, BINARY_TICK)
            symbol = f"{b.name}:{outcome}"
            bid_size, ask_size = float(rng.randint(10, 500)), float(rng.randint(10, 500))
            out.append(MarketEvent("quote", self.venue, symbol, self._next_ts(), (bid + ask) / 2, 0.0,
                                   bid, ask, bid_size, ask_size))
            if rng.random() < 0.3:
                at = ask if rng.random() < 0.5 else bid
                out.append(MarketEvent("trade", self.venue, symbol, self._next_ts(), at, float(rng.randint(1, 100))))


def _softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]


def _grid(units: int, step: float) -> float:
    # Through Decimal, as the venue's Instrument does, so 3 ticks of 0.1 is 0.3 and a quote rests at the price it shows.
    return float(Decimal(units) * Decimal(repr(step)))


def arb_gap(asks: Mapping[str, float], completeness_fee: float) -> float:
    """How much buying one of every outcome at `asks` gains after fees (positive: an arbitrage)."""
    return 1.0 - completeness_fee - sum(asks.values())
