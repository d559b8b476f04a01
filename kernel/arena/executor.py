"""Where evaluations run: in this process, in a local process pool, or on a Ray cluster — one interface.

    with LocalExecutor(home, bars, commission=0.001, workers=2) as ex:
        results = ex.map(specs)              # Evaluations, in the order of `specs`

Results come back in input order whatever finished first, and an evaluation is a pure function of
(organism, data), so the arena's generations do not depend on the number of workers. Worker processes
are started with "spawn" (never fork a process that has wasmtime threads) and each builds one
`Evaluator`: components come from the compile cache, strategy instances are pooled per plugin.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from allele.kernel.backtest import Bars

from .evaluate import Evaluation, Evaluator
from .organism import OrganismSpec


class Executor(Protocol):
    workers: int

    def map(self, specs: Sequence[OrganismSpec]) -> list[Evaluation]:
        ...

    def close(self) -> None:
        ...


_worker: Evaluator | None = None


def _init_worker(home: str, bars: Bars, commission: float, cash: float) -> None:
    global _worker
    _worker = Evaluator(Path(home), bars, commission=commission, cash=cash)


def _evaluate(spec: OrganismSpec) -> Evaluation:
    assert _worker is not None, "worker not initialized"
    return _worker.evaluate(spec)


class LocalExecutor:
    """`workers` = 1: evaluate in this process; more: a pool of that many processes."""

    def __init__(self, home: Path, bars: Bars, *, commission: float, cash: float = 10_000.0, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._local: Evaluator | None = None
        self._pool: ProcessPoolExecutor | None = None
        if workers == 1:
            self._local = Evaluator(home, bars, commission=commission, cash=cash)
        else:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(str(home), bars, commission, cash))

    def map(self, specs: Sequence[OrganismSpec]) -> list[Evaluation]:
        if self._local is not None:
            return [self._local.evaluate(s) for s in specs]
        assert self._pool is not None
        chunk = max(1, len(specs) // (self.workers * 4))
        return list(self._pool.map(_evaluate, specs, chunksize=chunk))

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()


class RayExecutor:
    """The same interface on a Ray cluster: one actor per worker, each holding an `Evaluator`.

    Ray installs its own signal handlers in the driver process; wasmtime turns traps into signals too.
    Run a Ray driver (`allele arena run --executor ray`) in a process of its own, not inside the engine.
    """

    def __init__(self, home: Path, bars: Bars, *, commission: float, cash: float = 10_000.0, workers: int = 2,
                 address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError("--executor ray needs Ray: pip install 'ray>=2.9' (not installed here)") from None
        self.workers = workers
        self._ray: Any = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)

        @ray.remote
        class _Actor:
            def __init__(self) -> None:
                self.evaluator = Evaluator(home, bars, commission=commission, cash=cash)

            def evaluate(self, spec: OrganismSpec) -> Evaluation:
                return self.evaluator.evaluate(spec)

        self._actors = [_Actor.remote() for _ in range(workers)]  # type: ignore[attr-defined]

    def map(self, specs: Sequence[OrganismSpec]) -> list[Evaluation]:
        refs = [self._actors[i % len(self._actors)].evaluate.remote(s) for i, s in enumerate(specs)]
        results: list[Evaluation] = self._ray.get(refs)
        return results

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
