"""Claims (e)-(g) of the claims table: statements of ours about chapters 10-12, not claims of the paper.

They are judged like the paper's (``claims.py``): each question states its rule before its result, a number
with its 95% interval against a threshold of ``rules.py``.
"""

from __future__ import annotations

import math

import pandas as pd

from milr_core import sharpness_tables, tables
from milr_core.config import CATAPULT_WINDOW
from milr_core.fit import REGIME_RULE
from milr_core.rules import (
    LAW_FACTOR,
    MAJORITY,
    MIN_CELLS,
    SAME_EXPONENT,
    Claim,
    Estimate,
    Question,
    answer,
    answered,
    band_rule,
    dataset_label,
    threshold_rule,
    unmeasured,
)

EXTENSION = "extension (ours), not a claim of the paper"
PARAMETERISATION = "network.parameterisation"

E = "(e) muP makes eta* width-independent [extension, ours]"
E1 = Question(
    "e1", E, EXTENSION, "Under muP, is eta* flat in width?",
    "the slope of ln eta* on ln width at fixed depth (one intercept per depth) under muP, over the cells every "
    f"parameterisation has, with its 95% interval. Supported if the interval lies inside +-{SAME_EXPONENT:g}; not "
    "supported if outside; undecided if it straddles an edge",
    "10_parameterisations",
)  # fmt: skip
E2 = Question(
    "e2", E, EXTENSION, "Is eta* flatter in width under muP than under the standard parameterisation?",
    "|standard slope| - |muP slope| on the cells both have, its 95% interval from pairing the two fits' bootstrap "
    "replicates. Supported if the interval lies above 0; not supported if below; undecided if it straddles 0",
    "10_parameterisations",
)  # fmt: skip


def parameterisation_claim(frame: pd.DataFrame) -> Claim:
    by = ("dataset", PARAMETERISATION)
    slopes = tables.width_exponents_table(frame, by=by).set_index(list(by))
    contrast = tables.flatness_table(frame, "mup", "standard", by=by)
    flat, flatter = [], []
    for _, row in contrast.iterrows():
        unit = dataset_label(row["dataset"])
        if pd.isna(row["steeper by"]) or (row["dataset"], "mup") not in slopes.index:
            flat.append(unmeasured(unit, row["note"] or "no width slope of muP"))
            flatter.append(unmeasured(unit, row["note"] or "no width slope of muP"))
            continue
        mine = slopes.loc[(row["dataset"], "mup")]
        slope = Estimate("muP width slope", mine["width slope"], mine["slope low"], mine["slope high"])
        every = ", ".join(f"{p} {r['width slope']:.2f} [{r['slope low']:.2f}, {r['slope high']:.2f}]"
                          for (name, p), r in slopes.iterrows() if name == row["dataset"])  # fmt: skip
        flat.append(answer(unit, band_rule(slope, (-SAME_EXPONENT, SAME_EXPONENT), "inside"), slope,
                           f"{slope}; width slopes {every} (widths {mine['width range']})"))
        steeper = Estimate("standard steeper by", row["steeper by"], row["steeper by low"], row["steeper by high"])
        flatter.append(answer(unit, threshold_rule(steeper, 0.0, "above"), steeper,
                              f"{steeper}: standard {row['base slope']:.2f}, muP {row['flat slope']:.2f} (widths "
                              f"{row['width range']})"))  # fmt: skip
    if contrast.empty:
        flat = flatter = [unmeasured("", "no dataset with both muP and standard cells")]
    return answered((E1, flat), (E2, flatter))


F = "(f) under MSE, eta* lies in the catapult window [extension, ours]"
F1 = Question(
    "f", F, EXTENSION, "Under MSE, does eta* lie in the catapult window for most networks?",
    "eta* (SGD, MSE) x the effective lambda_1 at init per network, placed in the regimes of Lewkowycz et al. 2020 "
    f"(stable below {CATAPULT_WINDOW[0]:g}, catapult from {CATAPULT_WINDOW[0]:g} to {CATAPULT_WINDOW[1]:g}, "
    "divergent above; ``catapult.regime``); the number is the fraction of networks in the window with its Wilson "
    f"95% interval. Supported if the interval lies above {MAJORITY:g} (a majority); not supported if below; "
    "undecided if it straddles",
    "11_catapult",
)  # fmt: skip


def catapult_claim(frame: pd.DataFrame) -> Claim:
    answers = []
    for _, row in sharpness_tables.catapult_table(frame).iterrows():
        unit = dataset_label(row["dataset"])
        if not row["with eta*"]:
            answers.append(unmeasured(unit, "no network with eta* and lambda_1"))
            continue
        share = Estimate("share in the window", row["inside window"], row["inside low"], row["inside high"])
        answers.append(answer(unit, threshold_rule(share, MAJORITY, "above"), share,
                              f"{row['catapult']} of {row['with eta*']} networks ({share}), {row['stable']} "
                              f"stable, {row['divergent']} divergent; eta* lambda_1_eff median "
                              f"{row['eta* lambda_1_eff median']:.3g}"))  # fmt: skip
    return answered((F1, answers or [unmeasured("", "no network with eta* and lambda_1")]))


G = "(g) milr predict: eta* of a held-out cell [extension, ours]"
G1 = Question(
    "g", G, EXTENSION, f"Does milr predict get a held-out cell's eta* within x{LAW_FACTOR:g}?",
    f"each cell in our regime ({REGIME_RULE}) predicted from the others in it (the power law milr predict fits); "
    "the number is exp of the mean |ln(predicted / measured)| over cells, its 95% interval from resampling them. "
    f"Supported if the interval lies below x{LAW_FACTOR:g}; not supported if above; undecided if it straddles. "
    f"The coverage of the 95% prediction intervals is reported. >= {MIN_CELLS} cells",
    "12_predict",
)  # fmt: skip


def predict_claim(eta: pd.DataFrame) -> Claim:
    answers = []
    for _, row in tables.held_out_table(eta, regime=True).iterrows():
        unit = dataset_label(row["dataset"])
        if row["cells"] < MIN_CELLS:
            answers.append(unmeasured(unit, f"fewer than {MIN_CELLS} cells in the regime"))
            continue
        error = Estimate("typical error", math.exp(row["mean |log error|"]), math.exp(row["error low"]),
                         math.exp(row["error high"]), factor=True)  # fmt: skip
        coverage = ("no intervals" if math.isnan(row["coverage"]) else
                    f"{row['coverage']:.0%} of {int(row['with interval'])} inside their intervals")  # fmt: skip
        answers.append(answer(unit, threshold_rule(error, LAW_FACTOR, "below"), error,
                              f"{error} over {int(row['cells'])} cells, {coverage}"))
    return answered((G1, answers or [unmeasured("", "no dataset with cells to predict")]))


EXTENSIONS = {"e": (E1, E2), "f": (F1,), "g": (G1,)}
