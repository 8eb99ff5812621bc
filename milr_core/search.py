"""Finding eta*: searches (Algorithm 1, ``bisection.py``; or the k-section, ``ksection.py``) driven through lanes.

Each seed's search advances in *rounds*: it plans a round's learning rates (one midpoint, or a speculation tree
of 2^k - 1 of them), the round's probes train in a lane pool (``probe.LanePool``) beside every other search's,
and when the round's last probe ends the search replays its outcomes and plans the next round. Rounds of
different seeds, and of different cells (*packing*, ``search_cells``), run side by side: a lane freed by one
probe takes the next waiting probe of any search at the next check boundary, so a GPU's lanes stay full.
After a converged search, ``probe_above`` probes eta* x f for each factor (a diagnostic).

**Exact given the outcomes; the outcomes are floating point.** Replay follows serial Algorithm 1 through any
outcomes, so the answer, the bracket and the ledger depend on k, on the seeds batched and on the packing only
through the probes' arithmetic. With fixed lanes (``runtime.py``) a replica computes the same bits whatever
shares its pool, so k and packing change nothing; elastic lanes are exact where the arithmetic is
batch-independent (one CPU thread, float64: tests). Measured before lanes (``benchmarks/bench_eta_star.py``,
MNIST 2x128 at 300 steps, seed 0): eta* 1.334 for k=1 and k=3 on one CPU thread; on two threads k=1 gave 1.540
and k=3 1.334; on an H200 k=1 1.540 and k=5 1.334. That band is eta*'s resolution in float32: chapter 13 measures
it per cell against the seed spread.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from milr_core.bisection import Prober, SeedSearch, plan, replay
from milr_core.config import Run, SearchConfig, TrainConfig
from milr_core.ksection import ksection_observe, ksection_plan
from milr_core.probe import LanePool, Probe, ProbeOutcome
from milr_core.runtime import torch_dtype


@dataclass
class Driven:
    """One seed's search while it runs: its round's probes (by LR, in plan order) and its probe factory."""

    search: SeedSearch
    config: SearchConfig
    probe: Callable[[float, int], Probe]  # (lr, seed) -> the probe to train
    group: int = 0  # which cell it belongs to (``search_cells``)
    rounds: int = 0
    waiting: dict[float, ProbeOutcome | None] = field(default_factory=dict)
    above: dict[float, ProbeOutcome | None] | None = None
    finished: bool = False


class SyncPool:
    """A ``LanePool`` stand-in for a synthetic ``prober(lrs, seeds)``: each call answers every waiting probe (tests,
    chapter 1's non-monotone oracle)."""

    def __init__(self, prober: Prober) -> None:
        self.prober = prober

    def run(self, feed: Callable[[], Probe | None], finished: Callable[[Probe, ProbeOutcome, None], None]) -> None:
        while probes := list(iter(feed, None)):
            for probe, outcome in zip(probes, self.prober([p.lr for p in probes], [p.seed for p in probes])):
                finished(probe, outcome, None)


def drive(pool, searches: list[Driven], speculation: int, *, progress: bool = False,
          on_group: Callable[[int], None] | None = None) -> None:  # fmt: skip
    """Run every search to its end through ``pool``; ``on_group(g)`` when the last search of group g has ended."""
    queue: deque[Probe] = deque()
    left = {g: sum(d.group == g for d in searches) for g in {d.group for d in searches}}
    bar = tqdm(desc="eta* probes", unit="probe", disable=not progress, leave=False)

    def advance(driven: Driven) -> None:
        search, config = driven.search, driven.config
        if search.phase != "done":
            lrs = plan(search, config, speculation) if config.method == "bisection" else ksection_plan(search, config)
            driven.rounds += 1
            driven.waiting = dict.fromkeys(lrs)
            queue.extend(tagged(driven, lr, "round") for lr in lrs)
        elif driven.above is None and search.eta_star is not None and config.probe_above:
            driven.above = dict.fromkeys(search.eta_star * f for f in config.probe_above)
            queue.extend(tagged(driven, lr, "above") for lr in driven.above)
        else:
            driven.finished = True
            left[driven.group] -= 1
            if left[driven.group] == 0 and on_group:
                on_group(driven.group)

    def tagged(driven: Driven, lr: float, kind: str) -> Probe:
        probe = driven.probe(lr, driven.search.seed)
        probe.tag = (driven, lr, kind)
        return probe

    def finished(probe: Probe, outcome: ProbeOutcome, _) -> None:
        driven, lr, kind = probe.tag
        bar.update()
        target = driven.waiting if kind == "round" else driven.above
        target[lr] = outcome
        if any(o is None for o in target.values()):
            return
        if kind == "above":
            driven.search.above += list(target.values())
        elif driven.config.method == "bisection":
            replay(driven.search, target, driven.config, driven.rounds)
        else:
            ksection_observe(driven.search, target, driven.config, driven.rounds)
        bar.set_postfix(bracket=f"[{driven.search.lo:.3g},{driven.search.hi:.3g}]")
        advance(driven)

    for driven in searches:
        advance(driven)
    pool.run(lambda: queue.popleft() if queue else None, finished)
    bar.close()


def _rounds_of(searches: list[Driven]) -> int:
    """Sequential rounds the searches took: the longest search's, and one more where any probed above eta*."""
    return max((d.rounds for d in searches), default=0) + any(d.above for d in searches)


def search_edges(
    prober: Prober, seeds: Sequence[int], config: SearchConfig = SearchConfig(), *, speculation: int = 1,
    progress: bool = False,
) -> tuple[list[SeedSearch], int]:  # fmt: skip
    """Every seed's search against a synthetic ``prober(lrs, seeds)``; returns the searches and the rounds taken."""
    searches = [Driven(SeedSearch(int(s), *config.lr_bounds), config, lambda lr, seed: Probe(lr, seed, None, 1, 0.5))
                for s in seeds]  # fmt: skip
    drive(SyncPool(prober), searches, speculation, progress=progress)
    return [d.search for d in searches], _rounds_of(searches)


# ----------------------------------------------------------------------------------------------------------
# eta* of a network on a dataset


@dataclass
class EtaStarResult:
    """eta* per seed, its median and spread, and the full probe ledgers."""

    method: str
    threshold: float
    rtol: float
    per_seed: list[SeedSearch]
    n_rounds: int
    wall_time_s: float

    @property
    def eta_stars(self) -> list[float]:
        return [s.eta_star for s in self.per_seed if s.eta_star is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.eta_stars) if self.eta_stars else None

    def seed_result(self, seed: int) -> SeedSearch:
        return next(s for s in self.per_seed if s.seed == seed)

    def records(self, curves: bool = False) -> list[tuple[dict, list[dict]]]:
        """(result, ledger) per seed, as a result store keeps them (``curves``: every probe's curves too)."""
        return [(s.record(), s.ledger_records(curves)) for s in self.per_seed]

    def to_dict(self, ledger: bool = False) -> dict:
        return {
            "method": self.method,
            "threshold": self.threshold,
            "rtol": self.rtol,
            "eta_star_median": self.median,
            "n_rounds": self.n_rounds,
            "n_probes": sum(len(s.ledger) for s in self.per_seed),
            "wall_time_s": self.wall_time_s,
            "seeds": [{**s.record(), **({"ledger": s.ledger_records()} if ledger else {})} for s in self.per_seed],
        }


def _seed_searches(run: Run, train: TrainConfig, search: SearchConfig, group: int = 0) -> list[Driven]:
    """The searches of ``run``'s seeds, each probe a fresh network of ``run.network`` trained as ``train`` says."""
    steps = train.budget_steps(run.dataset.x_train.shape[0])

    def probe(lr: float, seed: int) -> Probe:
        return Probe(lr, seed, run.network, steps, run.threshold)

    return [Driven(SeedSearch(seed, *search.lr_bounds), search, probe, group) for seed in run.seeds]


def search_cells(
    cells: list[tuple[Run, TrainConfig, SearchConfig]],
    on_cell: Callable[[int, EtaStarResult], None] | None = None,
    *,
    full_validation: bool = False,
) -> list[EtaStarResult]:
    """eta* of several cells packed into one lane pool (same dataset and network shape; any learning rates,
    multipliers, budgets and thresholds).

    Args:
        cells: (run, train, search) per cell. The first cell's run says how the pool computes (device, dtype,
            lanes, speculation, progress); the cells must share its dataset, batch size, check interval, loss
            and divergence bound.
        on_cell: called with (index, result) as soon as a cell's last search ends, so that a caller can store it.
        full_validation: keep every probe's full accuracy curve.

    Returns:
        One ``EtaStarResult`` per cell, in order.
    """
    first, train, _ = cells[0]
    for run, other, _ in cells[1:]:
        shared = (other.batch_size, other.eval_every, other.loss, other.max_loss)
        if run.dataset is not first.dataset or shared != (train.batch_size, train.eval_every, train.loss, train.max_loss):
            raise ValueError("packed cells must share the dataset, batch size, check interval, loss and max_loss")
    start = time.perf_counter()
    searches = [d for index, (run, t, s) in enumerate(cells) for d in _seed_searches(run, t, s, index)]
    results: dict[int, EtaStarResult] = {}

    def finish(index: int) -> None:
        run, _, search = cells[index]
        mine = [d for d in searches if d.group == index]
        results[index] = EtaStarResult(search.method, run.threshold, search.rtol, [d.search for d in mine],
                                       _rounds_of(mine), time.perf_counter() - start)  # fmt: skip
        if on_cell:
            on_cell(index, results[index])

    pool = LanePool(first.dataset, train, lanes=first.lanes, device=first.device, dtype=torch_dtype(first.dtype),
                    full_validation=full_validation)  # fmt: skip
    drive(pool, searches, first.speculation, progress=first.progress, on_group=finish)
    return [results[index] for index in range(len(cells))]


def find_eta_star(
    run: Run, train: TrainConfig = TrainConfig(), search: SearchConfig = SearchConfig(), *, full_validation: bool = False
) -> EtaStarResult:
    """eta* of ``run.network`` on ``run.dataset`` for each of ``run.seeds``, to ``run.threshold``.

    Args:
        run: the network, data, seeds, threshold and how to compute (``config.Run``).
        train: how each probe trains (budget, batch, checks, loss).
        search: the search (Algorithm 1 by default) and its bracket, tolerance and ``probe_above`` factors.
        full_validation: keep every probe's full accuracy curve (chapter 1's figure).

    Returns:
        An ``EtaStarResult``: per seed its ``SeedSearch`` (eta*, status, bracket, ledger), the median, rounds, time.

    Example:
        >>> from milr_core import NetworkSpec, Run, SearchConfig, TrainConfig, find_eta_star, load_dataset
        >>> data = load_dataset("gaussians", dim=8, n_train_per_class=512, n_val_per_class=256)
        >>> net = NetworkSpec(depth=2, width=16, in_dim=data.in_dim, out_dim=data.n_classes)
        >>> result = find_eta_star(Run(data, net, seeds=(0, 1)), TrainConfig(batch_size=64, max_steps=100),
        ...                        SearchConfig(lr_bounds=(0.01, 10.0), rtol=0.1))
        >>> [s.status for s in result.per_seed]
        ['converged', 'converged']
        >>> 0.01 < result.median < 100
        True
    """
    return search_cells([(run, train, search)], full_validation=full_validation)[0]
