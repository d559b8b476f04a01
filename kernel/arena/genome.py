"""Variation: random genomes, mutation and crossover, inside the manifest's parameter ranges.

Type-aware: an int gene stays an int (on its step grid), a float stays a float in [min, max] (on its
step grid when it has one), a bool flips, an enum takes another of its choices. Every draw comes from
the `random.Random` passed in, so the same seed gives the same genomes, bit for bit, on any machine.
A genome may still be refused by the strategy itself (sma_cross needs fast < slow): the arena records
such an organism as stillborn and breeds another.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from allele.kernel.plugin.manifest import Manifest, ParamSpec, ParamValue


def _snap(spec: ParamSpec, value: float) -> ParamValue:
    assert spec.min is not None and spec.max is not None
    value = min(max(value, spec.min), spec.max)
    if spec.step:
        value = spec.min + round((value - spec.min) / spec.step) * spec.step
        value = min(max(value, spec.min), spec.max)
    if spec.type == "int":
        return round(value)
    # 12 significant digits: the canonical JSON of a genome must not depend on float noise.
    return float(f"{value:.12g}")


def _log_scaled(spec: ParamSpec) -> bool:
    """A positive range spanning two orders of magnitude or more (a window of 2 to 1000 bars)."""
    return spec.min is not None and spec.max is not None and spec.min > 0 and spec.max / spec.min >= 100


def random_gene(spec: ParamSpec, rng: random.Random) -> ParamValue:
    """A fresh value. A positive range spanning two orders of magnitude or more (a window of 2 to 1000
    bars) is drawn log-uniformly: uniformly, nine draws in ten would be longer than 100 bars."""
    if spec.type == "bool":
        return rng.random() < 0.5
    if spec.type == "enum":
        return rng.choice(spec.choices)
    assert spec.min is not None and spec.max is not None
    if _log_scaled(spec):
        return _snap(spec, math.exp(rng.uniform(math.log(spec.min), math.log(spec.max))))
    if spec.type == "int":
        return _snap(spec, rng.randint(int(spec.min), int(spec.max)))
    return _snap(spec, rng.uniform(spec.min, spec.max))


def random_genome(manifest: Manifest, rng: random.Random) -> dict[str, ParamValue]:
    return {p.name: random_gene(p, rng) for p in manifest.parameters}


def mutate_gene(spec: ParamSpec, value: ParamValue, rng: random.Random, scale: float = 0.15) -> ParamValue:
    """A new value near `value`: a Gaussian step of `scale` x the range, or for a log-scaled range a factor
    exp(N(0, 2 x scale)); at least one step of the gene's grid (ints: 1), away from a bound it sits on."""
    if spec.type == "bool":
        return not value
    if spec.type == "enum":
        others = [c for c in spec.choices if c != value]
        return rng.choice(others) if others else value
    assert spec.min is not None and spec.max is not None and isinstance(value, int | float)
    width = spec.max - spec.min
    if width == 0:
        return value
    if _log_scaled(spec) and value > 0:
        # A window of 5 bars and one of 500 differ in kind, not by 495: step by a factor, not an amount.
        step = value * (math.exp(rng.gauss(0.0, 2.0 * scale)) - 1.0)
    else:
        step = rng.gauss(0.0, scale * width)
    # At least one step of the grid (ints: 1), or the gene would snap back to its value.
    unit = spec.step or (1.0 if spec.type == "int" else 0.0)
    if abs(step) < unit:
        step = math.copysign(unit, step if step else rng.choice((-1.0, 1.0)))
    moved = _snap(spec, value + step)
    if moved == value:  # at a bound: step the other way
        moved = _snap(spec, value - step)
    return moved


def mutate(genome: Mapping[str, ParamValue], manifest: Manifest, rng: random.Random, rate: float = 0.3,
           scale: float = 0.15) -> dict[str, ParamValue]:
    """Each gene mutates with probability `rate`; at least one always does (a copy is not a child)."""
    specs = manifest.parameters
    if not specs:
        return dict(genome)
    chosen = [p for p in specs if rng.random() < rate] or [rng.choice(specs)]
    out = dict(genome)
    for p in chosen:
        out[p.name] = mutate_gene(p, out.get(p.name, p.default), rng, scale)
    return out


def crossover(a: Mapping[str, ParamValue], b: Mapping[str, ParamValue], manifest: Manifest,
              rng: random.Random) -> dict[str, ParamValue]:
    """Uniform crossover of two genomes of the same strategy: each gene from either parent."""
    return {p.name: (a if rng.random() < 0.5 else b).get(p.name, p.default) for p in manifest.parameters}


def crossover_sensors(a: Sequence[tuple[str, str]], b: Sequence[tuple[str, str]],
                      rng: random.Random) -> tuple[tuple[str, str], ...]:
    """`a`'s sensor set with one feed swapped for one of `b`'s it lacks (or `a` unchanged if none)."""
    mine = sorted(set(a))
    theirs = sorted(set(b) - set(a))
    if not theirs:
        return tuple(mine)
    incoming = rng.choice(theirs)
    if mine:
        mine[rng.randrange(len(mine))] = incoming
    else:
        mine.append(incoming)
    return tuple(sorted(set(mine)))
