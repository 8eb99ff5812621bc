"""The claims table: each claim of the paper's abstract, our rule, our verdict and the number it rests on.

Every number comes from ``tables.py`` (which fits with ``fit.py``); this module derives nothing of its
own: it reads table columns and applies one verdict rule per claim. The rules and every threshold below
are **ours** (the paper states none), written out in each row's "our rule", so that a reader can
disagree with a rule and still use the number. A smoke-profile table comes from tiny grids: its verdicts
say nothing about the paper.

Verdicts: ``supported``, ``mixed``, ``not supported``, or ``not measured`` when the store lacks the
cells (or no fit is possible). Rows (e)-(g) are extensions (ours, chapters 10-12): statements the paper
does not make, tested with the same kind of stated rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from milr_core import sharpness_tables, tables
from milr_core.config import CATAPULT_WINDOW
from milr_core.experiments import run_experiment
from milr_core.fit import REGIME_RULE

SUPPORTED, MIXED, NOT_SUPPORTED, NOT_MEASURED = "supported", "mixed", "not supported", "not measured"
R2_SUPPORTED, R2_MIXED = 0.9, 0.7  # (a): a power law "predicts well" at R^2 >= 0.9, partly at >= 0.7 (ours)
MIN_CELLS = 4  # a verdict on a fit needs this many cells: two more than a line has parameters (ours)
R2_GAIN = 0.1  # (a-i), (a-ii): a proviso matters when R^2 rises by at least this with it (ours)
CLOSE_RHO = 0.8  # (c): "closely related" when |Spearman rho| >= 0.8 (ours)
NOT_CONSTANT = 2.0  # (c): "not inversely related" needs eta* lambda_1 to vary over more than 2x ... (ours)
INVERSE_SLOPE = 0.1  # (c): ... and the log-log slope to differ from -1 by more than 0.1 (ours)
EDGE = 2.0  # (b): the edge of stability, eta lambda_1 = 2 (Cohen et al. 2021)
EDGE_FACTOR = 2.0  # (b): the late product is "at the edge" when within a factor 2 of it (ours)
FLAT_WIDTH = 0.2  # (e): eta* is width-independent when |d ln eta* / d ln w| at fixed depth is at most this (ours)
HELD_OUT_ERROR, HELD_OUT_COVERAGE = math.log(1.5), 0.8  # (g): mean error within 1.5x, 80% inside intervals (ours)
EXTENSION = "extension (ours), not a claim of the paper"


@dataclass(frozen=True)
class Claim:
    """One row of the claims table."""

    claim: str
    paper: str  # a short quote of the abstract (or EXTENSION)
    rule: str  # our rule, with its thresholds
    verdict: str
    key: str  # the one number (per dataset) with its interval
    measured: str  # the detail
    chapter: str  # the notebook that shows it

    def row(self) -> dict:
        return {"claim": self.claim, "the paper says": self.paper, "our rule": self.rule, "verdict": self.verdict,
                "key number": self.key, "we measured": self.measured, "chapter": self.chapter}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """What a claim is, where the paper says it, our rule in words, its chapter and the experiments it reads."""

    claim: str
    paper: str
    rule: str
    chapter: str
    experiments: tuple[str, ...]

    def judged(self, verdict: str, keys: list[str], details: list[str]) -> Claim:
        measured = "; ".join(details) or "no fit possible"
        return Claim(self.claim, self.paper, self.rule, verdict, "; ".join(keys), measured, self.chapter)

    def unmeasured(self, why: str) -> Claim:
        return Claim(self.claim, self.paper, self.rule, NOT_MEASURED, "", why, self.chapter)


def verdict_of(checks: list[bool]) -> str:
    """supported if every check holds, mixed if some do, not supported if none; not measured without checks."""
    return NOT_MEASURED if not checks else SUPPORTED if all(checks) else MIXED if any(checks) else NOT_SUPPORTED


def enough(cells: object) -> bool:
    """Whether a fit's number of cells (NA without a fit) is enough for a verdict."""
    return bool(pd.notna(cells) and cells >= MIN_CELLS)


def too_few(dataset: str) -> str:
    return f"{dataset}: fewer than {MIN_CELLS} cells in the regime, no verdict"


def with_interval(row: pd.Series, value: str, bounds: str | None = None) -> str:
    """``row[value]`` and its interval ``row["<bounds> low"]``, ``row["<bounds> high"]`` (bounds: value's name)."""
    bounds = bounds or value
    low, high = row[f"{bounds} low"], row[f"{bounds} high"]
    if pd.isna(row[value]):
        return "none"
    return f"{row[value]:.2f} " + ("(no interval)" if pd.isna(low) or pd.isna(high) else f"[{low:.2f}, {high:.2f}]")


# ----------------------------------------------------------------------------------------------------------
# (a) the power law, in its regime, and whether d w is the variable

POWER_LAW = Rule(
    "(a) eta* is a power of depth x width",
    '"well predicted as a power of depth x width"',
    f"cell medians of eta* fitted by a power law in d w over the cells in our regime ({REGIME_RULE}), cells where "
    f"every seed failed kept as censored (cells where no LR reached t left out, counted), >= {MIN_CELLS} cells; supported if R^2 >= {R2_SUPPORTED} on every dataset "
    "and d w is the variable (log eta* = c + a log d + b log w with the 95% interval of a - b holding 0); not "
    f"supported if R^2 < {R2_MIXED} everywhere; else mixed",
    "02_power_law",
    ("power_law",),
)


def power_law_claim(eta: pd.DataFrame) -> Claim:
    fits = tables.fits_table(eta)
    in_regime = fits[fits["cells"] == tables.IN_REGIME]
    regime = in_regime[in_regime["n cells"].map(enough)]
    if regime.empty:
        return POWER_LAW.unmeasured("no dataset has enough cells in the regime for a fit")
    everything = fits[fits["cells"] == tables.ALL_CELLS].set_index("dataset")
    product = tables.product_form_table(eta, scopes=(tables.IN_REGIME,)).set_index("dataset")
    keys, details, product_ok = [], [], []
    for _, row in regime.iterrows():
        name, form, everywhere = row["dataset"], product.loc[row["dataset"]], everything.loc[row["dataset"]]
        keys.append(f"{name}: alpha = {with_interval(row, 'alpha')}, R^2 {row['R^2']:.2f}, {row['n cells']} cells "
                    "in regime")  # fmt: skip
        if pd.isna(form["a - b"]):
            variable = f"product form: {form['note']}"
        else:
            product_ok.append(bool(form["d*w consistent"]))
            reading = "consistent with a law in d w" if form["d*w consistent"] else "d and w enter differently"
            variable = (f"d^{form['a (depth)']:.2f} w^{form['b (width)']:.2f}, a - b = {with_interval(form, 'a - b')}: "
                        f"{reading}")  # fmt: skip
        details.append(f"{name}: in regime alpha {row['alpha']:.2f}, R^2 {row['R^2']:.2f} ({row['n cells']} cells, "
                       f"{row['censored cells']} censored); all cells alpha {everywhere['alpha']:.2f}, R^2 "
                       f"{everywhere['R^2']:.2f} ({everywhere['n cells']} cells, {everywhere['censored cells']} "
                       f"censored); {variable}")  # fmt: skip
    details += [too_few(name) for name in in_regime.loc[~in_regime["n cells"].map(enough), "dataset"]]
    r2 = regime["R^2"]
    if (r2 >= R2_SUPPORTED).all() and len(product_ok) == len(regime) and all(product_ok):
        verdict = SUPPORTED
    else:
        verdict = NOT_SUPPORTED if (r2 < R2_MIXED).all() else MIXED
    return POWER_LAW.judged(verdict, keys, details)


# ----------------------------------------------------------------------------------------------------------
# (a-i) width large compared to depth; (a-ii) a small input-layer learning rate

WIDTH = Rule(
    "(a-i) the law needs width >> depth",
    '"provided that (i) the width of the network is sufficiently large compared to the depth"',
    f"R^2 of the power law over our regime ({REGIME_RULE}) against the same depths without the d/w cutoff (the "
    f"sweep over cutoffs is shown in the chapter); supported on a dataset if R^2 >= {R2_SUPPORTED} with the cutoff "
    f"and rises by >= {R2_GAIN} because of it (>= {MIN_CELLS} cells); supported if on every dataset, mixed if on some",
    "03_condition_width",
    ("power_law",),
)


def width_condition_claim(eta: pd.DataFrame) -> Claim:
    sweep = tables.alpha_vs_cutoff(eta)
    keys, details, checks = [], [], []
    for name, rows in sweep.groupby("dataset", sort=False):
        ours = rows[rows["our rule"]].iloc[0]
        loose = rows[(rows["min depth"] == ours["min depth"]) & (rows["max d/w value"] == math.inf)].iloc[0]
        shallow = rows[(rows["min depth"] == rows["min depth"].min()) & (rows["max d/w"] == ours["max d/w"])].iloc[0]
        if not enough(ours["n cells"]) or pd.isna(loose["R^2"]):
            details.append(too_few(name))
            continue
        checks.append(bool(ours["R^2"] >= R2_SUPPORTED and ours["R^2"] - loose["R^2"] >= R2_GAIN))
        keys.append(f"{name}: R^2 {loose['R^2']:.2f} -> {ours['R^2']:.2f}")
        off_law = shallow["R^2"] <= ours["R^2"] - R2_GAIN
        details.append(f"{name}: depth >= {ours['min depth']}: R^2 {loose['R^2']:.2f} over any d/w ({loose['n cells']} "
                       f"cells), {ours['R^2']:.2f} with d/w <= {ours['max d/w']} ({ours['n cells']} cells, alpha "
                       f"{ours['alpha']:.2f}); depth >= {shallow['min depth']} with d/w <= {ours['max d/w']}: R^2 "
                       f"{shallow['R^2']:.2f} ({shallow['n cells']} cells)"
                       + (": the shallow networks, wide as they are, fall off the law" if off_law else ""))  # fmt: skip
    return WIDTH.judged(verdict_of(checks), keys, details)


INPUT = Rule(
    "(a-ii) the law needs a smaller input-layer LR",
    '"provided that ... (ii) the input layer is trained at a relatively small learning rate"',
    f"the same grid with the input layer at a small factor of the LR (0.1x, ours) and at 1x, each fitted over our "
    f"regime ({REGIME_RULE}), >= {MIN_CELLS} cells each; supported on a dataset if R^2 is higher at the small factor "
    f"by >= {R2_GAIN}; supported if on every dataset, mixed if on some",
    "04_input_layer",
    ("input_layer",),
)


def input_layer_claim(frame: pd.DataFrame) -> Claim:
    factor = "network.input_lr_factor"
    fits = tables.fits_table(frame, by=("dataset", factor), scopes=(tables.IN_REGIME,))
    ratios = tables.variant_summary(frame.sort_values(factor, kind="stable"), by=("dataset",)).set_index("dataset")
    keys, details, checks = [], [], []
    for name, rows in fits.groupby("dataset", sort=False):
        rows = rows.sort_values(factor)
        small, full = rows.iloc[0], rows.iloc[-1]
        if len(rows) < 2 or not all(map(enough, rows["n cells"])):
            details.append(too_few(name))
            continue
        checks.append(bool(small["R^2"] - full["R^2"] >= R2_GAIN))
        keys.append(f"{name}: R^2 {small['R^2']:.2f} at {small[factor]:g}x vs {full['R^2']:.2f} at {full[factor]:g}x")
        change = (f"; eta* at {full[factor]:g}x / at {small[factor]:g}x: median {ratios.loc[name, 'ratio median']:.2f}"
                  if name in ratios.index else "")  # fmt: skip
        details.append(f"{name}: {small[factor]:g}x alpha {with_interval(small, 'alpha')}, R^2 {small['R^2']:.2f} "
                       f"({small['n cells']} cells); {full[factor]:g}x alpha {with_interval(full, 'alpha')}, R^2 "
                       f"{full['R^2']:.2f} ({full['n cells']} cells){change}")  # fmt: skip
    return INPUT.judged(verdict_of(checks), keys, details)


# ----------------------------------------------------------------------------------------------------------
# (b) the late maximum learning rate

LATE = Rule(
    "(b) eta* differs from the maximum LR later in training",
    '"behaves differently from the maximum learning rate later in training"',
    "per pretraining length, the two products with the effective sharpness (raw if not stored), set against the "
    f"edge of stability eta lambda_1 = {EDGE:g}: supported at a length if late max LR x lambda_1(theta_T) sits at "
    f"the edge (median within {EDGE_FACTOR:g}x of {EDGE:g}) while eta* x lambda_1(theta_0) does not (median outside "
    "that band): the late rate is set by the sharpness where it is used, eta* is not; their exponents in d w are "
    "reported; supported if at every length and dataset, mixed if at some",
    "06_late_lr",
    ("late_lr",),
)


def at_edge(product: float) -> bool:
    """eta lambda_1 within EDGE_FACTOR of the edge of stability EDGE."""
    return bool(EDGE / EDGE_FACTOR <= product <= EDGE * EDGE_FACTOR)


def late_claim(late: pd.DataFrame) -> Claim:
    contrast = sharpness_tables.late_contrast(late)
    if contrast.empty:
        return LATE.unmeasured("no late search with the sharpness at both ends")
    sharpness = "effective" if (contrast["sharpness"] == "effective").any() else "raw"
    contrast = contrast[contrast["sharpness"] == sharpness]
    ratios = sharpness_tables.late_ratio_table(late).set_index(["dataset", "pretrain_steps"])
    init_label, late_label = (sharpness_tables.RELATIONS[key][0] for key in ("init", "late"))
    keys, details, checks = [], [], []
    for (name, steps), rows in contrast.groupby(["dataset", "pretrain_steps"], sort=False):
        rows = rows.set_index("relation")
        if not {init_label, late_label} <= set(rows.index) or rows["exponent in d*w"].isna().any():
            details.append(f"{name}, pretraining {steps} steps: no fit of both products in d w")
            continue
        start, later = rows.loc[init_label], rows.loc[late_label]
        checks.append(bool(at_edge(later["product median"]) and not at_edge(start["product median"])))
        keys.append(f"{name}, {steps} steps: late x lambda_T median {later['product median']:.2f}; eta* x lambda_0 "
                    f"median {start['product median']:.3g}")  # fmt: skip
        ratio = ratios.loc[(name, steps)]
        details.append(f"{name}, pretraining {steps} steps ({sharpness} sharpness): late x lambda_1(theta_T) median "
                       f"{later['product median']:.2f} (range {later['product min']:.2f}-{later['product max']:.2f}), "
                       f"exponent in d w {with_interval(later, 'exponent in d*w', 'exponent')}; "
                       f"eta* x lambda_1(theta_0) median {start['product median']:.2f} (range "
                       f"{start['product min']:.2f}-{start['product max']:.2f}), exponent in d w "
                       f"{with_interval(start, 'exponent in d*w', 'exponent')}; late/eta* median "
                       f"{ratio['ratio median']:.2f} ({int(ratio['networks'])} networks)")  # fmt: skip
    return LATE.judged(verdict_of(checks), keys, details)


# ----------------------------------------------------------------------------------------------------------
# (c) eta* and the sharpness at init; (d) our bounds

SHARP = Rule(
    "(c) eta* and lambda_1 are closely, not inversely, related",
    '"closely though not inversely related"',
    f"per dataset, with the raw and the effective lambda_1 at init of the same networks: close if |Spearman rho| >= "
    f"{CLOSE_RHO}; not inverse if eta* x lambda_1 varies over more than {NOT_CONSTANT:g}x and the log-log slope "
    f"differs from -1 by more than {INVERSE_SLOPE}; supported if both hold everywhere, not supported if neither holds "
    "anywhere, else mixed",
    "07_sharpness",
    ("power_law", "sharpness"),
)


def sharpness_claim(eta: pd.DataFrame, sharp: pd.DataFrame) -> Claim:
    relation = sharpness_tables.sharpness_relation(sharpness_tables.join_sharpness(eta, sharp))
    relation = relation[relation["Spearman"].notna()]
    if relation.empty:
        return SHARP.unmeasured("no dataset with three networks that have eta* and lambda_1")
    close = relation["Spearman"].abs() >= CLOSE_RHO
    not_inverse = (relation["max / min"] > NOT_CONSTANT) & ((relation["slope (log-log)"] + 1).abs() > INVERSE_SLOPE)
    verdict = SUPPORTED if (close & not_inverse).all() else NOT_SUPPORTED if not (close | not_inverse).any() else MIXED
    keys = [f"{r['dataset']} ({r['sharpness']}): rho {r['Spearman']:.2f}, eta* x lambda_1 {r['product min']:.3g}-"
            f"{r['product max']:.3g}" for _, r in relation.iterrows()]  # fmt: skip
    closer = relation["closest to constant"].eq(True).map({True: " (closer to constant)", False: ""})
    details = [f"{r['dataset']}, {r['sharpness']} lambda_1: rho {r['Spearman']:.2f}, slope {r['slope (log-log)']:.2f}, "
               f"product median {r['product median']:.3g}, max/min {r['max / min']:.3g}, sd of ln product "
               f"{r['sd of ln product']:.2f}{mark}, {r['networks']} networks"
               for (_, r), mark in zip(relation.iterrows(), closer)]  # fmt: skip
    return SHARP.judged(verdict, keys, details)


BOUNDS = Rule(
    "(d) bounds on lambda_1 in terms of depth x width",
    '"formally prove bounds for lambda_1 in terms of depth x width"',
    "our bounds (chapter 8, not the paper's theorem): lower <= lambda_1(GGN) <= upper per network, to a relative "
    f"slack of {sharpness_tables.BOUNDS_RTOL:g}; supported if they hold in every network",
    "08_theory",
    ("sharpness",),
)


def bounds_claim(sharp: pd.DataFrame) -> Claim:
    try:
        summary = sharpness_tables.bounds_summary(sharp)
    except ValueError as error:
        return BOUNDS.unmeasured(str(error))
    if summary.empty:
        return BOUNDS.unmeasured("no network with bounds")
    held, networks = int(summary["sandwich holds"].sum()), int(summary["networks"].sum())
    quantities = [q for q in ("lambda_1", "lambda_1_eff", "lambda_1_ggn") if q in sharp]
    exponents = tables.exponents_table(sharp, quantities).dropna(subset=["exponent"])
    slopes = [f"{r['dataset']} {r['quantity']} ~ (d w)^{with_interval(r, 'exponent')} (R^2 {r['R^2']:.2f})"
              for _, r in exponents.iterrows()]  # fmt: skip
    verdict = SUPPORTED if held == networks else NOT_SUPPORTED
    details = [f"bounds hold in {held} of {networks} networks", *slopes]
    return BOUNDS.judged(verdict, [f"{held} of {networks} networks"], details)


# ----------------------------------------------------------------------------------------------------------
# (e)-(g): extensions, ours

MUP = Rule(
    "(e) muP makes eta* width-independent [extension, ours]",
    EXTENSION,
    f"slope of log eta* on log width at fixed depth per parameterisation, over the cells all parameterisations have; "
    f"supported on a dataset if muP's |slope| <= {FLAT_WIDTH} and measurably below the standard one's (the "
    f"standard slope outside muP's 95% interval and farther from 0); supported if on every dataset, mixed if on some",
    "10_parameterisations",
    ("parameterisations",),
)


def parameterisation_claim(frame: pd.DataFrame) -> Claim:
    column = "network.parameterisation"
    widths = tables.width_exponents_table(frame, by=("dataset", column)).dropna(subset=["width slope"])
    keys, details, checks = [], [], []
    for name, rows in widths.groupby("dataset", sort=False):
        slopes = rows.set_index(column)
        if not {"mup", "standard"} <= set(slopes.index):
            continue
        mup, standard = slopes.loc["mup"], slopes.loc["standard", "width slope"]
        outside = not mup["slope low"] <= standard <= mup["slope high"]
        checks.append(bool(abs(mup["width slope"]) <= FLAT_WIDTH and abs(mup["width slope"]) < abs(standard) and outside))
        keys.append(f"{name}: muP slope {with_interval(mup, 'width slope', 'slope')}")
        each = (f"{p} {with_interval(r, 'width slope', 'slope')}" for p, r in slopes.iterrows())
        details.append(f"{name}: width slope " + ", ".join(each))
    return MUP.judged(verdict_of(checks), keys, details)


CATAPULT = Rule(
    "(f) under MSE, eta* lies in the catapult window [extension, ours]",
    EXTENSION,
    "eta* (SGD, MSE) times the effective lambda_1 at init (MSE) per network, placed in the regimes of Lewkowycz et "
    f"al. 2020 (stable below {CATAPULT_WINDOW[0]:g}, catapult from {CATAPULT_WINDOW[0]:g} to {CATAPULT_WINDOW[1]:g}, "
    "divergent above; ``catapult.regime``); supported if every "
    "network is in the catapult window, mixed if some are",
    "11_catapult",
    ("catapult",),
)


def catapult_claim(frame: pd.DataFrame) -> Claim:
    table = sharpness_tables.catapult_table(frame)
    measured = int(table["with eta*"].sum()) if len(table) else 0
    if measured == 0:
        return CATAPULT.unmeasured("no network with eta* and lambda_1")
    inside = int(table["catapult"].sum())
    details = [f"{r['dataset']}: {r['catapult']} of {r['with eta*']} inside, {r['stable']} stable, {r['divergent']} "
               f"divergent; eta* lambda_1_eff median {r['eta* lambda_1_eff median']:.3g} (range "
               f"{r['eta* lambda_1_eff min']:.3g}-{r['eta* lambda_1_eff max']:.3g})"
               for _, r in table.iterrows()]  # fmt: skip
    verdict = SUPPORTED if inside == measured else MIXED if inside else NOT_SUPPORTED
    return CATAPULT.judged(verdict, [f"{inside} of {measured} networks inside"], details)


PREDICT = Rule(
    "(g) milr predict: eta* of a held-out cell [extension, ours]",
    EXTENSION,
    f"each cell in our regime ({REGIME_RULE}) predicted from the others in it (power law, 95% prediction interval "
    f"in log-log); supported on a dataset if the mean |ln(predicted / measured)| <= ln {math.exp(HELD_OUT_ERROR):g} "
    f"and >= {HELD_OUT_COVERAGE:.0%} of cells lie in their intervals; supported if on every dataset, mixed if on some",
    "12_predict",
    ("power_law",),
)


def predict_claim(eta: pd.DataFrame) -> Claim:
    summary = tables.held_out_table(eta, regime=True)
    keys, details, checks = [], [], []
    for _, row in summary.iterrows():
        checks.append(bool(row["mean |log error|"] <= HELD_OUT_ERROR and row["coverage"] >= HELD_OUT_COVERAGE))
        keys.append(f"{row['dataset']}: typical error x{row['typical factor']:.2f}")
        coverage = ("no intervals" if math.isnan(row["coverage"]) else f"{row['coverage']:.0%} of "
                    f"{int(row['with interval'])} inside intervals of median x/÷ "
                    f"{row['interval factor']:.3g}")  # fmt: skip
        details.append(f"{row['dataset']}: mean |log error| {row['mean |log error|']:.2f} "
                       f"(x{row['typical factor']:.2f}) over {int(row['cells'])} cells, {coverage}")  # fmt: skip
    return PREDICT.judged(verdict_of(checks), keys, details)


# ----------------------------------------------------------------------------------------------------------
# the table

CLAIMS: list[tuple[Rule, Callable[..., Claim]]] = [
    (POWER_LAW, power_law_claim),
    (WIDTH, width_condition_claim),
    (INPUT, input_layer_claim),
    (LATE, late_claim),
    (SHARP, sharpness_claim),
    (BOUNDS, bounds_claim),
    (MUP, parameterisation_claim),
    (CATAPULT, catapult_claim),
    (PREDICT, predict_claim),
]  # each rule with the function that applies it to its experiments' frames


def claims_table(profile: str = "smoke", compute: bool | None = None) -> pd.DataFrame:
    """The claims table of one profile, from its result store (``compute``: as ``run_experiment``, by default the
    profile's choice). A claim whose experiments the store lacks is ``not measured``."""
    frames: dict[str, pd.DataFrame | None] = {}
    for name in dict.fromkeys(name for rule, _ in CLAIMS for name in rule.experiments):
        try:
            frames[name] = run_experiment(name, profile, compute=compute)
        except LookupError:
            frames[name] = None
    rows = []
    for rule, judge in CLAIMS:
        missing = [name for name in rule.experiments if frames[name] is None]
        claim = rule.unmeasured(f"the store holds no cells of {', '.join(missing)}") if missing else judge(
            *(frames[name] for name in rule.experiments))  # fmt: skip
        rows.append(claim.row())
    return pd.DataFrame(rows)
