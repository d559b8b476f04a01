"""A MAP-Elites archive: the best organism of every behavioural niche survives, however weak the niche.

Ranking by fitness alone lets one style of trading crowd out every other; MAP-Elites instead keeps one
elite per *niche*, a cell of a grid over behaviour descriptors, so a mediocre slow trend follower is not
killed for being worse than an excellent fast mean-reverter: they do not compete.

Descriptors (:class:`Behaviour`): turnover per bar, mean holding period in bars, beta to the market,
exposure (fraction of bars in the market, in [0, 1]) and the venue. Each numeric descriptor is binned by
ascending edges: with edges ``(e0, e1, ..., ek)`` bin 0 is ``x < e0``, bin i is ``e(i-1) <= x < e(i)``,
bin k+1 is ``x >= ek`` (lower edges inclusive). The niche is the tuple of bin indices plus the venue.

The archive is deterministic: the incumbent of a niche is replaced only by a strictly higher value, or an
equal value with a lexicographically lower fingerprint; non-finite values never enter. Insertion order
does not change the final archive.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DEFAULT_BINS", "Archive", "Behaviour", "Bins", "Elite", "Niche"]

Niche = tuple[int, int, int, int, str]
"""(turnover bin, holding_bars bin, beta bin, exposure bin, venue)."""

_DESCRIPTORS = ("turnover", "holding_bars", "beta", "exposure")


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Behaviour:
    """How an organism trades, as measured on its evaluation.

    ``turnover``: traded notional / equity per bar (>= 0); ``holding_bars``: mean bars a position is held
    (>= 0); ``beta``: beta of its returns to the market; ``exposure``: fraction of bars with a position, in
    [0, 1]; ``venue``: where it trades (non-empty). Raises ValueError otherwise.
    """

    turnover: float
    holding_bars: float
    beta: float
    exposure: float
    venue: str

    def __post_init__(self) -> None:
        if _finite(self.turnover, "turnover") < 0:
            raise ValueError(f"turnover must be >= 0, got {self.turnover!r}")
        if _finite(self.holding_bars, "holding_bars") < 0:
            raise ValueError(f"holding_bars must be >= 0, got {self.holding_bars!r}")
        _finite(self.beta, "beta")
        if not 0.0 <= _finite(self.exposure, "exposure") <= 1.0:
            raise ValueError(f"exposure must be in [0, 1], got {self.exposure!r}")
        if not isinstance(self.venue, str) or not self.venue:
            raise ValueError(f"venue must be a non-empty string, got {self.venue!r}")


def _edges(values: tuple[float, ...], name: str) -> tuple[float, ...]:
    edges = tuple(_finite(v, f"{name} edge") for v in values)
    if not edges or any(a >= b for a, b in itertools.pairwise(edges)):
        raise ValueError(f"{name} edges must be non-empty and strictly increasing, got {values!r}")
    return edges


@dataclass(frozen=True)
class Bins:
    """Ascending bin edges per numeric descriptor (k edges make k + 1 bins, lower edges inclusive).

    Defaults: turnover per bar ``(0.001, 0.01, 0.05, 0.2)`` (from buy-and-hold to churning), holding bars
    ``(2, 10, 50, 250)`` (scalping to position trading), beta ``(-0.5, 0.0, 0.5)`` (short-biased to
    market-following), exposure ``(0.25, 0.5, 0.75)``.
    """

    turnover: tuple[float, ...] = (0.001, 0.01, 0.05, 0.2)
    holding_bars: tuple[float, ...] = (2.0, 10.0, 50.0, 250.0)
    beta: tuple[float, ...] = (-0.5, 0.0, 0.5)
    exposure: tuple[float, ...] = (0.25, 0.5, 0.75)

    def __post_init__(self) -> None:
        for name in _DESCRIPTORS:
            object.__setattr__(self, name, _edges(tuple(getattr(self, name)), name))

    def label(self, descriptor: str, index: int) -> str:
        """Human-readable range of bin ``index`` of ``descriptor``: ``"<0.001"``, ``"[0.001, 0.01)"``, ``">=0.2"``."""
        edges: tuple[float, ...] = getattr(self, descriptor)
        if index <= 0:
            return f"<{edges[0]:g}"
        if index >= len(edges):
            return f">={edges[-1]:g}"
        return f"[{edges[index - 1]:g}, {edges[index]:g})"


DEFAULT_BINS = Bins()


@dataclass(frozen=True)
class Elite:
    """The best organism found so far in one niche."""

    niche: Niche
    fingerprint: str
    behaviour: Behaviour
    value: float


@dataclass
class Archive:
    """MAP-Elites archive: one :class:`Elite` per niche. See the module docstring for binning and ties."""

    bins: Bins = field(default_factory=Bins)
    _cells: dict[Niche, Elite] = field(default_factory=dict, init=False, repr=False)

    def niche(self, behaviour: Behaviour) -> Niche:
        """The niche of ``behaviour``: bin index of each numeric descriptor, then the venue."""
        b = self.bins
        return (
            bisect.bisect_right(b.turnover, behaviour.turnover),
            bisect.bisect_right(b.holding_bars, behaviour.holding_bars),
            bisect.bisect_right(b.beta, behaviour.beta),
            bisect.bisect_right(b.exposure, behaviour.exposure),
            behaviour.venue,
        )

    def offer(self, fingerprint: str, behaviour: Behaviour, value: float) -> bool:
        """Offer an organism to its niche; True if it became (or replaced) the niche's elite.

        Enters an empty niche; replaces the incumbent if ``value`` is strictly higher, or equal with a lower
        fingerprint. Non-finite values never enter (False). Re-offering the incumbent itself with a different
        value updates it only if the value rose (the archive keeps the best evidence, never forgets it). The
        same fingerprint may hold several niches if it was offered with different behaviours.
        """
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError(f"fingerprint must be a non-empty string, got {fingerprint!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        key = self.niche(behaviour)
        incumbent = self._cells.get(key)
        if incumbent is not None:
            better = value > incumbent.value or (value == incumbent.value and fingerprint < incumbent.fingerprint)
            if not better:
                return False
        self._cells[key] = Elite(key, fingerprint, behaviour, float(value))
        return True

    def elites(self) -> list[Elite]:
        """Every elite, sorted by niche."""
        return [self._cells[k] for k in sorted(self._cells)]

    def __len__(self) -> int:
        return len(self._cells)

    def grid(self) -> dict[str, Any]:
        """JSON-able view for the dashboard: the bin edges and one cell per occupied niche, sorted by niche.

        ``{"descriptors": [...], "bins": {descriptor: [edges]}, "cells": [{"niche": [i, j, k, l, venue],
        "labels": {descriptor: "[a, b)", "venue": venue}, "fingerprint": ..., "value": ...}]}``.
        """
        cells = []
        for elite in self.elites():
            indices = elite.niche[:4]
            labels = {name: self.bins.label(name, index) for name, index in zip(_DESCRIPTORS, indices, strict=True)}
            labels["venue"] = elite.niche[4]
            cells.append(
                {"niche": list(elite.niche), "labels": labels, "fingerprint": elite.fingerprint, "value": elite.value}
            )
        return {
            "descriptors": [*_DESCRIPTORS, "venue"],
            "bins": {name: list(getattr(self.bins, name)) for name in _DESCRIPTORS},
            "cells": cells,
        }

    def to_json(self) -> str:
        """Persist the bins and every elite (with its behaviour) as canonical JSON (sorted keys)."""
        body = {
            "bins": {name: list(getattr(self.bins, name)) for name in _DESCRIPTORS},
            "elites": [
                {"fingerprint": e.fingerprint, "behaviour": asdict(e.behaviour), "value": e.value}
                for e in self.elites()
            ],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Archive:
        """Rebuild an archive from :meth:`to_json` output; niches are recomputed from the stored behaviours.

        Raises ValueError for malformed input or two stored elites that claim the same niche.
        """
        try:
            body = json.loads(text)
            archive = cls(Bins(**{name: tuple(body["bins"][name]) for name in _DESCRIPTORS}))
            for item in body["elites"]:
                behaviour = Behaviour(**item["behaviour"])
                key = archive.niche(behaviour)
                if key in archive._cells:
                    raise ValueError(f"two stored elites claim niche {key}")
                if not archive.offer(item["fingerprint"], behaviour, item["value"]):
                    raise ValueError(f"stored elite {item['fingerprint']!r} has a non-finite value")
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an archive: {exc}") from exc
        return archive
