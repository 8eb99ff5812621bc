"""Every tidy summary the chapters and the claims table need, from the frames of ``experiments.run_experiment``.

Each function takes experiment frames (one row per network: dataset, variant, depth, width, seed, the
record's fields, the settings dotted) and returns a DataFrame with a plain index. Summaries have
readable column names for display; frames with one row per network or cell (``join_sharpness``,
``late_networks``, ``residuals_table``) keep the store's field names so that figures can plot them.
A group that cannot be fitted gets a row whose ``note`` says why, so that a table on a tiny or partial
store still renders. Fits: ``fit.py`` (cell medians, censored cells kept, cell-and-seed bootstrap).

This module and ``fit.py`` import no torch: they load in well under a second. Every threshold that
turns these numbers into verdicts lives in ``claims.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from milr_core.fit import (
    CI,
    N_BOOTSTRAP,
    cutoff_sweep,
    fit_power_law,
    fit_product_form,
    in_regime,
    narrow_misfit,
    residuals,
    width_exponent,
)
from milr_core.predict import held_out_summary, leave_one_cell_out

ALL_CELLS, IN_REGIME = "all cells", "in regime"  # the two sets of cells a fit runs over (``fit.REGIME_RULE``)
SCOPES = (ALL_CELLS, IN_REGIME)
BY_DATASET = ("dataset",)  # the default grouping of every summary
KEYS = ["dataset", "depth", "width", "seed"]  # one network (the same seed: the same initial weights)
COUNTS = ("n cells", "censored cells", "seeds used", "seeds dropped", "networks", "depths", "widths", "narrowest",
          "widest", "min depth", "unreached cells")  # integer columns, kept so where a row without a fit leaves them empty


# ----------------------------------------------------------------------------------------------------------
# groups and fits


def table_of(rows: list[dict] | pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A summary with exactly ``columns`` in that order (missing values NaN), counts as nullable integers."""
    table = pd.DataFrame(rows).reindex(columns=list(columns))
    for column in COUNTS:
        if column in table:
            table[column] = table[column].astype("Int64")
    return table


def groups(frame: pd.DataFrame, by: Sequence[str]) -> list[tuple[dict, pd.DataFrame]]:
    """The groups of ``frame`` in order of appearance, each with its values of the ``by`` columns."""
    by = list(by)
    return [(dict(zip(by, key if isinstance(key, tuple) else (key,))), rows)
            for key, rows in frame.groupby(by, sort=False)]  # fmt: skip


def _scoped(frame: pd.DataFrame, scope: str) -> pd.DataFrame:
    if scope not in SCOPES:
        raise ValueError(f"unknown set of cells {scope!r}; known: {', '.join(SCOPES)}")
    return frame if scope == ALL_CELLS else frame[in_regime(frame)]


def attempt(fit: Callable, *args) -> tuple[object | None, str]:
    """``(fit(*args), "")`` or ``(None, "no fit: why")`` when the cells cannot support it."""
    try:
        return fit(*args), ""
    except ValueError as error:
        return None, f"no fit: {error}"


def positive(values: pd.Series) -> pd.Series:
    """Numbers, NaN where missing, not finite or not positive (cannot enter a log)."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return numbers.where(np.isfinite(numbers) & (numbers > 0))


def exponents_table(
    frame: pd.DataFrame,
    quantities: Sequence[str],
    *,
    by: Sequence[str] = BY_DATASET,
    scopes: Sequence[str] = (ALL_CELLS,),
) -> pd.DataFrame:
    """Signed exponent p of quantity ~ c (d w)^p per group, quantity and set of cells.

    Columns: the ``by`` columns, quantity, cells (``ALL_CELLS`` or ``IN_REGIME``), exponent, exponent low,
    exponent high (the bootstrap interval), c, R^2, R^2 low, R^2 high, scatter (the factor exp(s) by which a
    cell typically lies off the law, s the residual sd of ln y), scatter low, scatter high, n cells, censored
    cells, seeds used, seeds dropped, note.
    """
    rows = []
    for quantity in quantities:
        for scope in scopes:
            for values, group in groups(_scoped(frame, scope), by):
                fit, note = attempt(fit_power_law, group, quantity)
                row = values | {"quantity": quantity, "cells": scope, "note": note}
                if fit is not None:
                    row |= {"exponent": fit.exponent, "exponent low": fit.exponent_ci[0],
                            "exponent high": fit.exponent_ci[1], "c": fit.c, "R^2": fit.r2, "R^2 low": fit.r2_ci[0],
                            "R^2 high": fit.r2_ci[1], "scatter": math.exp(fit.scatter),
                            "scatter low": math.exp(fit.scatter_ci[0]), "scatter high": math.exp(fit.scatter_ci[1]),
                            "n cells": fit.n_cells, "censored cells": fit.n_censored, "seeds used": fit.n_values,
                            "seeds dropped": fit.n_dropped}  # fmt: skip
                rows.append(row)
    columns = [*by, "quantity", "cells", "exponent", "exponent low", "exponent high", "c", "R^2", "R^2 low",
               "R^2 high", "scatter", "scatter low", "scatter high", "n cells", "censored cells", "seeds used",
               "seeds dropped", "note"]  # fmt: skip
    return table_of(rows, columns)


def fits_table(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, scopes: Sequence[str] = SCOPES, quantity: str = "eta_star"
) -> pd.DataFrame:
    """The power law of eta* = c (d w)^-alpha per group, over all cells and over the cells in the regime.

    Columns: the ``by`` columns, cells, alpha, alpha low, alpha high, c, R^2, R^2 low, R^2 high, scatter,
    scatter low, scatter high (``exponents_table``), n cells, censored cells, seeds used, seeds dropped, note.
    """
    table = exponents_table(frame, [quantity], by=by, scopes=scopes)
    table.insert(len(by) + 2, "alpha", -table["exponent"])
    table.insert(len(by) + 3, "alpha low", -table["exponent high"])
    table.insert(len(by) + 4, "alpha high", -table["exponent low"])
    return table.drop(columns=["quantity", "exponent", "exponent low", "exponent high"])


def residuals_table(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, fitted_on: str = IN_REGIME, quantity: str = "eta_star"
) -> pd.DataFrame:
    """Every cell against its group's power law fitted on ``fitted_on`` (by default the cells in the regime).

    One row per cell: the ``by`` columns and ``fit.residuals``'s columns (depth, width, n_seeds, censored,
    dw, depth_over_width, value, fitted, residual, in_regime). Fitting on the regime's cells measures the
    cells outside it against the law they are claimed not to follow, rather than a line they pulled.
    """
    parts = []
    for values, group in groups(frame, by):
        fit, _ = attempt(fit_power_law, _scoped(group, fitted_on), quantity)
        if fit is not None:
            parts.append(residuals(group, fit).assign(**values))
    columns = [*by, "depth", "width", "n_seeds", "censored", "dw", "depth_over_width", "value", "fitted", "residual",
               "in_regime"]  # fmt: skip
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def alpha_vs_cutoff(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, quantity: str = "eta_star"
) -> pd.DataFrame:
    """alpha and R^2 against the regime's cutoffs (``fit.cutoff_sweep``) per group: the rule among its alternatives.

    Columns: the ``by`` columns, min depth, max d/w (text: "none", "1/16"...), max d/w value (inf for
    none), alpha, alpha low, alpha high, R^2, n cells, censored cells, our rule, note.
    """
    parts = [cutoff_sweep(group, quantity).assign(**values) for values, group in groups(frame, by)]
    names = {"min_depth": "min depth", "cutoff": "max d/w", "max_depth_over_width": "max d/w value",
             "alpha_low": "alpha low", "alpha_high": "alpha high", "r2": "R^2", "n_cells": "n cells",
             "n_censored": "censored cells", "our_rule": "our rule"}  # fmt: skip
    columns = [*by, "min depth", "max d/w", "max d/w value", "alpha", "alpha low", "alpha high", "R^2", "n cells",
               "censored cells", "our rule", "note"]  # fmt: skip
    return table_of(pd.concat(parts, ignore_index=True).rename(columns=names), columns)


def narrow_misfit_table(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, quantity: str = "eta_star"
) -> pd.DataFrame:
    """Per group: how far the narrow cells (depth >= ``fit.MIN_DEPTH``, d/w above the cutoff) lie off the law fitted
    in the regime (``fit.narrow_misfit``).

    Columns: the ``by`` columns, misfit (the factor exp(RMS of ln(value / law))), misfit low, misfit high,
    shift (the mean of ln(value / law): below 0 when narrow networks take smaller learning rates), n cells,
    censored cells, unreached cells (no residual, counted), note.
    """
    rows = []
    for values, group in groups(frame, by):
        fit, note = attempt(narrow_misfit, group, quantity)
        row = values | {"note": note}
        if fit is not None:
            row |= {"misfit": fit.factor, "misfit low": fit.factor_ci[0], "misfit high": fit.factor_ci[1],
                    "shift": fit.shift, "n cells": fit.n_cells, "censored cells": fit.n_censored,
                    "unreached cells": fit.n_unreached}  # fmt: skip
        rows.append(row)
    columns = [*by, "misfit", "misfit low", "misfit high", "shift", "n cells", "censored cells", "unreached cells",
               "note"]  # fmt: skip
    return table_of(rows, columns)


def product_form_table(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, scopes: Sequence[str] = SCOPES, quantity: str = "eta_star"
) -> pd.DataFrame:
    """log y = c + a log d + b log w per group and set of cells: is d w the variable (a = b)?

    Columns: the ``by`` columns, cells, a (depth), a low, a high, b (width), b low, b high, a - b,
    a - b low, a - b high, R^2, n cells, censored cells, d*w consistent (a - b's interval holds 0), note.
    """
    rows = []
    for scope in scopes:
        for values, group in groups(_scoped(frame, scope), by):
            fit, note = attempt(fit_product_form, group, quantity)
            row = values | {"cells": scope, "note": note}
            if fit is not None:
                row |= {"a (depth)": fit.depth_exponent, "a low": fit.depth_exponent_ci[0],
                        "a high": fit.depth_exponent_ci[1], "b (width)": fit.width_exponent,
                        "b low": fit.width_exponent_ci[0], "b high": fit.width_exponent_ci[1], "a - b": fit.difference,
                        "a - b low": fit.difference_ci[0], "a - b high": fit.difference_ci[1], "R^2": fit.r2,
                        "n cells": fit.n_cells, "censored cells": fit.n_censored,
                        "d*w consistent": fit.consistent}  # fmt: skip
            rows.append(row)
    columns = [*by, "cells", "a (depth)", "a low", "a high", "b (width)", "b low", "b high", "a - b", "a - b low",
               "a - b high", "R^2", "n cells", "censored cells", "d*w consistent", "note"]  # fmt: skip
    return table_of(rows, columns)


def width_slope_by_depth(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, quantity: str = "eta_star"
) -> pd.DataFrame:
    """At each depth, how eta* moves with width: the slope of log eta* on log width, and its end points.

    A law in d w falls with width at every depth with the same slope (-alpha); depth 1 rising with width
    (the depth-1 finding) or depth 2 flat shows where it does not hold. Columns: the ``by`` columns, depth,
    width slope, slope low, slope high, widths, narrowest, widest, value at narrowest, value at widest
    (medians over seeds; NaN for a censored cell), note.
    """
    rows = []
    for values, group in groups(frame, [*by, "depth"]):
        fit, note = attempt(width_exponent, group, quantity)
        medians = group.assign(value=positive(group[quantity])).groupby("width")["value"].apply(
            lambda v: float(np.exp(np.log(v).median())))  # fmt: skip
        row = values | {"widths": int(group["width"].nunique()), "narrowest": int(medians.index.min()),
                        "widest": int(medians.index.max()), "value at narrowest": medians.iloc[0],
                        "value at widest": medians.iloc[-1], "note": note}  # fmt: skip
        if fit is not None:
            row |= {"width slope": fit.slope, "slope low": fit.slope_ci[0], "slope high": fit.slope_ci[1]}
        rows.append(row)
    columns = [*by, "depth", "width slope", "slope low", "slope high", "widths", "narrowest", "widest",
               "value at narrowest", "value at widest", "note"]  # fmt: skip
    return table_of(rows, columns)


def _shared_cells(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The rows of the (depth, width) cells that every group of ``by[1:]`` has within its ``by[0]`` (e.g. the
    dataset): slopes compared across groups must come from the same widths and depths."""
    first, rest = frame[by[0]], frame[list(by[1:])].astype(str).agg("/".join, axis=1)
    per_cell = rest.groupby([first, frame["depth"], frame["width"]]).transform("nunique")
    return frame[per_cell == rest.groupby(first).transform("nunique")]


def width_exponents_table(
    frame: pd.DataFrame, *, by: Sequence[str] = ("dataset", "variant"), quantity: str = "eta_star"
) -> pd.DataFrame:
    """Per group (e.g. parameterisation): the slope of log eta* on log width at fixed depth (``fit.width_exponent``).

    0 means eta* transfers across width at fixed depth. The groups that share the first ``by`` column are
    fitted on the cells they all have (``_shared_cells``), so that a group computed at more widths (the
    standard parameterisation's cells are the power law's) is not compared over another range. Columns:
    the ``by`` columns, width slope, slope low, slope high, n cells, width range, depths, censored cells, seeds
    dropped, flattest (the smallest ``|slope|`` among the groups that share the first ``by`` column), note.
    """
    rows = []
    for values, group in groups(_shared_cells(frame, by), by):
        fit, note = attempt(width_exponent, group, quantity)
        row = values | {"note": note}
        if fit is not None:
            row |= {"width slope": fit.slope, "slope low": fit.slope_ci[0], "slope high": fit.slope_ci[1],
                    "n cells": fit.n_cells, "width range": f"{group['width'].min()}-{group['width'].max()}",
                    "depths": fit.n_depths, "censored cells": fit.n_censored, "seeds dropped": fit.n_dropped}  # fmt: skip
        rows.append(row)
    columns = [*by, "width slope", "slope low", "slope high", "n cells", "width range", "depths", "censored cells",
               "seeds dropped", "flattest", "note"]  # fmt: skip
    table = table_of(rows, columns)
    steepness = table["width slope"].abs()
    table["flattest"] = steepness.notna() & (steepness == steepness.groupby(table[by[0]]).transform("min"))
    return table


def flatness_table(
    frame: pd.DataFrame, flat: str, base: str, *, by: Sequence[str] = ("dataset", "variant"), quantity: str = "eta_star"
) -> pd.DataFrame:
    """Per value of ``by[0]``: is group ``flat`` (of ``by[1]``) flatter in width than group ``base``, on their shared cells?

    Columns: the first ``by`` column, flat slope, flat low, flat high, base slope, steeper by (``abs(base slope) -
    abs(flat slope)``: above 0 when ``flat`` is flatter), steeper by low, steeper by high (the two fits' bootstrap
    replicates paired, each fit resampling its own cells), width range, note.
    """
    first, column = by[0], by[1]
    pair = frame[frame[column].isin([flat, base])]
    rows = []
    for values, group in groups(_shared_cells(pair, by), [first]):
        names = set(group[column])
        if names != {flat, base}:
            rows.append(values | {"note": f"no cells of {' and '.join(sorted({flat, base} - names))}"})
            continue
        fits = {name: attempt(width_exponent, group[group[column] == name], quantity) for name in (flat, base)}
        note = fits[flat][1] or fits[base][1]
        row = values | {"width range": f"{group['width'].min()}-{group['width'].max()}", "note": note}
        if not note:
            mine, theirs = fits[flat][0], fits[base][0]
            n = min(len(mine.slope_replicates), len(theirs.slope_replicates))
            steeper = np.abs(theirs.slope_replicates[:n]) - np.abs(mine.slope_replicates[:n])
            low, high = (np.percentile(steeper, [50 * (1 - mine.ci), 50 * (1 + mine.ci)]) if n else (math.nan,) * 2)
            row |= {"flat slope": mine.slope, "flat low": mine.slope_ci[0], "flat high": mine.slope_ci[1],
                    "base slope": theirs.slope, "steeper by": abs(theirs.slope) - abs(mine.slope),
                    "steeper by low": float(low), "steeper by high": float(high)}  # fmt: skip
        rows.append(row)
    columns = [first, "flat slope", "flat low", "flat high", "base slope", "steeper by", "steeper by low",
               "steeper by high", "width range", "note"]  # fmt: skip
    return table_of(rows, columns)


# ----------------------------------------------------------------------------------------------------------
# variants against their base


def variant_ratios(frame: pd.DataFrame, *, base: str | None = None, quantity: str = "eta_star") -> pd.DataFrame:
    """Each network's value divided by its base variant's (same grid, dataset, depth, width and seed).

    ``base`` names the base variant; None takes each grid's first. Columns: grid, dataset, variant, base
    variant, depth, width, seed, value, base value, ratio (NaN where either value is missing).
    """
    parts = []
    for grid, rows in frame.groupby("grid", sort=False):
        name = rows["variant"].iloc[0] if base is None else base
        if name not in set(rows["variant"]):
            raise ValueError(f"grid {grid!r} has no variant {name!r}; it has {', '.join(rows['variant'].unique())}")
        values = rows.assign(value=positive(rows[quantity]))[KEYS + ["variant", "value"]]
        reference = values[values["variant"] == name].drop(columns="variant").rename(columns={"value": "base value"})
        merged = values.merge(reference, on=KEYS, how="left", validate="many_to_one")
        ratio = merged["value"] / merged["base value"]
        parts.append(merged.assign(grid=grid, **{"base variant": name, "ratio": ratio}))
    columns = ["grid", "dataset", "variant", "base variant", "depth", "width", "seed", "value", "base value", "ratio"]
    return pd.concat(parts, ignore_index=True)[columns]


def variant_summary(
    frame: pd.DataFrame,
    *,
    base: str | None = None,
    quantity: str = "eta_star",
    by: Sequence[str] = ("dataset", "variant"),
) -> pd.DataFrame:
    """Per group of ``variant_ratios``' columns (dataset and variant by default; add "depth" to see where an effect
    turns): the ratios to the base.

    Columns: the ``by`` columns, base variant, networks, ratio median, ratio min, ratio max, missing ratios
    and, for eta*, within search resolution (``|ln median| <= ln(1 + rtol)``, rtol the search's tolerance:
    two eta* found to that tolerance can differ by that much with nothing changed).
    """
    ratios = variant_ratios(frame, base=base, quantity=quantity)
    rtol = pd.to_numeric(frame["search.rtol"], errors="coerce").max() if "search.rtol" in frame else math.nan
    rows = []
    for values, group in groups(ratios[ratios["variant"] != ratios["base variant"]], by):
        ratio = group["ratio"].dropna()
        median = ratio.median() if len(ratio) else math.nan
        resolved = abs(math.log(median)) <= math.log1p(rtol) if quantity == "eta_star" and len(ratio) else None
        rows.append(values | {"base variant": group["base variant"].iloc[0], "networks": len(group),
                              "ratio median": median, "ratio min": ratio.min(), "ratio max": ratio.max(),
                              "missing ratios": int(group["ratio"].isna().sum()),
                              "within search resolution": resolved})  # fmt: skip
    columns = [*by, "base variant", "networks", "ratio median", "ratio min", "ratio max", "missing ratios",
               "within search resolution"]  # fmt: skip
    return table_of(rows, columns)


def preprocessing_table(
    frame: pd.DataFrame,
    *,
    by: Sequence[str] = ("dataset", "depth"),
    quantities: Sequence[str] = ("eta_star", "lambda_1", "lambda_1_eff"),
) -> pd.DataFrame:
    """The preprocessing experiment: each quantity under per-feature standardisation over global scaling.

    ``frame`` holds both of its grids (eta* and sharpness). Columns: quantity, then ``variant_summary``'s
    (the ``by`` columns, variant, base variant, networks, ratio median...); one row per quantity, group
    and variant that is not the base.
    """
    parts = [variant_summary(frame[frame[q].notna()], quantity=q, by=[*by, "variant"]).assign(quantity=q)
             for q in quantities if q in frame and frame[q].notna().any()]  # fmt: skip
    table = pd.concat(parts, ignore_index=True)
    return table[["quantity", *table.columns.drop("quantity")]]


# ----------------------------------------------------------------------------------------------------------
# what the search saw


def non_monotone_table(frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """Per cell: how far above eta* training still succeeded (the probes above eta*, ``search.probe_above``).

    Columns: the ``by`` columns, depth, width, seeds, converged seeds, eta* (median), seeds with a success
    above (fraction of the converged), largest success above / eta* (the largest over seeds, 1 when none),
    non-monotone seeds (whose ledger has a success above a failure).
    """
    above = positive(frame["largest_success_above"]) if "largest_success_above" in frame else np.nan
    eta = positive(frame["eta_star"])
    listed = frame["non_monotone"] if "non_monotone" in frame else pd.Series([[]] * len(frame), index=frame.index)
    tangled = listed.map(lambda probes: isinstance(probes, (list, tuple)) and len(probes) > 0)
    networks = frame.assign(eta=eta, above=above / eta, tangled=tangled)
    rows = []
    for values, group in groups(networks, [*by, "depth", "width"]):
        converged = group["eta"].notna()
        rows.append(values | {
            "seeds": len(group), "converged seeds": int(converged.sum()),
            "eta* (median)": float(np.exp(np.log(group["eta"]).median())) if converged.any() else math.nan,
            "seeds with a success above": group.loc[converged, "above"].notna().mean() if converged.any() else math.nan,
            "largest success above / eta*": group["above"].max() if group["above"].notna().any() else 1.0,
            "non-monotone seeds": int(group["tangled"].sum()),
        })  # fmt: skip
    columns = [*by, "depth", "width", "seeds", "converged seeds", "eta* (median)", "seeds with a success above",
               "largest success above / eta*", "non-monotone seeds"]  # fmt: skip
    return table_of(rows, columns)


def held_out_table(
    frame: pd.DataFrame, *, regime: bool = False, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0
) -> pd.DataFrame:
    """Per dataset: each eta* cell predicted from the others (``predict.leave_one_cell_out``), summarised.

    ``regime``: predict only the cells in the regime, from the others in it. Columns: dataset, cells, with
    interval, coverage, ``mean |log error|`` with its interval (``error low``, ``error high``: the held-out
    cells resampled), ``max |log error|``, typical factor, interval factor.
    """
    parts = []
    for name in frame["dataset"].unique():
        cells = leave_one_cell_out(frame, name, regime=regime)
        if cells.empty:
            continue
        errors = cells["log_error"].abs().to_numpy()
        draws = np.random.default_rng(seed).integers(0, len(errors), size=(n_bootstrap, len(errors)))
        low, high = np.percentile(errors[draws].mean(axis=1), [50 * (1 - CI), 50 * (1 + CI)])
        parts.append(held_out_summary(cells).assign(**{"error low": low, "error high": high}))
    if not parts:
        return held_out_summary(pd.DataFrame()).reset_index(names="dataset")
    table = pd.concat(parts).reset_index(names="dataset")
    order = ["dataset", "cells", "with interval", "coverage", "mean |log error|", "error low", "error high"]
    return table[order + [c for c in table.columns if c not in order]]


# ----------------------------------------------------------------------------------------------------------
# numbers for prose


def numbers(table: pd.DataFrame, keys: Sequence[str]) -> dict[str, object]:
    """Every value of ``table`` by a flat name, "<key values>/<column>" (e.g. "mnist/in regime/alpha"), for glue."""
    return {"/".join(map(str, [*row[list(keys)], column])): row[column]
            for _, row in table.iterrows() for column in table.columns if column not in keys}  # fmt: skip
