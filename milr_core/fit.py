"""Power laws in depth x width fitted to sweep cells: the point estimate, honest intervals, the regime.

The paper's claim is eta* ~ c (d w)^(-alpha) "provided that (i) the width of the network is sufficiently
large compared to the depth" (and the sharpness at init lambda_1 ~ c (d w)^(+beta)). ``fit_power_law``
fits y = c x^exponent with x = d w, so alpha = -exponent for eta* (``PowerLawFit.alpha``).

- **Cells, censoring, intervals.** ``censored.py``: a cell's value is the median over its seeds of log y,
  cells where every seed failed enter as censored (a Tobit fit), cells where no learning rate reached t
  are left out and listed, and every interval is a percentile interval of a bootstrap that resamples the
  cells and, within each, its seeds; R^2 and the cells' scatter about the law get one too.
- **Regime.** ``in_regime`` is our one stated reading of condition (i) (see ``MIN_DEPTH``), and
  ``cutoff_sweep`` refits over a range of cutoffs so that a reader sees the rule is not cherry-picked;
  ``narrow_misfit`` measures how far the networks the rule leaves out for being narrow lie off the law.
- **Is d w the variable?** ``fit_product_form`` fits log y = c + a log d + b log w; a law in d w needs
  a = b, so it reports the interval of a - b.
- **Width at fixed depth.** ``width_exponent``: the slope in width with one intercept per depth (muP).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from milr_core.censored import Cells, cell_values, interval, regress, resample

N_BOOTSTRAP = 1000  # bootstrap replicates per fit (ours)
CI = 0.95  # level of every interval (ours)

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


# ----------------------------------------------------------------------------------------------------------
# power laws in d w


@dataclass(frozen=True)
class PowerLawFit:
    """y = c x^exponent with x = depth * width; intervals are bootstrap percentiles at level ``ci``."""

    quantity: str
    exponent: float
    c: float
    r2: float  # over the measured cells (see ``censored.goodness``)
    r2_ci: tuple[float, float]
    scatter: float  # residual standard deviation of the measured cells' ln y about the law (``censored.goodness``)
    scatter_ci: tuple[float, float]
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


def _distinct_values(cells: Cells, values: np.ndarray, what: str, needed: int = 2) -> None:
    if len(np.unique(values[cells.side == 0])) < needed:
        raise ValueError(f"the fit needs at least {needed} distinct {what} among the cells with a value, got "
                         f"{len(cells.logs) - cells.n_censored} such cell(s)")  # fmt: skip


def fit_power_law(
    frame: pd.DataFrame, quantity: str = "eta_star", *, n_bootstrap: int = N_BOOTSTRAP, ci: float = CI, seed: int = 0
) -> PowerLawFit:
    """Fit ``quantity`` = c (depth * width)^exponent over the cells of ``frame`` (the module docstring says how).

    Args:
        frame: one row per network (cell and seed) with depth, width, the quantity and, for eta*, the search status.
        quantity: the column fitted ("eta_star", "lambda_1", ...).
        n_bootstrap, ci, seed: the cell-and-seed bootstrap's replicates, level and seed.

    Returns:
        A ``PowerLawFit``: the exponent (alpha = -exponent for eta*), c, R^2 and the scatter with their intervals,
        and how many cells, seeds, censored cells and dropped seeds entered it.
    """
    cells = cell_values(frame, quantity)
    log_x = np.log(cells.table["depth"].to_numpy(float) * cells.table["width"].to_numpy(float))
    _distinct_values(cells, log_x, "depth * width values")
    design = np.stack([log_x, np.ones_like(log_x)], axis=1)
    fit = regress(cells, design, n_bootstrap, seed)
    log_c_ci = fit.interval(np.array([0.0, 1.0]), n_bootstrap, ci)
    return PowerLawFit(
        quantity=quantity,
        exponent=float(fit.coefficients[0]),
        c=float(np.exp(fit.coefficients[1])),
        r2=fit.r2,
        r2_ci=interval(fit.r2_replicates, n_bootstrap, ci),
        scatter=fit.scatter,
        scatter_ci=interval(fit.scatter_replicates[np.isfinite(fit.scatter_replicates)], n_bootstrap, ci),
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


def _cutoff_label(max_depth_over_width: float) -> str:
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
            row = {"min_depth": min_depth, "max_depth_over_width": cutoff, "cutoff": _cutoff_label(cutoff),
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


@dataclass(frozen=True)
class Misfit:
    """How far the narrow cells (depth >= MIN_DEPTH, d / w above the cutoff) lie off the law fitted in the regime.

    ``factor`` is exp of the root mean square of ln(value / law) over the narrow cells with a value (1: on the
    law); its interval resamples the regime's cells (refitting the law) and the narrow cells, each with its
    seeds. ``shift`` is the mean of ln(value / law) (below 0: narrow networks take smaller learning rates).
    Narrow cells that are censored or where no learning rate reached t have no residual: they are counted.
    """

    factor: float
    factor_ci: tuple[float, float]
    shift: float
    n_cells: int
    n_censored: int
    n_unreached: int


def narrow_misfit(
    frame: pd.DataFrame, quantity: str = "eta_star", *, n_bootstrap: int = N_BOOTSTRAP, ci: float = CI, seed: int = 0
) -> Misfit:
    """``Misfit`` of the cells our rule leaves out for being narrow (not shallow), against the regime's law."""
    narrow_rows = (frame["depth"] >= MIN_DEPTH) & ~in_regime(frame)
    regime = cell_values(frame[in_regime(frame)], quantity)
    log_x = np.log(regime.table["depth"].to_numpy(float) * regime.table["width"].to_numpy(float))
    _distinct_values(regime, log_x, "depth * width values in the regime")
    fit = regress(regime, np.stack([log_x, np.ones_like(log_x)], axis=1), n_bootstrap, seed)
    narrow = cell_values(frame[narrow_rows], quantity)
    measured = narrow.side == 0
    if not measured.any():
        raise ValueError(f"no narrow cell (depth >= {MIN_DEPTH}, d/w above the cutoff) has a value")
    logs = [values for values, keep in zip(narrow.logs, measured) if keep]
    table = narrow.table[measured]
    log_dw = np.log(table["depth"].to_numpy(float) * table["width"].to_numpy(float))
    residual = np.array([np.median(v) for v in logs]) - (fit.coefficients[0] * log_dw + fit.coefficients[1])
    index, log_y = resample(Cells(table, logs, np.zeros(len(logs), int), 0, narrow.unreached), len(fit.replicates),
                            np.random.default_rng(seed + 1))  # fmt: skip
    lines = fit.replicates[:, :1] * log_dw[index] + fit.replicates[:, 1:]
    rms = np.sqrt(np.mean((log_y - lines) ** 2, axis=1))
    low, high = interval(rms, n_bootstrap, ci)
    return Misfit(float(np.exp(np.sqrt(np.mean(residual**2)))), (math.exp(low), math.exp(high)),
                  float(residual.mean()), int(measured.sum()), narrow.n_censored, len(narrow.unreached))  # fmt: skip


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
    _distinct_values(cells, log_d, "depths")
    _distinct_values(cells, log_w, "widths")
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
    slope_replicates: np.ndarray = field(repr=False, compare=False)  # the bootstrap's, to compare two slopes


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
        cells.n_values, cells.n_dropped, cells.n_censored, fit.replicates[:, 0],
    )  # fmt: skip
