"""milr predict: exact on an exact power law, calibrated on held-out cells of a noisy planted law, loud
outside the fitted range, and clear when there is no store or no matching cell."""

import json

import numpy as np
import pandas as pd
import pytest

from milr_core import cli
from milr_core.fit import MAX_DEPTH_OVER_WIDTH, MIN_DEPTH
from milr_core.predict import eta_star_frame, held_out_summary, leave_one_cell_out, predict_eta_star
from milr_core.store import ResultStore, content_hash

DEPTHS, WIDTHS = (1, 2, 4, 8), (16, 32, 64)


def exact_store(path, c=50.0, exponent=-1.3, parameterisation="standard"):
    """Records of eta* = c (d w)^exponent, three seeds per cell, in a fresh store."""
    store = ResultStore(path)
    for depth in DEPTHS:
        for width in WIDTHS:
            for seed in range(3):
                cell = {"kind": "eta_star", "engine_version": "1", "dataset": "gaussians", "depth": depth, "width": width,
                        "seed": seed, "network": {"parameterisation": parameterisation, "input_lr_factor": 0.1}}  # fmt: skip
                store.put({"hash": content_hash(cell), "cell": cell, "labels": {"grid": "toy"},
                           "result": {"eta_star": c * (depth * width) ** exponent}, "ledger": [], "provenance": {}})  # fmt: skip
    return store.path


def test_an_exact_power_law_is_predicted_exactly(tmp_path):
    exact_store(tmp_path)
    prediction = predict_eta_star(eta_star_frame(tmp_path), "gaussians", 3, 40, n_bootstrap=50)
    assert prediction.eta_star == pytest.approx(50.0 * 120**-1.3, rel=1e-9)
    assert prediction.interval == pytest.approx((prediction.eta_star,) * 2, rel=1e-6)  # no scatter, no width
    assert prediction.fit["alpha"] == pytest.approx(1.3) and prediction.fit["r2"] == pytest.approx(1.0)
    assert prediction.fit["n_cells"] == 12 and prediction.fit["dw_range"] == [16, 512] and prediction.warnings == []


def test_warnings_outside_the_fitted_range(tmp_path):
    frame = eta_star_frame(exact_store(tmp_path))
    far = predict_eta_star(frame, "gaussians", 16, 2048, n_bootstrap=50)
    assert far.eta_star == pytest.approx(50.0 * (16 * 2048) ** -1.3, rel=1e-9)
    assert [w.split(" ")[0] for w in far.warnings] == ["d*w"]
    narrow = predict_eta_star(frame, "gaussians", 16, 16, n_bootstrap=50)
    assert any("condition (i)" in w for w in narrow.warnings)
    wide_only = predict_eta_star(frame, "gaussians", 4, 16, max_depth_over_width=0.125, n_bootstrap=50)
    assert wide_only.fit["max_fitted_depth_over_width"] == 0.125
    assert any("lies outside the cells the law was fitted on (depth >= 1, d/w <= 0.125)" in w for w in wide_only.warnings)


def test_cli_prints_json_and_warns_on_stderr(tmp_path, capsys):
    exact_store(tmp_path)
    assert cli.main(["predict", "--dataset", "gaussians", "--depth", "32", "--width", "16", "--store", str(tmp_path),
                     "--min-depth", "1", "--max-depth-over-width", "1"]) == 0  # the toy store has one cell in our regime
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["eta_star"] == pytest.approx(50.0 * 512**-1.3) and result["store"] == str(tmp_path)
    assert result["warnings"] and "warning: depth 32, width 16 lies outside the cells the law was fitted on" in out.err
    assert result["fitted_on"]["min_depth"] == 1 and "cells" not in result  # compact: --full adds the fit's cells


def test_clear_errors(tmp_path, capsys):
    missing = ["predict", "--dataset", "gaussians", "--depth", "2", "--width", "16", "--store", str(tmp_path / "missing")]
    assert cli.main(missing) != 0 and "no result store at" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match="holds no eta. records"):
        eta_star_frame(ResultStore(tmp_path / "empty").path)
    frame = eta_star_frame(exact_store(tmp_path / "store"))
    with pytest.raises(ValueError, match=r"parameterisation 'ntk'.*the store has for 'gaussians': standard \(input_lr_factor 0.1\)"):
        predict_eta_star(frame, "gaussians", 2, 16, parameterisation="ntk")
    with pytest.raises(ValueError, match="no eta. cells for dataset 'mnist'"):
        predict_eta_star(frame, "mnist", 2, 16)


def noisy_frame(noise: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """eta* = 5 (d w)^-0.7 with log-normal noise per cell and seed, 5 depths x 6 widths x 3 seeds, as a store frame."""
    rng = np.random.default_rng(seed)
    rows = [{"dataset": "gaussians", "grid": "toy", "depth": d, "width": w, "seed": s, "network.parameterisation": "standard",
             "network.input_lr_factor": 0.1, "eta_star": 5.0 * (d * w) ** -0.7 * np.exp(noise * rng.normal())}
            for d in (1, 2, 4, 8, 16) for w in (16, 32, 64, 128, 256, 512) for s in range(3)]  # fmt: skip
    return pd.DataFrame(rows)


def test_held_out_cells_lie_in_their_intervals():
    """Leave one cell out and predict it from the other 29: the 95% prediction intervals hold most cells and
    the typical error is about the noise of a cell's median (0.2 / sqrt(3) on the log scale, plus the fit's)."""
    summary = held_out_summary(leave_one_cell_out(noisy_frame(), "gaussians", n_bootstrap=20)).loc["gaussians"]
    assert summary["cells"] == 30 and summary["coverage"] >= 0.85 and summary["mean |log error|"] < 0.2


def test_leave_one_cell_out_in_the_regime_ignores_the_cells_off_the_law():
    frame = noisy_frame(noise=0.05)
    frame.loc[frame["depth"] == 1, "eta_star"] *= 8.0  # depth 1 follows another law
    everywhere = held_out_summary(leave_one_cell_out(frame, "gaussians", n_bootstrap=20)).loc["gaussians"]
    regime = leave_one_cell_out(frame, "gaussians", regime=True, n_bootstrap=20)
    assert (regime["depth"] >= MIN_DEPTH).all() and (regime["depth"] / regime["width"] <= MAX_DEPTH_OVER_WIDTH).all()
    assert held_out_summary(regime).loc["gaussians", "mean |log error|"] < 0.1 < everywhere["mean |log error|"]


def test_the_largest_group_of_settings_is_used_and_the_others_named(tmp_path):
    store = ResultStore(exact_store(tmp_path))
    cell = {"kind": "eta_star", "engine_version": "1", "dataset": "gaussians", "depth": 2, "width": 16, "seed": 0,
            "network": {"parameterisation": "standard", "input_lr_factor": 0.1}, "train": {"batch_size": 32}}  # fmt: skip
    store.put({"hash": content_hash(cell), "cell": cell, "labels": {"grid": "sensitivity"}, "result": {"eta_star": 9.0},
               "ledger": [], "provenance": {}})  # fmt: skip
    prediction = predict_eta_star(eta_star_frame(store.path), "gaussians", 3, 40, n_bootstrap=50)
    assert prediction.eta_star == pytest.approx(50.0 * 120**-1.3, rel=1e-9) and prediction.fit["n_cells"] == 12
    assert prediction.warnings == ["2 groups of settings match; used the largest (12 cells, grid toy), not the others "
                                   "(grid sensitivity)"]  # fmt: skip


def test_leave_one_cell_out_on_an_exact_law_and_its_summary(tmp_path):
    frame = eta_star_frame(exact_store(tmp_path))
    table = leave_one_cell_out(frame, "gaussians", n_bootstrap=20)
    assert len(table) == len(DEPTHS) * len(WIDTHS) and (table["n_fitted"] == 11).all()
    assert np.allclose(table["predicted"], table["measured"], rtol=1e-9) and np.allclose(table["log_error"], 0, atol=1e-9)
    assert table["covered"].all()  # a zero-width interval around an exact prediction
    far = table[(table["depth"] == 8) & (table["width"] == 64)].iloc[0]
    assert any(w.startswith("d*w") for w in far["warnings"])  # the largest d w is outside the others' range
    noisy = frame.copy()
    noisy.loc[(noisy["depth"] == 2) & (noisy["width"] == 32), "eta_star"] *= 4.0
    summary = held_out_summary(leave_one_cell_out(noisy, "gaussians", n_bootstrap=20)).loc["gaussians"]
    assert summary["cells"] == 12 and summary["with interval"] == 12
    assert summary["max |log error|"] == pytest.approx(np.log(4.0), rel=0.2) and summary["typical factor"] > 1
    assert summary["interval factor"] > 1 and 0 < summary["coverage"] < 1  # the outlier misses its interval
    assert held_out_summary(leave_one_cell_out(frame[frame["depth"] == 1], "gaussians")).loc["gaussians", "with interval"] == 0
