"""The claims table's verdict rules on planted frames: each rule gives the verdict its stated thresholds say."""

import numpy as np
import pandas as pd
import pytest
from test_fit import WIDTHS, planted
from test_tables import as_store, late_frame, law_off_regime, off_law, sharpness_frame

from milr_core import claims, tables

COLUMNS = ["claim", "the paper says", "our rule", "verdict", "key number", "we measured", "chapter"]


def test_power_law_is_supported_in_its_regime_and_not_over_all_cells():
    frame = law_off_regime()
    claim = claims.power_law_claim(frame)
    assert claim.verdict == claims.SUPPORTED and claim.chapter == "02_power_law"
    assert "consistent with a law in d w" in claim.measured and claim.key.startswith("mnist: alpha = 0.6")
    everywhere = tables.fits_table(frame, scopes=(tables.ALL_CELLS,))
    assert (everywhere["R^2"] < claims.R2_SUPPORTED).all()  # the same rule over all cells would not support it
    assert set(claim.row()) == set(COLUMNS)


def test_power_law_in_depth_and_width_separately_is_not_a_law_in_dw():
    claim = claims.power_law_claim(as_store(off_law(planted(-1.1, -0.2, seed_noise=0.03))))
    assert claim.verdict == claims.MIXED and "d and w enter differently" in claim.measured


def test_too_few_cells_in_the_regime_give_no_verdict():
    assert claims.power_law_claim(law_off_regime().query("depth < 4")).verdict == claims.NOT_MEASURED
    three = law_off_regime().query("depth < 8 and width <= 256")  # (4, 64), (4, 128), (4, 256) in the regime
    assert claims.power_law_claim(three).verdict == claims.NOT_MEASURED


def test_width_condition_needs_the_cutoff_to_matter():
    assert claims.width_condition_claim(law_off_regime()).verdict == claims.SUPPORTED
    everywhere = as_store(planted(-0.7, -0.7, seed_noise=0.03))  # the law holds at every d/w: the proviso is not needed
    claim = claims.width_condition_claim(everywhere)
    assert claim.verdict == claims.NOT_SUPPORTED and "fall off the law" not in claim.measured


def input_layer_frame(full_is_scattered: bool) -> pd.DataFrame:
    small = as_store(planted(-0.7, -0.7, seed_noise=0.03), variant="small_input_lr")
    full = as_store(planted(-0.7, -0.7, c=0.5, seed_noise=0.03, cell_noise=0.8 if full_is_scattered else 0.0, rng_seed=1),
                    variant="full_input_lr", **{"network.input_lr_factor": 1.0})  # fmt: skip
    return pd.concat([small, full], ignore_index=True)


def test_input_layer_claim_compares_the_fits_in_the_regime():
    supported = claims.input_layer_claim(input_layer_frame(full_is_scattered=True))
    assert supported.verdict == claims.SUPPORTED and "at 0.1x vs" in supported.key and "median 0.25" in supported.measured
    assert claims.input_layer_claim(input_layer_frame(full_is_scattered=False)).verdict == claims.NOT_SUPPORTED


def test_late_claim_contrasts_the_two_products():
    claim = claims.late_claim(late_frame())
    assert claim.verdict == claims.SUPPORTED and claim.key.count("steps") == 2
    noisy = claims.late_claim(late_frame(late_noise=0.0).assign(late_max_lr=lambda f: f["eta_star"] * 0.9))
    assert noisy.verdict == claims.NOT_SUPPORTED  # the late LR follows eta*, not the edge of stability
    assert claims.late_claim(late_frame().drop(columns=["lambda_1_T", "lambda_1_eff_T"])).verdict == claims.NOT_MEASURED


def test_sharpness_claim_reads_both_sharpnesses():
    eta = as_store(planted(-0.7, -0.7, seed_noise=0.05))
    sharp = sharpness_frame(eta)
    inverse = claims.sharpness_claim(eta, sharp)  # eta* = 2 / lambda_1_eff exactly: close, but inverse
    assert inverse.verdict == claims.MIXED and "(closer to constant)" in inverse.measured
    related = sharp.assign(lambda_1_eff=sharp["lambda_1_eff"] ** 0.6, lambda_1=1.5 * sharp["lambda_1_eff"] ** 0.6)
    assert claims.sharpness_claim(eta, related).verdict == claims.SUPPORTED


def test_bounds_claim():
    sharp = as_store(planted(0.5, 0.5, quantity="lambda_1", depths=(2, 4), widths=(64, 128)))
    sharp = sharp.assign(lambda_1_ggn=sharp["lambda_1"], lower_bound=sharp["lambda_1"] / 2,
                         ggn_upper_bound=sharp["lambda_1"] * 3, ntk_trace=1.0, expected_upper_bound=1.0)  # fmt: skip
    claim = claims.bounds_claim(sharp)
    assert claim.verdict == claims.SUPPORTED and claim.key == "12 of 12 networks" and "lambda_1 ~ (d w)^0.4" in claim.measured
    sharp.loc[0, "lower_bound"] = 2 * sharp.loc[0, "lambda_1"]
    assert claims.bounds_claim(sharp).verdict == claims.NOT_SUPPORTED
    assert claims.bounds_claim(sharp.drop(columns="ntk_trace")).verdict == claims.NOT_MEASURED


def parameterisations(width_powers: dict) -> pd.DataFrame:
    return pd.concat([as_store(planted(-1.0, p), variant=name, **{"network.parameterisation": name})
                      for name, p in width_powers.items()], ignore_index=True)  # fmt: skip


def test_parameterisation_claim_reads_the_width_slopes():
    supported = claims.parameterisation_claim(parameterisations({"standard": -0.5, "ntk": 0.5, "mup": 0.0}))
    assert supported.verdict == claims.SUPPORTED and "extension" in supported.paper and "mup 0.02" in supported.measured
    assert claims.parameterisation_claim(parameterisations({"standard": -0.5, "mup": -0.6})).verdict == claims.NOT_SUPPORTED
    # flat enough and a shade flatter than standard, but inside muP's interval: not measurably flatter
    assert claims.parameterisation_claim(parameterisations({"standard": 0.21, "mup": 0.19})).verdict == claims.NOT_SUPPORTED
    assert claims.parameterisation_claim(parameterisations({"standard": -0.5})).verdict == claims.NOT_MEASURED


def test_catapult_claim_counts_networks_in_the_window():
    from milr_core.catapult import CATAPULT, STABLE, regime  # the window the rule's words state

    products = [1.0, 2.5, 3.9, 8.0, None]
    frame = pd.DataFrame({"dataset": "mnist", "eta_lambda_eff": products, "regime": [regime(p) for p in products]})
    claim = claims.catapult_claim(frame)
    assert claim.verdict == claims.MIXED and claim.key == "2 of 4 networks inside"
    assert f"stable below {STABLE:g}, catapult from {STABLE:g} to {CATAPULT:g}" in claim.rule
    assert claims.catapult_claim(frame.iloc[1:3]).verdict == claims.SUPPORTED
    assert claims.catapult_claim(frame.iloc[4:]).verdict == claims.NOT_MEASURED


def test_predict_claim_on_an_exact_law_is_supported():
    frame = law_off_regime()
    claim = claims.predict_claim(frame)
    assert claim.verdict == claims.SUPPORTED and "typical error x1.0" in claim.key
    scattered = frame.assign(eta_star=frame["eta_star"] * np.where(frame["width"].isin(WIDTHS[::2]), 4.0, 0.25))
    assert claims.predict_claim(scattered).verdict == claims.NOT_SUPPORTED


def test_claims_table_reads_the_store_and_marks_what_it_lacks(monkeypatch):
    frames = {"power_law": law_off_regime(), "input_layer": input_layer_frame(True), "late_lr": late_frame(),
              "parameterisations": parameterisations({"standard": -0.5, "mup": 0.0})}  # fmt: skip

    def run_experiment(name, profile, compute=None):
        if name not in frames:
            raise LookupError(f"no {name}")
        return frames[name]

    monkeypatch.setattr(claims, "run_experiment", run_experiment)
    table = claims.claims_table("paper")
    assert list(table.columns) == COLUMNS and len(table) == len(claims.CLAIMS)
    verdicts = dict(zip(table["chapter"], table["verdict"]))
    assert verdicts["02_power_law"] == verdicts["06_late_lr"] == verdicts["10_parameterisations"] == claims.SUPPORTED
    assert verdicts["07_sharpness"] == verdicts["11_catapult"] == claims.NOT_MEASURED
    assert "sharpness" in table.loc[table["chapter"] == "08_theory", "we measured"].iloc[0]
    assert (table["the paper says"].str.startswith('"') | (table["the paper says"] == claims.EXTENSION)).all()


@pytest.mark.parametrize("checks,verdict", [([], "not measured"), ([True], "supported"), ([True, False], "mixed"),
                                            ([False], "not supported")])  # fmt: skip
def test_verdict_of(checks, verdict):
    assert claims.verdict_of(checks) == verdict
