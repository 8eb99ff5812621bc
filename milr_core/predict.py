"""Predict eta* of an untrained network from a store of eta* records, by the power law in depth x width.

``predict_eta_star`` selects the store's eta* cells of one dataset, parameterisation and input-layer LR
factor, fits eta* = c (d w)^exponent over them (``fit.fit_power_law``: cell medians over seeds, least
squares in log-log, cells where every seed failed kept as censored, those where no LR reached t left out)
and evaluates it at the requested d w.

The interval is ours: the classical least-squares *prediction* interval of a new cell's log eta*,
log eta_hat +- t_{n-2} s sqrt(1 + 1/n + (u - u_bar)^2 / S_uu), u = log(d w), s the residual scatter of
the n fitted cells with a value around the line. It combines the uncertainty of the fitted line with the
cells' scatter around it (seed noise and misfit alike); the fit's bootstrap CI of alpha is reported beside
it. It assumes the residuals are alike everywhere, which fails where condition (i) does (d / w large),
hence the warnings.

If several groups of settings match (e.g. a sensitivity grid with other batch sizes), the group with
the most cells is used and the others are named in a warning. Warnings: d w outside the fitted range,
d / w above the largest fitted d / w (the paper's condition (i)), fewer than three cells (no scatter).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from milr_core.fit import MAX_DEPTH_OVER_WIDTH, MIN_DEPTH, fit_power_law, in_regime, residuals
from milr_core.store import ResultStore

SETTINGS = ("kind", "engine_version", "dtype", "threshold", "data.", "network.", "train.", "search.")


@dataclass
class Prediction:
    """eta* predicted at (depth, width), its interval, the fit it came from and every warning."""

    dataset: str
    depth: int
    width: int
    parameterisation: str
    input_lr_factor: float
    eta_star: float
    interval: tuple[float, float]
    ci: float
    fit: dict
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The prediction, its interval, the law's exponent and fit quality, what it was fitted on, the warnings."""
        fit = self.fit
        return {"dataset": self.dataset, "depth": self.depth, "width": self.width, "eta_star": self.eta_star,
                "interval": list(self.interval), "ci": self.ci, "alpha": fit["alpha"], "alpha_ci": fit["alpha_ci"],
                "r2": fit["r2"], "n_cells": fit["n_cells"], "fitted_on": {"min_depth": fit["min_depth"],
                "max_depth_over_width": fit["max_depth_over_width"], "dw_range": fit["dw_range"]},
                "warnings": self.warnings}  # fmt: skip


def eta_star_frame(store: str | Path) -> pd.DataFrame:
    """Every eta* record of an existing store, one row per cell and seed (``ResultStore.to_frame``)."""
    path = Path(store)
    if not path.is_dir():
        raise FileNotFoundError(f"no result store at {path}; run the sweeps first or pass another store")
    frame = ResultStore(path).to_frame()
    if frame.empty or "kind" not in frame or not (frame["kind"] == "eta_star").any():
        raise ValueError(f"the store {path} holds no eta* records")
    return frame[frame["kind"] == "eta_star"].reset_index(drop=True)


def _settings_key(frame: pd.DataFrame) -> pd.Series:
    """Per row, the canonical JSON of every setting but depth, width and seed: rows equal here belong together."""
    columns = sorted(c for c in frame.columns if c.startswith(SETTINGS) and frame[c].notna().any())
    plain = lambda value: value.item() if hasattr(value, "item") else str(value)  # noqa: E731 (numpy scalars)
    return frame[columns].apply(lambda row: json.dumps(row.to_dict(), sort_keys=True, default=plain), axis=1)


def _select_cells(
    frame: pd.DataFrame, dataset: str, parameterisation: str, input_lr_factor: float
) -> tuple[pd.DataFrame, list[str]]:
    """The rows of one dataset, parameterisation and input-LR factor, from the largest group of equal settings."""
    rows = frame[
        (frame["dataset"] == dataset)
        & (frame["network.parameterisation"] == parameterisation)
        & np.isclose(frame["network.input_lr_factor"].astype(float), input_lr_factor)
    ]
    if rows.empty:
        mine = frame[frame["dataset"] == dataset]
        have = sorted({(p, f) for p, f in zip(mine["network.parameterisation"], mine["network.input_lr_factor"])})
        known = ", ".join(f"{p} (input_lr_factor {f:g})" for p, f in have) or "none"
        raise ValueError(
            f"no eta* cells for dataset {dataset!r}, parameterisation {parameterisation!r}, input_lr_factor "
            f"{input_lr_factor:g}; the store has for {dataset!r}: {known}"
        )
    keys = _settings_key(rows)
    sizes = rows.groupby(keys)[["depth", "width"]].apply(lambda g: len(g.drop_duplicates()))
    chosen = sizes.idxmax()
    warnings = []
    if len(sizes) > 1:
        used, unused = (", ".join(sorted(rows.loc[mask, "grid"].unique())) for mask in (keys == chosen, keys != chosen))
        warnings.append(f"{len(sizes)} groups of settings match; used the largest ({sizes[chosen]} cells, grid "
                        f"{used}), not the others (grid {unused})")  # fmt: skip
    return rows[keys == chosen], warnings


def predict_eta_star(
    frame: pd.DataFrame,
    dataset: str,
    depth: int,
    width: int,
    *,
    parameterisation: str = "standard",
    input_lr_factor: float = 0.1,
    max_depth_over_width: float | None = None,
    min_depth: int = 1,
    ci: float = 0.95,
    n_bootstrap: int = 1000,
) -> Prediction:
    """eta* at (depth, width) from the power law fitted to ``frame``'s matching cells (``eta_star_frame``).

    Args:
        frame: a store's eta* records (``eta_star_frame``).
        dataset, depth, width: the network to predict for.
        parameterisation, input_lr_factor: which cells of the store to fit (those with these settings).
        max_depth_over_width, min_depth: fit only the cells with depth >= ``min_depth`` and d / w <=
            ``max_depth_over_width`` (None: any); ``fit.MIN_DEPTH`` and ``fit.MAX_DEPTH_OVER_WIDTH`` are our regime.
        ci, n_bootstrap: the prediction interval's level, the fit's bootstrap replicates.

    Returns:
        A ``Prediction``: eta*, its interval, the fit it came from and every warning (outside the fitted cells, few
        cells, several groups of settings).
    """
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got {depth}, {width}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    cells, warnings = _select_cells(frame, dataset, parameterisation, input_lr_factor)
    cells = cells[in_regime(cells, min_depth, math.inf if max_depth_over_width is None else max_depth_over_width)]
    if cells.empty:
        raise ValueError(f"no {dataset!r} cell has depth >= {min_depth} and d/w <= {max_depth_over_width}")
    fit = fit_power_law(cells, n_bootstrap=n_bootstrap, ci=ci)
    fitted = residuals(cells, fit)
    measured = fitted[fitted["censored"] == ""]  # a censored cell's residual is only a bound
    u, u_star = np.log(measured["dw"].to_numpy(float)), math.log(depth * width)
    n = len(measured)
    centre = float(fit.predict(depth * width))
    scatter = math.sqrt(np.sum(measured["residual"] ** 2) / (n - 2)) if n > 2 else None
    if scatter is not None:
        spread = scatter * math.sqrt(1 + 1 / n + (u_star - u.mean()) ** 2 / np.sum((u - u.mean()) ** 2))
        half = stats.t.ppf(0.5 + ci / 2, n - 2) * spread
        interval = (centre * math.exp(-half), centre * math.exp(half))
    else:
        interval = (math.nan, math.nan)
        warnings.append(f"only {n} cells with a value: no scatter around the fit, so no interval")
    dw_range = (int(fitted["dw"].min()), int(fitted["dw"].max()))
    if not dw_range[0] <= depth * width <= dw_range[1]:
        warnings.append(f"d*w = {depth * width} lies outside the fitted range [{dw_range[0]}, {dw_range[1]}]")
    largest_ratio = float(fitted["depth_over_width"].max())
    cutoff = math.inf if max_depth_over_width is None else max_depth_over_width
    if depth < min_depth or depth / width > cutoff:
        warnings.append(f"depth {depth}, width {width} lies outside the cells the law was fitted on (depth >= "
                        f"{min_depth}, d/w <= {cutoff:.3g}): the law was not measured to hold there")  # fmt: skip
    elif depth / width > largest_ratio:
        warnings.append(f"d/w = {depth / width:.3g} exceeds the largest fitted d/w ({largest_ratio:.3g}): "
                        "condition (i), width large compared to depth, may fail")  # fmt: skip
    summary = {
        **{k: fit.to_dict()[k] for k in ("alpha", "alpha_ci", "c", "r2", "n_cells", "n_values", "n_dropped",
                                            "n_censored")},
        "dw_range": list(dw_range),
        "max_fitted_depth_over_width": largest_ratio,
        "max_depth_over_width": max_depth_over_width,
        "min_depth": min_depth,
        "residual_scatter": scatter,
        "cells": fitted[["depth", "width", "value", "fitted"]].to_dict("records"),
        "settings": json.loads(_settings_key(cells).iloc[0]),
    }
    return Prediction(dataset, depth, width, parameterisation, input_lr_factor, centre, interval, ci, summary, warnings)


def leave_one_cell_out(
    frame: pd.DataFrame,
    dataset: str,
    *,
    parameterisation: str = "standard",
    input_lr_factor: float = 0.1,
    regime: bool = False,
    ci: float = 0.95,
    n_bootstrap: int = 200,
) -> pd.DataFrame:
    """Each cell of one dataset predicted by ``predict_eta_star`` from the other cells of its group of settings.

    The group is chosen once on all cells (``_select_cells``), so leaving a cell out never switches groups.
    One row per cell with a usable eta*: depth, width, d w, ``measured`` (the median over seeds on the log
    scale, as the fit aggregates), ``predicted`` with its interval ``low`` / ``high`` (NaN when the other
    cells leave no scatter), ``covered`` (None then), ``log_error`` = ln(predicted / measured), the number
    of cells fitted and the prediction's warnings. Empty when fewer than three cells are usable.

    ``regime``: only the cells in the power law's regime (``fit.in_regime``, our rule) are predicted, each
    from the others in the regime. Censored cells are never predicted but enter the fits.
    """
    cells, _ = _select_cells(frame, dataset, parameterisation, input_lr_factor)
    limits = {"min_depth": MIN_DEPTH, "max_depth_over_width": MAX_DEPTH_OVER_WIDTH} if regime else {}
    if regime:
        cells = cells[in_regime(cells)]
    values = pd.to_numeric(cells["eta_star"], errors="coerce").astype(float)
    usable = cells[np.isfinite(values) & (values > 0)]
    rows = []
    for (depth, width), held in usable.groupby(["depth", "width"], sort=True):
        rest = usable[(usable["depth"] != depth) | (usable["width"] != width)]
        if (rest["depth"] * rest["width"]).nunique() < 2:
            continue
        fitted = cells[(cells["depth"] != depth) | (cells["width"] != width)]  # the rest, censored cells included
        prediction = predict_eta_star(fitted, dataset, int(depth), int(width), parameterisation=parameterisation,
                                      input_lr_factor=input_lr_factor, ci=ci, n_bootstrap=n_bootstrap, **limits)  # fmt: skip
        measured = float(np.exp(np.median(np.log(held["eta_star"].astype(float)))))
        low, high = prediction.interval
        rows.append({
            "dataset": dataset, "depth": int(depth), "width": int(width), "dw": int(depth * width),
            "measured": measured, "predicted": prediction.eta_star, "low": low, "high": high,
            "covered": None if math.isnan(low) else bool(low <= measured <= high),
            "log_error": math.log(prediction.eta_star / measured), "n_fitted": prediction.fit["n_cells"],
            "warnings": prediction.warnings,
        })  # fmt: skip
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = ("cells", "with interval", "coverage", "mean |log error|", "max |log error|", "typical factor",
                   "interval factor")  # fmt: skip


def held_out_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of a ``leave_one_cell_out`` table: cells, coverage of the intervals (over the cells that
    have one), mean and largest ``|ln(predicted / measured)|``, the factor ``exp(mean |log error|)``, and the
    interval factor, the median over cells of sqrt(high / low) (the interval is prediction x/÷ it)."""
    if table.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    grouped = table.assign(abs_error=table["log_error"].abs()).groupby("dataset", sort=False)
    summary = grouped.agg(cells=("abs_error", "size"), mean_error=("abs_error", "mean"), max_error=("abs_error", "max"))
    summary["with interval"] = grouped["covered"].apply(lambda c: int(c.notna().sum()))
    summary["coverage"] = grouped["covered"].apply(
        lambda c: float(c.dropna().astype(bool).mean()) if c.notna().any() else math.nan)  # fmt: skip
    summary["typical factor"] = np.exp(summary["mean_error"])
    summary["interval factor"] = grouped.apply(
        lambda g: float(np.sqrt(g["high"] / g["low"]).median()), include_groups=False)  # fmt: skip
    summary = summary.rename(columns={"mean_error": "mean |log error|", "max_error": "max |log error|"})
    return summary[list(SUMMARY_COLUMNS)]
