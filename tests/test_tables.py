"""The summaries of tables.py on planted frames with known answers: their columns, and the numbers they must find."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_fit import DEPTHS, WIDTHS, planted

from milr_core import sharpness_tables, tables
from milr_core.fit import MAX_DEPTH_OVER_WIDTH, MIN_DEPTH, SWEEP_CUTOFFS, SWEEP_MIN_DEPTHS


def as_store(frame: pd.DataFrame, *, dataset: str = "gaussians", grid: str = "g", variant: str = "base", **settings) -> pd.DataFrame:
    """A planted frame with the columns ``run_experiment`` gives it (one grid and variant)."""
    defaults = {"search.rtol": 0.05, "network.input_lr_factor": 0.1, "network.parameterisation": "standard",
                "threshold": 0.8, "largest_success_above": np.nan, "non_monotone": [[]] * len(frame)}  # fmt: skip
    return frame.assign(dataset=dataset, grid=grid, variant=variant, **(defaults | settings))


def off_law(frame: pd.DataFrame, factor: float = 4.0) -> pd.DataFrame:
    """The cells outside our regime moved off the law, alternately up and down by ``factor`` (per cell, every seed)."""
    frame = frame.copy()
    outside = (frame["depth"] < MIN_DEPTH) | (frame["depth"] / frame["width"] > MAX_DEPTH_OVER_WIDTH)
    shift = np.where(frame["width"].isin(WIDTHS[::2]), factor, 1 / factor)
    frame.loc[outside, "eta_star"] *= shift[outside]
    frame.loc[outside, "bracket"] = pd.Series([[v, v * 1.05] for v in frame.loc[outside, "eta_star"]],
                                              index=frame.index[outside])  # fmt: skip
    return frame


def law_off_regime() -> pd.DataFrame:
    """eta* = 2 (d w)^-0.7 in the regime, off the law outside it, on two datasets."""
    law = off_law(planted(-0.7, -0.7, seed_noise=0.03))
    return pd.concat([as_store(law, dataset="mnist"), as_store(law, dataset="gaussians")], ignore_index=True)


def test_fits_table_in_regime_and_over_all_cells():
    table = tables.fits_table(law_off_regime())
    assert list(table.columns) == ["dataset", "cells", "alpha", "alpha low", "alpha high", "c", "R^2", "R^2 low",
                                   "R^2 high", "scatter", "scatter low", "scatter high", "n cells", "censored cells",
                                   "seeds used", "seeds dropped", "note"]  # fmt: skip
    assert list(table["cells"]) == [tables.ALL_CELLS] * 2 + [tables.IN_REGIME] * 2
    regime = table[table["cells"] == tables.IN_REGIME]
    assert (regime["R^2"] > 0.99).all() and np.allclose(regime["alpha"], 0.7, atol=0.03)
    assert (regime["R^2 low"] <= regime["R^2"]).all() and (regime["scatter high"] < 1.1).all()  # seeds x exp(0.03)
    assert (table.loc[table["cells"] == tables.ALL_CELLS, "R^2"] < 0.8).all()
    assert isinstance(table.index, pd.RangeIndex) and str(table["n cells"].dtype) == "Int64"
    tiny = tables.fits_table(law_off_regime().query("depth == 1 and width == 16"))
    assert tiny["note"].str.startswith("no fit").all() and tiny["alpha"].isna().all()


def test_residuals_alpha_vs_cutoff_and_product_form():
    frame = law_off_regime()
    resid = tables.residuals_table(frame)
    assert np.allclose(resid.loc[resid["in_regime"], "residual"], 0, atol=0.05)
    assert (resid.loc[~resid["in_regime"], "residual"].abs() > 1).all()
    sweep = tables.alpha_vs_cutoff(frame)
    assert len(sweep) == 2 * len(SWEEP_MIN_DEPTHS) * len(SWEEP_CUTOFFS)
    assert sweep.groupby("dataset")["our rule"].sum().eq(1).all()
    assert list(sweep.columns[:4]) == ["dataset", "min depth", "max d/w", "max d/w value"]
    product = tables.product_form_table(frame, scopes=(tables.IN_REGIME,))
    assert product["d*w consistent"].all() and np.allclose(product["a - b"], 0, atol=0.1)


def test_narrow_misfit_table_measures_the_cells_left_out_for_being_narrow():
    table = tables.narrow_misfit_table(law_off_regime())
    assert list(table["dataset"]) == ["mnist", "gaussians"] and np.allclose(table["misfit"], 4.0, rtol=0.05)
    assert (table["misfit low"] > 3).all() and (table["n cells"] == 9).all() and (table["unreached cells"] == 0).all()
    on_law = tables.narrow_misfit_table(as_store(planted(-0.7, -0.7, seed_noise=0.03))).iloc[0]
    assert on_law["misfit high"] < 1.1 and abs(on_law["shift"]) < 0.05


def test_width_slope_by_depth_shows_a_rising_depth_one_row():
    frame = planted(-1.0, -0.5, seed_noise=0.02)
    shallow = frame["depth"] == 1
    frame.loc[shallow, "eta_star"] = 2.0 * frame.loc[shallow, "width"] ** 0.3
    table = tables.width_slope_by_depth(as_store(frame))
    assert list(table["depth"]) == list(DEPTHS)
    first = table.iloc[0]
    assert first["width slope"] == pytest.approx(0.3, abs=1e-9) and first["value at widest"] > first["value at narrowest"]
    assert np.allclose(table["width slope"].iloc[1:], -0.5, atol=0.05)


def test_width_exponents_name_the_flattest_parameterisation():
    frame = pd.concat([as_store(planted(-1.0, -0.5), variant="standard"), as_store(planted(-1.0, 0.02), variant="mup")])
    table = tables.width_exponents_table(frame)
    assert list(table["variant"]) == ["standard", "mup"] and list(table["flattest"]) == [False, True]
    assert table["width slope"].tolist() == pytest.approx([-0.5, 0.02], abs=0.05)


def test_width_exponents_compare_parameterisations_on_the_widths_they_share():
    """The standard cells reach wider networks than muP's (they are the power law's); the slopes must come from
    the same widths, else a bend at large width would decide which is flatter."""
    standard = planted(-1.0, -0.5)
    wide = standard["width"] > WIDTHS[2]
    standard.loc[wide, "eta_star"] *= (standard.loc[wide, "width"] / WIDTHS[2]) ** 0.5  # flat beyond WIDTHS[2]
    mup = planted(-1.0, -0.3)
    frame = pd.concat([as_store(standard, variant="standard"), as_store(mup[mup["width"] <= WIDTHS[2]], variant="mup")])
    table = tables.width_exponents_table(frame)
    assert table["width slope"].tolist() == pytest.approx([-0.5, -0.3], abs=0.05)
    assert table["width range"].tolist() == [f"{WIDTHS[0]}-{WIDTHS[2]}"] * 2 and table["n cells"].nunique() == 1
    assert table["flattest"].tolist() == [False, True]


def test_flatness_table_pairs_the_two_fits():
    frame = pd.concat([as_store(planted(-1.0, -0.5), variant="standard"), as_store(planted(-1.0, 0.0, rng_seed=1), variant="mup")])
    row = tables.flatness_table(frame, "mup", "standard").iloc[0]
    assert row["steeper by"] == pytest.approx(0.5, abs=0.05) and 0.3 < row["steeper by low"] < row["steeper by"] < row["steeper by high"]
    assert row["flat low"] < 0 < row["flat high"] and row["width range"] == f"{WIDTHS[0]}-{WIDTHS[-1]}"
    assert tables.flatness_table(frame, "mup", "ntk").iloc[0]["note"] == "no cells of ntk"


def test_variant_ratios_and_their_summary():
    base = as_store(planted(-0.7, -0.7), variant="base")
    double = base.assign(variant="double", eta_star=base["eta_star"] * 2)
    same = base.assign(variant="same")
    same.loc[same.index[0], "eta_star"] = np.nan
    frame = pd.concat([base, double, same], ignore_index=True)
    ratios = tables.variant_ratios(frame)
    assert list(ratios.columns) == ["grid", "dataset", "variant", "base variant", "depth", "width", "seed", "value",
                                    "base value", "ratio"]  # fmt: skip
    summary = tables.variant_summary(frame)
    assert list(summary["variant"]) == ["double", "same"] and summary["ratio median"].tolist() == pytest.approx([2, 1])
    assert summary["within search resolution"].tolist() == [False, True] and summary["missing ratios"].tolist() == [0, 1]
    by_depth = tables.variant_summary(frame, by=("dataset", "depth", "variant"))
    assert len(by_depth) == 2 * len(DEPTHS)


def test_preprocessing_table_reads_both_grids():
    eta = as_store(planted(-0.7, -0.7), grid="pre_eta")
    sharp = as_store(planted(0.5, 0.5, quantity="lambda_1"), grid="pre_sharp").drop(columns=["eta_star"], errors="ignore")
    frame = pd.concat([eta.assign(variant="global"), eta.assign(variant="per_feature", eta_star=eta["eta_star"] * 1.3),
                       sharp.assign(variant="global"), sharp.assign(variant="per_feature", lambda_1=sharp["lambda_1"] / 3)])  # fmt: skip
    table = tables.preprocessing_table(frame, by=("dataset",))
    assert list(table["quantity"]) == ["eta_star", "lambda_1"] and table["ratio median"].tolist() == pytest.approx([1.3, 1 / 3])


def test_non_monotone_table():
    frame = as_store(planted(-0.7, -0.7, depths=(2,), widths=(64,)))
    frame.loc[0, "largest_success_above"] = 1.5 * frame.loc[0, "eta_star"]
    frame.at[1, "non_monotone"] = [0.3]
    row = tables.non_monotone_table(frame).iloc[0]
    assert row["seeds with a success above"] == pytest.approx(1 / 3) and row["largest success above / eta*"] == pytest.approx(1.5)
    assert row["non-monotone seeds"] == 1 and row["converged seeds"] == 3


def sharpness_frame(eta: pd.DataFrame) -> pd.DataFrame:
    """lambda_1_eff = 2 / eta* exactly (an inverse law), lambda_1 = lambda_1_eff (1 + 8 / depth): raw differs at shallow depth."""
    frame = eta[tables.KEYS].copy()
    frame["lambda_1_eff"] = 2.0 / eta["eta_star"].to_numpy()
    frame["lambda_1"] = frame["lambda_1_eff"] * (1 + 8 / frame["depth"])
    return frame


def test_eta_star_against_raw_and_effective_sharpness():
    eta = as_store(planted(-0.7, -0.7, seed_noise=0.1))
    joined = sharpness_tables.join_sharpness(eta, sharpness_frame(eta))
    assert len(joined) == len(eta) and np.allclose(joined["eta_lambda_eff"], 2.0) and np.allclose(joined["two_over_lambda_eff"], joined["eta_star"])
    table = sharpness_tables.sharpness_relation(joined)
    assert list(table["sharpness"]) == ["raw", "effective"]
    effective, raw = table.iloc[1], table.iloc[0]
    assert effective["sd of ln product"] == pytest.approx(0, abs=1e-12) and effective["slope (log-log)"] == pytest.approx(-1)
    assert effective["closest to constant"] and not raw["closest to constant"] and raw["max / min"] > 2
    assert effective["Spearman low"] == pytest.approx(-1) and effective["slope low"] == pytest.approx(-1)
    assert raw["Spearman low"] < raw["Spearman"] <= raw["Spearman high"] < 0 and raw["slope low"] < raw["slope (log-log)"] < raw["slope high"]
    only_raw = sharpness_tables.sharpness_relation(joined.drop(columns=["lambda_1_eff"]))
    assert len(only_raw) == 1 and pd.isna(only_raw["closest to constant"].iloc[0])


def late_frame(late_noise: float = 0.05, steps: tuple[int, ...] = (1000, 4000)) -> pd.DataFrame:
    """Per pretraining length: eta* = 5 (d w)^-0.7, lambda_1(theta_0) = (d w)^0.3 (so eta* lambda_0 ~ (d w)^-0.4),
    lambda_1(theta_T) = lambda_0 / 2 and the late max LR at the edge of stability, 2 / lambda_1_eff(theta_T)."""
    rng = np.random.default_rng(0)
    parts = []
    for pretrain in steps:
        frame = as_store(planted(-0.7, -0.7, c=5.0, depths=(1, 2, 4, 8), widths=(64, 256, 1024)), variant=f"pretrain {pretrain}")
        dw = frame["depth"] * frame["width"]
        frame["lambda_1_init"] = frame["lambda_1_eff_init"] = dw**0.3 * np.exp(0.05 * rng.normal(size=len(frame)))
        frame["lambda_1_T"] = frame["lambda_1_eff_T"] = frame["lambda_1_init"] / 2
        frame["late_max_lr"] = 2 / frame["lambda_1_eff_T"] * np.exp(late_noise * rng.normal(size=len(frame)))
        frame["late_status"], frame["late_bracket"] = "converged", [[v, v * 1.05] for v in frame["late_max_lr"]]
        frame["ratio"] = frame["late_max_lr"] / frame["eta_star"]
        frame["pretrain_accuracy"], frame["late.pretrain_steps"] = 0.9, pretrain
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def test_late_contrast_sets_the_two_relations_side_by_side():
    late = late_frame()
    networks = sharpness_tables.late_networks(late)
    assert np.allclose(networks["late_lambda_1_eff"], 2, rtol=0.3) and {"init_lambda_1", "late_lambda_1"} <= set(networks)
    contrast = sharpness_tables.late_contrast(late)
    assert len(contrast) == 2 * 2 * 2  # pretraining lengths x relations x sharpnesses
    init = contrast[contrast["relation"] == sharpness_tables.RELATIONS["init"][0]]
    later = contrast[contrast["relation"] == sharpness_tables.RELATIONS["late"][0]]
    assert np.allclose(init["exponent in d*w"], -0.4, atol=0.05) and (init["exponent high"] < 0).all()
    assert ((later["exponent low"] <= 0) & (later["exponent high"] >= 0)).all()
    assert np.allclose(later["product median"], 2, rtol=0.1)
    assert ((later["median low"] < later["product median"]) & (later["product median"] < later["median high"])).all()
    ratios = sharpness_tables.late_ratio_table(late)
    assert list(ratios["pretrain_steps"]) == [1000, 4000] and (ratios["pretraining below t"] == 0).all()
    # late ~ (d w)^-0.3 and eta* ~ (d w)^-0.7 on the same networks: their ratio ~ (d w)^0.4
    assert np.allclose(ratios["ratio exponent"], 0.4, atol=0.05) and (ratios["exponent low"] > 0.3).all()


def test_lanczos_table():
    frame = as_store(planted(0.5, 0.5, quantity="lambda_1", depths=(2,), widths=(64, 128)))
    for field in ("lambda_1", "lambda_1_eff"):
        frame[f"{field}_converged"] = [True] * 5 + [False]
        frame[f"{field}_residual"], frame[f"{field}_n_products"] = 1e-6, 40
        frame[f"{field}_dtype"] = ["float32"] * 5 + ["float64"]
    frame["lambda_1_eff"] = frame["lambda_1"]
    table = sharpness_tables.lanczos_table(frame.assign(**{"sharpness.tol": 1e-5}))
    assert list(table["eigenvalue"]) == ["lambda_1", "lambda_1_eff"]
    assert table["converged"].tolist() == pytest.approx([5 / 6] * 2) and (table["dtypes"] == "float32, float64").all()


def test_bounds_check_and_summary():
    frame = as_store(planted(0.5, 0.5, quantity="lambda_1", depths=(2, 4), widths=(64,)))
    frame = frame.assign(lambda_1_ggn=frame["lambda_1"], lower_bound=frame["lambda_1"] / 2,
                         ggn_upper_bound=frame["lambda_1"] * 3, ntk_trace=frame["lambda_1"] * 8,
                         expected_upper_bound=frame["lambda_1"] * 4)  # fmt: skip
    frame.loc[0, "lower_bound"] = frame.loc[0, "lambda_1_ggn"] * (1 + 2 * sharpness_tables.BOUNDS_RTOL)  # one violation
    frame.loc[1, "lower_bound"] = frame.loc[1, "lambda_1_ggn"] * (1 + sharpness_tables.BOUNDS_RTOL / 2)  # within the slack
    check = sharpness_tables.bounds_check(frame)
    assert check["sandwich"].tolist() == [False] + [True] * 5 and np.allclose(check["trace_over_expected"], 1)
    assert check["broken"].tolist() == [True] + [False] * 5 and check["failure"].iloc[0] == pytest.approx(2e-5, rel=1e-6)
    summary = sharpness_tables.bounds_summary(frame).iloc[0]
    assert summary["networks"] == 6 and summary["sandwich holds"] == 5 and summary["upper / lambda_1(G) median"] == 3
    assert summary["sandwich broken"] == 1
    uncertain = frame.assign(lambda_1_ggn_residual=1e-4)  # lambda_1(G) may be 1e-4 off: the failure is within it
    assert sharpness_tables.bounds_summary(uncertain).iloc[0]["sandwich broken"] == 0


def test_bounds_scaling():
    frame = as_store(planted(0.5, 0.5, quantity="lambda_1", depths=(2, 4, 8), widths=(64, 128)))
    dw = frame["depth"] * frame["width"]
    frame = frame.assign(lambda_1_ggn=frame["lambda_1"], lower_bound=frame["lambda_1"] / 2, ggn_upper_bound=dw,
                         ntk_trace=1.0, expected_upper_bound=1.0)  # fmt: skip
    row = sharpness_tables.bounds_scaling(frame).iloc[0]
    assert row["lambda_1 exponent"] == pytest.approx(0.5, abs=0.05) and row["upper exponent"] == pytest.approx(1.0)
    assert row["exponent gap"] == pytest.approx(-0.5, abs=0.05) and row["gap high"] < -0.4
    assert row["lambda_1 / lower"] == pytest.approx(2) and row["lower low"] == pytest.approx(2)
    with pytest.raises(ValueError, match="bounds: true"):
        sharpness_tables.bounds_check(frame.drop(columns="ntk_trace"))


def test_catapult_table_counts_the_stored_regimes():
    frame = pd.DataFrame({"dataset": "mnist", "eta_lambda_eff": [1.0, 3.0, 3.5, 9.0, np.nan],
                          "regime": ["stable", "catapult", "catapult", "divergent", None]})  # fmt: skip
    row = sharpness_tables.catapult_table(frame).iloc[0]
    assert (row["networks"], row["with eta*"], row["stable"], row["catapult"], row["divergent"]) == (5, 4, 1, 2, 1)
    assert row["inside window"] == 0.5 and row["eta* lambda_1_eff max"] == 9.0
    assert row["inside low"] == pytest.approx(0.15, abs=0.01) and row["inside high"] == pytest.approx(0.85, abs=0.01)


def test_held_out_table_and_numbers():
    frame = law_off_regime()
    everywhere, regime = tables.held_out_table(frame), tables.held_out_table(frame, regime=True)
    assert list(regime["dataset"]) == ["mnist", "gaussians"] and (regime["mean |log error|"] < 0.1).all()
    assert ((regime["error low"] <= regime["mean |log error|"]) & (regime["mean |log error|"] <= regime["error high"])).all()
    assert (everywhere["mean |log error|"] > 0.5).all()
    glue = tables.numbers(tables.fits_table(frame), ["dataset", "cells"])
    assert glue["mnist/in regime/alpha"] == pytest.approx(0.7, abs=0.03) and "gaussians/all cells/R^2" in glue


def test_tables_and_fits_load_without_torch_and_theory_without_pandas():
    code = "import sys, milr_core.tables, milr_core.claims; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    tree = ast.parse((Path(__file__).parents[1] / "milr_core" / "theory.py").read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "pandas" for name in modules)

