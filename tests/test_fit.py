"""Power-law fits on planted data with known answers: exact laws, honest intervals, censored cells, the product form,
the regime rule, and the point estimates of the store committed at 8fb1c00."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from milr_core.censored import cell_values, censored_least_squares
from milr_core.fit import (
    MAX_DEPTH_OVER_WIDTH,
    MIN_DEPTH,
    SWEEP_CUTOFFS,
    SWEEP_MIN_DEPTHS,
    cutoff_sweep,
    fit_in_regime,
    narrow_misfit,
    fit_power_law,
    fit_product_form,
    in_regime,
    residuals,
    width_exponent,
)

DATA = Path(__file__).parent / "data"
DEPTHS, WIDTHS, SEEDS = (1, 2, 4, 8, 16), (16, 32, 64, 128, 256, 512), range(3)


def planted(
    depth_power: float,
    width_power: float,
    *,
    c: float = 2.0,
    seed_noise: float = 0.05,
    cell_noise: float = 0.0,
    rng_seed: int = 0,
    depths=DEPTHS,
    widths=WIDTHS,
    quantity: str = "eta_star",
) -> pd.DataFrame:
    """One row per (depth, width, seed): c d^a w^b, times a log-normal factor per cell (misfit) and per seed."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for d in depths:
        for w in widths:
            cell = cell_noise * rng.normal()
            rows += [{"dataset": "gaussians", "depth": d, "width": w, "seed": s, "status": "converged",
                      quantity: c * d**depth_power * w**width_power * np.exp(cell + seed_noise * rng.normal())}
                     for s in SEEDS]  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["bracket"] = [[v, v * 1.05] for v in frame[quantity]]
    return frame


def test_pure_power_law_is_exact():
    fit = fit_power_law(planted(-0.5, -0.5, c=3.0, seed_noise=0.0), n_bootstrap=50)
    assert fit.alpha == pytest.approx(0.5, abs=1e-12) and fit.c == pytest.approx(3.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0) and fit.alpha_ci == pytest.approx((0.5, 0.5), abs=1e-12)
    assert fit.n_cells == len(DEPTHS) * len(WIDTHS) and fit.n_values == fit.n_cells * len(SEEDS)
    assert fit.n_censored == 0 and fit.n_dropped == 0
    record = fit.to_dict()
    assert record["alpha"] == pytest.approx(-record["exponent"]) and record["quantity"] == "eta_star"


def test_noisy_power_law_inside_its_interval_and_seeded():
    frame = planted(-0.6, -0.6, seed_noise=0.15, rng_seed=1)
    fit = fit_power_law(frame, n_bootstrap=500)
    assert fit.alpha_ci[0] < 0.6 < fit.alpha_ci[1] and fit.c_ci[0] < 2.0 < fit.c_ci[1] and fit.r2 > 0.9
    assert fit_power_law(frame, seed=3).to_dict() == fit_power_law(frame, seed=3).to_dict()


def test_misfit_widens_the_interval_so_that_it_covers():
    """Cells off the line by a factor ~exp(0.3) with almost no seed noise: resampling seeds alone would give an
    interval of width ~0.01 that misses the true exponent most of the time; resampling cells covers it."""
    covered, widths = 0, []
    for rng_seed in range(20):
        fit = fit_power_law(planted(-0.7, -0.7, seed_noise=0.01, cell_noise=0.3, rng_seed=rng_seed), n_bootstrap=300)
        covered += fit.alpha_ci[0] <= 0.7 <= fit.alpha_ci[1]
        widths.append(fit.alpha_ci[1] - fit.alpha_ci[0])
    assert covered >= 16 and np.median(widths) > 0.1


def test_r2_and_scatter_have_intervals():
    """The scatter of cells about the law (residual sd of ln y, n - 2 degrees of freedom) estimates the misfit
    planted per cell, and its interval and R^2's come from the same bootstrap as the exponent's."""
    fit = fit_power_law(planted(-0.6, -0.6, seed_noise=0.01, cell_noise=0.3, rng_seed=2), n_bootstrap=500)
    assert 0.2 < fit.scatter < 0.4 and fit.scatter_ci[0] < 0.3 < fit.scatter_ci[1]
    assert fit.r2_ci[0] < fit.r2 <= fit.r2_ci[1] + 0.02 and fit.r2_ci[1] <= 1
    exact = fit_power_law(planted(-0.6, -0.6, seed_noise=0.0), n_bootstrap=50)
    assert exact.scatter == pytest.approx(0, abs=1e-9) and exact.r2_ci == pytest.approx((1, 1))


def test_narrow_misfit_against_the_regime_law():
    frame = planted(-0.7, -0.7, seed_noise=0.02)
    narrow = (frame["depth"] >= MIN_DEPTH) & (frame["depth"] / frame["width"] > MAX_DEPTH_OVER_WIDTH)
    frame.loc[narrow, "eta_star"] /= 3.0  # the narrow networks take a third of what the law says
    frame.loc[frame["depth"] < MIN_DEPTH, "eta_star"] *= 10.0  # shallow ones do not count
    misfit = narrow_misfit(frame, n_bootstrap=200)
    assert misfit.factor == pytest.approx(3.0, rel=0.05) and misfit.shift == pytest.approx(-np.log(3.0), abs=0.05)
    assert misfit.factor_ci[0] < 3.0 < misfit.factor_ci[1] < 3.3 and misfit.n_cells == int(narrow.sum()) // len(SEEDS)
    with pytest.raises(ValueError, match="no narrow cell"):
        narrow_misfit(frame[~narrow])


def test_positive_exponent_for_sharpness():
    fit = fit_power_law(planted(0.8, 0.8, c=0.5, seed_noise=0.0, quantity="lambda_1"), "lambda_1", n_bootstrap=10)
    assert fit.exponent == pytest.approx(0.8) and fit.quantity == "lambda_1"


def fail(frame: pd.DataFrame, depth: int, width: int, status: str, factor: float) -> pd.DataFrame:
    """Every seed of one cell failed with ``status``; its bracket's ends are ``factor`` x the planted value."""
    frame = frame.copy()
    cell = (frame["depth"] == depth) & (frame["width"] == width)
    frame.loc[cell, "status"] = status
    frame.loc[cell, "bracket"] = pd.Series([[v * factor, v * factor * 1.05] for v in frame.loc[cell, "eta_star"]],
                                           index=frame.index[cell])  # fmt: skip
    frame.loc[cell, "eta_star"] = np.nan
    return frame


def test_a_censored_cell_pulls_the_line_the_way_censoring_should():
    frame = planted(-0.6, -0.6, seed_noise=0.1, cell_noise=0.1)
    corner = frame[(frame["depth"] == 16) & (frame["width"] == 512)]
    dropped = fit_power_law(frame.drop(corner.index), n_bootstrap=50)
    # no_success far below the line ("eta* < 0.3 x the law"): the line must come down at the largest d w
    below = fit_power_law(fail(frame, 16, 512, "no_success", 0.3), n_bootstrap=50)
    assert below.n_censored == 1 and below.n_cells == dropped.n_cells + 1 and below.n_dropped == 0
    assert below.exponent < dropped.exponent - 0.01
    # no_failure far above it ("eta* >= 3 x the law"): the line must go up there
    above = fit_power_law(fail(frame, 16, 512, "no_failure", 3.0), n_bootstrap=50)
    assert above.n_censored == 1 and above.exponent > dropped.exponent + 0.01
    # a bound the line already respects ("eta* < 10 x the law") hardly moves it
    loose = fit_power_law(fail(frame, 16, 512, "no_success", 10.0), n_bootstrap=50)
    assert loose.exponent == pytest.approx(dropped.exponent, abs=0.01)
    # a seed that failed where the others converged is dropped from its cell's median and counted
    partial = frame.copy()
    partial.loc[0, ["status", "eta_star"]] = ["no_success", np.nan]
    assert fit_power_law(partial, n_bootstrap=10).n_dropped == 1


def test_a_cell_where_no_learning_rate_reached_t_is_left_out_of_the_fit_but_listed():
    """A no_success reached through the fallback (no LR near the best accuracy reached t) bounds nothing:
    the cell leaves the fit, its seeds are counted as dropped, and it is listed with its best accuracy's LR;
    the same failure without the fallback (the low end still diverged) stays censored below."""
    frame = planted(-0.6, -0.6, seed_noise=0.1, cell_noise=0.1)
    corner = frame[(frame["depth"] == 16) & (frame["width"] == 512)]
    dropped = fit_power_law(frame.drop(corner.index), n_bootstrap=10)
    failed = fail(frame, 16, 512, "no_success", 0.3).assign(fallback=False)
    censored = fit_power_law(failed, n_bootstrap=10)
    assert censored.n_censored == 1 and censored.exponent < dropped.exponent - 0.01
    failed.loc[corner.index, "fallback"] = True
    unreached = fit_power_law(failed, n_bootstrap=10)
    assert unreached.n_censored == 0 and unreached.n_cells == dropped.n_cells
    assert unreached.exponent == pytest.approx(dropped.exponent) and unreached.n_dropped == len(corner)
    listed = cell_values(failed, "eta_star").unreached
    assert listed[["depth", "width", "n_seeds"]].values.tolist() == [[16, 512, len(corner)]]
    assert listed["lr"].iloc[0] == pytest.approx(np.median(corner["eta_star"] * 0.3))
    # one seed that converged keeps the cell measured; the others are dropped as before
    failed.loc[corner.index[0], ["status", "eta_star", "fallback"]] = ["converged", corner["eta_star"].iloc[0], False]
    assert cell_values(failed, "eta_star").unreached.empty


def test_censored_fit_is_the_tobit_maximum_likelihood():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=15), np.ones(15)], 1)
    y = x @ [1.0, 0.5] + 0.3 * rng.normal(size=15)
    side = np.zeros(15, dtype=int)
    side[:3], side[3:5] = -1, 1
    coefficients, valid = censored_least_squares(x[None], y[None], side[None])

    def negative_log_likelihood(p):
        z = (y - x @ p[:2]) / np.exp(p[2])
        return -np.sum(np.where(side == 0, norm.logpdf(z) - p[2], np.where(side < 0, norm.logcdf(z), norm.logsf(z))))

    reference = minimize(negative_log_likelihood, [0.0, 0.0, 0.0], method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).x  # fmt: skip
    assert valid[0] and coefficients[0] == pytest.approx(reference[:2], abs=1e-6)
    plain, _ = censored_least_squares(x[None], y[None], np.zeros((1, 15), dtype=int))
    assert plain[0] == pytest.approx(np.linalg.lstsq(x, y, rcond=None)[0], abs=1e-12)


def test_product_form_accepts_a_law_in_dw_and_rejects_another():
    law = fit_product_form(planted(-1.0, -1.0, seed_noise=0.1), n_bootstrap=300)
    assert law.depth_exponent == pytest.approx(-1.0, abs=0.1) and law.width_exponent == pytest.approx(-1.0, abs=0.1)
    assert law.consistent and law.difference_ci[0] < 0 < law.difference_ci[1]
    other = fit_product_form(planted(-1.1, -0.2, seed_noise=0.1), n_bootstrap=300)
    assert other.difference == pytest.approx(-0.9, abs=0.1) and not other.consistent and other.difference_ci[1] < 0


def test_regime_rule_and_cutoff_sweep():
    frame = planted(-0.7, -0.7, seed_noise=0.02)
    shallow_or_narrow = (frame["depth"] < MIN_DEPTH) | (frame["depth"] / frame["width"] > MAX_DEPTH_OVER_WIDTH)
    off = np.where(frame["width"].isin(WIDTHS[::2]), 4.0, 0.25)  # cells off the law, alternately above and below
    frame.loc[shallow_or_narrow, "eta_star"] *= off[shallow_or_narrow]
    assert (in_regime(frame) == ~shallow_or_narrow).all()
    regime = fit_in_regime(frame, n_bootstrap=50)
    assert regime.alpha == pytest.approx(0.7, abs=0.03) and regime.r2 > 0.99
    assert fit_power_law(frame, n_bootstrap=50).r2 < 0.8
    sweep = cutoff_sweep(frame, n_bootstrap=20)
    assert len(sweep) == len(SWEEP_MIN_DEPTHS) * len(SWEEP_CUTOFFS) and sweep["our_rule"].sum() == 1
    ours = sweep[sweep["our_rule"]].iloc[0]
    assert ours["r2"] == pytest.approx(regime.r2) and ours["n_cells"] == regime.n_cells and ours["cutoff"] == "1/16"
    assert sweep.loc[sweep["max_depth_over_width"] == np.inf, "cutoff"].eq("none").all()


def test_residuals_against_a_fit_on_other_cells():
    frame = planted(-0.5, -0.5, seed_noise=0.0)
    frame.loc[frame["depth"] == 1, "eta_star"] *= 4.0
    table = residuals(frame, fit_in_regime(frame, n_bootstrap=10))
    assert list(table.columns) == ["depth", "width", "n_seeds", "censored", "dw", "depth_over_width", "value",
                                   "fitted", "residual", "in_regime"]  # fmt: skip
    assert np.allclose(table.loc[table["depth"] == 1, "residual"], np.log(4.0))
    assert np.allclose(table.loc[table["depth"] > 1, "residual"], 0.0, atol=1e-12)


def test_width_exponent_at_fixed_depth():
    fit = width_exponent(planted(-1.0, -0.3, seed_noise=0.05), n_bootstrap=200)
    assert fit.slope_ci[0] < -0.3 < fit.slope_ci[1] and fit.n_depths == len(DEPTHS) and fit.n_censored == 0
    assert len(fit.slope_replicates) == 200 and np.percentile(fit.slope_replicates, 2.5) == pytest.approx(fit.slope_ci[0])


def test_bad_frames_are_refused():
    frame = planted(-0.5, -0.5)
    with pytest.raises(ValueError, match="more than once"):
        fit_power_law(pd.concat([frame, frame]))
    with pytest.raises(ValueError, match="lambda_1"):
        fit_power_law(frame, "lambda_1")
    with pytest.raises(ValueError, match="two distinct|2 distinct"):
        fit_power_law(frame[(frame["depth"] == 1) & (frame["width"] == 64)])


def test_point_estimates_reproduce_the_store_committed_at_8fb1c00():
    """The fits the code of 8fb1c00 made (which dropped the cells where every seed failed) are reproduced
    exactly once those cells are left out: the point estimate did not change, only intervals and censoring."""
    store = pd.read_csv(DATA / "store_8fb1c00.csv")
    store["bracket"] = list(zip(store["bracket_low"], store["bracket_high"]))
    golden = json.loads((DATA / "fits_8fb1c00.json").read_text())
    for experiment, quantity in (("power_law", "eta_star"), ("sharpness", "lambda_1")):
        for dataset, expected in golden[experiment].items():
            rows = store[store["dataset"] == dataset]
            some_converged = rows.groupby(["depth", "width"])["status"].transform(lambda s: (s == "converged").any())
            fit = fit_power_law(rows[some_converged] if quantity == "eta_star" else rows, quantity, n_bootstrap=10)
            assert fit.exponent == pytest.approx(expected["exponent"], rel=1e-9, abs=1e-12)
            assert fit.c == pytest.approx(expected["c"], rel=1e-9)
            assert fit.r2 == pytest.approx(expected["r2"], rel=1e-9, abs=1e-12)
            assert fit.n_cells == expected["n_cells"]
            if quantity == "eta_star":  # and with every cell, the ones where all seeds failed come back as censored
                assert fit_power_law(rows, n_bootstrap=10).n_censored == (~some_converged).sum() // len(SEEDS)
