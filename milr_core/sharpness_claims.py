"""Claims (c) and (d) of the claims table: eta* against the sharpness at init, and our bounds on it.

Each question states its rule before its result, as in ``claims.py``; the numbers come from
``sharpness_tables.py``, the thresholds from ``rules.py``. (c) is judged on the raw lambda_1 (the Hessian's top
eigenvalue, the paper's sharpness); the effective one (as the step sees it) is reported beside it. (d) checks
**our** bounds (chapter 8), since the paper's are not available to us: (d1) is a check of our proof, not
evidence for the paper.
"""

from __future__ import annotations

import math

import pandas as pd

from milr_core import sharpness_tables
from milr_core.fit import REGIME_RULE, in_regime
from milr_core.rules import (
    CLOSE_RHO,
    NOT_SUPPORTED,
    SAME_EXPONENT,
    SUPPORTED,
    UNDECIDED,
    Claim,
    Estimate,
    Judgement,
    Question,
    answer,
    answered,
    band_rule,
    dataset_label,
    number,
    threshold_rule,
    unmeasured,
)

C = "(c) eta* and lambda_1 are closely, not inversely, related"
C_PAPER = '"closely though not inversely related"'
CLOSE_RULE = (
    "Spearman rho of eta* and the raw lambda_1 at init over {over}, its 95% interval from resampling cells and "
    f"their seeds. Supported if the interval of |rho| lies above {CLOSE_RHO:g}; not supported if below; undecided "
    "if it straddles"
)
C1 = Question("c1", C, C_PAPER, "In our regime, are eta* and lambda_1 closely related?",
              CLOSE_RULE.format(over=f"the networks in our regime ({REGIME_RULE})"), "07_sharpness")  # fmt: skip
C2 = Question("c2", C, C_PAPER, "Over all networks, are eta* and lambda_1 closely related?",
              CLOSE_RULE.format(over="all networks"), "07_sharpness")  # fmt: skip
C3 = Question(
    "c3", C, C_PAPER, "Is the relation other than eta* proportional to 1 / lambda_1?",
    "the slope of ln eta* on ln lambda_1 (raw) over all networks, -1 if eta* = c / lambda_1, with its 95% interval "
    f"(cells and seeds resampled). Supported (not inverse) if the interval lies outside -1 +- {SAME_EXPONENT:g}; "
    "not supported if inside; undecided if it straddles an edge",
    "07_sharpness",
)  # fmt: skip


def magnitude(row: pd.Series) -> Estimate:
    """``abs(rho)`` with its interval (an interval that holds 0 becomes [0, its larger end])."""
    low, high = row["Spearman low"], row["Spearman high"]
    if high < 0:
        low, high = -high, -low
    elif low <= 0:
        low, high = 0.0, max(-low, high)
    return Estimate("|rho|", abs(row["Spearman"]), low, high)


def relations(joined: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """sharpness_relation over the regime and over all networks, rows indexed by (dataset, sharpness)."""
    return {scope: sharpness_tables.sharpness_relation(frame).set_index(["dataset", "sharpness"])
            for scope, frame in (("regime", joined[in_regime(joined)]), ("all", joined))}  # fmt: skip


def sharpness_claim(eta: pd.DataFrame, sharp: pd.DataFrame) -> Claim:
    tables = relations(sharpness_tables.join_sharpness(eta, sharp))
    close = {"regime": [], "all": []}
    inverse = []
    for name in dict.fromkeys(eta["dataset"]):
        unit = dataset_label(name)
        for scope, answers in close.items():
            if (name, "raw") not in tables[scope].index or pd.isna(tables[scope].loc[(name, "raw"), "Spearman"]):
                answers.append(unmeasured(unit, "fewer than three networks with eta* and lambda_1"))
                continue
            raw = tables[scope].loc[(name, "raw")]
            other = (f"; effective lambda_1: rho {tables[scope].loc[(name, 'effective'), 'Spearman']:.2f}"
                     if (name, "effective") in tables[scope].index else "")  # fmt: skip
            rho = magnitude(raw)
            answers.append(answer(unit, threshold_rule(rho, CLOSE_RHO, "above"), rho,
                                  f"{rho} (rho {raw['Spearman']:.2f}) over {raw['networks']} networks{other}"))
            if scope == "all":
                slope = Estimate("slope", raw["slope (log-log)"], raw["slope low"], raw["slope high"])
                inverse.append(answer(unit, band_rule(slope, (-1 - SAME_EXPONENT, -1 + SAME_EXPONENT), "outside"),
                                      slope, f"{slope}; eta* x lambda_1 from {raw['product min']:.3g} to "
                                      f"{raw['product max']:.3g} (median {raw['product median']:.3g})"))  # fmt: skip
    return answered((C1, close["regime"]), (C2, close["all"]), (C3, inverse))


D = "(d) bounds on lambda_1 in terms of depth x width"
D_PAPER = '"formally prove bounds for lambda_1 in terms of depth x width"'
D1 = Question(
    "d1", D, D_PAPER, "Does every network satisfy our bounds on lambda_1 (a check of our proof)?",
    "our bounds (chapter 8, not the paper's theorem): lower <= lambda_1(G) <= upper in every network, G the "
    f"Gauss-Newton part, to a relative slack of {sharpness_tables.BOUNDS_RTOL:g}. Supported if every network holds; "
    "not supported if one fails by more than lambda_1's error bar (its Lanczos residual); undecided if failures "
    "lie within it. A count, not an interval: it checks our proof and is no evidence for the paper",
    "08_theory",
)  # fmt: skip
D2 = Question(
    "d2", D, D_PAPER, "How tight are our bounds?",
    "median over networks of lambda_1(G) / upper bound (1 is tight) and of lambda_1(G) / lower bound, with 95% "
    "intervals (cells and seeds resampled): numbers, no verdict",
    "08_theory",
)  # fmt: skip
D3 = Question(
    "d3", D, D_PAPER, "Does lambda_1 grow with d w as our upper bound does?",
    "lambda_1(G) / upper bound network by network, fitted as a power law in d w over all networks: its exponent "
    f"is lambda_1's minus the bound's. Supported if its 95% interval lies inside +-{SAME_EXPONENT:g}; not supported "
    "if outside; undecided if it straddles an edge. The paper's bounds are not available to us: this is ours",
    "08_theory",
)  # fmt: skip


def held(row: pd.Series) -> Judgement:
    networks, holds, broken = int(row["networks"]), int(row["sandwich holds"]), int(row["sandwich broken"])
    if holds == networks:
        return Judgement(SUPPORTED, "every network holds", math.inf)
    if broken:
        return Judgement(NOT_SUPPORTED, f"{broken} fail beyond lambda_1's error bar", math.inf)
    return Judgement(UNDECIDED, f"{networks - holds} fail within lambda_1's error bar", 0.0)


def bounds_claim(sharp: pd.DataFrame) -> Claim:
    try:
        summary, scaling = sharpness_tables.bounds_summary(sharp), sharpness_tables.bounds_scaling(sharp)
    except ValueError as error:
        return answered(*((q, [unmeasured("", str(error))]) for q in (D1, D2, D3)))
    checks, tightness, growth = [], [], []
    for (_, count), (_, scale) in zip(summary.iterrows(), scaling.iterrows()):
        unit = dataset_label(count["dataset"])
        checks.append(answer(unit, held(count), f"{count['sandwich holds']} of {count['networks']} networks hold"))
        upper = Estimate("lambda_1 / upper", scale["lambda_1 / upper"], scale["upper low"], scale["upper high"],
                         digits=".2g")  # fmt: skip
        lower = Estimate("lambda_1 / lower", scale["lambda_1 / lower"], scale["lower low"], scale["lower high"],
                         digits=".2g")  # fmt: skip
        tightness.append(number(unit, upper, f"{upper}, {lower}"))
        if pd.isna(scale["exponent gap"]):
            growth.append(unmeasured(unit, scale["note"]))
            continue
        gap = Estimate("exponent gap", scale["exponent gap"], scale["gap low"], scale["gap high"])
        growth.append(answer(unit, band_rule(gap, (-SAME_EXPONENT, SAME_EXPONENT), "inside"), gap,
                             f"{gap}: lambda_1(G) ~ (d w)^{scale['lambda_1 exponent']:.2f}, upper bound ~ "
                             f"(d w)^{scale['upper exponent']:.2f}"))  # fmt: skip
    return answered((D1, checks), (D2, tightness), (D3, growth))


SHARPNESS_QUESTIONS = {"c": (C1, C2, C3), "d": (D1, D2, D3)}
