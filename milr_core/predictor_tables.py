"""How well, and at what cost, each cheap predictor foretells the measured eta* of the same networks (chapter 14).

One row per network and predictor (``predictor_frame``), from three experiments of one store: ``predictors`` (the
critical LR and the range test, measured per network), ``sharpness`` (lambda_1 and lambda_1_eff at initialisation,
with their Lanczos product counts) and ``power_law`` (eta*, and the power law fitted to the other cells).

- **Raw** predictions take each protocol's own constant: 2 / lambda_1 (the quadratic model's edge of stability),
  the range test's suggestion as its rule gives it, the critical LR as measured.
- **Held out** (``held_out``): eta* ~ c x raw, c fitted on the *other* cells of the same dataset (every network of
  the predicted cell left out, as ``predict.leave_one_cell_out`` leaves it out of the power law): ln c the mean of
  ln(eta* / raw) over them. The power law is already held out.
- **Error** against eta*: ln(prediction / eta*) per network; per predictor and dataset its mean (the raw bias), its
  spread (unchanged by any constant), Spearman's rank correlation across networks, and the held-out error, the mean
  ``abs(ln(held-out / eta*))``, with its typical factor exp(error).
- **Cost** per network in SGD-step equivalents: (forward examples + 2 x backward examples) / (3 x batch), a backward
  pass costing twice a forward one (``preflight.py``'s FLOP model), batch the training's; and the wall time where it
  was measured. The reference: one eta* search, its probes' SGD steps (validation passes not counted).

Networks without a measured eta* (no learning rate reached t) are left out; a predictor with no value for a network
(a censored critical LR, a range test too short to suggest) counts it as ``missing``. All choices here are ours.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from scipy import stats

from milr_core.config import DATASETS
from milr_core.predict import leave_one_cell_out
from milr_core.predictors import HVP_PASSES

KEYS = ["dataset", "depth", "width", "seed"]
BACKWARD_COST = 2  # a backward pass costs about twice a forward one (preflight.py's FLOP model)
PREDICTORS = {  # key: label, in the book's order
    "edge": "2 / λ₁",
    "edge_eff": "2 / λ₁,eff",
    "critical": "critical LR, first update",
    "range_steep": "range test: steepest",
    "range_minimum": "range test: minimum / 10",
    "range_valley": "range test: valley",
    "power_law": "power law, other cells",
}
SEARCH = "η* search"


def _sgd_steps(forward: pd.Series, backward: pd.Series, batch: pd.Series) -> pd.Series:
    """Example passes as SGD steps of the training's batch."""
    return (forward + BACKWARD_COST * backward) / ((1 + BACKWARD_COST) * batch)


def measured(eta: pd.DataFrame) -> pd.DataFrame:
    """The networks with a measured eta* (finite, positive), by key."""
    values = pd.to_numeric(eta["eta_star"], errors="coerce")
    return eta.loc[np.isfinite(values) & (values > 0), KEYS].assign(eta_star=values)


def rows(frame: pd.DataFrame, predictor: str, value, forward, backward, wall) -> pd.DataFrame:
    """The long rows of one predictor: value, example passes, wall time (Series or numbers, aligned with frame)."""
    out = frame[KEYS + ["eta_star", "batch", "device"]].copy()
    out["predictor"], out["value"] = predictor, pd.to_numeric(value, errors="coerce")
    out["forward_examples"], out["backward_examples"], out["wall_time_s"] = forward, backward, wall
    return out


def predictor_frame(predictions: pd.DataFrame, eta: pd.DataFrame, sharpness: pd.DataFrame | None) -> pd.DataFrame:
    """One row per network with a measured eta* and predictor: its prediction (raw constant), cost and wall time.

    Args:
        predictions: the ``predictors`` experiment's frame; eta: the ``power_law`` experiment's (eta* and the
            cells the power law is fitted on); sharpness: the ``sharpness`` experiment's (None: no 2 / lambda_1).
    """
    base = measured(eta).merge(predictions, on=KEYS, how="inner")
    base["batch"], base["device"] = base["train.batch_size"].astype(float), base["provenance.device"]
    parts = []
    if sharpness is not None and len(sharpness):
        joined = base.merge(sharpness, on=KEYS, how="inner", suffixes=("", "_sharpness"))
        for key, column in (("edge", "lambda_1"), ("edge_eff", "lambda_1_eff")):
            products = joined[f"{column}_n_products"].astype(float)
            passes = HVP_PASSES * products * joined["hvp_examples"]
            parts.append(rows(joined, key, 2 / joined[column].astype(float), passes, passes,
                              joined["hvp_setup_s"] + products * joined["hvp_seconds"]))  # fmt: skip
    parts.append(rows(base, "critical", base["critical_lr"], base["critical_forward_examples"],
                      base["critical_backward_examples"], base["critical_wall_time_s"]))  # fmt: skip
    for rule in ("steep", "minimum", "valley"):
        parts.append(rows(base, f"range_{rule}", base[f"range_{rule}"], base["range_forward_examples"],
                          base["range_backward_examples"], base["range_wall_time_s"]))  # fmt: skip
    parts.append(_power_law_rows(eta, base))
    frame = pd.concat(parts, ignore_index=True)
    frame["log_error"] = np.log(frame["value"] / frame["eta_star"])
    frame["cost_steps"] = _sgd_steps(frame["forward_examples"], frame["backward_examples"], frame["batch"])
    return frame


def _power_law_rows(eta: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Each network's cell predicted by the power law fitted to the other cells of its dataset: no passes; the wall
    time of one leave-one-cell-out prediction here (its fit, with ``predict``'s bootstrap of the exponent)."""
    predicted = []
    for dataset in eta["dataset"].unique():
        began = time.perf_counter()
        cells = leave_one_cell_out(eta, dataset)
        if not cells.empty:
            share = (time.perf_counter() - began) / len(cells)
            predicted.append(cells[["dataset", "depth", "width", "predicted"]].assign(wall=share))
    if not predicted:
        return rows(base.iloc[:0], "power_law", [], [], [], [])
    joined = base.merge(pd.concat(predicted), on=["dataset", "depth", "width"], how="left")
    return rows(joined, "power_law", joined["predicted"], 0.0, 0.0, joined["wall"]).assign(device="this machine")


def held_out(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``held_out`` = c x value, ln c the mean of ln(eta* / value) over the other cells of the same
    dataset and predictor (the power law: its value, already held out)."""
    frame = frame.copy()
    frame["held_out"] = np.nan
    for (dataset, predictor), group in frame.groupby(["dataset", "predictor"], sort=False):
        usable = group[np.isfinite(group["log_error"])]
        for (depth, width), cell in usable.groupby(["depth", "width"]):
            if predictor == "power_law":
                frame.loc[cell.index, "held_out"] = cell["value"]
                continue
            others = usable[(usable["depth"] != depth) | (usable["width"] != width)]
            if len(others):
                frame.loc[cell.index, "held_out"] = cell["value"] * math.exp(-others["log_error"].mean())
    return frame


def predictor_table(frame: pd.DataFrame, search: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per predictor and dataset: networks (and missing), raw bias and spread of ln(prediction / eta*), Spearman's
    rho, the raw factor ``exp(mean(abs(ln(raw / eta*))))``, the held-out error and its factor, the constant fitted on every
    cell, the median cost and wall time; with ``search`` (``search_cost``), a row per dataset for one eta* search
    (its cost only)."""
    frame = held_out(frame)
    table = []
    for (predictor, dataset), group in frame.groupby(["predictor", "dataset"], sort=False):
        usable = group[np.isfinite(group["log_error"])]
        error = np.abs(np.log(usable["held_out"] / usable["eta_star"]))
        rho = stats.spearmanr(usable["value"], usable["eta_star"]).statistic if len(usable) > 2 else math.nan
        table.append({
            "predictor": PREDICTORS[predictor], "dataset": dataset, "networks": len(usable),
            "missing": len(group) - len(usable), "bias": usable["log_error"].mean(), "spread": usable["log_error"].std(),
            "rank ρ": rho, "raw factor": math.exp(usable["log_error"].abs().mean()),
            "held-out error": error.mean(), "factor": math.exp(error.mean()),
            "c": math.exp(-usable["log_error"].mean()) if predictor != "power_law" else math.nan,
            "cost (SGD steps)": group["cost_steps"].median(), "wall (s)": group["wall_time_s"].median(),
        })  # fmt: skip
    if search is not None:
        for dataset, group in search.groupby("dataset", sort=False):
            table.append({"predictor": SEARCH, "dataset": dataset, "networks": len(group), "missing": 0,
                          "cost (SGD steps)": group["cost_steps"].median(), "wall (s)": group["wall_time_s"].median()})  # fmt: skip
    order = {label: i for i, label in enumerate([*PREDICTORS.values(), SEARCH, *DATASETS])}
    return pd.DataFrame(table).sort_values(["dataset", "predictor"], key=lambda c: c.map(order).fillna(len(order)),
                                           kind="stable").reset_index(drop=True)  # fmt: skip


def range_curves(ledger: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The ``predictors`` ledger's range-test curves, each with its network's suggestions and critical LR."""
    curves = ledger[ledger["protocol"] == "range_test"]
    columns = KEYS + ["critical_lr", "range_steep", "range_minimum", "range_valley"]
    return curves.drop(columns=[c for c in columns[4:] if c in curves]).merge(predictions[columns], on=KEYS)


def example_networks(predictions: pd.DataFrame) -> list[tuple]:
    """Per dataset, seed 0's (else the first seed's) network nearest the middle of its grid in ln(d w): the range
    tests the chapter draws."""
    chosen = []
    for _, group in predictions.groupby("dataset", sort=False):
        group = group[group["seed"] == group["seed"].min()]
        log_dw = np.log(group["depth"] * group["width"])
        middle = group.loc[(log_dw - (log_dw.min() + log_dw.max()) / 2).abs().idxmin()]
        chosen.append(tuple(middle[KEYS]))
    return chosen


def search_cost(eta: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
    """Per network with a measured eta*: its search's SGD steps (every probe's, from the ledger) and the wall time of
    its record (the seed group's call over its seeds), on the device its provenance names."""
    steps = ledger.groupby(KEYS)["steps"].sum().rename("cost_steps").reset_index()
    wall = eta[KEYS].assign(wall_time_s=eta["provenance.wall_time_s"] / eta["provenance.seeds_batched"])
    return measured(eta).merge(steps, on=KEYS).merge(wall, on=KEYS)


# ----------------------------------------------------------------------------------------------------------
# sentences


def practitioner_sentence(table: pd.DataFrame, dataset: str) -> str:
    """What a practitioner should use on ``dataset``, read off ``predictor_table``: the predictor with the smallest
    held-out error, its factor and cost against one search, and the cheapest predictor within 1.5x of that error."""
    rows = table[(table["dataset"] == dataset) & (table["predictor"] != SEARCH)].dropna(subset=["held-out error"])
    if rows.empty:
        return "no predictor has a held-out error here (too few cells)."
    best = rows.loc[rows["held-out error"].idxmin()]
    search = table[(table["predictor"] == SEARCH) & (table["dataset"] == dataset)]["cost (SGD steps)"]
    against = f" ({best['cost (SGD steps)'] / search.iloc[0]:.2g} of one η* search's)" if len(search) else ""
    near = rows[rows["held-out error"] <= 1.5 * best["held-out error"]]
    cheapest = near.loc[near["cost (SGD steps)"].idxmin()]
    also = ("" if cheapest["predictor"] == best["predictor"] else
            f"; within 1.5x of its error, {cheapest['predictor']} is the cheapest (a typical factor "
            f"{cheapest['factor']:.2f} for {_cost_text(cheapest['cost (SGD steps)'])})")  # fmt: skip
    rank = f"rank ρ {best['rank ρ']:.2f} across" if math.isfinite(best["rank ρ"]) else "no rank correlation with"
    return (f"{best['predictor']} comes closest: a typical factor {best['factor']:.2f} from a held-out network's η* "
            f"({rank} {int(best['networks'])} networks), for {_cost_text(best['cost (SGD steps)'])} per network"
            f"{against if best['cost (SGD steps)'] else ''}{also}.")  # fmt: skip


def _cost_text(steps: float) -> str:
    return "no compute beyond the store" if steps == 0 else f"{steps:.3g} SGD steps"
