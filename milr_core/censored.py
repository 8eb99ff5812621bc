"""The cells of a fit and the regression behind every power law: censored cells, Tobit, a cell-and-seed bootstrap.

- **Cells.** A *cell* is one (depth, width); its value is the median over its seeds of log y (the log of
  the median for an odd number of seeds, of the geometric mean of the middle two for an even number): it
  resists the occasional seed whose search stopped on a non-monotone outcome.
- **Point estimate.** Least squares of the cells' log y on a design, each cell weighing the same.
- **Censored cells.** A cell where *every* seed's search failed is kept, as censored: ``no_success``
  after the bracket was widened down as far as allowed (its low end still diverged) says eta* lies below
  that low end, ``no_failure`` (the top of the bracket still trained) that it is at least the high end.
  Its value is the median of those bounds (if every seed's eta* lies below its bound, so does their
  median), and the fit is then a Tobit model: maximum likelihood in log space with Gaussian residuals, the
  censored cells entering through the probability of lying beyond their bound. With nothing censored this
  is exactly least squares. A seed that failed in a cell where other seeds converged is dropped from that
  cell's median and counted in ``n_dropped``, never hidden; so is a value that is missing or not positive.
- **Cells where no learning rate reached t.** A ``no_success`` reached through the search's fallback
  (``search.py``: the low end trained too slowly, and no learning rate near the best accuracy reached t)
  bounds nothing: the network does not reach t within the budget at any learning rate probed, so it has
  no eta*. A cell where every seed ended so is left out of the fit, its seeds counted in ``n_dropped``, and
  listed in ``Cells.unreached`` (with the learning rate of the best accuracy) so the figures show it.
- **Intervals.** B bootstrap replicates resample the *cells* with replacement and, within each drawn
  cell, its seeds; each replicate is refitted the same way; percentile intervals. Resampling cells lets
  misfit (cells off the line) widen the interval, which resampling seeds alone would not. Each replicate
  also keeps its R^2 and its scatter about the line, so that they have intervals too.

``fit.py`` builds the power laws on this; the two import no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

MIN_VALID_REPLICATES = 0.5  # an interval needs this fraction of replicates to be fittable, else it is NaN (ours)

# The search statuses (``search.STATUSES``) that censor eta*, and where each quantity keeps them.
BELOW, ABOVE = "no_success", "no_failure"  # eta* < bracket low end; eta* >= bracket high end
CENSORING = {"eta_star": ("status", "bracket"), "late_max_lr": ("late_status", "late_bracket")}


# ----------------------------------------------------------------------------------------------------------
# cells


@dataclass(frozen=True)
class Cells:
    """The cells of one fit: a table (depth, width, n_seeds, censored), each cell's log values, what was dropped.

    ``censored`` is "" for a measured cell, "below" or "above" for a censored one; ``side`` holds the
    same as 0, -1, +1, and a censored cell's ``logs`` are the log bounds of its seeds. ``unreached``: the
    cells left out because no learning rate reached t for any seed (depth, width, n_seeds, and ``lr``, the
    median over seeds of the low end of the fallback's last bracket, next to the best accuracy).
    """

    table: pd.DataFrame
    logs: list[np.ndarray]
    side: np.ndarray
    n_dropped: int
    unreached: pd.DataFrame

    @property
    def log_y(self) -> np.ndarray:
        return np.array([np.median(values) for values in self.logs])

    @property
    def n_values(self) -> int:
        return int(sum(len(values) for values, side in zip(self.logs, self.side) if side == 0))

    @property
    def n_censored(self) -> int:
        return int(np.count_nonzero(self.side))


def _censoring_bound(status: str, bracket) -> float:
    """The bound a failed search gives on eta*: the bracket's low end (no_success) or high end (no_failure)."""
    try:
        low, high = (float(v) for v in bracket)
    except (TypeError, ValueError):
        return math.nan
    return low if status == BELOW else high if status == ABOVE else math.nan


def cell_values(frame: pd.DataFrame, quantity: str) -> Cells:
    """The cells of ``frame`` (one row per depth, width and seed) for ``quantity``, censored cells included."""
    missing = [column for column in ("depth", "width", "seed", quantity) if column not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the column(s) {', '.join(missing)}; columns: {', '.join(frame.columns)}")
    duplicated = frame.duplicated(["depth", "width", "seed"])
    if duplicated.any():
        first = frame.loc[duplicated, ["depth", "width", "seed"]].iloc[0].tolist()
        raise ValueError(
            f"(depth, width, seed) = {tuple(first)} appears more than once: fit one dataset and variant at a time"
        )
    values = pd.to_numeric(frame[quantity], errors="coerce").astype(float).to_numpy()
    measured = np.isfinite(values) & (values > 0)
    status_column, bracket_column = CENSORING.get(quantity, (None, None))
    if status_column in frame.columns and bracket_column in frame.columns:
        status = frame[status_column].to_numpy()
        bound = np.array([_censoring_bound(s, b) for s, b in zip(status, frame[bracket_column])])
        side = np.where(status == BELOW, -1, np.where(status == ABOVE, 1, 0))
        side[~(np.isfinite(bound) & (bound > 0)) | measured] = 0
    else:
        bound, side = np.full(len(frame), math.nan), np.zeros(len(frame), dtype=int)
    fallback = frame["fallback"].fillna(False).to_numpy(bool) if quantity == "eta_star" and "fallback" in frame \
        else np.zeros(len(frame), dtype=bool)  # fmt: skip
    unreached = (side == -1) & fallback
    side[unreached] = 0
    table, logs, sides, dropped, left_out = [], [], [], 0, []
    for (depth, width), rows in sorted(frame.groupby(["depth", "width"]).indices.items()):
        if unreached[rows].all():
            left_out.append({"depth": int(depth), "width": int(width), "n_seeds": len(rows),
                             "lr": float(np.median(bound[rows]))})  # fmt: skip
            dropped += len(rows)
            continue
        if measured[rows].any():
            kept, cell_side = np.log(values[rows][measured[rows]]), 0
        elif len(set(side[rows])) == 1 and side[rows][0] != 0:  # every seed failed the same way: censored
            kept, cell_side = np.log(bound[rows]), int(side[rows][0])
        else:
            dropped += len(rows)
            continue
        dropped += len(rows) - len(kept)
        table.append({"depth": int(depth), "width": int(width), "n_seeds": len(kept),
                      "censored": {0: "", -1: "below", 1: "above"}[cell_side]})  # fmt: skip
        logs.append(kept)
        sides.append(cell_side)
    columns = ["depth", "width", "n_seeds", "censored"]
    return Cells(pd.DataFrame(table, columns=columns), logs, np.array(sides, dtype=int), dropped,
                 pd.DataFrame(left_out, columns=["depth", "width", "n_seeds", "lr"]))


# ----------------------------------------------------------------------------------------------------------
# least squares with censoring, vectorised over bootstrap replicates


def _least_squares(
    design: np.ndarray, log_y: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate, (coefficients, residual sum of squares, full rank) of weighted least squares.

    design (B, n, k), log_y and weight (B, n); weight 0 leaves a row out.
    """
    gram = np.einsum("bnk,bnl,bn->bkl", design, design, weight)
    moment = np.einsum("bnk,bn,bn->bk", design, log_y, weight)
    eigen = np.linalg.eigvalsh(gram)
    full_rank = eigen[:, 0] > 1e-10 * np.maximum(eigen[:, -1], 1e-300)
    safe = np.where(full_rank[:, None, None], gram, np.eye(gram.shape[-1]))
    coefficients = np.linalg.solve(safe, moment[..., None])[..., 0]
    residual = log_y - np.einsum("bnk,bk->bn", design, coefficients)
    return coefficients, np.einsum("bn,bn,bn->b", residual, residual, weight), full_rank


def _tobit_terms(
    design: np.ndarray, log_y: np.ndarray, side: np.ndarray, theta: np.ndarray, derivatives: bool
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood (and its gradient and Hessian) of the Tobit model in Olsen's parameters theta = (beta, 1) / sigma.

    Olsen's parameterisation makes the log-likelihood concave, so Newton's method with halving steps
    finds the maximum. Rows: side 0 measured, -1 below its bound, +1 at or above it.
    """
    gamma, h = theta[:, :-1], theta[:, -1]
    linear = np.einsum("bnk,bk->bn", design, gamma)
    vectors = np.concatenate([design, -log_y[..., None]], axis=-1)  # d(linear - h y)/d theta
    measured, censored = side == 0, side != 0
    residual = h[:, None] * log_y - linear
    z = side * (linear - h[:, None] * log_y)
    log_cdf = log_ndtr(np.where(censored, z, 0.0))
    value = (np.where(measured, np.log(h)[:, None] - 0.5 * residual**2, 0.0).sum(1)
             + np.where(censored, log_cdf, 0.0).sum(1))  # fmt: skip
    if not derivatives:
        return value
    mills = np.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_cdf)  # phi(z) / Phi(z)
    slope = np.where(measured, residual, np.where(censored, side * mills, 0.0))  # d l_i / d(linear - h y)
    curvature = np.where(measured, -1.0, np.where(censored, -mills * (z + mills), 0.0))
    gradient = np.einsum("bn,bnk->bk", slope, vectors)
    hessian = np.einsum("bn,bnk,bnl->bkl", curvature, vectors, vectors)
    count = measured.sum(1)
    gradient[:, -1] += count / h
    hessian[:, -1, -1] -= count / h**2
    return value, gradient, hessian


def censored_least_squares(
    design: np.ndarray, log_y: np.ndarray, side: np.ndarray, *, max_iter: int = 200, tol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate, the coefficients of log y on the design with censored rows, and whether it is fittable.

    design (B, n, k); log_y (B, n), the value or bound of each row; side (B, n) in {-1, 0, +1}. Rows with
    side 0 are fitted by least squares; with a censored row, maximum likelihood of the Tobit model. A
    replicate is fittable when its measured rows have a full-rank design. When the measured rows lie
    exactly on a line that every censored row is consistent with, the likelihood grows without bound as
    sigma -> 0: that line is the answer.
    """
    measured = (side == 0).astype(float)
    coefficients, rss, valid = _least_squares(design, log_y, measured)
    fitted = np.einsum("bnk,bk->bn", design, coefficients)
    consistent = np.all((side == 0) | (side * (fitted - log_y) >= 0), axis=1)
    exact = rss <= 1e-24 * np.maximum(measured.sum(1), 1)
    todo = valid & ~(exact & consistent)
    todo &= (side != 0).any(1)
    if not todo.any():
        return coefficients, valid
    x, y, s = design[todo], log_y[todo], side[todo]
    sigma = np.sqrt(np.maximum(rss[todo] / np.maximum(measured[todo].sum(1), 1), 1e-6))
    theta = np.concatenate([coefficients[todo], np.ones((len(sigma), 1))], axis=1) / sigma[:, None]
    active = np.ones(len(theta), dtype=bool)
    for _ in range(max_iter):
        value, gradient, hessian = _tobit_terms(x[active], y[active], s[active], theta[active], True)
        step = np.linalg.solve(-hessian, gradient[..., None])[..., 0]
        decrement = np.einsum("bk,bk->b", gradient, step)
        size = np.ones(len(step))
        for _ in range(40):  # halve until the likelihood does not fall and sigma stays positive
            trial = theta[active] + size[:, None] * step
            ok = trial[:, -1] > 0
            trial_value = np.full(len(trial), -np.inf)
            trial_value[ok] = _tobit_terms(x[active][ok], y[active][ok], s[active][ok], trial[ok], False)
            good = trial_value >= value - 1e-12 * np.abs(value)
            if good.all():
                break
            size = np.where(good, size, size / 2)
        rows = np.flatnonzero(active)
        theta[rows] = trial
        finished = decrement < tol
        active[rows[finished]] = False
        if not active.any():
            break
    converged = ~active
    result = coefficients.copy()
    result[todo] = theta[:, :-1] / theta[:, -1:]
    valid = valid.copy()
    valid[np.flatnonzero(todo)[~converged]] = False
    return result, valid


def goodness(
    design: np.ndarray, log_y: np.ndarray, side: np.ndarray, coefficients: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate, R^2 and the scatter of the measured rows about the fitted line.

    design (B, n, k), log_y and side (B, n), coefficients (B, k). R^2 is 1 when the measured rows do not
    vary, below 0 when censored rows pull the line away from them. The scatter is the residual standard
    deviation sqrt(RSS / (n - k)) over the n measured rows (NaN when n <= k): how far a cell typically lies
    off the line, in log y.
    """
    measured = side == 0
    count = measured.sum(1)
    mean = np.where(measured, log_y, 0.0).sum(1) / np.maximum(count, 1)
    total = np.where(measured, (log_y - mean[:, None]) ** 2, 0.0).sum(1)
    rss = np.where(measured, (log_y - np.einsum("bnk,bk->bn", design, coefficients)) ** 2, 0.0).sum(1)
    r2 = np.where(total > 0, 1.0 - rss / np.where(total > 0, total, 1.0), 1.0)
    free = count - design.shape[-1]
    scatter = np.where(free > 0, np.sqrt(rss / np.maximum(free, 1)), np.nan)
    return r2, scatter


def resample(
    cells: Cells, n_bootstrap: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """B resamples of the cells: which cell each draw is (B, n; within each stratum) and its median over its seeds,
    themselves drawn with replacement (B, n)."""
    n = len(cells.logs)
    strata = np.zeros(n, dtype=int) if strata is None else strata
    index = np.empty((n_bootstrap, n), dtype=int)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        index[:, members] = members[rng.integers(0, len(members), size=(n_bootstrap, len(members)))]
    log_y = np.empty((n_bootstrap, n))
    for cell, values in enumerate(cells.logs):
        drawn = index == cell
        seeds = values[rng.integers(0, len(values), size=(int(drawn.sum()), len(values)))]
        log_y[drawn] = np.median(seeds, axis=1)
    return index, log_y


def bootstrap(
    cells: Cells, design: np.ndarray, n_bootstrap: int, seed: int, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients, R^2 and scatter (``goodness``) of the fittable replicates, each resampling the cells (within
    each stratum) and their seeds."""
    index, log_y = resample(cells, n_bootstrap, np.random.default_rng(seed), strata)
    coefficients, valid = censored_least_squares(design[index], log_y, cells.side[index])
    r2, scatter = goodness(design[index], log_y, cells.side[index], coefficients)
    return coefficients[valid], r2[valid], scatter[valid]


def interval(replicates: np.ndarray, n_bootstrap: int, ci: float) -> tuple[float, float]:
    """The percentile interval at level ``ci``, NaN when too few replicates could be fitted."""
    if len(replicates) < MIN_VALID_REPLICATES * n_bootstrap:
        return (math.nan, math.nan)
    low, high = np.percentile(replicates, [50 * (1 - ci), 50 * (1 + ci)])
    return (float(low), float(high))


@dataclass(frozen=True)
class Regression:
    """A censored least-squares fit of the cells' log y on a design, with its bootstrap replicates."""

    coefficients: np.ndarray
    replicates: np.ndarray  # (fittable replicates, k)
    r2: float  # over the measured cells, about the fitted line (``goodness``)
    scatter: float  # the measured cells' residual standard deviation in log y (``goodness``)
    r2_replicates: np.ndarray  # (fittable replicates,)
    scatter_replicates: np.ndarray  # (fittable replicates,)

    def interval(self, combination: np.ndarray, n_bootstrap: int, ci: float) -> tuple[float, float]:
        return interval(self.replicates @ combination, n_bootstrap, ci)


def regress(
    cells: Cells, design: np.ndarray, n_bootstrap: int, seed: int, strata: np.ndarray | None = None
) -> Regression:
    """Fit the cells (``censored_least_squares``) and bootstrap it; raises ValueError when it is not fittable.

    ``strata`` (one label per cell) makes the bootstrap draw cells within each stratum (None: one stratum).
    """
    log_y = cells.log_y
    coefficients, valid = censored_least_squares(design[None], log_y[None], cells.side[None])
    if not valid[0]:
        raise ValueError(
            f"the {int((cells.side == 0).sum())} measured cell(s) do not determine the fit "
            f"({design.shape[1]} coefficients; censored cells: {cells.n_censored})"
        )
    r2, scatter = goodness(design[None], log_y[None], cells.side[None], coefficients)
    replicates, r2_replicates, scatter_replicates = bootstrap(cells, design, n_bootstrap, seed, strata)
    return Regression(coefficients[0], replicates, float(r2[0]), float(scatter[0]), r2_replicates, scatter_replicates)
