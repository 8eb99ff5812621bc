"""Power-law fits y = c (d w)^exponent over sweep cells, with seed-bootstrap confidence intervals.

The paper's claim is eta* ~ c (d w)^(-alpha) when the width is large compared to the depth (its
condition (i)), and lambda_1 ~ c (d w)^(+beta) for the sharpness at init. One function fits both:
it returns ``exponent`` of y = c x^exponent with x = depth * width, so alpha = -exponent for eta*
(``PowerLawFit.alpha``) and beta = exponent for lambda_1.

- A *cell* is one (depth, width); its seeds are aggregated by the median of log y (the log of the
  median for an odd number of seeds, of the geometric mean of the middle two for an even number).
  The median resists the occasional seed whose search stopped on a non-monotone outcome.
- The fit is ordinary least squares of log y on log x over cells, each cell weighing the same.
- Confidence intervals: B bootstrap replicates, each resampling the seeds of every cell with
  replacement (a cell keeps its number of seeds) and refitting; percentile intervals. Only seed
  noise is resampled, not the choice of cells.
- Values that are missing, non-finite or not positive (a search that never converged) cannot enter a
  log-log fit; they are dropped and counted in ``n_dropped``, never hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PowerLawFit:
    """y = c x^exponent with x = depth * width; intervals are bootstrap percentiles at level ``ci``."""

    quantity: str
    exponent: float
    c: float
    r2: float
    exponent_ci: tuple[float, float]
    c_ci: tuple[float, float]
    ci: float
    n_bootstrap: int
    n_cells: int
    n_values: int
    n_dropped: int

    @property
    def has_interval(self) -> bool:
        """True when the seed bootstrap had anything to resample (with one seed per cell the interval is a point)."""
        return self.n_values > self.n_cells

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


def cell_values(frame: pd.DataFrame, quantity: str) -> tuple[pd.DataFrame, list[np.ndarray], int]:
    """The cells (depth, width), each cell's log-values over seeds, and how many values were dropped."""
    missing = [column for column in ("depth", "width", "seed", quantity) if column not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the column(s) {', '.join(missing)}; columns: {', '.join(frame.columns)}")
    duplicated = frame.duplicated(["depth", "width", "seed"])
    if duplicated.any():
        first = frame.loc[duplicated, ["depth", "width", "seed"]].iloc[0].tolist()
        raise ValueError(
            f"(depth, width, seed) = {tuple(first)} appears more than once: fit one dataset and variant at a time"
        )
    values = pd.to_numeric(frame[quantity], errors="coerce").astype(float)
    usable = np.isfinite(values) & (values > 0)
    kept = frame.loc[usable, ["depth", "width"]].assign(log_y=np.log(values[usable]))
    groups = kept.groupby(["depth", "width"], sort=True)["log_y"]
    cells = groups.size().rename("n_seeds").reset_index()
    return cells, [group.to_numpy() for _, group in groups], int((~usable).sum())


def least_squares(log_x: np.ndarray, log_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exponent, log c) of log y = log c + exponent log x; log_y may hold B replicates as rows."""
    design = np.stack([log_x, np.ones_like(log_x)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, np.atleast_2d(log_y).T, rcond=None)
    return coefficients[0], coefficients[1]


def fit_power_law(
    frame: pd.DataFrame,
    quantity: str = "eta_star",
    *,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> PowerLawFit:
    """Fit ``quantity`` = c (depth * width)^exponent over the cells of ``frame`` (one row per cell and seed)."""
    cells, logs, n_dropped = cell_values(frame, quantity)
    log_x = np.log(cells["depth"].to_numpy(float) * cells["width"].to_numpy(float))
    if len(np.unique(log_x)) < 2:
        raise ValueError(f"a power-law fit needs at least two distinct depth * width values, got {len(cells)} cell(s)")
    log_y = np.array([np.median(values) for values in logs])
    exponent, log_c = least_squares(log_x, log_y)
    fitted = log_c + exponent * log_x
    total = np.sum((log_y - log_y.mean()) ** 2)
    r2 = 1.0 - np.sum((log_y - fitted) ** 2) / total if total > 0 else 1.0

    rng = np.random.default_rng(seed)
    replicates = np.stack(
        [np.median(values[rng.integers(0, len(values), size=(n_bootstrap, len(values)))], axis=1) for values in logs],
        axis=1,
    )  # (B, cells)
    boot_exponent, boot_log_c = least_squares(log_x, replicates)
    tails = [50 * (1 - ci), 50 * (1 + ci)]
    return PowerLawFit(
        quantity=quantity,
        exponent=float(exponent[0]),
        c=float(np.exp(log_c[0])),
        r2=float(r2),
        exponent_ci=tuple(float(v) for v in np.percentile(boot_exponent, tails)),
        c_ci=tuple(float(v) for v in np.exp(np.percentile(boot_log_c, tails))),
        ci=ci,
        n_bootstrap=n_bootstrap,
        n_cells=len(cells),
        n_values=sum(len(values) for values in logs),
        n_dropped=n_dropped,
    )


def residuals(frame: pd.DataFrame, fit: PowerLawFit) -> pd.DataFrame:
    """One row per cell: depth, width, d w, d / w, the median value, the fitted value and the log residual.

    Plotting ``residual`` against ``depth_over_width`` shows where the power law breaks down as the
    network stops being wide compared to its depth (the paper's condition (i)).
    """
    cells, logs, _ = cell_values(frame, fit.quantity)
    dw = cells["depth"] * cells["width"]
    log_y = np.array([np.median(values) for values in logs])
    fitted = fit.predict(dw.to_numpy(float))
    return cells.assign(
        dw=dw,
        depth_over_width=cells["depth"] / cells["width"],
        value=np.exp(log_y),
        fitted=fitted,
        residual=log_y - np.log(fitted),
    )


def fit_wide(frame: pd.DataFrame, max_depth_over_width: float, quantity: str = "eta_star", **options) -> PowerLawFit:
    """Fit only the cells with depth / width <= ``max_depth_over_width`` (condition (i): width >> depth)."""
    wide = frame[frame["depth"] / frame["width"] <= max_depth_over_width]
    if wide.empty:
        raise ValueError(f"no cell has depth / width <= {max_depth_over_width}")
    return fit_power_law(wide, quantity, **options)


@dataclass(frozen=True)
class WidthExponent:
    """The slope s of log y on log width at fixed depth (one intercept per depth), y ~ c_d w^s.

    s = 0 means y does not depend on width once the depth is fixed (what muP aims at for eta*). The
    interval resamples each cell's seeds, as ``fit_power_law`` does; with one seed per cell it is a point.
    """

    quantity: str
    slope: float
    slope_ci: tuple[float, float]
    ci: float
    n_cells: int
    n_depths: int
    n_values: int
    n_dropped: int


def width_exponent(
    frame: pd.DataFrame, quantity: str = "eta_star", *, n_bootstrap: int = 1000, ci: float = 0.95, seed: int = 0
) -> WidthExponent:
    """Least squares of each cell's median log y on log width with a separate intercept per depth."""
    cells, logs, n_dropped = cell_values(frame, quantity)
    depths = np.sort(cells["depth"].unique())
    spread = cells.groupby("depth")["width"].nunique()
    if not (spread >= 2).any():
        raise ValueError("a width exponent needs some depth with at least two widths")
    log_w = np.log(cells["width"].to_numpy(float))
    design = np.column_stack([log_w] + [(cells["depth"] == d).to_numpy(float) for d in depths])
    log_y = np.array([np.median(values) for values in logs])
    slope = np.linalg.lstsq(design, log_y, rcond=None)[0][0]
    rng = np.random.default_rng(seed)
    replicates = np.stack(
        [np.median(values[rng.integers(0, len(values), size=(n_bootstrap, len(values)))], axis=1) for values in logs],
        axis=1,
    )  # (B, cells)
    boot = np.linalg.lstsq(design, replicates.T, rcond=None)[0][0]
    tails = [50 * (1 - ci), 50 * (1 + ci)]
    return WidthExponent(
        quantity, float(slope), tuple(float(v) for v in np.percentile(boot, tails)), ci, len(cells), len(depths),
        sum(len(values) for values in logs), n_dropped,
    )  # fmt: skip
