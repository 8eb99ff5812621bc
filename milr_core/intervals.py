"""95% intervals for the numbers that are not fits: statistics over networks, and fractions.

- ``cell_bootstrap``: any statistic of a set of networks (a median, a Spearman correlation) under the
  resampling every fit uses (``censored.py``): draw the cells (depth, width) with replacement and, within
  each drawn cell, its networks (seeds) with replacement; percentile interval. Networks of one cell share
  their depth and width, so resampling cells, not networks, lets the spread between cells widen the interval.
- ``wilson``: the Wilson score interval of a fraction k / n, which stays inside [0, 1] and is sensible at
  k = 0 or k = n, where the normal approximation collapses to a point.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from milr_core.censored import interval
from milr_core.fit import CI, N_BOOTSTRAP


def cell_bootstrap(
    frame: pd.DataFrame,
    statistic: Callable[[np.ndarray], float | np.ndarray],
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    ci: float = CI,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """Percentile intervals of ``statistic`` (of the positions of the rows drawn; one number or several) over
    resamples of ``frame``'s networks, cells first. An interval is NaN when fewer than ``censored.MIN_VALID_REPLICATES``
    of the replicates give a finite value, or ``frame`` has fewer than two cells."""
    cell = frame.groupby(["depth", "width"], sort=False).ngroup().to_numpy()
    width = np.atleast_1d(statistic(np.arange(len(frame)))).size
    if cell.size == 0 or cell.max() < 1:
        return [(math.nan, math.nan)] * width
    order = np.argsort(cell, kind="stable")
    sizes = np.bincount(cell)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(sizes), size=(n_bootstrap, len(sizes)))  # the cells of each replicate
    slots = np.arange(sizes.max())
    within = np.floor(rng.random((*drawn.shape, len(slots))) * sizes[drawn][..., None]).astype(int)
    rows = order[np.minimum(starts[drawn][..., None] + within, len(order) - 1)]  # its networks, drawn in each cell
    kept = slots < sizes[drawn][..., None]  # a cell with fewer networks than the largest fills fewer slots
    values = np.array([statistic(rows[b][kept[b]]) for b in range(n_bootstrap)]).reshape(n_bootstrap, width)
    return [interval(column[np.isfinite(column)], n_bootstrap, ci) for column in values.T]


def median_interval(values: pd.Series, frame: pd.DataFrame, **options) -> tuple[float, float]:
    """The interval of the median of ``values`` (one per row of ``frame``, NaN ignored) under ``cell_bootstrap``."""
    numbers = values.to_numpy(float)
    return cell_bootstrap(frame, lambda rows: np.nanmedian(numbers[rows]) if np.isfinite(numbers[rows]).any()
                          else math.nan, **options)[0]  # fmt: skip


def wilson(successes: int, trials: int, ci: float = CI) -> tuple[float, float]:
    """The Wilson score interval of the fraction successes / trials at level ``ci`` (NaN without trials)."""
    if trials <= 0:
        return (math.nan, math.nan)
    z = stats.norm.ppf(0.5 + ci / 2)
    share = successes / trials
    centre = (share + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z / (1 + z**2 / trials) * math.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2))
    return (max(0.0, centre - half), min(1.0, centre + half))
