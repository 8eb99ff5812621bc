"""The milr command line: instant help read off the config dataclasses, JSON results, resumable sweeps."""

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import yaml

from milr_core import cli, search, sweep
from milr_core.config import RunOptions, SearchConfig, SharpnessConfig, TrainConfig
from milr_core.network import NetworkSpec

COMMANDS = ("eta-star", "sharpness", "sweep", "experiment", "predict", "reproduce")
TINY_GRID = {
    "name": "tiny",
    "kind": "eta_star",
    "datasets": ["gaussians"],
    "dataset_options": {"gaussians": {"dim": 8, "n_train_per_class": 256, "n_val_per_class": 64}},
    "depths": [1],
    "widths": [8],
    "seeds": [0, 1],
    "train": {"batch_size": 32, "max_steps": 20, "eval_every": 10},
    "search": {"lr_bounds": [0.01, 1.0], "rtol": 0.5},
}


def run(capsys, *argv) -> dict:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


def test_help_is_instant_and_imports_no_torch():
    started = time.perf_counter()
    shown = subprocess.run([sys.executable, "-m", "milr_core.cli", "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - started < 1.5
    assert "eta-star" in shown.stdout and not shown.stderr
    code = "import sys; from milr_core import cli; cli.build_parser(); print({'torch', 'pandas'} & set(sys.modules))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "set()"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_is_plain_text(capsys, command):
    assert cli.main([command, "--help"] if command else ["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: milr")
    for markup in ("``", ":class:", ":func:", ":mod:", "`"):
        assert markup not in text


@pytest.mark.parametrize(
    "command, sections",
    [
        ("eta-star", [NetworkSpec, TrainConfig, SearchConfig, RunOptions]),
        ("sharpness", [NetworkSpec, SharpnessConfig, RunOptions]),
        ("sweep", [RunOptions]),
    ],
)
def test_every_field_is_a_flag_with_the_dataclass_default(command, sections):
    """A new field appears as a flag by itself, with its default from the one place it lives."""
    parser = cli.build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    flags = {}
    for action in subparser._actions:  # the first action of a dest is its field's flag (--quiet shares progress's)
        flags.setdefault(action.dest, action)
    excluded = {"eta-star": {"workers", "in_dim", "out_dim"}, "sharpness": {"workers", "speculation", "lanes", "in_dim", "out_dim"}}
    for cls in sections:
        for field in dataclasses.fields(cls):
            if field.name in excluded.get(command, ()):
                continue
            key = {NetworkSpec: "network", TrainConfig: "train", SearchConfig: "search", SharpnessConfig: "sharpness",
                   RunOptions: "run"}[cls]  # fmt: skip
            action = flags[f"{key}.{field.name}"]
            assert action.option_strings[0] == "--" + field.name.replace("_", "-")
            if field.default is dataclasses.MISSING:  # eta-star's depth and width: its factory's, with --model
                assert action.required or (command, field.name) in {("eta-star", "depth"), ("eta-star", "width")}
            elif (cls, field.name) == (RunOptions, "progress"):  # None on the command line: a terminal decides
                assert action.default is None and field.metadata["help"] in action.help
            else:
                assert action.default == field.default and field.metadata["help"] in action.help


def test_eta_star_prints_a_json_result_per_seed(capsys, tmp_path):
    out = tmp_path / "eta.json"
    result = run(
        capsys, "eta-star", "--dataset", "gaussians", "--depth", "2", "--width", "16", "--seeds", "2",
        "--lr-bounds", "0.01", "1", "--rtol", "0.3", "--batch-size", "64", "--max-steps", "40", "--eval-every", "10",
        "--device", "cpu", "--threads", "1", "--ledger", "--out", str(out),
    )  # fmt: skip
    assert [s["seed"] for s in result["seeds"]] == [0, 1]
    assert result["threshold"] == 0.8 and result["method"] == "bisection" and result["rtol"] == 0.3
    for seed in result["seeds"]:
        if seed["status"] == "converged":
            lo, hi = seed["bracket"]
            assert seed["eta_star"] == lo and hi / lo <= 1.3
        assert seed["ledger"] and {"lr", "outcome", "steps", "final_accuracy", "final_loss"} <= set(seed["ledger"][0])
    assert json.loads(out.read_text()) == result


def test_sharpness_prints_lambda_1_per_seed(capsys):
    result = run(
        capsys, "sharpness", "--dataset", "gaussians", "--depth", "1", "--width", "8", "--subset-size", "64",
        "--tol", "1e-4", "--no-effective", "--device", "cpu", "--threads", "1",
    )  # fmt: skip
    (seed,) = result["seeds"]
    assert seed["lambda_1"] > 0 and seed["lambda_1_converged"] and seed["lambda_1_residual"] <= 1e-4
    assert "lambda_1_eff" not in seed


def test_an_unexpected_failure_is_one_line_with_status_1(capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the solver gave up")

    monkeypatch.setattr(search, "find_eta_star", fail)
    assert cli.main(["eta-star", "--dataset", "gaussians", "--depth", "1", "--width", "8", "--threads", "1"]) == 1
    assert capsys.readouterr().err == "error: RuntimeError: the solver gave up (--debug shows the traceback)\n"


def test_sweep_refuses_to_mix_then_resumes_without_computing(capsys, tmp_path, monkeypatch):
    grid, store = tmp_path / "tiny.yaml", tmp_path / "store"
    grid.write_text(yaml.safe_dump(TINY_GRID))
    argv = ["sweep", str(grid), "--store", str(store), "--device", "cpu", "--threads", "1"]
    assert run(capsys, *argv) == {"grid": "tiny", "store": str(store), "cells": 2, "stored": 2}
    assert cli.main(argv) == 2
    assert "already holds 2 of the 2 cells" in capsys.readouterr().err
    monkeypatch.setattr(sweep, "run_group", lambda *a, **k: pytest.fail("a stored cell was computed again"))
    assert run(capsys, *argv, "--resume")["stored"] == 2


def test_experiment_computes_the_chosen_part_then_reads_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    args = ["experiment", "sensitivity", "--profile", "smoke", "--widths", "16", "--variants", "t=0.70", "--depths", "2",
            "--seeds", "0", "--device", "cpu", "--threads", "1"]  # fmt: skip
    result = run(capsys, *args)  # the smoke sensitivity grid is gaussians only
    assert result["grids"] == {"sensitivity_gaussians_smoke": {"cells": 1, "stored": 1}}
    assert len(list((tmp_path / "smoke").glob("*.json"))) == 1
    monkeypatch.setattr(sweep, "run_group", lambda *a, **k: pytest.fail("--no-compute computed"))
    assert run(capsys, *args, "--no-compute")["grids"] == result["grids"]
    assert cli.main(["experiment", "sensitivity", "--profile", "smoke", "--widths", "64", "--no-compute"]) == 2
    assert "holds none of experiment 'sensitivity'" in capsys.readouterr().err


def test_experiment_lists_every_grid_of_the_part_those_with_nothing_stored_too(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    part = ["--depths", "1", "--seeds", "0", "--device", "cpu", "--threads", "1"]
    run(capsys, "experiment", "power_law", "--profile", "smoke", "--datasets", "gaussians", "--widths", "16", *part)
    read = run(capsys, "experiment", "power_law", "--profile", "smoke", "--no-compute", "--widths", "16", "32", *part)
    assert read["grids"] == {"power_law_gaussians_smoke": {"cells": 2, "stored": 1},
                             "power_law_mnist_smoke": {"cells": 1, "stored": 0},
                             "power_law_cifar10_smoke": {"cells": 1, "stored": 0}}  # fmt: skip
