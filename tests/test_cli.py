"""The milr command line: JSON results, and bad input refused before any data is loaded."""

import json

import pytest

from milr_core import cli, data


def run(capsys, *argv) -> dict:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_eta_star_prints_a_json_result_per_seed(capsys, tmp_path):
    out = tmp_path / "eta.json"
    result = run(
        capsys, "eta-star", "--dataset", "gaussians", "--depth", "2", "--width", "16", "--seeds", "2",
        "--lr-min", "0.01", "--lr-max", "1", "--rtol", "0.1", "--lrs-per-round", "4", "--batch-size", "64",
        "--max-steps", "100", "--eval-every", "10", "--device", "cpu", "--ledger", "--out", str(out),
    )  # fmt: skip
    assert [s["seed"] for s in result["seeds"]] == [0, 1]
    assert result["threshold"] == 0.8 and result["method"] == "batched"
    for seed in result["seeds"]:
        if seed["status"] == "converged":
            lo, hi = seed["bracket"]
            assert seed["eta_star"] == lo and hi / lo <= 1.1
        assert seed["ledger"] and {"lr", "outcome", "steps", "final_accuracy", "final_loss"} <= set(seed["ledger"][0])
    assert json.loads(out.read_text()) == result


def test_sharpness_prints_lambda_1_per_seed(capsys):
    result = run(
        capsys, "sharpness", "--dataset", "gaussians", "--depth", "1", "--width", "8", "--subset", "64",
        "--tol", "1e-4", "--device", "cpu",
    )  # fmt: skip
    (seed,) = result["seeds"]
    assert seed["lambda_1"] > 0 and seed["converged"] and seed["residual"] <= 1e-4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eta-star", "--dataset", "imagenet", "--depth", "2", "--width", "8"], "unknown dataset"),
        (["eta-star", "--dataset", "mnist", "--depth", "0", "--width", "8"], "--depth must be >= 1"),
        (["eta-star", "--dataset", "mnist", "--depth", "2", "--width", "0"], "--width must be >= 1"),
        (["eta-star", "--dataset", "mnist", "--depth", "2", "--width", "8", "--lr-min", "1", "--lr-max", "0.1"], "inverted"),
        (["eta-star", "--dataset", "mnist", "--depth", "2", "--width", "8", "--lr-min", "-1"], "positive"),
        (["eta-star", "--dataset", "mnist", "--depth", "2", "--width", "8", "--threshold", "1.5"], "threshold"),
        (["sharpness", "--dataset", "mnist", "--depth", "2", "--width", "8", "--tol", "0"], "--tol"),
        (["sharpness", "--dataset", "mnist", "--depth", "2", "--width", "8", "--subset", "0"], "--subset"),
        (["experiment", "power_lw"], "unknown experiment 'power_lw'"),
        (["experiment", "power_law", "--widths", "3"], "no cell of experiment 'power_law'"),
    ],
)
def test_bad_input_is_refused_before_any_data_is_loaded(monkeypatch, argv, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("data was loaded before the arguments were checked")

    monkeypatch.setattr(data, "load_dataset", no_loading)
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)


def test_experiment_computes_the_chosen_part_then_reads_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    args = ["experiment", "sensitivity", "--profile", "smoke", "--widths", "16", "--variants", "t=0.70", "--device", "cpu"]
    result = run(capsys, *args)  # the smoke sensitivity grid is gaussians only: depth 2, seeds 0 and 1
    assert result["grids"] == {"sensitivity_gaussians_smoke": {"cells": 2, "stored": 2}}
    assert len(list((tmp_path / "smoke").glob("*.json"))) == 2
    assert run(capsys, *args, "--no-compute")["grids"] == result["grids"]
    with pytest.raises(SystemExit, match="holds none of experiment 'sensitivity'"):
        cli.main(["experiment", "sensitivity", "--profile", "smoke", "--widths", "64", "--no-compute"])
