"""The claims table: each claim of the paper's abstract split into the questions it contains, each answered by a rule.

Each question states its rule in words before any result (``Question.rule``, shown on the page), and the
rule sets a number with its 95% interval against a threshold of ours (``rules.py``, each with its reason):
supported, not supported, or undecided when the interval straddles it; not measured when the store lacks
the cells. Every number comes from ``tables.py`` and ``sharpness_tables.py`` (which fit with ``fit.py``);
this module derives nothing of its own. A smoke-profile table comes from tiny grids: its verdicts say
nothing about the paper. Claims (e)-(g) are extensions (ours, chapters 10-12, ``extensions.py``).

Claims (a), (a-i) and (a-ii) are answered under both preprocessings where the store holds the per-feature
cells (the ``preprocessing`` experiment): global standardisation (one mean and std per channel, our
default) unless a unit says "per-feature" (each pixel standardised on its own).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from milr_core import sharpness_tables, tables
from milr_core.experiments import run_experiment
from milr_core.extensions import EXTENSIONS, catapult_claim, parameterisation_claim, predict_claim
from milr_core.fit import MIN_DEPTH, REGIME_RULE
from milr_core.rules import (
    COLUMNS,
    EDGE,
    EDGE_FACTOR,
    LAW_FACTOR,
    MIN_CELLS,
    SAME_EXPONENT,
    Answer,
    Claim,
    Estimate,
    Question,
    all_of,
    answer,
    answered,
    band_rule,
    dataset_label,
    number,
    threshold_rule,
    units,
    unmeasured,
)
from milr_core.sharpness_claims import SHARPNESS_QUESTIONS, bounds_claim, sharpness_claim

SAME = (-SAME_EXPONENT, SAME_EXPONENT)
EDGE_BAND = (EDGE / EDGE_FACTOR, EDGE * EDGE_FACTOR)


def per_feature(frame: pd.DataFrame | None, input_lr_factor: float) -> pd.DataFrame | None:
    """The eta* networks of the ``preprocessing`` experiment standardised per feature at one input-layer factor,
    each once (its grids share cells); None without any."""
    if frame is None or "data.options.preprocessing" not in frame:
        return None
    rows = frame[(frame["kind"] == "eta_star") & (frame["data.options.preprocessing"] == "per_feature")
                 & np.isclose(frame["network.input_lr_factor"].astype(float), input_lr_factor)]  # fmt: skip
    rows = rows.drop_duplicates(subset=tables.KEYS)
    return rows if len(rows) else None


def _with_per_feature(eta: pd.DataFrame, preprocessing: pd.DataFrame | None, factor: float = 0.1) -> list:
    extra = per_feature(preprocessing, factor)
    return units(eta) + (units(extra, " (per-feature)") if extra is not None else [])


def _regime_fit(frame: pd.DataFrame) -> pd.Series | None:
    """The power law's row of ``tables.fits_table`` over the regime, None with fewer than MIN_CELLS cells."""
    fits = tables.fits_table(frame, scopes=(tables.IN_REGIME,))
    enough = fits["n cells"].fillna(0) >= MIN_CELLS
    return fits[enough].iloc[0] if enough.any() else None


def _too_few(unit: str, what: str = "the regime") -> Answer:
    return unmeasured(unit, f"fewer than {MIN_CELLS} cells in {what}")


def _scatter_of(row: pd.Series, name: str = "scatter") -> Estimate:
    return Estimate(name, row["scatter"], row["scatter low"], row["scatter high"], factor=True)


# ----------------------------------------------------------------------------------------------------------
# (a) the power law, in its regime, and whether d w is the variable

A = '(a) eta* is a power of depth x width'
A_PAPER = '"well predicted as a power of depth x width"'
A1 = Question(
    "a1", A, A_PAPER, "In our regime, is eta* a power law of depth x width?",
    f"in our regime ({REGIME_RULE}), the cell medians of eta* fitted by a power law in d w (cells where every seed "
    f"failed kept as censored, >= {MIN_CELLS} cells); the number is the cells' scatter about the law, exp of the "
    "residual sd of ln eta*, with its 95% bootstrap interval (cells and their seeds resampled). Supported if that "
    f"interval lies below x{LAW_FACTOR:g} and alpha's above 0 (eta* falls with d w); not supported if the scatter's "
    f"lies above x{LAW_FACTOR:g} or alpha's below 0; else undecided. R^2 is reported, not judged: it grows with "
    "the range of d w a grid spans, whatever the fit",
    "02_power_law",
)  # fmt: skip
A2 = Question(
    "a2", A, A_PAPER, "Do depth and width enter only through their product d w?",
    "log eta* = c + a log d + b log w over the same cells; a law in d w needs a = b. Supported if the 95% "
    f"interval of a - b lies inside +-{SAME_EXPONENT:g}, not supported if it lies outside, undecided if it "
    "straddles an edge",
    "02_power_law",
)  # fmt: skip
A3 = Question(
    "a3", A, A_PAPER, "How fast does eta* fall with d w?",
    "alpha in eta* ~ (d w)^-alpha over the same cells, and the exponents a of depth and b of width, with their "
    "95% intervals: numbers, no verdict",
    "02_power_law",
)  # fmt: skip


def power_law_claim(eta: pd.DataFrame, preprocessing: pd.DataFrame | None = None) -> Claim:
    """(a1)-(a3) per dataset, and per-feature where ``preprocessing`` (that experiment's frame) holds the cells."""
    law, product, exponents = [], [], []
    for unit, frame in _with_per_feature(eta, preprocessing):
        fit = _regime_fit(frame)
        if fit is None:
            for answers in (law, product, exponents):
                answers.append(_too_few(unit))
            continue
        alpha = Estimate("alpha", fit["alpha"], fit["alpha low"], fit["alpha high"])
        judged = all_of(threshold_rule(_scatter_of(fit), LAW_FACTOR, "below"), threshold_rule(alpha, 0.0, "above"))
        law.append(answer(unit, judged, _scatter_of(fit), f"{_scatter_of(fit)}, {alpha}, R^2 {fit['R^2']:.2f} "
                          f"[{fit['R^2 low']:.2f}, {fit['R^2 high']:.2f}], {fit['n cells']} cells "
                          f"({fit['censored cells']} censored)"))  # fmt: skip
        form = tables.product_form_table(frame, scopes=(tables.IN_REGIME,)).iloc[0]
        if pd.isna(form["a - b"]):
            product.append(unmeasured(unit, form["note"]))
            exponents.append(number(unit, alpha))
            continue
        gap = Estimate("a - b", form["a - b"], form["a - b low"], form["a - b high"])
        each = (f"a {form['a (depth)']:.2f} [{form['a low']:.2f}, {form['a high']:.2f}], b {form['b (width)']:.2f} "
                f"[{form['b low']:.2f}, {form['b high']:.2f}]")  # fmt: skip
        product.append(answer(unit, band_rule(gap, SAME, "inside"), gap, f"{gap}; {each}"))
        exponents.append(number(unit, alpha, f"{alpha}; {each}"))
    return answered((A1, law), (A2, product), (A3, exponents))


# ----------------------------------------------------------------------------------------------------------
# (a-i) width large compared to depth; (a-ii) a small input-layer learning rate

AI = Question(
    "a-i", "(a-i) the law needs width >> depth",
    '"provided that (i) the width of the network is sufficiently large compared to the depth"',
    "Do networks narrow for their depth fall off the law?",
    f"the cells our regime leaves out for being narrow (depth >= {MIN_DEPTH}, d/w above 1/16) set against the law "
    "fitted in the regime; the number is exp of the root mean square of ln(eta* / law) over them, its 95% "
    "interval from resampling both sets of cells with their seeds. Supported (the proviso is needed) if the "
    f"interval lies above x{LAW_FACTOR:g}; not supported (narrow networks follow the law too) if below; undecided "
    f"if it straddles. >= {MIN_CELLS} cells in each set; narrow cells where no LR reached t are counted, not scored",
    "03_condition_width",
)  # fmt: skip


def width_condition_claim(eta: pd.DataFrame, preprocessing: pd.DataFrame | None = None) -> Claim:
    answers = []
    for unit, frame in _with_per_feature(eta, preprocessing):
        misfit = tables.narrow_misfit_table(frame).iloc[0]
        if _regime_fit(frame) is None or not misfit["n cells"] >= MIN_CELLS:
            answers.append(_too_few(unit, "the regime or among the narrow cells"))
            continue
        off = Estimate("narrow cells off the law by", misfit["misfit"], misfit["misfit low"], misfit["misfit high"],
                       factor=True)  # fmt: skip
        direction = "below" if misfit["shift"] < 0 else "above"
        answers.append(answer(unit, threshold_rule(off, LAW_FACTOR, "above"), off,
                              f"{off} over {misfit['n cells']} narrow cells, mostly {direction} the law (mean "
                              f"ln(eta*/law) {misfit['shift']:+.2f}); {misfit['unreached cells']} where no LR "
                              f"reached t, {misfit['censored cells']} censored"))  # fmt: skip
    return answered((AI, answers))


AII = Question(
    "a-ii", "(a-ii) the law needs a smaller input-layer LR",
    '"provided that ... (ii) the input layer is trained at a relatively small learning rate"',
    "Does the law break when the input layer trains at the full LR?",
    "the input-layer grid with the input layer at 1x the LR of the others (instead of our 0.1x), fitted over our "
    f"regime as in (a1); the number is the cells' scatter about that law. Supported (the proviso is needed) if "
    f"its interval lies above x{LAW_FACTOR:g}; not supported (the law holds at 1x too) if below; undecided if it "
    "straddles. Judged under both preprocessings, global and per-feature",
    "04_input_layer",
)  # fmt: skip


def input_layer_claim(frame: pd.DataFrame, preprocessing: pd.DataFrame | None = None) -> Claim:
    """(a-ii) from the input-layer grid (its variants at 0.1x and 1x) and the per-feature cells at 1x and 0.1x."""
    factor = pd.to_numeric(frame["network.input_lr_factor"], errors="coerce")
    full, small = frame[factor == factor.max()], frame[factor == factor.min()]
    pairs = [(unit, rows, small[small["dataset"] == rows["dataset"].iloc[0]]) for unit, rows in units(full)]
    extra_full, extra_small = per_feature(preprocessing, 1.0), per_feature(preprocessing, 0.1)
    for name in dict.fromkeys(name for f in (extra_full, extra_small) if f is not None for name in f["dataset"]):
        pick = lambda f: f[f["dataset"] == name] if f is not None else frame.iloc[:0]  # noqa: E731
        pairs.append((f"{dataset_label(name)} (per-feature)", pick(extra_full), pick(extra_small)))
    answers = []
    for unit, at_full, at_small in pairs:
        fit = _regime_fit(at_full) if len(at_full) else None
        if fit is None:
            answers.append(_too_few(unit, "the regime at 1x"))
            continue
        scatter = _scatter_of(fit, "scatter at 1x")
        base = _regime_fit(at_small) if len(at_small) else None
        compared = (f"; at 0.1x {_scatter_of(base)}, R^2 {base['R^2']:.2f}, alpha {base['alpha']:.2f}"
                    if base is not None else "")  # fmt: skip
        answers.append(answer(unit, threshold_rule(scatter, LAW_FACTOR, "above"), scatter,
                              f"{scatter}, R^2 {fit['R^2']:.2f}, alpha {fit['alpha']:.2f} ({fit['n cells']} cells)"
                              f"{compared}"))  # fmt: skip
    return answered((AII, answers))


# ----------------------------------------------------------------------------------------------------------
# (b) the late maximum learning rate

B = "(b) eta* differs from the maximum LR later in training"
B_PAPER = '"behaves differently from the maximum learning rate later in training"'
B1 = Question(
    "b1", B, B_PAPER, "Does the late max LR scale with d w differently from eta*?",
    "per dataset and pretraining length, late max LR / eta* network by network, fitted as a power law in d w: its "
    "exponent is the late LR's minus eta*'s, on the same networks. Supported if its 95% interval lies outside "
    f"+-{SAME_EXPONENT:g}; not supported if inside; undecided if it straddles an edge",
    "06_late_lr",
)  # fmt: skip
B2 = Question(
    "b2", B, B_PAPER, "Does the late max LR relate to the sharpness differently from eta*?",
    f"per dataset and pretraining length, the medians over networks of late max LR x lambda_1(theta_T) and of eta* x "
    "lambda_1(theta_0) (effective lambda_1 where stored, else raw), 95% intervals from resampling cells and seeds. "
    f"At the edge of stability eta lambda_1 = {EDGE:g}; at the edge means in [{EDGE_BAND[0]:g}, {EDGE_BAND[1]:g}]. "
    "Supported if the late product's interval lies inside that band and eta*'s outside; not supported if the "
    "late product's lies outside or eta*'s inside; else undecided",
    "06_late_lr",
)  # fmt: skip


def late_claim(late: pd.DataFrame) -> Claim:
    ratios = sharpness_tables.late_ratio_table(late)
    scaling = []
    for _, r in ratios.iterrows():
        unit = f"{dataset_label(r['dataset'])} ({r['pretrain_steps']} steps)"
        if pd.isna(r["ratio exponent"]):
            scaling.append(unmeasured(unit, r["note"]))
            continue
        gap = Estimate("exponent of late / eta*", r["ratio exponent"], r["exponent low"], r["exponent high"])
        scaling.append(answer(unit, band_rule(gap, SAME, "outside"), gap,
                              f"{gap}; late / eta* median {r['ratio median']:.2f} ({r['networks']} networks)"))
    contrast = sharpness_tables.late_contrast(late)
    if len(contrast):
        kind = "effective" if (contrast["sharpness"] == "effective").any() else "raw"
        contrast = contrast[contrast["sharpness"] == kind]
    labels = {key: sharpness_tables.RELATIONS[key][0] for key in ("init", "late")}
    edge = []
    for (name, steps), rows in (contrast.groupby(["dataset", "pretrain_steps"], sort=False) if len(contrast) else []):
        unit, rows = f"{dataset_label(name)} ({steps} steps)", rows.set_index("relation")
        if not set(labels.values()) <= set(rows.index):
            edge.append(unmeasured(unit, "no sharpness at both ends"))
            continue
        start, later = (Estimate(labels[k], *rows.loc[labels[k], ["product median", "median low", "median high"]],
                                 digits=".3g") for k in ("init", "late"))  # fmt: skip
        judged = all_of(band_rule(later, EDGE_BAND, "inside"), band_rule(start, EDGE_BAND, "outside"))
        edge.append(answer(unit, judged, f"{later} vs {start}", f"{later} vs {start} ({kind} lambda_1)"))
    if not edge:
        edge = [unmeasured("", "no late search with the sharpness at both ends")]
    return answered((B1, scaling), (B2, edge))


# ----------------------------------------------------------------------------------------------------------
# the table: (c) and (d) are in ``sharpness_claims.py``, (e)-(g) in ``extensions.py``

CLAIMS: list[tuple[Callable[..., Claim], tuple[Question, ...], tuple[str, ...], tuple[str, ...]]] = [
    (power_law_claim, (A1, A2, A3), ("power_law",), ("preprocessing",)),
    (width_condition_claim, (AI,), ("power_law",), ("preprocessing",)),
    (input_layer_claim, (AII,), ("input_layer",), ("preprocessing",)),
    (late_claim, (B1, B2), ("late_lr",), ()),
    (sharpness_claim, SHARPNESS_QUESTIONS["c"], ("power_law", "sharpness"), ()),
    (bounds_claim, SHARPNESS_QUESTIONS["d"], ("sharpness",), ()),
    (parameterisation_claim, EXTENSIONS["e"], ("parameterisations",), ()),
    (catapult_claim, EXTENSIONS["f"], ("catapult",), ()),
    (predict_claim, EXTENSIONS["g"], ("power_law",), ()),
]  # each claim: how to answer it, its questions, the experiments it needs, those it reads where the store has them


RULE_COLUMNS = ["question", "the paper says", "our rule", "chapter"]
ANSWER_COLUMNS = ["question", "scope", "verdict", "key number", "why", "we measured"]


def rules_table(table: pd.DataFrame) -> pd.DataFrame:
    """The questions of a ``claims_table`` with their rules, one row each: what is asked before what was found."""
    return table.drop_duplicates("question")[RULE_COLUMNS].reset_index(drop=True)


def answers_table(table: pd.DataFrame) -> pd.DataFrame:
    """The answers of a ``claims_table``: per question and verdict, its units, the number, why, and the detail."""
    return table[ANSWER_COLUMNS].reset_index(drop=True)


def claims_table(profile: str = "smoke", compute: bool | None = None) -> pd.DataFrame:
    """The claims table of one profile, from its result store: one row per question, or per unit where the units'
    verdicts differ (columns ``rules.COLUMNS``). ``compute``: as ``run_experiment``, by default the profile's
    choice. A question whose experiments the store lacks is ``not measured``."""
    frames: dict[str, pd.DataFrame | None] = {}
    for name in dict.fromkeys(name for *_, needed, read in CLAIMS for name in (*needed, *read)):
        try:
            frames[name] = run_experiment(name, profile, compute=compute)
        except LookupError:
            frames[name] = None
    rows = []
    for judge, questions, needed, read in CLAIMS:
        missing = [name for name in needed if frames[name] is None]
        if missing:
            why = f"the store holds no cells of {', '.join(missing)}"
            rows += [row for question in questions for row in question.rows([unmeasured("", why)])]
        else:
            rows += judge(*(frames[name] for name in (*needed, *read))).rows
    return pd.DataFrame(rows, columns=COLUMNS)
