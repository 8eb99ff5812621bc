"""The catapult window under MSE: trajectories record the right steps, a small LR is lazy, an LR in
(2 / lambda_1, 4 / lambda_1) catapults, and eta* lambda_1 comes out of the sweep."""

import pytest
import torch

from milr_core import sweep
from milr_core.catapult import catapult_trajectory, regime
from milr_core.data import load_dataset
from milr_core.model import NetworkSpec
from milr_core.sharpness import sharpness_at_init


@pytest.fixture(scope="module")
def gaussians():
    return load_dataset("gaussians", dim=8)


@pytest.fixture(scope="module")
def wide(gaussians):
    """Wide enough for the catapult picture (our setting): width 256, depth 2, float64, 256 examples."""
    spec = NetworkSpec(2, 256, gaussians.in_dim, gaussians.n_classes)
    lambda_1 = sharpness_at_init(gaussians, spec, 0, subset_size=256, loss="mse", tol=1e-4, dtype=torch.float64)
    return spec, lambda_1.lambda_1


def test_trajectory_records_loss_every_step_and_lambda_every_few(gaussians):
    spec = NetworkSpec(1, 32, gaussians.in_dim, gaussians.n_classes)
    at_init = sharpness_at_init(gaussians, spec, 1, subset_size=64, loss="mse", dtype=torch.float64)
    run = catapult_trajectory(gaussians, spec, 1, 0.5 / at_init.lambda_1, steps=25, every=10, subset_size=64)
    assert len(run.loss) == 25 and run.diverged_at is None
    assert run.lambda_steps == [0, 10, 20, 25] and len(run.lambda_1) == len(run.lambda_loss) == 4
    assert run.lambda_1[0] == pytest.approx(at_init.lambda_1, rel=1e-6)  # the same network, subset and loss
    assert run.lambda_loss[:3] == pytest.approx([run.loss[t] for t in (0, 10, 20)], rel=1e-10)  # full batch
    assert run.to_dict()["eta_lambda"] == pytest.approx(0.5, rel=1e-6) and run.to_dict()["regime"] == "stable"


def test_small_lr_is_lazy(gaussians, wide):
    """At lr = 0.5 / lambda_1, gradient descent on the (nearly quadratic) loss decreases it at every step,
    and lambda_1 barely moves (we measured -2.4% over 30 steps)."""
    spec, lambda_1 = wide
    run = catapult_trajectory(gaussians, spec, 0, 0.5 / lambda_1, steps=30, every=15, subset_size=256, tol=1e-4)
    assert all(later < earlier for earlier, later in zip(run.loss, run.loss[1:]))
    assert run.lambda_1[-1] == pytest.approx(lambda_1, rel=0.05)


def test_lr_inside_the_window_catapults(gaussians, wide):
    """At lr = 3 / lambda_1 the loss first grows (we measured 1.7 -> 17 by step 4), then falls below its
    initial value, and lambda_1 ends far below its initial value (240 -> 103), below 2 / lr."""
    spec, lambda_1 = wide
    lr = 3.0 / lambda_1
    run = catapult_trajectory(gaussians, spec, 0, lr, steps=30, every=15, subset_size=256, tol=1e-4)
    assert run.diverged_at is None
    assert max(run.loss) > 3 * run.loss[0] and run.loss[-1] < run.loss[0]
    assert run.lambda_1[-1] < 0.7 * run.lambda_1[0] and run.lambda_1[-1] < 2 / lr


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
        "search": {"lr_bounds": [0.01, 3.0], "rtol": 0.3, "lrs_per_round": 4},
        "catapult": {"subset_size": 128, "tol": 1.0e-4},
    }
    with pytest.raises(sweep.GridError, match="train.loss must be 'mse'"):
        sweep.load_grid(grid | {"train": grid["train"] | {"loss": "cross_entropy"}})
    (row,) = sweep.run_sweep(grid, tmp_path, progress=False).to_dict("records")
    assert row["status"] == "converged" and row["eta_star"] > 0
    assert row["eta_lambda"] == pytest.approx(row["eta_star"] * row["lambda_1"]) and row["regime"] == regime(row["eta_lambda"])
    dataset = sweep.load_datasets(sweep.load_grid(grid))["gaussians"]
    direct = sharpness_at_init(dataset, NetworkSpec(1, 32, 8, 2), 0, subset_size=128, tol=1e-4, loss="mse")
    assert row["lambda_1"] == pytest.approx(direct.lambda_1, rel=1e-6)
    print(f"\ncatapult sweep, gaussians d=1 w=32: eta* {row['eta_star']:.3g}, lambda_1 {row['lambda_1']:.3g}, "
          f"eta* lambda_1 {row['eta_lambda']:.3g} ({row['regime']})")
