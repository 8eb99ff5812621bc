"""Finding eta*: Algorithm 1 (bisection) and its batched form.

eta* is the largest constant learning rate at which a fresh network reaches validation accuracy >= t
within the budget. Both methods share one definition, read off a seed's probe ledger sorted by
learning rate: the *edge* is the first failure, and the bracket is (the last success below it, the
edge). eta* is the bracket's lower end. A search has converged when the bracket's ratio hi/lo is at
most 1 + rtol.

- ``bisection``: Algorithm 1 as written, one learning rate per probe, geometric midpoints.
- ``batched``: each round probes K learning rates spread geometrically over the current bracket, for
  every seed at once (one probe of K x seeds replicas), and narrows the bracket by a factor ~K + 1
  in log-space per round instead of 2.

If the initial bracket does not straddle the edge (its low end fails or its high end succeeds), it
is widened geometrically by its own ratio, at most ``max_widenings`` times.

Outcomes need not be monotone in the learning rate (a success above a failure); such successes are
kept in the ledger and reported in ``non_monotone``, never hidden. Bisection, which only ever probes
inside its bracket, cannot see them except while widening; the batched search often does.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from milr_core.model import NetworkSpec
from milr_core.probe import ProbeOutcome, TrainConfig, run_probe

METHODS = ("bisection", "batched")
Prober = Callable[[Sequence[float], Sequence[int]], list[ProbeOutcome]]


@dataclass
class SeedSearch:
    """The search for one seed: eta*, the final bracket, and every probe made (with its round)."""

    seed: int
    status: str = "running"  # converged | no_success (low end never trained) | no_failure (never failed)
    lo: float | None = None
    hi: float | None = None
    ledger: list[tuple[int, ProbeOutcome]] = field(default_factory=list)

    @property
    def eta_star(self) -> float | None:
        return self.lo if self.status == "converged" else None

    def successes(self) -> list[float]:
        return sorted(o.lr for _, o in self.ledger if o.succeeded)

    def edge(self) -> float | None:
        """The first failure above the lowest success (failures below it trained too slowly, not too fast)."""
        successes = self.successes()
        if not successes:
            return None
        return min((o.lr for _, o in self.ledger if not o.succeeded and o.lr > successes[0]), default=None)

    @property
    def non_monotone(self) -> list[float]:
        """Learning rates that succeeded although a smaller one, above the lowest success, failed."""
        edge = self.edge()
        return [lr for lr in self.successes() if edge is not None and lr > edge]

    def record(self) -> dict:
        """A json-serialisable summary (no ledger)."""
        return {
            "seed": self.seed,
            "status": self.status,
            "eta_star": self.eta_star,
            "bracket": [self.lo, self.hi],
            "n_probes": len(self.ledger),
            "n_rounds": len({r for r, _ in self.ledger}),
            "non_monotone": self.non_monotone,
        }

    def ledger_records(self) -> list[dict]:
        return [{"round": r, **o.to_dict()} for r, o in self.ledger]


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

    @property
    def spread(self) -> tuple[float, float] | None:
        """(min, max) of eta* over the seeds that converged."""
        return (min(self.eta_stars), max(self.eta_stars)) if self.eta_stars else None

    def seed_result(self, seed: int) -> SeedSearch:
        return next(s for s in self.per_seed if s.seed == seed)

    def to_dict(self, ledger: bool = False) -> dict:
        return {
            "method": self.method,
            "threshold": self.threshold,
            "rtol": self.rtol,
            "eta_star_median": self.median,
            "eta_star_spread": list(self.spread) if self.spread else None,
            "n_rounds": self.n_rounds,
            "n_probes": sum(len(s.ledger) for s in self.per_seed),
            "wall_time_s": self.wall_time_s,
            "seeds": [
                {**s.record(), **({"ledger": s.ledger_records()} if ledger else {})} for s in self.per_seed
            ],
        }


@dataclass(frozen=True)
class SearchConfig:
    """How eta* is searched. Every default is our choice; the paper states none.

    lr_bounds is the initial bracket (widened by its own ratio, at most ``max_widenings`` times, when it
    does not straddle the edge); the search stops when hi / lo <= 1 + rtol; ``lrs_per_round`` is K of
    the batched search (bisection probes one learning rate at a time).
    """

    method: str = "batched"
    lr_bounds: tuple[float, float] = (1e-3, 10.0)
    rtol: float = 0.05
    lrs_per_round: int = 8
    max_widenings: int = 6

    def __post_init__(self) -> None:
        if len(self.lr_bounds) != 2:
            raise ValueError(f"lr_bounds must be (low, high), got {self.lr_bounds}")
        lo, hi = (float(b) for b in self.lr_bounds)
        object.__setattr__(self, "lr_bounds", (lo, hi))  # a YAML list becomes the tuple the hash sees either way
        if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"learning-rate bounds must be positive and finite, got {self.lr_bounds}")
        if not lo < hi:
            raise ValueError(f"learning-rate bounds are inverted or equal: low {lo} must be below high {hi}")
        if not self.rtol > 0:
            raise ValueError(f"rtol must be positive, got {self.rtol}")
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method == "batched" and self.lrs_per_round < 2:
            raise ValueError(f"the batched search needs lrs_per_round >= 2, got {self.lrs_per_round}")
        if self.max_widenings < 0:
            raise ValueError(f"max_widenings must be >= 0, got {self.max_widenings}")


def update_bracket(search: SeedSearch, ratio: float, rtol: float) -> bool:
    """Re-read the bracket off the ledger; returns True when it had to be widened (it does not straddle the edge)."""
    successes, edge = search.successes(), search.edge()
    if successes and edge is not None:
        search.lo, search.hi = max(lr for lr in successes if lr < edge), edge
        if edge / search.lo <= 1 + rtol:
            search.status = "converged"
        return False
    probed = {o.lr for _, o in search.ledger}
    if successes:  # nothing failed above the successes: move the bracket up once its top was probed
        if search.hi not in probed:
            search.lo = successes[-1]
            return False
        search.lo, search.hi = successes[-1], successes[-1] * ratio
        return True
    if all(o.outcome == "diverged" for _, o in search.ledger):  # move down once the bottom was probed
        if search.lo not in probed:
            return False
        lowest = min(probed)
        search.lo, search.hi = lowest / ratio, lowest
        return True
    return zoom_to_best_accuracy(search, ratio, rtol, probed)


def zoom_to_best_accuracy(search: SeedSearch, ratio: float, rtol: float, probed: set[float]) -> bool:
    """No success yet: look next to the probe with the best validation accuracy.

    A failure that ran out of budget may have trained too slowly (a small LR) or have been wrecked
    without diverging (a large LR: dead ReLUs, chance accuracy), so its outcome alone does not say on
    which side of the success window it lies. Accuracy does: taken to rise, then fall, with log LR,
    the window lies next to the best probe, in the wider gap to its neighbours. If the best probe is
    the largest LR probed, everything was too slow and the bracket moves up (a widening); if it is the
    smallest and its gap is already narrow, the bracket moves down. Once both gaps around an interior
    best probe are narrower than rtol, no LR reaches the threshold at this resolution.
    """
    probes = sorted((o.lr, o.final_accuracy if o.outcome == "budget" else -1.0) for _, o in search.ledger)
    scores = [-1.0 if math.isnan(score) else score for _, score in probes]
    best_index = max(range(len(probes)), key=lambda i: scores[i])
    best = probes[best_index][0]
    lower = probes[best_index - 1][0] if best_index > 0 else None
    upper = probes[best_index + 1][0] if best_index + 1 < len(probes) else None
    if upper is None:  # the largest LR probed trained best: move up once the top was probed
        if search.hi not in probed:
            return False
        search.lo, search.hi = best, best * ratio
        return True
    gaps = [(upper / best, best, upper)] + ([(best / lower, lower, best)] if lower is not None else [])
    widest, lo, hi = max(gaps)
    if widest > 1 + rtol:
        search.lo, search.hi = lo, hi
        return False
    if lower is None:  # the smallest LR probed trained best, right next to a worse one: move down
        search.lo, search.hi = best / ratio, best
        return True
    search.lo, search.hi = lo, hi
    search.status = "no_success"
    return False


def round_lrs(search: SeedSearch, n_new: int) -> list[float]:
    """n_new learning rates spread geometrically over [lo, hi], leaving out the ends already probed."""
    probed = {o.lr for _, o in search.ledger}
    ends_known = int(search.lo in probed) + int(search.hi in probed)
    grid = np.geomspace(search.lo, search.hi, n_new + ends_known).tolist()
    if search.lo in probed:
        grid = grid[1:]
    if search.hi in probed:
        grid = grid[:-1]
    return [float(lr) for lr in grid]


def search_edges(
    prober: Prober, seeds: Sequence[int], search: SearchConfig = SearchConfig(), *, progress: bool = False
) -> tuple[list[SeedSearch], int]:
    """Run the search for every seed against ``prober``; returns the searches and the number of sequential probes.

    ``prober(lrs, seeds)`` trains replica k = (lrs[k], seeds[k]) and returns its outcome; the real one is
    ``run_probe``, tests pass a synthetic oracle.
    """
    lr_bounds, rtol, method = search.lr_bounds, search.rtol, search.method
    ratio = lr_bounds[1] / lr_bounds[0]
    searches = [SeedSearch(seed=int(s), lo=lr_bounds[0], hi=lr_bounds[1]) for s in seeds]
    widenings = {s.seed: 0 for s in searches}
    # Bisection runs the seeds one after another, one learning rate per probe (Algorithm 1 as written).
    queues = [searches] if method == "batched" else [[s] for s in searches]
    n_rounds = 0
    bar = tqdm(desc=f"eta* ({method})", unit="probe", disable=not progress, leave=False)
    for queue in queues:
        while running := [s for s in queue if s.status == "running"]:
            n_new = search.lrs_per_round if method == "batched" else 1
            plan = [(s, lr) for s in running for lr in round_lrs(s, n_new)]
            if method == "batched":  # one probe of every planned replica
                calls = [plan]
            else:  # one learning rate per probe
                calls = [[item] for item in plan]
            for call in calls:
                n_rounds += 1
                outcomes = prober([lr for _, lr in call], [s.seed for s, _ in call])
                for (s, _), outcome in zip(call, outcomes):
                    s.ledger.append((n_rounds, outcome))
            bar.update(len(plan))
            for s in running:
                if update_bracket(s, ratio, rtol):
                    widenings[s.seed] += 1
                    if widenings[s.seed] > search.max_widenings:
                        s.status = "no_success" if not s.successes() else "no_failure"
            bar.set_postfix(brackets=" ".join(f"[{s.lo:.3g},{s.hi:.3g}]" for s in running if s.lo and s.hi))
    bar.close()
    return searches, n_rounds


def find_eta_star(
    dataset,
    net: NetworkSpec,
    train: TrainConfig = TrainConfig(),
    search: SearchConfig = SearchConfig(),
    *,
    threshold: float | None = None,
    seeds: Sequence[int] = (0,),
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> EtaStarResult:
    """eta* of ``net`` on ``dataset`` for each seed; the threshold defaults to the dataset's (paper's where known)."""
    threshold = dataset.meta["default_threshold"] if threshold is None else threshold
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")

    def prober(lrs: Sequence[float], probe_seeds: Sequence[int]) -> list[ProbeOutcome]:
        return run_probe(dataset, net, train, lrs, probe_seeds, threshold, device=device, dtype=dtype)

    start = time.perf_counter()
    searches, n_rounds = search_edges(prober, seeds, search, progress=progress)
    return EtaStarResult(search.method, threshold, search.rtol, searches, n_rounds, time.perf_counter() - start)
