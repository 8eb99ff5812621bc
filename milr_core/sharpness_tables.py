"""The sharpness's tidy summaries: Lanczos convergence, eta* against lambda_1 (raw and effective), the late
learning rate against the sharpness at theta_T, our bounds, and the catapult window.

Like ``tables.py`` (whose helpers these use), each function takes experiment frames and returns a
DataFrame with a plain index; every threshold that turns the numbers into verdicts lives in ``claims.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from milr_core.fit import fit_power_law
from milr_core.intervals import cell_bootstrap, median_interval, wilson
from milr_core.tables import BY_DATASET, KEYS, attempt, groups, positive, table_of

BOUNDS_RTOL = 1e-5  # an inequality between two measured eigenvalues holds if it holds to this relative slack (ours)
SHARPNESS = {"raw": "lambda_1", "effective": "lambda_1_eff"}  # lambda_1 of H, and of P^1/2 H P^1/2
REGIMES = ("stable", "catapult", "divergent")  # what ``catapult.regime`` stores per network


# ----------------------------------------------------------------------------------------------------------
# how well the eigenvalues converged


def lanczos_table(frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """Per group and eigenvalue stored (lambda_1, lambda_1_eff, lambda_1_ggn, at init or at theta_T): can we trust it?

    Columns: the ``by`` columns, eigenvalue, networks, tol, converged (fraction), residual median, residual
    max (the true relative residual ``||Hv - lambda v|| / |lambda|``), products median, dtypes (the precisions
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
    eta_lambda_eff) and two_over_<s> = 2 / s. A frame that has both already (catapult) is ``_with_products``.
    """
    keys = KEYS + [c for c in ("data.options.preprocessing",) if c in eta and c in sharpness]
    joined = sharpness.merge(eta[keys + ["eta_star"]], on=keys, how="inner", validate="one_to_one")
    return _with_products(joined)


def _with_products(frame: pd.DataFrame) -> pd.DataFrame:
    """The networks with a positive eta* and lambda_1, with eta* x lambda and 2 / lambda per sharpness stored."""
    frame = frame.assign(eta_star=positive(frame["eta_star"]), lambda_1=positive(frame["lambda_1"]))
    frame = frame.dropna(subset=["eta_star", "lambda_1"]).reset_index(drop=True)
    for field in SHARPNESS.values():
        if field in frame:
            value = positive(frame[field])
            frame[field.replace("lambda_1", "eta_lambda")] = frame["eta_star"] * value
            frame[field.replace("lambda_1", "two_over_lambda")] = 2.0 / value
    return frame


def relation(x: pd.Series, y: pd.Series, frame: pd.DataFrame | None = None) -> dict:
    """How two positive quantities relate across networks: Spearman's rho and the slope of log y on log x, each with
    its ``intervals.cell_bootstrap`` interval when ``frame`` (the networks, with depth and width) is given."""
    logs = np.log(pd.concat([x, y], axis=1).to_numpy(float))
    usable = np.isfinite(logs).all(axis=1)

    def statistics(rows: np.ndarray) -> np.ndarray:
        both = logs[rows][usable[rows]]
        if len(both) < 3 or np.ptp(both[:, 0]) == 0:
            return np.array([math.nan, math.nan])
        x, y = (both - both.mean(axis=0)).T
        ranks = stats.rankdata(both, axis=0)
        u, v = (ranks - ranks.mean(axis=0)).T
        rho = np.sum(u * v) / np.sqrt(np.sum(u * u) * np.sum(v * v)) if np.any(v) else math.nan
        return np.array([rho, np.sum(x * y) / np.sum(x * x)])

    rho, slope = statistics(np.arange(len(logs)))
    intervals = cell_bootstrap(frame, statistics) if frame is not None else [(math.nan, math.nan)] * 2
    return {"spearman": float(rho), "spearman low": intervals[0][0], "spearman high": intervals[0][1],
            "slope": float(slope), "slope low": intervals[1][0], "slope high": intervals[1][1]}  # fmt: skip


def spread(product: pd.Series) -> dict:
    """A product over networks: median, min, max, max / min and the sd of its log (0 if it were constant)."""
    product = positive(product).dropna()
    return {"product median": product.median(), "product min": product.min(), "product max": product.max(),
            "max / min": product.max() / product.min(), "sd of ln product": np.log(product).std(ddof=0)}  # fmt: skip


def effective_ratio_table(joined: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """lambda_1_eff / lambda_1 per network, its median per group and depth: one column per depth ("depth 4")."""
    ratio = joined.assign(ratio=joined["lambda_1_eff"] / joined["lambda_1"])
    table = ratio.pivot_table(index=list(by), columns="depth", values="ratio", aggfunc="median", sort=False)
    return table.rename(columns=lambda depth: f"depth {depth}").reset_index().rename_axis(columns=None)


def sharpness_relation(joined: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """eta* against the sharpness at init, with raw and effective lambda_1 (``join_sharpness`` or a catapult frame).

    One row per group and sharpness: the ``by`` columns, sharpness (raw: lambda_1 of H; effective:
    lambda_1_eff of P^1/2 H P^1/2), networks, Spearman (of eta* and lambda) with its interval (Spearman low,
    Spearman high), slope (of ln eta* on ln lambda; -1 if eta* = c / lambda) with its interval (slope low,
    slope high; both ``intervals.cell_bootstrap``), product median, product min, product max, max / min, sd of ln
    product (of
    eta* lambda; 0 if inversely related), closest to constant (the sharpness whose product has the smaller sd).
    """
    joined = _with_products(joined)
    rows = []
    for values, group in groups(joined, by):
        for name, field in SHARPNESS.items():
            if field not in group or group[field].isna().all():
                continue
            product = group[field.replace("lambda_1", "eta_lambda")]
            rows.append(values | {"sharpness": name, "networks": int(product.notna().sum())}
                        | relation(positive(group[field]), group["eta_star"], group) | spread(product))  # fmt: skip
    names = {"spearman": "Spearman", "spearman low": "Spearman low", "spearman high": "Spearman high",
             "slope": "slope (log-log)"}  # fmt: skip
    columns = [*by, "sharpness", "networks", "Spearman", "Spearman low", "Spearman high", "slope (log-log)",
               "slope low", "slope high", "product median", "product min", "product max", "max / min",
               "sd of ln product", "closest to constant"]  # fmt: skip
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
    median with its interval (median low, median high: ``intervals.cell_bootstrap``), product min, product max,
    max / min, sd of ln product, exponent in d*w (of the product),
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
                low, high = median_interval(positive(group[column]), group)
                row = values | {"relation": label, "sharpness": name, "networks": int(group[column].notna().sum()),
                                "note": note, "median low": low, "median high": high}  # fmt: skip
                row |= spread(group[column])
                if fit is not None:
                    row |= {"exponent in d*w": fit.exponent, "exponent low": fit.exponent_ci[0],
                            "exponent high": fit.exponent_ci[1], "R^2": fit.r2}  # fmt: skip
                rows.append(row)
    columns = [*by, "relation", "sharpness", "networks", "product median", "median low", "median high", "product min",
               "product max", "max / min", "sd of ln product", "exponent in d*w", "exponent low", "exponent high",
               "R^2", "note"]  # fmt: skip
    return table_of(rows, columns)


def late_ratio_table(late: pd.DataFrame, *, by: Sequence[str] = ("dataset", "pretrain_steps")) -> pd.DataFrame:
    """Per group: late max LR / eta* (median, min, max) and its exponent in d w, pretrainings that stayed below t,
    late searches not converged.

    The exponent of the ratio is the late LR's exponent in d w minus eta*'s, measured on the same networks
    (each network's ratio, cell medians, the fits' bootstrap), so the two share their noise. Columns: the
    ``by`` columns, networks, ratio median, ratio min, ratio max, ratio exponent, exponent low, exponent high,
    pretraining below t, late not converged, note.
    """
    frame = late_networks(late)
    accuracy, threshold = (pd.to_numeric(frame[c], errors="coerce") for c in ("pretrain_accuracy", "threshold"))
    below = accuracy < threshold
    frame = frame.assign(ratio=positive(frame["ratio"]), below=below, unresolved=frame["late_status"] != "converged")
    rows = []
    for values, group in groups(frame, by):
        fit, note = attempt(fit_power_law, group, "ratio")
        row = values | {"networks": len(group), "ratio median": group["ratio"].median(),
                        "ratio min": group["ratio"].min(), "ratio max": group["ratio"].max(),
                        "pretraining below t": int(group["below"].sum()),
                        "late not converged": int(group["unresolved"].sum()), "note": note}  # fmt: skip
        if fit is not None:
            row |= {"ratio exponent": fit.exponent, "exponent low": fit.exponent_ci[0],
                    "exponent high": fit.exponent_ci[1]}  # fmt: skip
        rows.append(row)
    columns = [*by, "networks", "ratio median", "ratio min", "ratio max", "ratio exponent", "exponent low",
               "exponent high", "pretraining below t", "late not converged", "note"]  # fmt: skip
    return table_of(rows, columns)


# ----------------------------------------------------------------------------------------------------------
# bounds (ours, chapter 8), the catapult window, held-out prediction

BOUND_COLUMNS = ("lower_bound", "lambda_1_ggn", "lambda_1", "ggn_upper_bound", "ntk_trace", "expected_upper_bound")


def bounds_check(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per network: the bounds, lambda_1 of G and H, and whether each inequality holds (to ``BOUNDS_RTOL``).

    Columns added: dw, half_ntk_trace ((1/2)(1/N) sum_i ||J_i||_F^2, whose expectation is
    expected_upper_bound), sandwich (lower <= lambda_1(G) <= upper, what is proved), hessian_below_upper
    (lambda_1(H) <= upper: not proved, H is not PSD), lower_below_hessian (proved), the ratios
    upper_over_ggn, ggn_over_lower and trace_over_expected, and for the sandwich: failure (by how much, relative
    to lambda_1(G), the worse side fails; <= 0 when it holds), error (lambda_1(G)'s error bar: its relative
    Lanczos residual where stored, at least ``BOUNDS_RTOL``) and broken (it fails by more than that error bar:
    a counterexample, not round-off).
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
    table["failure"] = np.maximum(table["lower_bound"] - table["lambda_1_ggn"],
                                  table["lambda_1_ggn"] - table["ggn_upper_bound"]) / table["lambda_1_ggn"]  # fmt: skip
    residual = pd.to_numeric(frame.loc[table.index, "lambda_1_ggn_residual"], errors="coerce") \
        if "lambda_1_ggn_residual" in frame else pd.Series(0.0, index=table.index)  # fmt: skip
    table["error"] = residual.fillna(0.0).clip(lower=BOUNDS_RTOL)
    table["broken"] = table["failure"] > table["error"]
    return table.reset_index(drop=True)


def bounds_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: networks, how many satisfy each inequality, and how loose the bounds are.

    Columns: dataset, networks, sandwich holds (lower <= lambda_1(G) <= upper, a count), sandwich broken
    (networks where it fails beyond lambda_1(G)'s error bar, ``bounds_check``), lambda_1(H) <= upper,
    lower <= lambda_1(H), lambda_1(H) / lambda_1(G) max, upper / lambda_1(G) median, lambda_1(G) / lower
    median, trace / closed form median.
    """
    table = bounds_check(frame)
    rows = [{"dataset": name, "networks": len(group),
             "sandwich holds": int(group["sandwich"].sum()), "sandwich broken": int(group["broken"].sum()),
             "lambda_1(H) <= upper": int(group["hessian_below_upper"].sum()),
             "lower <= lambda_1(H)": int(group["lower_below_hessian"].sum()),
             "lambda_1(H) / lambda_1(G) max": (group["lambda_1"] / group["lambda_1_ggn"]).max(),
             "upper / lambda_1(G) median": group["upper_over_ggn"].median(),
             "lambda_1(G) / lower median": group["ggn_over_lower"].median(),
             "trace / closed form median": group["trace_over_expected"].median()}
            for name, group in table.groupby("dataset", sort=False)]  # fmt: skip
    columns = ["dataset", "networks", "sandwich holds", "sandwich broken", "lambda_1(H) <= upper",
               "lower <= lambda_1(H)",
               "lambda_1(H) / lambda_1(G) max", "upper / lambda_1(G) median", "lambda_1(G) / lower median",
               "trace / closed form median"]  # fmt: skip
    return table_of(rows, columns)


def bounds_scaling(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: how tight our bounds are, and whether lambda_1(G) grows with d w as the upper bound does.

    Columns: dataset, networks, lambda_1 / upper (median of lambda_1(G) / upper bound: 1 is tight), its
    interval (upper low, upper high), lambda_1 / lower (median of lambda_1(G) / lower bound) with its interval
    (lower low, lower high; both ``intervals.cell_bootstrap``), lambda_1 exponent and upper exponent (in d w,
    each fitted on its own), exponent gap (the exponent of lambda_1(G) / upper bound in d w, network by
    network: lambda_1's exponent minus the bound's, sharing their noise), gap low, gap high, note.
    """
    table = bounds_check(frame)
    table = table.assign(tight_upper=table["lambda_1_ggn"] / table["ggn_upper_bound"],
                         tight_lower=table["lambda_1_ggn"] / table["lower_bound"])  # fmt: skip
    rows = []
    for name, group in table.groupby("dataset", sort=False):
        row = {"dataset": name, "networks": len(group)}
        for side in ("upper", "lower"):
            ratio = group[f"tight_{side}"]
            low, high = median_interval(ratio, group)
            row |= {f"lambda_1 / {side}": ratio.median(), f"{side} low": low, f"{side} high": high}
        fits = {key: attempt(fit_power_law, group, column)
                for key, column in (("lambda_1", "lambda_1_ggn"), ("upper", "ggn_upper_bound"), ("gap", "tight_upper"))}
        row["note"] = next((note for _, note in fits.values() if note), "")
        if not row["note"]:
            gap = fits["gap"][0]
            row |= {"lambda_1 exponent": fits["lambda_1"][0].exponent, "upper exponent": fits["upper"][0].exponent,
                    "exponent gap": gap.exponent, "gap low": gap.exponent_ci[0], "gap high": gap.exponent_ci[1]}
        rows.append(row)
    columns = ["dataset", "networks", "lambda_1 / upper", "upper low", "upper high", "lambda_1 / lower", "lower low",
               "lower high", "lambda_1 exponent", "upper exponent", "exponent gap", "gap low", "gap high", "note"]
    return table_of(rows, columns)


def catapult_table(frame: pd.DataFrame, *, by: Sequence[str] = BY_DATASET) -> pd.DataFrame:
    """Per group: where eta* x lambda_1_eff falls among the regimes of Lewkowycz et al. (2020), as the engine stored.

    Columns: the ``by`` columns, networks, with eta* (networks whose search converged), stable, catapult,
    divergent (counts of the stored ``regime``), inside window (fraction of those with eta* in catapult) with
    its Wilson interval (inside low, inside high), eta* lambda_1_eff median, min, max.
    """
    product = positive(frame["eta_lambda_eff"] if "eta_lambda_eff" in frame else frame["eta_lambda"])
    rows = []
    for values, group in groups(frame.assign(product=product), by):
        counts = group["regime"].value_counts()
        measured, inside = int(group["regime"].isin(REGIMES).sum()), int(counts.get("catapult", 0))
        low, high = wilson(inside, measured)
        rows.append(values | {"networks": len(group), "with eta*": measured}
                    | {name: int(counts.get(name, 0)) for name in REGIMES}
                    | {"inside window": inside / measured if measured else math.nan, "inside low": low,
                       "inside high": high,
                       "eta* lambda_1_eff median": group["product"].median(),
                       "eta* lambda_1_eff min": group["product"].min(),
                       "eta* lambda_1_eff max": group["product"].max()})  # fmt: skip
    columns = [*by, "networks", "with eta*", *REGIMES, "inside window", "inside low", "inside high",
               "eta* lambda_1_eff median",
               "eta* lambda_1_eff min", "eta* lambda_1_eff max"]  # fmt: skip
    return table_of(rows, columns)
