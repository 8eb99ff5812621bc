"""The catapult window under MSE: trajectories record the right steps, a small LR is lazy, an LR in
(2 / lambda_1, 4 / lambda_1) catapults, and eta* lambda_1 comes out of the sweep."""

import pytest
import torch

from milr_core.catapult import catapult_trajectory, regime
from milr_core.config import Run, RunOptions, SharpnessConfig, TrajectoryConfig
from milr_core.grid import GridError, load_grid
from milr_core.network import NetworkSpec
from milr_core.sharpness import sharpness_at_init
from milr_core.sweep import run_sweep

F64 = torch.float64


def test_trajectory_records_loss_every_step_and_lambda_every_few(gaussians):
    spec = NetworkSpec(1, 32, gaussians.in_dim, gaussians.n_classes)
    sharpness = SharpnessConfig(subset_size=64, loss="mse", tol=1e-8)
    run = Run(gaussians, spec, (1,), dtype="float64")
    (at_init,) = sharpness_at_init(run, sharpness)
    (result,) = catapult_trajectory(run, sharpness, TrajectoryConfig(eta_lambdas=(0.5,), steps=25, every=10))
    assert result["lambda_1_eff"] == pytest.approx(at_init["lambda_1_eff"], rel=1e-6)  # same network, subset, loss
    (run,) = result["runs"]
    assert len(run["loss"]) == 25 and run["diverged_at"] is None
    assert run["lambda_steps"] == [0, 10, 20, 25] and len(run["lambda_1"]) == len(run["lambda_loss"]) == 4
    assert run["lambda_loss"][:3] == pytest.approx([run["loss"][t] for t in (0, 10, 20)], rel=1e-10)  # full batch
    assert run["lr"] == pytest.approx(0.5 / result["lambda_1_eff"]) and run["regime"] == "stable"


def test_below_the_window_is_lazy_and_inside_it_catapults(gaussians):
    """Width 256, depth 2, float64, 256 examples (ours). At eta lambda_1_eff = 0.5 the loss falls at every step and
    the sharpness barely moves; at 3 the loss first grows, then falls below its start, and the sharpness ends far
    below its start, below 2 / eta."""
    spec = NetworkSpec(2, 256, gaussians.in_dim, gaussians.n_classes)
    sharpness = SharpnessConfig(subset_size=256, loss="mse", tol=1e-5)
    (result,) = catapult_trajectory(Run(gaussians, spec, dtype="float64"), sharpness, TrajectoryConfig((0.5, 3.0), steps=30, every=15))
    lazy, catapult = result["runs"]
    assert all(later < earlier for earlier, later in zip(lazy["loss"], lazy["loss"][1:]))
    assert lazy["lambda_1"][-1] == pytest.approx(lazy["lambda_1"][0], rel=0.05)
    assert catapult["diverged_at"] is None
    assert max(catapult["loss"]) > 3 * catapult["loss"][0] and catapult["loss"][-1] < catapult["loss"][0]
    assert catapult["lambda_1"][-1] < 0.7 * catapult["lambda_1"][0] and catapult["lambda_1"][-1] < 2 / catapult["lr"]


def test_regime_boundaries():
    assert [regime(v) for v in (1.99, 2.0, 3.99, 4.0, None)] == ["stable", "catapult", "catapult", "divergent", None]


def test_catapult_sweep_records_eta_star_times_lambda_1(tmp_path):
    grid = {
        "name": "catapult_tiny",
        "kind": "catapult",
        "datasets": ["gaussians"],
        "dataset_options": {"gaussians": {"dim": 8, "n_train_per_class": 256, "n_val_per_class": 128}},
        "depths": [1],
        "widths": [32],
        "seeds": [0],
        "train": {"batch_size": 32, "max_steps": 60, "eval_every": 10, "loss": "mse"},
        "search": {"lr_bounds": [0.01, 3.0], "rtol": 0.3},
        "sharpness": {"subset_size": 128, "tol": 1.0e-4, "loss": "mse"},
    }
    with pytest.raises(GridError, match="must be mse"):
        load_grid(grid | {"train": grid["train"] | {"loss": "cross_entropy"}})
    (row,) = run_sweep(grid, tmp_path, run=RunOptions(device="cpu"), progress=False).to_dict("records")
    assert row["status"] == "converged" and row["eta_star"] > 0
    assert row["eta_lambda"] == pytest.approx(row["eta_star"] * row["lambda_1"])
    assert row["eta_lambda_eff"] == pytest.approx(row["eta_star"] * row["lambda_1_eff"])
    assert row["regime"] == regime(row["eta_lambda_eff"])
