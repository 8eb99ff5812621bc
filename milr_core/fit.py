"""Power laws in depth x width fitted to sweep cells: the point estimate, honest intervals, censored cells.

The paper's claim is eta* ~ c (d w)^(-alpha) "provided that (i) the width of the network is sufficiently
large compared to the depth" (and the sharpness at init lambda_1 ~ c (d w)^(+beta)). ``fit_power_law``
fits y = c x^exponent with x = d w, so alpha = -exponent for eta* (``PowerLawFit.alpha``).

- **Cells.** A *cell* is one (depth, width); its value is the median over its seeds of log y (the log of
  the median for an odd number of seeds, of the geometric mean of the middle two for an even number): it
  resists the occasional seed whose search stopped on a non-monotone outcome.
- **Point estimate.** Least squares of the cells' log y on log x, each cell weighing the same.
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
  misfit (cells off the line) widen the interval, which resampling seeds alone would not.
- **Regime.** ``in_regime`` is our one stated reading of condition (i) (see ``MIN_DEPTH``), and
  ``cutoff_sweep`` refits over a range of cutoffs so that a reader sees the rule is not cherry-picked.
- **Is d w the variable?** ``fit_product_form`` fits log y = c + a log d + b log w; a law in d w needs
  a = b, so it reports the interval of a - b.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

N_BOOTSTRAP = 1000  # bootstrap replicates per fit (ours)
CI = 0.95  # level of every interval (ours)
MIN_VALID_REPLICATES = 0.5  # an interval needs this fraction of replicates to be fittable, else it is NaN (ours)

# Condition (i) as a rule (ours): the power law is judged on the cells with depth >= MIN_DEPTH and
# depth / width <= MAX_DEPTH_OVER_WIDTH. Why, from the store committed at 8fb1c00 (three seeds per cell, depths
# 1-16, widths 16-2048; ``cutoff_sweep`` and ``tables.width_slope_by_depth`` on it):
# - Shallow networks follow another law however wide they are. At depth 1 eta* *rises* with width on MNIST
#   (width slope +0.21 [0.14, 0.28]: 1.5 at w = 16, 4.0 at w = 1024); at depth 2 it is flat in width on MNIST
#   (-0.01 [-0.13, 0.14]) and CIFAR-10 (+0.08), so no law in d w can hold there, and no cutoff on d / w alone
#   rescues the fit: with d / w <= 1/16, R^2 is 0.63 / 0.53 / 0.77 (MNIST / CIFAR-10 / Gaussians) with every
#   depth, 0.80 / 0.75 / 0.85 from depth 2, 0.94 / 0.83 / 0.96 from depth 4.
# - From depth 4 on, d / w decides: R^2 over any d / w 0.26 / 0.28 / 0.97, at 1/8 0.91 / 0.82 / 0.97, at 1/16
#   0.94 / 0.83 / 0.96, at 1/32 0.95 / 0.91 / 0.96 with 9 / 6 / 11 cells left. 1/16 is where R^2 stops rising
#   but for a few hundredths while 9-14 cells per dataset remain (1/8 would read nearly the same).
# Chosen on the 8fb1c00 store; re-read ``cutoff_sweep`` on a new store before trusting the rule there.
MIN_DEPTH = 4
MAX_DEPTH_OVER_WIDTH = 1 / 16
REGIME_RULE = f"depth >= {MIN_DEPTH} and depth/width <= 1/{round(1 / MAX_DEPTH_OVER_WIDTH)}"
SWEEP_MIN_DEPTHS = (1, 2, 4, 8)  # the alternatives ``cutoff_sweep`` shows (ours)
SWEEP_CUTOFFS = (math.inf, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64)

# The search statuses (``search.STATUSES``) that censor eta*, and where each quantity keeps them.
BELOW, ABOVE = "no_success", "no_failure"  # eta* < bracket low end; eta* >= bracket high end
CENSORING = {"eta_star": ("status", "bracket"), "late_max_lr": ("late_status", "late_bracket")}
UNREACHED = "unreached"  # a seed whose search ran the fallback and found no LR that reaches t (eta* only)


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


def censoring_bound(status: str, bracket) -> float:
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
        bound = np.array([censoring_bound(s, b) for s, b in zip(status, frame[bracket_column])])
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


def least_squares(
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


def tobit_terms(
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
    coefficients, rss, valid = least_squares(design, log_y, measured)
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
        value, gradient, hessian = tobit_terms(x[active], y[active], s[active], theta[active], True)
        step = np.linalg.solve(-hessian, gradient[..., None])[..., 0]
        decrement = np.einsum("bk,bk->b", gradient, step)
        size = np.ones(len(step))
        for _ in range(40):  # halve until the likelihood does not fall and sigma stays positive
            trial = theta[active] + size[:, None] * step
            ok = trial[:, -1] > 0
            trial_value = np.full(len(trial), -np.inf)
            trial_value[ok] = tobit_terms(x[active][ok], y[active][ok], s[active][ok], trial[ok], False)
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


def bootstrap(cells: Cells, design: np.ndarray, n_bootstrap: int, seed: int, strata: np.ndarray) -> np.ndarray:
    """Coefficients of the fittable replicates, each resampling the cells (within each stratum) and their seeds."""
    rng = np.random.default_rng(seed)
    n = len(cells.logs)
    index = np.empty((n_bootstrap, n), dtype=int)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        index[:, members] = members[rng.integers(0, len(members), size=(n_bootstrap, len(members)))]
    log_y = np.empty((n_bootstrap, n))
    for cell, values in enumerate(cells.logs):
        drawn = index == cell
        seeds = values[rng.integers(0, len(values), size=(int(drawn.sum()), len(values)))]
        log_y[drawn] = np.median(seeds, axis=1)
    coefficients, valid = censored_least_squares(design[index], log_y, cells.side[index])
    return coefficients[valid]


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
    r2: float  # over the measured cells, about the fitted line (below 0 when censored cells pull it away from them)

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
    measured = cells.side == 0
    residual = (log_y - design @ coefficients[0])[measured]
    total = np.sum((log_y[measured] - log_y[measured].mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / total if total > 0 else 1.0
    strata = np.zeros(len(log_y), dtype=int) if strata is None else strata
    return Regression(coefficients[0], bootstrap(cells, design, n_bootstrap, seed, strata), float(r2))


# ----------------------------------------------------------------------------------------------------------
# power laws in d w


@dataclass(frozen=True)
class PowerLawFit:
    """y = c x^exponent with x = depth * width; intervals are bootstrap percentiles at level ``ci``."""

    quantity: str
    exponent: float
    c: float
    r2: float  # over the measured cells (see ``Regression.r2``)
    exponent_ci: tuple[float, float]
    c_ci: tuple[float, float]
    ci: float
    n_bootstrap: int
    n_cells: int  # censored cells included
    n_values: int  # seeds with a value, in measured cells
    n_dropped: int  # seeds left out (failed where others of their cell converged, without a value, or unreached)
    n_censored: int  # cells where every seed failed, fitted as censored

    @property
    def has_interval(self) -> bool:
        return bool(np.all(np.isfinite(self.exponent_ci)))

    @property
    def alpha(self) -> float:
        """The paper's eta* exponent, in eta* ~ c (d w)^(-alpha)."""
        return -self.exponent

    @property
    def alpha_ci(self) -> tuple[float, float]:
        return (-self.exponent_ci[1], -self.exponent_ci[0])

    def predict(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.c * np.asarray(x, dtype=float) ** self.exponent

    def to_dict(self) -> dict:
        return {**asdict(self), "alpha": self.alpha, "alpha_ci": list(self.alpha_ci)}


def distinct_values(cells: Cells, values: np.ndarray, what: str, needed: int = 2) -> None:
    if len(np.unique(values[cells.side == 0])) < needed:
        raise ValueError(f"the fit needs at least {needed} distinct {what} among the cells with a value, got "
                         f"{len(cells.logs) - cells.n_censored} such cell(s)")  # fmt: skip


def fit_power_law(
    frame: pd.DataFrame, quantity: str = "eta_star", *, n_bootstrap: int = N_BOOTSTRAP, ci: float = CI, seed: int = 0
) -> PowerLawFit:
    """Fit ``quantity`` = c (depth * width)^exponent over the cells of ``frame`` (one row per cell and seed)."""
    cells = cell_values(frame, quantity)
    log_x = np.log(cells.table["depth"].to_numpy(float) * cells.table["width"].to_numpy(float))
    distinct_values(cells, log_x, "depth * width values")
    design = np.stack([log_x, np.ones_like(log_x)], axis=1)
    fit = regress(cells, design, n_bootstrap, seed)
    log_c_ci = fit.interval(np.array([0.0, 1.0]), n_bootstrap, ci)
    return PowerLawFit(
        quantity=quantity,
        exponent=float(fit.coefficients[0]),
        c=float(np.exp(fit.coefficients[1])),
        r2=fit.r2,
        exponent_ci=fit.interval(np.array([1.0, 0.0]), n_bootstrap, ci),
        c_ci=(math.exp(log_c_ci[0]), math.exp(log_c_ci[1])),
        ci=ci,
        n_bootstrap=n_bootstrap,
        n_cells=len(cells.logs),
        n_values=cells.n_values,
        n_dropped=cells.n_dropped,
        n_censored=cells.n_censored,
    )


def residuals(frame: pd.DataFrame, fit: PowerLawFit) -> pd.DataFrame:
    """One row per cell of ``frame``: its value against the fitted law.

    Columns: depth, width, n_seeds, censored ("", "below", "above": then ``value`` is the bound), dw,
    depth_over_width, value (the median over seeds), fitted, residual (ln value - ln fitted) and
    in_regime (``in_regime``). ``fit`` may come from other cells (e.g. those in the regime only), so
    that the cells it left out are measured against it.
    """
    cells = cell_values(frame, fit.quantity)
    table = cells.table
    dw = table["depth"] * table["width"]
    fitted = fit.predict(dw.to_numpy(float))
    return table.assign(
        dw=dw,
        depth_over_width=table["depth"] / table["width"],
        value=np.exp(cells.log_y),
        fitted=fitted,
        residual=cells.log_y - np.log(fitted),
        in_regime=in_regime(table),
    )


# ----------------------------------------------------------------------------------------------------------
# condition (i): the regime, and the fit against the cutoff


def in_regime(
    frame: pd.DataFrame, min_depth: int = MIN_DEPTH, max_depth_over_width: float = MAX_DEPTH_OVER_WIDTH
) -> pd.Series:
    """Per row, whether its cell is in the power law's regime: depth >= min_depth and depth / width <= the cutoff.

    The defaults are our reading of condition (i), chosen as the comment at ``MIN_DEPTH`` explains.
    """
    return (frame["depth"] >= min_depth) & (frame["depth"] / frame["width"] <= max_depth_over_width)


def fit_in_regime(
    frame: pd.DataFrame,
    quantity: str = "eta_star",
    *,
    min_depth: int = MIN_DEPTH,
    max_depth_over_width: float = MAX_DEPTH_OVER_WIDTH,
    **options,
) -> PowerLawFit:
    """``fit_power_law`` over the cells in the regime (by default our rule, ``REGIME_RULE``)."""
    return fit_power_law(frame[in_regime(frame, min_depth, max_depth_over_width)], quantity, **options)


def cutoff_label(max_depth_over_width: float) -> str:
    return "none" if math.isinf(max_depth_over_width) else f"1/{round(1 / max_depth_over_width)}"


def cutoff_sweep(
    frame: pd.DataFrame,
    quantity: str = "eta_star",
    *,
    min_depths: tuple[int, ...] = SWEEP_MIN_DEPTHS,
    cutoffs: tuple[float, ...] = SWEEP_CUTOFFS,
    **options,
) -> pd.DataFrame:
    """alpha and R^2 of the power law over the cells with depth >= m and d / w <= c, for every m and c.

    One row per (min depth, cutoff): min_depth, max_depth_over_width (inf: no cutoff), cutoff (as text),
    alpha, alpha_low, alpha_high, r2, n_cells, n_censored, our_rule (the row of ``in_regime``'s
    defaults) and note (why a row has no fit).
    """
    rows = []
    for min_depth in min_depths:
        for cutoff in cutoffs:
            row = {"min_depth": min_depth, "max_depth_over_width": cutoff, "cutoff": cutoff_label(cutoff),
                   "our_rule": min_depth == MIN_DEPTH and cutoff == MAX_DEPTH_OVER_WIDTH}  # fmt: skip
            try:
                fit = fit_in_regime(frame, quantity, min_depth=min_depth, max_depth_over_width=cutoff, **options)
            except ValueError as error:
                rows.append(row | {"note": f"no fit: {error}"})
                continue
            rows.append(row | {"alpha": fit.alpha, "alpha_low": fit.alpha_ci[0], "alpha_high": fit.alpha_ci[1],
                               "r2": fit.r2, "n_cells": fit.n_cells, "n_censored": fit.n_censored,
                               "note": ""})  # fmt: skip
    columns = ["min_depth", "max_depth_over_width", "cutoff", "alpha", "alpha_low", "alpha_high", "r2", "n_cells",
               "n_censored", "our_rule", "note"]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=columns)


# ----------------------------------------------------------------------------------------------------------
# is d w the variable? depth and width separately


@dataclass(frozen=True)
class ProductFormFit:
    """log y = c + a log d + b log w over cells; a law in d w needs a = b, i.e. an interval of a - b holding 0."""

    quantity: str
    depth_exponent: float  # a
    depth_exponent_ci: tuple[float, float]
    width_exponent: float  # b
    width_exponent_ci: tuple[float, float]
    difference: float  # a - b
    difference_ci: tuple[float, float]
    r2: float
    ci: float
    n_cells: int
    n_censored: int

    @property
    def consistent(self) -> bool:
        """Whether the data are consistent with a law in d w (a - b's interval contains 0)."""
        low, high = self.difference_ci
        return bool(low <= 0 <= high)


def fit_product_form(
    frame: pd.DataFrame, quantity: str = "eta_star", *, n_bootstrap: int = N_BOOTSTRAP, ci: float = CI, seed: int = 0
) -> ProductFormFit:
    """Fit ``quantity`` = c d^a w^b over the cells of ``frame`` (censored cells as in ``fit_power_law``)."""
    cells = cell_values(frame, quantity)
    log_d = np.log(cells.table["depth"].to_numpy(float))
    log_w = np.log(cells.table["width"].to_numpy(float))
    distinct_values(cells, log_d, "depths")
    distinct_values(cells, log_w, "widths")
    design = np.stack([log_d, log_w, np.ones_like(log_d)], axis=1)
    fit = regress(cells, design, n_bootstrap, seed)
    a, b = (float(v) for v in fit.coefficients[:2])
    return ProductFormFit(
        quantity, a, fit.interval(np.array([1.0, 0.0, 0.0]), n_bootstrap, ci),
        b, fit.interval(np.array([0.0, 1.0, 0.0]), n_bootstrap, ci),
        a - b, fit.interval(np.array([1.0, -1.0, 0.0]), n_bootstrap, ci),
        fit.r2, ci, len(cells.logs), cells.n_censored,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# width at fixed depth


@dataclass(frozen=True)
class WidthExponent:
    """The slope s of log y on log width at fixed depth (one intercept per depth), y ~ c_d w^s.

    s = 0 means y does not depend on width once the depth is fixed (what muP aims at for eta*).
    """

    quantity: str
    slope: float
    slope_ci: tuple[float, float]
    ci: float
    n_cells: int
    n_depths: int
    n_values: int
    n_dropped: int
    n_censored: int


def width_exponent(
    frame: pd.DataFrame, quantity: str = "eta_star", *, n_bootstrap: int = N_BOOTSTRAP, ci: float = CI, seed: int = 0
) -> WidthExponent:
    """Fit the cells' log y on log width with a separate intercept per depth (censored cells as in ``fit_power_law``).

    Depths without a measured cell cannot inform the slope and are left out; the bootstrap draws cells
    within each depth, so that every replicate keeps every depth.
    """
    cells = cell_values(frame, quantity)
    measured = cells.table[cells.side == 0]
    if not (measured.groupby("depth")["width"].nunique() >= 2).any():
        raise ValueError("a width exponent needs some depth with at least two widths that have a value")
    cells = cell_values(frame[frame["depth"].isin(measured["depth"])], quantity)
    depth = cells.table["depth"].to_numpy()
    depths = np.unique(depth)
    log_w = np.log(cells.table["width"].to_numpy(float))
    design = np.column_stack([log_w] + [(depth == d).astype(float) for d in depths])
    fit = regress(cells, design, n_bootstrap, seed, strata=depth)
    first = np.eye(design.shape[1])[0]
    return WidthExponent(
        quantity, float(fit.coefficients[0]), fit.interval(first, n_bootstrap, ci), ci, len(cells.logs), len(depths),
        cells.n_values, cells.n_dropped, cells.n_censored,
    )  # fmt: skip
