"""The claims table's questions on planted frames: each rule reaches each of its verdicts (supported, not supported,
undecided) where the planted numbers put the interval, and the table never says "mixed"."""

import math

import numpy as np
import pandas as pd
import pytest
from test_fit import WIDTHS, planted
from test_tables import as_store, late_frame, law_off_regime, off_law

from milr_core import claims, extensions, rules, sharpness_claims
from milr_core.fit import in_regime
from milr_core.rules import NOT_MEASURED, NOT_SUPPORTED, NUMBER_ONLY, SUPPORTED, UNDECIDED

ALL = (SUPPORTED, NOT_SUPPORTED, UNDECIDED)


def verdicts(claim: rules.Claim) -> dict[str, str]:
    """{question key: verdict} of a claim answered on one unit (a planted frame has one dataset)."""
    found = {row["question"].split(")")[0][1:]: row["verdict"] for row in claim.rows}
    assert len(found) == len(claim.rows), f"a question split over units: {claim.rows}"
    return found


# ----------------------------------------------------------------------------------------------------------
# the rules


@pytest.mark.parametrize("low,high,supported_if,verdict", [
    (0.95, 0.99, "above", SUPPORTED), (0.95, 0.99, "below", NOT_SUPPORTED), (0.85, 0.95, "above", UNDECIDED),
    (0.70, 0.85, "below", SUPPORTED), (math.nan, math.nan, "above", UNDECIDED),
])  # fmt: skip
def test_threshold_rule(low, high, supported_if, verdict):
    judged = rules.threshold_rule(rules.Estimate("R^2", (low + high) / 2, low, high), 0.9, supported_if)
    assert judged.verdict == verdict and (judged.margin > 0) == (verdict != UNDECIDED)


@pytest.mark.parametrize("low,high,supported_if,verdict,why", [
    (-0.1, 0.1, "inside", SUPPORTED, "interval inside +-0.2"), (-0.6, -0.3, "inside", NOT_SUPPORTED, "outside"),
    (-0.3, -0.1, "inside", UNDECIDED, "straddles an edge"), (-0.3, 0.3, "inside", UNDECIDED, "straddles"),
    (0.3, 0.5, "outside", SUPPORTED, "outside"), (-0.1, 0.1, "outside", NOT_SUPPORTED, "inside"),
])  # fmt: skip
def test_band_rule(low, high, supported_if, verdict, why):
    judged = rules.band_rule(rules.Estimate("a - b", (low + high) / 2, low, high), (-0.2, 0.2), supported_if)
    assert judged.verdict == verdict and why in judged.why


def test_all_of_and_the_printed_estimate():
    yes, no, maybe = (rules.Judgement(v, v, m, "x") for v, m in ((SUPPORTED, 1.0), (NOT_SUPPORTED, 2.0), (UNDECIDED, 0.0)))
    assert rules.all_of(yes, yes).verdict == SUPPORTED and rules.all_of(yes, maybe).verdict == UNDECIDED
    assert rules.all_of(maybe, no).verdict == NOT_SUPPORTED and rules.all_of(maybe, no).why == "x: not supported"
    assert str(rules.Estimate("scatter", 1.25, 1.17, 1.38, factor=True)) == "scatter x1.25 [x1.17, x1.38]"
    assert str(rules.Estimate("alpha", 0.7, math.nan, math.nan)) == "alpha 0.70 (no interval)"


def test_units_that_agree_share_a_row_and_those_that_differ_do_not():
    question = rules.Question("z", "(z) claim", "", "Is it?", "our rule", "02_power_law")
    judged = lambda v, m: rules.Judgement(v, f"why {v}", m)  # noqa: E731
    answers = [rules.answer("MNIST", judged(SUPPORTED, 0.3), "x 1"), rules.answer("CIFAR-10", judged(SUPPORTED, 0.1), "x 2"),
               rules.answer("Gaussians", judged(UNDECIDED, 0.0), "x 3"), rules.unmeasured("MNIST (per-feature)", "few")]
    rows = question.rows(answers)
    assert [(r["scope"], r["verdict"]) for r in rows] == [("MNIST, CIFAR-10", SUPPORTED), ("Gaussians", UNDECIDED),
                                                         ("MNIST (per-feature)", NOT_MEASURED)]  # fmt: skip
    assert rows[0]["key number"] == "CIFAR-10: x 2" and "MNIST: x 1" in rows[0]["we measured"]  # nearest to flipping
    assert list(rows[0]) == rules.COLUMNS and rows[0]["question"] == "(z) Is it?"
    numbers = question.rows([rules.number("MNIST", "alpha 1"), rules.number("Gaussians", "alpha 2")])
    assert len(numbers) == 1 and numbers[0]["key number"] == "alpha: MNIST 1; Gaussians 2"
    claim = rules.Claim(rows)
    assert claim.verdict == "(z) supported (MNIST, CIFAR-10), undecided (Gaussians), not measured (MNIST (per-feature))"


def test_every_rule_is_stated_with_its_threshold():
    questions = [q for _, qs, *_ in claims.CLAIMS for q in qs]
    assert len({q.key for q in questions}) == len(questions) == 17
    for question in questions:
        assert question.rule and question.question.endswith("?") and "mixed" not in question.rule
    thresholds = {f"x{rules.LAW_FACTOR:g}": "a1", f"+-{rules.SAME_EXPONENT:g}": "a2", f"{rules.CLOSE_RHO:g}": "c1"}
    for text, key in thresholds.items():
        assert text in next(q.rule for q in questions if q.key == key)


# ----------------------------------------------------------------------------------------------------------
# (a): the law in the regime, the product form, the exponents


def misfit_in_regime(frame: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The cells in our regime moved off the law, alternately up and down by ``factor``."""
    frame = frame.copy()
    inside = in_regime(frame)
    shift = np.where(frame["width"].isin(WIDTHS[::2]) ^ (frame["depth"] == 8), factor, 1 / factor)
    frame.loc[inside, "eta_star"] *= shift[inside]
    return frame


@pytest.mark.parametrize("factor,verdict", [(1.0, SUPPORTED), (1.5, UNDECIDED), (3.0, NOT_SUPPORTED)])
def test_power_law_in_the_regime(factor, verdict):
    claim = claims.power_law_claim(as_store(misfit_in_regime(off_law(planted(-0.7, -0.7, seed_noise=0.03)), factor)))
    assert verdicts(claim)["a1"] == verdict and claim.rows[0]["chapter"] == "02_power_law"
    assert claim.rows[0]["key number"].startswith("Gaussians: scatter x")


def test_the_law_needs_eta_star_to_fall_with_dw():
    rising = claims.power_law_claim(as_store(planted(0.3, 0.3, seed_noise=0.03)))  # on a line, but rising
    assert verdicts(rising)["a1"] == NOT_SUPPORTED and rising.rows[0]["why"] == "alpha: interval below 0"


@pytest.mark.parametrize("depth_power,width_power,noise,verdict", [
    (-0.7, -0.7, 0.03, SUPPORTED), (-1.1, -0.2, 0.03, NOT_SUPPORTED), (-0.85, -0.6, 0.1, UNDECIDED),
])  # fmt: skip
def test_product_form(depth_power, width_power, noise, verdict):
    claim = claims.power_law_claim(as_store(planted(depth_power, width_power, seed_noise=noise)))
    found = verdicts(claim)
    assert found["a2"] == verdict and found["a3"] == NUMBER_ONLY
    assert claim.rows[2]["key number"].startswith("Gaussians: alpha ")


def test_too_few_cells_in_the_regime_are_not_measured():
    assert set(verdicts(claims.power_law_claim(law_off_regime().query("depth < 4 and dataset == 'mnist'"))).values()) == {NOT_MEASURED}
    found = verdicts(claims.power_law_claim(law_off_regime().query("depth < 8 and width <= 256 and dataset == 'mnist'")))
    assert set(found.values()) == {NOT_MEASURED}


def per_feature_store(frame: pd.DataFrame, factors=(0.1,)) -> pd.DataFrame:
    """``frame`` as the preprocessing experiment stores per-feature cells (at each input-layer factor)."""
    return pd.concat([frame.assign(kind="eta_star", **{"data.options.preprocessing": "per_feature",
                                                        "network.input_lr_factor": f}) for f in factors])  # fmt: skip


def test_the_power_law_is_judged_under_both_preprocessings():
    eta = law_off_regime().query("dataset == 'mnist'")
    scattered = per_feature_store(misfit_in_regime(eta, 3.0))
    rows = claims.power_law_claim(eta, scattered).rows
    a1 = [(r["scope"], r["verdict"]) for r in rows if r["question"].startswith("(a1)")]
    assert a1 == [("MNIST", SUPPORTED), ("MNIST (per-feature)", NOT_SUPPORTED)]
    few = per_feature_store(eta.query("depth == 4 and width <= 128"))  # two cells in the regime: not measured
    assert [r["verdict"] for r in claims.power_law_claim(eta, few).rows if r["question"].startswith("(a1)")] == [
        SUPPORTED, NOT_MEASURED]


# ----------------------------------------------------------------------------------------------------------
# (a-i), (a-ii): the provisos


@pytest.mark.parametrize("factor,verdict", [(4.0, SUPPORTED), (1.5, UNDECIDED), (1.0001, NOT_SUPPORTED)])
def test_narrow_networks_off_the_law(factor, verdict):
    claim = claims.width_condition_claim(as_store(off_law(planted(-0.7, -0.7, seed_noise=0.03), factor)))
    assert verdicts(claim)["a-i"] == verdict and "narrow cells off the law by x" in claim.key


def input_layer_frame(full_misfit: float) -> pd.DataFrame:
    small = as_store(planted(-0.7, -0.7, seed_noise=0.03), variant="small_input_lr")
    full = as_store(misfit_in_regime(planted(-0.7, -0.7, c=0.5, seed_noise=0.03, rng_seed=1), full_misfit),
                    variant="full_input_lr", **{"network.input_lr_factor": 1.0})  # fmt: skip
    return pd.concat([small, full], ignore_index=True)


@pytest.mark.parametrize("factor,verdict", [(3.0, SUPPORTED), (1.5, UNDECIDED), (1.0, NOT_SUPPORTED)])
def test_input_layer_at_full_lr(factor, verdict):
    claim = claims.input_layer_claim(input_layer_frame(factor))
    assert verdicts(claim)["a-ii"] == verdict and "at 0.1x scatter" in claim.measured


def test_input_layer_per_feature_cells_without_1x_are_not_measured():
    frame = input_layer_frame(3.0)
    small = per_feature_store(frame[frame["variant"] == "small_input_lr"])
    rows = claims.input_layer_claim(frame, small).rows
    assert [(r["scope"], r["verdict"]) for r in rows] == [("Gaussians", SUPPORTED), ("Gaussians (per-feature)", NOT_MEASURED)]
    both = per_feature_store(frame[frame["variant"] == "full_input_lr"], factors=(1.0,))
    assert [r["verdict"] for r in claims.input_layer_claim(frame, both).rows] == [SUPPORTED]  # both units agree


# ----------------------------------------------------------------------------------------------------------
# (b): the late maximum learning rate


def late_at(late: pd.DataFrame, late_max_lr) -> pd.DataFrame:
    late = late.assign(late_max_lr=late_max_lr)
    return late.assign(ratio=late["late_max_lr"] / late["eta_star"])


def test_late_lr_scales_and_relates_differently():
    # late_frame: the late LR at the edge of stability, 2 / lambda_1(theta_T) ~ (d w)^-0.3, eta* ~ (d w)^-0.7
    assert verdicts(claims.late_claim(late_frame())) == {"b1": SUPPORTED, "b2": SUPPORTED}
    follows = late_frame(late_noise=0.0)
    found = verdicts(claims.late_claim(late_at(follows, follows["eta_star"] * 0.9)))  # the late LR is eta*, nearly
    assert found == {"b1": NOT_SUPPORTED, "b2": NOT_SUPPORTED}


def test_late_lr_undecided():
    late = late_frame()
    dw = late["depth"] * late["width"]
    near_edge = late_at(late, late["eta_star"] * dw**0.2 * np.exp(0.1 * np.random.default_rng(1).normal(size=len(late))))
    assert verdicts(claims.late_claim(near_edge))["b1"] == UNDECIDED  # the exponent of late / eta* near 0.2
    assert verdicts(claims.late_claim(late_at(late, late["late_max_lr"] * 2)))["b2"] == UNDECIDED  # late x lambda_T ~ 4
    missing = claims.late_claim(late.drop(columns=["lambda_1_T", "lambda_1_eff_T"]))
    assert verdicts(missing)["b2"] == NOT_MEASURED


# ----------------------------------------------------------------------------------------------------------
# (c): eta* and lambda_1


def sharpness_of(eta: pd.DataFrame, power: float, noise: float, regime_only: bool = False, seed: int = 0) -> pd.DataFrame:
    """lambda_1 = eta*^(-1/power) times log-normal noise (eta* ~ lambda_1^-power), or random outside the regime."""
    rng = np.random.default_rng(seed)
    frame = eta[["dataset", "depth", "width", "seed"]].copy()
    sharpness = eta["eta_star"].to_numpy() ** (-1 / power) * np.exp(noise * rng.normal(size=len(frame)))
    if regime_only:
        outside = ~in_regime(frame).to_numpy()
        sharpness[outside] = np.exp(2 * rng.normal(size=outside.sum()))
    return frame.assign(lambda_1=sharpness, lambda_1_eff=sharpness)


@pytest.mark.parametrize("power,noise,regime_only,expected", [
    (0.6, 0.0, False, {"c1": SUPPORTED, "c2": SUPPORTED, "c3": SUPPORTED}),
    (1.0, 0.0, False, {"c1": SUPPORTED, "c2": SUPPORTED, "c3": NOT_SUPPORTED}),  # eta* = c / lambda_1: inverse
    (0.6, 0.0, True, {"c1": SUPPORTED, "c2": NOT_SUPPORTED}),  # close in the regime only
    (0.6, 1.0, False, {"c1": UNDECIDED, "c2": UNDECIDED}),
    (0.8, 0.2, False, {"c3": UNDECIDED}),  # a slope of -0.8 sits on the band's edge
])  # fmt: skip
def test_sharpness_questions(power, noise, regime_only, expected):
    eta = as_store(planted(-0.7, -0.7, seed_noise=0.05))
    found = verdicts(sharpness_claims.sharpness_claim(eta, sharpness_of(eta, power, noise, regime_only)))
    assert {key: found[key] for key in expected} == expected


def test_unrelated_sharpness_is_not_close():
    eta = as_store(planted(-0.7, -0.7, seed_noise=0.05))
    unrelated = sharpness_of(eta, 0.6, 0.0).assign(lambda_1=np.exp(np.random.default_rng(3).normal(size=len(eta))))
    assert verdicts(sharpness_claims.sharpness_claim(eta, unrelated))["c1"] == NOT_SUPPORTED


# ----------------------------------------------------------------------------------------------------------
# (d): our bounds


def bounds_frame(growth: float = 0.0, noise: float = 0.0) -> pd.DataFrame:
    """lambda_1(G) = upper bound / 20 x (d w / its largest)^growth (x noise), the lower bound half of lambda_1."""
    sharp = as_store(planted(0.5, 0.5, quantity="lambda_1", depths=(2, 4, 8), widths=(64, 128, 256)))
    dw = sharp["depth"] * sharp["width"]
    upper = 20 * sharp["lambda_1"]
    ggn = sharp["lambda_1"] * (dw / dw.max()) ** growth * np.exp(noise * np.random.default_rng(2).normal(size=len(sharp)))
    return sharp.assign(lambda_1=ggn, lambda_1_ggn=ggn, lower_bound=ggn / 2, ggn_upper_bound=upper,
                        ntk_trace=1.0, expected_upper_bound=1.0, lambda_1_ggn_residual=1e-6)  # fmt: skip


def test_bounds_hold_and_scale():
    found = verdicts(sharpness_claims.bounds_claim(bounds_frame()))
    assert found == {"d1": SUPPORTED, "d2": NUMBER_ONLY, "d3": SUPPORTED}
    assert "lambda_1 / upper 0.05" in sharpness_claims.bounds_claim(bounds_frame()).key
    assert verdicts(sharpness_claims.bounds_claim(bounds_frame(growth=0.5)))["d3"] == NOT_SUPPORTED
    assert verdicts(sharpness_claims.bounds_claim(bounds_frame(growth=0.2, noise=0.1)))["d3"] == UNDECIDED


def test_a_broken_bound_beyond_its_error_bar_is_a_counterexample():
    sharp = bounds_frame()
    sharp.loc[0, "lower_bound"] = 1.01 * sharp.loc[0, "lambda_1_ggn"]  # fails by 1%
    assert verdicts(sharpness_claims.bounds_claim(sharp))["d1"] == NOT_SUPPORTED
    sharp.loc[0, "lambda_1_ggn_residual"] = 0.05  # ... but lambda_1 may be 5% off: cannot tell
    assert verdicts(sharpness_claims.bounds_claim(sharp))["d1"] == UNDECIDED
    assert set(verdicts(sharpness_claims.bounds_claim(sharp.drop(columns="ntk_trace"))).values()) == {NOT_MEASURED}


# ----------------------------------------------------------------------------------------------------------
# (e)-(g): extensions


def parameterisations(width_powers: dict, noise: float = 0.05) -> pd.DataFrame:
    return pd.concat([as_store(planted(-1.0, p, seed_noise=noise, rng_seed=i), variant=name,
                               **{"network.parameterisation": name})
                      for i, (name, p) in enumerate(width_powers.items())], ignore_index=True)  # fmt: skip


@pytest.mark.parametrize("powers,noise,expected", [
    ({"standard": -0.5, "ntk": 0.5, "mup": 0.0}, 0.05, {"e1": SUPPORTED, "e2": SUPPORTED}),
    ({"standard": 0.0, "mup": -0.6}, 0.05, {"e1": NOT_SUPPORTED, "e2": NOT_SUPPORTED}),
    ({"standard": 0.2, "mup": 0.2}, 0.3, {"e1": UNDECIDED, "e2": UNDECIDED}),
])  # fmt: skip
def test_mup_questions(powers, noise, expected):
    claim = extensions.parameterisation_claim(parameterisations(powers, noise))
    assert verdicts(claim) == expected and claim.rows[0]["the paper says"] == extensions.EXTENSION


def test_mup_without_standard_cells_is_not_measured():
    assert set(verdicts(extensions.parameterisation_claim(parameterisations({"mup": 0.0}))).values()) == {NOT_MEASURED}


@pytest.mark.parametrize("inside,verdict", [(9, SUPPORTED), (5, UNDECIDED), (0, NOT_SUPPORTED)])
def test_catapult_majority(inside, verdict):
    from milr_core.catapult import CATAPULT, STABLE  # the window the rule's words state

    regimes = ["catapult"] * inside + ["divergent"] * (10 - inside)
    frame = pd.DataFrame({"dataset": "mnist", "eta_lambda_eff": 3.0, "regime": regimes})
    claim = extensions.catapult_claim(frame)
    assert verdicts(claim) == {"f": verdict} and f"stable below {STABLE:g}, catapult from {STABLE:g} to {CATAPULT:g}" in claim.rows[0]["our rule"]
    assert claim.key.startswith("MNIST: share in the window")
    assert verdicts(extensions.catapult_claim(frame.assign(regime=None))) == {"f": NOT_MEASURED}


@pytest.mark.parametrize("factor,verdict", [(1.0, SUPPORTED), (1.4, UNDECIDED), (4.0, NOT_SUPPORTED)])
def test_held_out_prediction(factor, verdict):
    frame = law_off_regime().query("dataset == 'mnist'")
    claim = extensions.predict_claim(misfit_in_regime(frame, factor))
    assert verdicts(claim) == {"g": verdict} and "typical error x" in claim.key


# ----------------------------------------------------------------------------------------------------------
# the table


def test_claims_table_reads_the_store_marks_what_it_lacks_and_never_says_mixed(monkeypatch):
    frames = {"power_law": law_off_regime(), "input_layer": input_layer_frame(3.0), "late_lr": late_frame(),
              "parameterisations": parameterisations({"standard": -0.5, "mup": 0.0})}  # fmt: skip

    def run_experiment(name, profile, compute=None):
        if name not in frames:
            raise LookupError(f"no {name}")
        return frames[name]

    monkeypatch.setattr(claims, "run_experiment", run_experiment)
    table = claims.claims_table("paper")
    assert list(table.columns) == rules.COLUMNS
    assert set(table["verdict"]) <= set(rules.VERDICTS) and not table.apply(lambda c: c.astype(str).str.contains("mixed")).any().any()
    by_question = table.groupby(table["question"].str.extract(r"\((\S+)\)")[0], sort=False)["verdict"].agg(list).to_dict()
    assert by_question["a1"] == [SUPPORTED] and by_question["b2"] == [SUPPORTED] and by_question["e1"] == [SUPPORTED]
    assert by_question["c1"] == by_question["d1"] == by_question["f"] == [NOT_MEASURED]
    assert "sharpness" in table.loc[table["question"].str.startswith("(d1)"), "we measured"].iloc[0]
    assert (table["the paper says"].str.startswith('"') | (table["the paper says"] == extensions.EXTENSION)).all()
    assert (table["our rule"].str.len() > 50).all()
