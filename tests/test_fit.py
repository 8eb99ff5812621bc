"""Power-law fits recover known exponents; the seed bootstrap brackets them."""

import numpy as np
import pandas as pd
import pytest

from milr_core.fit import fit_power_law, fit_wide, residuals

DEPTHS, WIDTHS, SEEDS = [1, 2, 4, 8], [64, 128, 256, 512], range(5)


def power_law_frame(c: float, exponent: float, noise: float, rng_seed: int = 0) -> pd.DataFrame:
    """One row per (depth, width, seed): y = c (d w)^exponent times log-normal noise."""
    rng = np.random.default_rng(rng_seed)
    rows = [
        {"depth": d, "width": w, "seed": s, "eta_star": c * (d * w) ** exponent * np.exp(noise * rng.normal())}
        for d in DEPTHS
        for w in WIDTHS
        for s in SEEDS
    ]
    return pd.DataFrame(rows)


def test_pure_power_law_is_exact():
    fit = fit_power_law(power_law_frame(c=3.0, exponent=-0.5, noise=0.0), n_bootstrap=50)
    assert fit.alpha == pytest.approx(0.5, abs=1e-12)
    assert fit.c == pytest.approx(3.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.alpha_ci == pytest.approx((0.5, 0.5), abs=1e-12)
    assert fit.n_cells == len(DEPTHS) * len(WIDTHS) and fit.n_values == fit.n_cells * len(SEEDS)


def test_noisy_power_law_inside_bootstrap_ci():
    fit = fit_power_law(power_law_frame(c=2.0, exponent=-0.6, noise=0.15, rng_seed=1), n_bootstrap=2000, seed=0)
    low, high = fit.alpha_ci
    assert low < 0.6 < high and high - low < 0.1
    assert fit.c_ci[0] < 2.0 < fit.c_ci[1]
    assert fit.r2 > 0.95
    record = fit.to_dict()
    assert record["alpha"] == pytest.approx(-record["exponent"]) and record["quantity"] == "eta_star"


def test_bootstrap_is_seeded():
    frame = power_law_frame(c=2.0, exponent=-0.6, noise=0.15)
    assert fit_power_law(frame, seed=3).to_dict() == fit_power_law(frame, seed=3).to_dict()


def test_positive_exponent_for_sharpness():
    frame = power_law_frame(c=0.5, exponent=0.8, noise=0.0).rename(columns={"eta_star": "lambda_1"})
    fit = fit_power_law(frame, "lambda_1", n_bootstrap=10)
    assert fit.exponent == pytest.approx(0.8) and fit.quantity == "lambda_1"


def test_residuals_and_wide_cut():
    frame = power_law_frame(c=1.0, exponent=-0.5, noise=0.0)
    frame.loc[frame["depth"] == 8, "eta_star"] *= 0.5  # the law breaks for the deepest networks
    fit = fit_power_law(frame, n_bootstrap=10)
    table = residuals(frame, fit)
    assert list(table.columns[:3]) == ["depth", "width", "n_seeds"]
    assert {"dw", "depth_over_width", "value", "fitted", "residual"} <= set(table.columns)
    assert len(table) == len(DEPTHS) * len(WIDTHS)
    assert (table["depth_over_width"] == table["depth"] / table["width"]).all()
    wide = fit_wide(frame, max_depth_over_width=0.015, n_bootstrap=10)  # leaves out every depth-8 cell
    assert wide.n_cells == len(table[table["depth_over_width"] <= 0.015])
    assert wide.alpha == pytest.approx(0.5) and wide.r2 == pytest.approx(1.0)


def test_unconverged_values_are_dropped_and_counted():
    frame = power_law_frame(c=1.0, exponent=-0.5, noise=0.0)
    frame.loc[0, "eta_star"] = None
    fit = fit_power_law(frame, n_bootstrap=10)
    assert fit.n_dropped == 1 and fit.alpha == pytest.approx(0.5)


def test_bad_frames_are_refused():
    frame = power_law_frame(c=1.0, exponent=-0.5, noise=0.0)
    with pytest.raises(ValueError, match="more than once"):
        fit_power_law(pd.concat([frame, frame]))
    with pytest.raises(ValueError, match="lambda_1"):
        fit_power_law(frame, "lambda_1")
    with pytest.raises(ValueError, match="two distinct"):
        fit_power_law(frame[(frame["depth"] == 1) & (frame["width"] == 64)])
