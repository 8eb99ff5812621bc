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

from milr_core.fit import cutoff_sweep, fit_power_law, fit_product_form, in_regime, residuals, width_exponent
from milr_core.predict import held_out_summary, leave_one_cell_out

ALL_CELLS, IN_REGIME = "all cells", "in regime"  # the two sets of cells a fit runs over (``fit.REGIME_RULE``)
SCOPES = (ALL_CELLS, IN_REGIME)
BY_DATASET = ("dataset",)  # the default grouping of every summary
KEYS = ["dataset", "depth", "width", "seed"]  # one network (the same seed: the same initial weights)
BOUNDS_RTOL = 1e-5  # an inequality between two measured eigenvalues holds if it holds to this relative slack (ours)
SHARPNESS = {"raw": "lambda_1", "effective": "lambda_1_eff"}  # lambda_1 of H, and of P^1/2 H P^1/2
REGIMES = ("stable", "catapult", "divergent")  # what ``catapult.regime`` stores per network
COUNTS = ("n cells", "censored cells", "seeds used", "seeds dropped", "networks", "depths", "widths", "narrowest",
          "widest", "min depth")  # integer columns, kept integer where a row without a fit leaves them empty


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


def scoped(frame: pd.DataFrame, scope: str) -> pd.DataFrame:
    if scope not in SCOPES:
        raise ValueError(f"unknown set of cells {scope!r}; known: {', '.join(SCOPES)}")
    return frame if scope == ALL_CELLS else frame[in_regime(frame)]


def attempt(fit: Callable, *args) -> tuple[object | None, str]:
    """(fit(*args), "") or (None, "no fit: why") when the cells cannot support it."""
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
    exponent high (the bootstrap interval), c, R^2, n cells, censored cells, seeds used, seeds dropped, note.
    """
    rows = []
    for quantity in quantities:
        for scope in scopes:
            for values, group in groups(scoped(frame, scope), by):
                fit, note = attempt(fit_power_law, group, quantity)
                row = values | {"quantity": quantity, "cells": scope, "note": note}
                if fit is not None:
                    row |= {"exponent": fit.exponent, "exponent low": fit.exponent_ci[0],
                            "exponent high": fit.exponent_ci[1], "c": fit.c, "R^2": fit.r2, "n cells": fit.n_cells,
                            "censored cells": fit.n_censored, "seeds used": fit.n_values,
                            "seeds dropped": fit.n_dropped}  # fmt: skip
                rows.append(row)
    columns = [*by, "quantity", "cells", "exponent", "exponent low", "exponent high", "c", "R^2", "n cells",
               "censored cells", "seeds used", "seeds dropped", "note"]  # fmt: skip
    return table_of(rows, columns)


def fits_table(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, scopes: Sequence[str] = SCOPES, quantity: str = "eta_star"
) -> pd.DataFrame:
    """The power law of eta* = c (d w)^-alpha per group, over all cells and over the cells in the regime.

    Columns: the ``by`` columns, cells, alpha, alpha low, alpha high, c, R^2, n cells, censored cells,
    seeds used, seeds dropped, note.
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
        fit, _ = attempt(fit_power_law, scoped(group, fitted_on), quantity)
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


def product_form_table(
    frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET, scopes: Sequence[str] = SCOPES, quantity: str = "eta_star"
) -> pd.DataFrame:
    """log y = c + a log d + b log w per group and set of cells: is d w the variable (a = b)?

    Columns: the ``by`` columns, cells, a (depth), a low, a high, b (width), b low, b high, a - b,
    a - b low, a - b high, R^2, n cells, censored cells, d*w consistent (a - b's interval holds 0), note.
    """
    rows = []
    for scope in scopes:
        for values, group in groups(scoped(frame, scope), by):
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


def width_exponents_table(
    frame: pd.DataFrame, *, by: Sequence[str] = ("dataset", "variant"), quantity: str = "eta_star"
) -> pd.DataFrame:
    """Per group (e.g. parameterisation): the slope of log eta* on log width at fixed depth (``fit.width_exponent``).

    0 means eta* transfers across width at fixed depth. Columns: the ``by`` columns, width slope, slope low,
    slope high, n cells, depths, censored cells, seeds dropped, flattest (the smallest |slope| among the
    groups that share the first ``by`` column, e.g. the dataset), note.
    """
    rows = []
    for values, group in groups(frame, by):
        fit, note = attempt(width_exponent, group, quantity)
        row = values | {"note": note}
        if fit is not None:
            row |= {"width slope": fit.slope, "slope low": fit.slope_ci[0], "slope high": fit.slope_ci[1],
                    "n cells": fit.n_cells, "depths": fit.n_depths, "censored cells": fit.n_censored,
                    "seeds dropped": fit.n_dropped}  # fmt: skip
        rows.append(row)
    columns = [*by, "width slope", "slope low", "slope high", "n cells", "depths", "censored cells", "seeds dropped",
               "flattest", "note"]  # fmt: skip
    table = table_of(rows, columns)
    steepness = table["width slope"].abs()
    table["flattest"] = steepness.notna() & (steepness == steepness.groupby(table[by[0]]).transform("min"))
    return table


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
    and, for eta*, within search resolution (|ln median| <= ln(1 + rtol), rtol the search's tolerance:
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
    quantities: Sequence[str] = ("eta_star", *SHARPNESS.values()),
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


def lanczos_table(frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """Per group and eigenvalue stored (lambda_1, lambda_1_eff, lambda_1_ggn, at init or at theta_T): can we trust it?

    Columns: the ``by`` columns, eigenvalue, networks, tol, converged (fraction), residual median, residual
    max (the true relative residual ||Hv - lambda v|| / |lambda|), products median, dtypes (the precisions
    that answered).
    """
    fields = [(base + suffix, f"{base}_{{}}{suffix}")
              for suffix in ("", "_init", "_T") for base in ("lambda_1", "lambda_1_eff", "lambda_1_ggn")
              if f"{base}_converged{suffix}" in frame]  # fmt: skip
    tol = pd.to_numeric(frame.get("sharpness.tol", pd.Series(math.nan, frame.index)), errors="coerce")
    rows = []
    for values, group in groups(frame, by):
        for eigenvalue, pattern in fields:
            measured = group[group[eigenvalue].notna()]
            if measured.empty:
                continue
            residual = pd.to_numeric(measured[pattern.format("residual")], errors="coerce")
            rows.append(values | {
                "eigenvalue": eigenvalue, "networks": len(measured),
                "tol": tol[measured.index].max(),
                "converged": measured[pattern.format("converged")].astype(bool).mean(),
                "residual median": residual.median(), "residual max": residual.max(),
                "products median": pd.to_numeric(measured[pattern.format("n_products")], errors="coerce").median(),
                "dtypes": ", ".join(sorted(measured[pattern.format("dtype")].dropna().astype(str).unique())),
            })  # fmt: skip
    columns = [*by, "eigenvalue", "networks", "tol", "converged", "residual median", "residual max",
               "products median", "dtypes"]  # fmt: skip
    return table_of(rows, columns)


# ----------------------------------------------------------------------------------------------------------
# eta* and the sharpness


def join_sharpness(eta: pd.DataFrame, sharpness: pd.DataFrame) -> pd.DataFrame:
    """eta* and the sharpness at init of the same networks (same dataset, depth, width, seed and preprocessing).

    One row per network with both a positive eta* and lambda_1: the sharpness frame's columns, eta_star,
    and per sharpness s in ``SHARPNESS`` stored (lambda_1, lambda_1_eff): eta_<s> = eta* s (eta_lambda,
    eta_lambda_eff) and two_over_<s> = 2 / s. A frame that has both already (catapult) is ``with_products``.
    """
    keys = KEYS + [c for c in ("data.options.preprocessing",) if c in eta and c in sharpness]
    joined = sharpness.merge(eta[keys + ["eta_star"]], on=keys, how="inner", validate="one_to_one")
    return with_products(joined)


def with_products(frame: pd.DataFrame) -> pd.DataFrame:
    """The networks with a positive eta* and lambda_1, with eta* x lambda and 2 / lambda per sharpness stored."""
    frame = frame.assign(eta_star=positive(frame["eta_star"]), lambda_1=positive(frame["lambda_1"]))
    frame = frame.dropna(subset=["eta_star", "lambda_1"]).reset_index(drop=True)
    for field in SHARPNESS.values():
        if field in frame:
            value = positive(frame[field])
            frame[field.replace("lambda_1", "eta_lambda")] = frame["eta_star"] * value
            frame[field.replace("lambda_1", "two_over_lambda")] = 2.0 / value
    return frame


def relation(x: pd.Series, y: pd.Series) -> dict:
    """How two positive quantities relate across networks: Spearman's rho and the slope of log y on log x."""
    both = pd.concat([np.log(x), np.log(y)], axis=1).dropna()
    varied = len(both) >= 3 and both.iloc[:, 0].nunique() > 1
    return {
        "spearman": float(both.iloc[:, 0].corr(both.iloc[:, 1], method="spearman")) if varied else math.nan,
        "slope": float(np.polyfit(both.iloc[:, 0], both.iloc[:, 1], 1)[0]) if varied else math.nan,
    }


def spread(product: pd.Series) -> dict:
    """A product over networks: median, min, max, max / min and the sd of its log (0 if it were constant)."""
    product = positive(product).dropna()
    return {"product median": product.median(), "product min": product.min(), "product max": product.max(),
            "max / min": product.max() / product.min(), "sd of ln product": np.log(product).std(ddof=0)}  # fmt: skip


def sharpness_relation(joined: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """eta* against the sharpness at init, with raw and effective lambda_1 (``join_sharpness`` or a catapult frame).

    One row per group and sharpness: the ``by`` columns, sharpness (raw: lambda_1 of H; effective:
    lambda_1_eff of P^1/2 H P^1/2), networks, Spearman (of eta* and lambda), slope (of ln eta* on ln lambda;
    -1 if eta* = c / lambda), product median, product min, product max, max / min, sd of ln product (of
    eta* lambda; 0 if inversely related), closest to constant (the sharpness whose product has the smaller sd).
    """
    joined = with_products(joined)
    rows = []
    for values, group in groups(joined, by):
        for name, field in SHARPNESS.items():
            if field not in group or group[field].isna().all():
                continue
            product = group[field.replace("lambda_1", "eta_lambda")]
            rows.append(values | {"sharpness": name, "networks": int(product.notna().sum())}
                        | relation(positive(group[field]), group["eta_star"]) | spread(product))  # fmt: skip
    names = {"spearman": "Spearman", "slope": "slope (log-log)"}
    columns = [*by, "sharpness", "networks", "Spearman", "slope (log-log)", "product median", "product min",
               "product max", "max / min", "sd of ln product", "closest to constant"]  # fmt: skip
    table = table_of(pd.DataFrame(rows).rename(columns=names), columns)
    if len(table):  # which product is closer to constant, where both sharpnesses were measured
        grouped = table.groupby(list(by), sort=False)["sd of ln product"]
        lowest = table["sd of ln product"] == grouped.transform("min")
        table["closest to constant"] = lowest.where(grouped.transform("size") > 1)
    return table


# ----------------------------------------------------------------------------------------------------------
# the late maximum learning rate against eta*

RELATIONS = {  # the two products claim (b) contrasts: (label, learning rate, sharpness suffix)
    "init": ("eta* x lambda_1(theta_0)", "eta_star", "_init"),
    "late": ("late x lambda_1(theta_T)", "late_max_lr", "_T"),
}


def late_networks(late: pd.DataFrame) -> pd.DataFrame:
    """The late-LR frame with pretrain_steps and, per sharpness (raw, effective), both products per network.

    Adds ``pretrain_steps`` (from late.pretrain_steps), ``dw``, and for each relation r in ``RELATIONS`` and
    sharpness s in ``SHARPNESS``: ``<r>_<s>``, e.g. init_lambda_1 = eta* lambda_1(theta_0) and
    late_lambda_1_eff = late max LR x lambda_1_eff(theta_T) (NaN where either is missing).
    """
    frame = late.assign(pretrain_steps=late["late.pretrain_steps"], dw=late["depth"] * late["width"])
    for relation_key, (_, rate, suffix) in RELATIONS.items():
        for field in SHARPNESS.values():
            column = field + suffix
            sharpness = positive(frame[column]) if column in frame else math.nan
            frame[f"{relation_key}_{field}"] = positive(frame[rate]) * sharpness
    return frame


def late_contrast(late: pd.DataFrame, *, by: Sequence[str] = ("dataset", "pretrain_steps")) -> pd.DataFrame:
    """Claim (b) as a contrast: late max LR x lambda_1(theta_T) against eta* x lambda_1(theta_0), per pretraining.

    Prior work ties the largest stable LR later in training to 2 / lambda_1 there (the edge of stability),
    so the late product should sit near 2 at every d w; eta* x lambda_1(theta_0) need not. One row per group,
    relation and sharpness: the ``by`` columns, relation, sharpness (raw, effective), networks, product
    median, product min, product max, max / min, sd of ln product, exponent in d*w (of the product),
    exponent low, exponent high, R^2, note.
    """
    frame = late_networks(late)
    rows = []
    for values, group in groups(frame, by):
        for relation_key, (label, _, _) in RELATIONS.items():
            for name, field in SHARPNESS.items():
                column = f"{relation_key}_{field}"
                if group[column].isna().all():
                    continue
                fit, note = attempt(fit_power_law, group, column)
                row = values | {"relation": label, "sharpness": name, "networks": int(group[column].notna().sum()),
                                "note": note} | spread(group[column])  # fmt: skip
                if fit is not None:
                    row |= {"exponent in d*w": fit.exponent, "exponent low": fit.exponent_ci[0],
                            "exponent high": fit.exponent_ci[1], "R^2": fit.r2}  # fmt: skip
                rows.append(row)
    columns = [*by, "relation", "sharpness", "networks", "product median", "product min", "product max", "max / min",
               "sd of ln product", "exponent in d*w", "exponent low", "exponent high", "R^2", "note"]  # fmt: skip
    return table_of(rows, columns)


def late_ratio_table(late: pd.DataFrame, *, by: Sequence[str] = ("dataset", "pretrain_steps")) -> pd.DataFrame:
    """Per group: late max LR / eta* (median, min, max), pretrainings that stayed below t, late searches not converged.

    Columns: the ``by`` columns, networks, ratio median, ratio min, ratio max, pretraining below t, late not converged.
    """
    frame = late_networks(late)
    accuracy, threshold = (pd.to_numeric(frame[c], errors="coerce") for c in ("pretrain_accuracy", "threshold"))
    below = accuracy < threshold
    frame = frame.assign(ratio=positive(frame["ratio"]), below=below, unresolved=frame["late_status"] != "converged")
    rows = [values | {"networks": len(group), "ratio median": group["ratio"].median(),
                      "ratio min": group["ratio"].min(), "ratio max": group["ratio"].max(),
                      "pretraining below t": int(group["below"].sum()),
                      "late not converged": int(group["unresolved"].sum())}
            for values, group in groups(frame, by)]  # fmt: skip
    columns = [*by, "networks", "ratio median", "ratio min", "ratio max", "pretraining below t", "late not converged"]
    return table_of(rows, columns)


# ----------------------------------------------------------------------------------------------------------
# bounds (ours, chapter 8), the catapult window, held-out prediction

BOUND_COLUMNS = ("lower_bound", "lambda_1_ggn", "lambda_1", "ggn_upper_bound", "ntk_trace", "expected_upper_bound")


def bounds_check(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per network: the bounds, lambda_1 of G and H, and whether each inequality holds (to ``BOUNDS_RTOL``).

    Columns added: dw, half_ntk_trace ((1/2)(1/N) sum_i ||J_i||_F^2, whose expectation is
    expected_upper_bound), sandwich (lower <= lambda_1(G) <= upper, what is proved), hessian_below_upper
    (lambda_1(H) <= upper: not proved, H is not PSD), lower_below_hessian (proved), and the ratios
    upper_over_ggn, ggn_over_lower and trace_over_expected.
    """
    missing = [c for c in BOUND_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks {', '.join(missing)}: run the sharpness experiment with bounds: true")
    keys = [c for c in KEYS if c in frame.columns]
    table = frame[keys + list(BOUND_COLUMNS)].dropna(subset=list(BOUND_COLUMNS)).copy()
    for column in BOUND_COLUMNS:
        table[column] = table[column].astype(float)
    slack = 1 + BOUNDS_RTOL
    table["dw"] = table["depth"] * table["width"]
    table["half_ntk_trace"] = 0.5 * table["ntk_trace"]
    table["sandwich"] = (table["lower_bound"] <= table["lambda_1_ggn"] * slack) & (
        table["lambda_1_ggn"] <= table["ggn_upper_bound"] * slack
    )
    table["hessian_below_upper"] = table["lambda_1"] <= table["ggn_upper_bound"] * slack
    table["lower_below_hessian"] = table["lower_bound"] <= table["lambda_1"] * slack
    table["upper_over_ggn"] = table["ggn_upper_bound"] / table["lambda_1_ggn"]
    table["ggn_over_lower"] = table["lambda_1_ggn"] / table["lower_bound"]
    table["trace_over_expected"] = table["half_ntk_trace"] / table["expected_upper_bound"]
    return table.reset_index(drop=True)


def bounds_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: networks, how many satisfy each inequality, and how loose the bounds are.

    Columns: dataset, networks, sandwich holds (lower <= lambda_1(G) <= upper, a count), lambda_1(H) <= upper,
    lower <= lambda_1(H), lambda_1(H) / lambda_1(G) max, upper / lambda_1(G) median, lambda_1(G) / lower
    median, trace / closed form median.
    """
    table = bounds_check(frame)
    rows = [{"dataset": name, "networks": len(group),
             "sandwich holds": int(group["sandwich"].sum()),
             "lambda_1(H) <= upper": int(group["hessian_below_upper"].sum()),
             "lower <= lambda_1(H)": int(group["lower_below_hessian"].sum()),
             "lambda_1(H) / lambda_1(G) max": (group["lambda_1"] / group["lambda_1_ggn"]).max(),
             "upper / lambda_1(G) median": group["upper_over_ggn"].median(),
             "lambda_1(G) / lower median": group["ggn_over_lower"].median(),
             "trace / closed form median": group["trace_over_expected"].median()}
            for name, group in table.groupby("dataset", sort=False)]  # fmt: skip
    columns = ["dataset", "networks", "sandwich holds", "lambda_1(H) <= upper", "lower <= lambda_1(H)",
               "lambda_1(H) / lambda_1(G) max", "upper / lambda_1(G) median", "lambda_1(G) / lower median",
               "trace / closed form median"]  # fmt: skip
    return table_of(rows, columns)


def catapult_table(frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """Per group: where eta* x lambda_1_eff falls among the regimes of Lewkowycz et al. (2020), as the engine stored.

    Columns: the ``by`` columns, networks, with eta* (networks whose search converged), stable, catapult,
    divergent (counts of the stored ``regime``), inside window (fraction of those with eta* in catapult),
    eta* lambda_1_eff median, min, max.
    """
    product = positive(frame["eta_lambda_eff"] if "eta_lambda_eff" in frame else frame["eta_lambda"])
    rows = []
    for values, group in groups(frame.assign(product=product), by):
        counts = group["regime"].value_counts()
        measured = int(group["regime"].isin(REGIMES).sum())
        rows.append(values | {"networks": len(group), "with eta*": measured}
                    | {name: int(counts.get(name, 0)) for name in REGIMES}
                    | {"inside window": counts.get("catapult", 0) / measured if measured else math.nan,
                       "eta* lambda_1_eff median": group["product"].median(),
                       "eta* lambda_1_eff min": group["product"].min(),
                       "eta* lambda_1_eff max": group["product"].max()})  # fmt: skip
    columns = [*by, "networks", "with eta*", *REGIMES, "inside window", "eta* lambda_1_eff median",
               "eta* lambda_1_eff min", "eta* lambda_1_eff max"]  # fmt: skip
    return table_of(rows, columns)


def held_out_table(frame: pd.DataFrame, *, regime: bool = False) -> pd.DataFrame:
    """Per dataset: each eta* cell predicted from the others (``predict.leave_one_cell_out``), summarised.

    ``regime``: predict only the cells in the regime, from the others in it. Columns: dataset, cells, with
    interval, coverage, mean |log error|, max |log error|, typical factor, interval factor.
    """
    parts = [held_out_summary(leave_one_cell_out(frame, name, regime=regime)) for name in frame["dataset"].unique()]
    parts = [part for part in parts if len(part)]
    if not parts:
        return held_out_summary(pd.DataFrame()).reset_index(names="dataset")
    return pd.concat(parts).reset_index(names="dataset")


# ----------------------------------------------------------------------------------------------------------
# numbers for prose


def numbers(table: pd.DataFrame, keys: Sequence[str]) -> dict[str, object]:
    """Every value of ``table`` by a flat name, "<key values>/<column>" (e.g. "mnist/in regime/alpha"), for glue."""
    return {"/".join(map(str, [*row[list(keys)], column])): row[column]
            for _, row in table.iterrows() for column in table.columns if column not in keys}  # fmt: skip
