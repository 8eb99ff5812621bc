"""The cheap predictors of eta* (``predictors.py``, ``predictor_tables.py``) on planted models where the answer is known:
on a quadratic the critical step is 2 g'Pg / (g'PHPg), 2 / lambda exactly along an eigenvector; the kind end to end
on a tiny grid; c / lambda_1 fitted on held-out cells only."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_lr_finder import Linear, planted

from milr_core import predictor_tables as pt
from milr_core import sweep
from milr_core.config import PredictorConfig, RangeTestConfig, Run, RunOptions, SharpnessConfig, TrainConfig
from milr_core.data import load_dataset
from milr_core.model import MLP
from milr_core.network import NetworkSpec
from milr_core.predictors import critical_lr, first_batch, first_update, losses_along, predictors_at_init
from milr_core.store import ResultStore

CURVATURES = [0.5, 1.0, 2.0, 8.0]


def quadratic_start(data, offset: torch.Tensor) -> list[torch.Tensor]:
    """W0 = W* + offset, W* the exact fit of the planted examples (MSE on one-hot targets): L(W0) = 0.5 mean ||X E||^2."""
    targets = torch.nn.functional.one_hot(data.y_train, data.n_classes).double()
    optimum = torch.linalg.solve(data.x_train.double(), targets)
    return [(optimum + offset)[None]]


@pytest.mark.parametrize("k", range(len(CURVATURES)))
@pytest.mark.parametrize("multiplier", [1.0, 0.1])
def test_along_an_eigenvector_the_critical_step_is_two_over_lambda(k, multiplier):
    data = planted(CURVATURES)
    offset = torch.zeros(len(CURVATURES), 3, dtype=torch.float64)
    offset[k] = torch.tensor([1.0, -2.0, 0.5])  # the gradient diag(lambda) E lies in row k: an eigenvector
    config = PredictorConfig(critical_rtol=1e-4)
    search = critical_lr(Linear(len(CURVATURES), 3, multiplier), quadratic_start(data, offset),
                         data.x_train.double(), data.y_train, "mse", config)  # fmt: skip
    edge = 2 / (multiplier * CURVATURES[k])
    assert search.status == "converged" and search.bracket[0] <= edge <= search.bracket[1]
    assert search.bracket[1] / search.bracket[0] <= 1 + config.critical_rtol and search.eta == search.bracket[0]


def test_in_any_direction_the_loss_rises_where_the_planted_curvature_says():
    """A random offset: f(eta) = L0 - eta g'Pg + eta^2 g'PHPg / 2, so the step stops lowering the loss at
    eta_c = 2 g'Pg / g'PHPg, H = diag(lambda) per output column and P = m I."""
    data, multiplier = planted(CURVATURES), 0.3
    offset = torch.randn(len(CURVATURES), 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    hessian = torch.diag(torch.tensor(CURVATURES, dtype=torch.float64))
    gradient = hessian @ offset
    edge = 2 * (gradient * gradient).sum() / (multiplier * (gradient * (hessian @ gradient)).sum())
    config = PredictorConfig(critical_rtol=1e-5)
    search = critical_lr(Linear(len(CURVATURES), 3, multiplier), quadratic_start(data, offset),
                         data.x_train.double(), data.y_train, "mse", config)  # fmt: skip
    assert search.bracket[0] <= float(edge) <= search.bracket[1]
    assert search.eta == pytest.approx(float(edge), rel=1e-5)


def test_a_bracket_that_misses_the_edge_is_censored_not_guessed():
    data = planted(CURVATURES)
    offset = torch.zeros(len(CURVATURES), 3, dtype=torch.float64)
    offset[1, 0] = 1.0  # lambda = 1: the edge is eta = 2
    model, start = Linear(len(CURVATURES), 3), quadratic_start(data, offset)
    above = critical_lr(model, start, data.x_train.double(), data.y_train, "mse", PredictorConfig(critical_bounds=(1e-3, 1.0)))
    below = critical_lr(model, start, data.x_train.double(), data.y_train, "mse", PredictorConfig(critical_bounds=(3.0, 30.0)))
    assert (above.status, above.eta, above.bracket) == ("above", None, (1.0, math.inf))
    assert (below.status, below.eta, below.bracket) == ("below", None, (0.0, 3.0))
    assert above.record()["critical_forward_examples"] == (1 + 9) * len(CURVATURES)  # the gradient's pass and the ladder


def test_on_a_relu_network_the_bracket_straddles_the_first_rise_and_costs_are_counted():
    data = load_dataset("gaussians", dim=8, n_train_per_class=64, n_val_per_class=32)
    net = NetworkSpec(depth=2, width=16, in_dim=data.in_dim, out_dim=data.n_classes)
    model, train = MLP(net), TrainConfig(batch_size=32)
    x, y = first_batch(data, 0, train.batch_size, "cpu", torch.float32)
    params = model.init_params([0], torch.float32, "cpu")
    search = critical_lr(model, params, x, y, "cross_entropy")
    start, direction = first_update(model, params, x, y, "cross_entropy")
    low, high = losses_along(model, params, direction, list(search.bracket), x, y, "cross_entropy")
    assert search.status == "converged" and low < start <= high and start == search.loss
    below = [loss < start for eta, loss in zip(search.etas[:9], search.losses) if eta <= search.bracket[0]]
    assert all(below), "every ladder rate below the bracket lowers the loss: the first rise is bracketed"
    record = search.record()
    assert record["critical_forward_examples"] == (1 + len(search.etas)) * 32 and record["critical_backward_examples"] == 32


def test_the_kind_stores_every_predictor_with_its_cost_per_seed():
    data = load_dataset("gaussians", dim=8, n_train_per_class=128, n_val_per_class=64)
    net = NetworkSpec(depth=2, width=16, in_dim=data.in_dim, out_dim=data.n_classes)
    run = Run(data, net, seeds=(0, 1))
    records = predictors_at_init(run, TrainConfig(batch_size=32), SharpnessConfig(subset_size=64),
                                 RangeTestConfig(steps=40, skip_start=4, skip_end=2), PredictorConfig(hvp_timings=2))  # fmt: skip
    assert len(records) == 2
    for (result, ledger), seed in zip(records, (0, 1)):
        assert result["critical_status"] == "converged" and result["critical_lr"] > 0
        assert {result[f"range_{rule}"] is not None for rule in ("steep", "minimum", "valley")} == {True}
        assert result["range_forward_examples"] == 32 * result["range_steps_used"] <= 32 * 40
        assert result["hvp_seconds"] > 0 and result["hvp_examples"] == 64 and result["hvp_products_timed"] == 2
        assert [entry["protocol"] for entry in ledger] == ["range_test", "critical_lr"]
        assert ledger[0]["seed"] == seed and len(ledger[0]["lrs"]) == result["range_steps_used"]
    assert records[0][0]["critical_lr"] != records[1][0]["critical_lr"]  # seeds differ in weights and first batch


def test_a_predictors_grid_sweeps_into_verified_records(tmp_path):
    """The kind through the registry: its sections read from YAML, a record per seed that the store verifies (a
    censored bracket's infinity included), its ledger the curves."""
    grid = {"name": "predictors_tiny", "kind": "predictors", "datasets": ["gaussians"],
            "dataset_options": {"gaussians": {"dim": 8, "n_train_per_class": 128, "n_val_per_class": 64}},
            "depths": [1], "widths": [8], "seeds": [0, 1], "train": {"batch_size": 32},
            "sharpness": {"subset_size": 64}, "range_test": {"steps": 30, "skip_start": 3, "skip_end": 2},
            "predictors": {"critical_bounds": [1.0e-4, 1.0e-3], "hvp_timings": 1}}  # fmt: skip
    frame = sweep.run_sweep(grid, tmp_path, run=RunOptions(device="cpu"), progress=False)
    assert len(frame) == 2 and set(frame["kind"]) == {"predictors"}
    assert list(frame["critical_status"]) == ["above", "above"] and frame["critical_lr"].isna().all()
    records = ResultStore(tmp_path).records()
    assert [r["result"]["critical_bracket"] for r in records] == [[1e-3, math.inf]] * 2
    assert all(len(r["ledger"][0]["lrs"]) == r["result"]["range_steps_used"] for r in records)


# ----------------------------------------------------------------------------------------------------------
# the tables, on planted frames


def planted_frames(odd: tuple[int, int] = (2, 64)) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """eta* = 3 (d w)^-0.5 exactly (the power law predicts every held-out cell exactly); lambda_1 = 30 / eta* (so
    eta* = 15 x 2 / lambda_1) but in cell ``odd``, where lambda_1 = 120 / eta*; the critical LR eta* / 2, the range
    test's suggestions eta* / 10, / 20, / 40; costs as numbers to check."""
    networks = [(d, w, s) for d in (1, 2, 4) for w in (16, 64, 256) for s in (0, 1)]
    eta = pd.DataFrame([{"dataset": "gaussians", "depth": d, "width": w, "seed": s, "eta_star": 3 / math.sqrt(d * w),
                         "status": "converged", "network.parameterisation": "standard", "network.input_lr_factor": 0.1,
                         "grid": "planted", "provenance.wall_time_s": 6.0, "provenance.seeds_batched": 2}
                        for d, w, s in networks])  # fmt: skip
    sharpness = eta[["dataset", "depth", "width", "seed"]].assign(
        lambda_1=[(120 if (d, w) == odd else 30) / e for d, w, e in zip(eta["depth"], eta["width"], eta["eta_star"])],
        lambda_1_n_products=10, lambda_1_eff=30 / eta["eta_star"], lambda_1_eff_n_products=12)
    predictions = eta[["dataset", "depth", "width", "seed"]].assign(**{
        "train.batch_size": 128, "provenance.device": "cpu", "critical_lr": eta["eta_star"] / 2,
        "critical_forward_examples": 16 * 128, "critical_backward_examples": 128, "critical_wall_time_s": 0.01,
        "range_steep": eta["eta_star"] / 10, "range_minimum": eta["eta_star"] / 20, "range_valley": eta["eta_star"] / 40,
        "range_forward_examples": 90 * 128, "range_backward_examples": 90 * 128, "range_wall_time_s": 0.5,
        "hvp_examples": 2048, "hvp_setup_s": 0.1, "hvp_seconds": 0.02})  # fmt: skip
    ledger = eta[["dataset", "depth", "width", "seed"]].loc[eta.index.repeat(3)].assign(steps=[100, 200, 300] * len(eta))
    return eta, sharpness, predictions, ledger


def test_each_predictor_is_scored_against_the_planted_eta_star():
    eta, sharpness, predictions, ledger = planted_frames()
    frame = pt.predictor_frame(predictions, eta, sharpness)
    assert len(frame) == len(eta) * len(pt.PREDICTORS)
    table = pt.predictor_table(frame, pt.search_cost(eta, ledger)).set_index("predictor")
    critical = table.loc[pt.PREDICTORS["critical"]]
    assert critical["bias"] == pytest.approx(math.log(0.5)) and critical["spread"] == pytest.approx(0, abs=1e-12)
    assert critical["rank ρ"] == pytest.approx(1) and critical["raw factor"] == pytest.approx(2)
    assert critical["factor"] == pytest.approx(1) and critical["c"] == pytest.approx(2)
    assert critical["cost (SGD steps)"] == pytest.approx((16 * 128 + 2 * 128) / (3 * 128))
    assert table.loc[pt.PREDICTORS["range_valley"], "c"] == pytest.approx(40)
    law = table.loc[pt.PREDICTORS["power_law"]]
    assert law["factor"] == pytest.approx(1) and law["cost (SGD steps)"] == 0
    edge = table.loc[pt.PREDICTORS["edge_eff"]]
    assert edge["c"] == pytest.approx(15) and edge["cost (SGD steps)"] == pytest.approx(2 * 12 * 2048 * 3 / (3 * 128))
    assert edge["wall (s)"] == pytest.approx(0.1 + 12 * 0.02)
    search = table.loc[pt.SEARCH]
    assert search["cost (SGD steps)"] == 600 and search["wall (s)"] == 3.0 and search["networks"] == len(eta)


def test_the_constant_of_a_held_out_cell_is_fitted_on_the_other_cells_only():
    """In the odd cell 2 / lambda_1 is 4x further from eta* than elsewhere: its held-out prediction carries the
    other cells' constant (15) and misses by 4; every other cell's constant includes the odd cell's 60."""
    eta, sharpness, predictions, _ = planted_frames(odd=(2, 64))
    frame = pt.held_out(pt.predictor_frame(predictions, eta, sharpness))
    edge = frame[frame["predictor"] == "edge"]
    odd = edge[(edge["depth"] == 2) & (edge["width"] == 64)]
    assert np.allclose(odd["held_out"] / odd["eta_star"], 0.25)
    rest = edge.drop(odd.index)
    expected = 4 ** (1 / 8)  # ln c over the 8 other cells: 7 at ln 15, the odd one at ln 60
    assert np.allclose(rest["held_out"] / rest["eta_star"], expected)
    error = pt.predictor_table(frame).set_index("predictor").loc[pt.PREDICTORS["edge"], "held-out error"]
    assert error == pytest.approx((2 * math.log(4) + 16 * math.log(expected)) / 18)


def test_the_practitioners_sentence_names_the_closest_and_the_cheapest_near_it():
    rows = [("2 / λ₁", 0.30, 200.0), ("critical LR, first update", 0.28, 6.0), ("range test: valley", 0.5, 90.0),
            ("range test: steepest", 0.2, 90.0)]
    table = pd.DataFrame([{"predictor": p, "dataset": "mnist", "held-out error": e, "factor": math.exp(e),
                           "rank ρ": 0.9, "networks": 40, "cost (SGD steps)": c} for p, e, c in rows]
                         + [{"predictor": pt.SEARCH, "dataset": "mnist", "cost (SGD steps)": 9000.0}])  # fmt: skip
    sentence = pt.practitioner_sentence(table, "mnist")
    assert sentence.startswith("range test: steepest comes closest: a typical factor 1.22 from a held-out network's η*")
    assert "for 90 SGD steps per network (0.01 of one η* search's)" in sentence
    assert sentence.endswith("within 1.5x of its error, critical LR, first update is the cheapest (a typical factor "
                             "1.32 for 6 SGD steps).")  # 0.28 <= 1.5 x 0.2; 2 / λ₁'s 0.30 is too, but dearer
    assert pt.practitioner_sentence(table, "cifar10").startswith("no predictor")


def test_a_predictor_free_given_the_store_is_named_as_such():
    table = pd.DataFrame([{"predictor": p, "dataset": "mnist", "held-out error": e, "factor": math.exp(e), "rank ρ": 0.5,
                           "networks": 40, "cost (SGD steps)": c}
                          for p, e, c in [("range test: valley", 0.2, 90.0), (pt.PREDICTORS["power_law"], 0.25, 0.0)]])  # fmt: skip
    assert pt.practitioner_sentence(table, "mnist").endswith(
        f"{pt.PREDICTORS['power_law']} is the cheapest (a typical factor 1.28 for no compute beyond the store).")
    table.loc[1, "held-out error"] = 0.1
    assert "for no compute beyond the store per network." in pt.practitioner_sentence(table, "mnist")
