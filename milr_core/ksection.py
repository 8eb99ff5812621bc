"""The k-section search: a different estimand from Algorithm 1 (ours, kept for comparison).

Each round probes ``lrs_per_round`` learning rates spread geometrically over a seed's bracket and reads the
bracket off the whole ledger (the edge is the first failure above the lowest success). It finds the edge in
fewer rounds but answers a different question when success is not monotone in the learning rate; the paper
grids use bisection (``bisection.py``). ``search.py`` runs its rounds in lanes like Algorithm 1's.
"""

from __future__ import annotations

import numpy as np

from milr_core.bisection import SeedSearch, ratio_of, zoom_target
from milr_core.config import SearchConfig
from milr_core.probe import ProbeOutcome


def ksection_plan(search: SeedSearch, config: SearchConfig) -> list[float]:
    """This round's learning rates: ``lrs_per_round`` spread geometrically over [lo, hi], the probed ends left out."""
    probed = {o.lr for _, o in search.ledger}
    ends_known = int(search.lo in probed) + int(search.hi in probed)
    grid = np.geomspace(search.lo, search.hi, config.lrs_per_round + ends_known).tolist()
    if search.lo in probed:
        grid = grid[1:]
    if search.hi in probed:
        grid = grid[:-1]
    return [float(lr) for lr in grid]


def ksection_observe(search: SeedSearch, outcomes: dict[float, ProbeOutcome], config: SearchConfig, round_: int) -> None:
    """A round's outcomes into the ledger; the bracket re-read, widened if it misses the edge, the status set."""
    search.ledger += [(round_, outcome) for outcome in outcomes.values()]
    if _read_bracket(search, config):
        search.widenings += 1
        if search.widenings > config.max_widenings:
            search.status = "no_success" if not search.successes() else "no_failure"
    if search.status != "running":
        search.phase = "done"


def _read_bracket(search: SeedSearch, config: SearchConfig) -> bool:
    """Re-read the bracket off the ledger; True when it had to be widened (it does not straddle the edge)."""
    successes, edge, ratio = search.successes(), search.edge(), ratio_of(config)
    if successes and edge is not None:
        search.lo, search.hi = max(lr for lr in successes if lr < edge), edge
        if edge / search.lo <= 1 + config.rtol:
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
    where, lo, hi = zoom_target(search, config)
    if where == "up" and search.hi not in probed:  # probe the top of the bracket first
        return False
    search.lo, search.hi = lo, hi
    if where == "none":
        search.status = "no_success"
    return where in ("up", "down")
