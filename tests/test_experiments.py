"""Experiments: the paper profile reads the committed store unless asked to compute, and says what it lacks."""

import pytest

from milr_core import experiments, sweep


def test_profiles_compute_by_default_only_at_smoke(monkeypatch):
    monkeypatch.delenv("MILR_COMPUTE", raising=False)
    assert experiments.computes_missing("smoke") and not experiments.computes_missing("paper")
    assert experiments.computes_missing("paper", compute=True)
    monkeypatch.setenv("MILR_COMPUTE", "1")
    assert experiments.computes_missing("paper") and not experiments.computes_missing("smoke", compute=False)
    monkeypatch.setenv("MILR_COMPUTE", "0")
    assert not experiments.computes_missing("smoke")
    monkeypatch.setenv("MILR_COMPUTE", "yes")
    with pytest.raises(ValueError, match="MILR_COMPUTE must be 1"):
        experiments.computes_missing("smoke")


def test_read_only_experiment_on_an_empty_store_fails_clearly_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    monkeypatch.delenv("MILR_COMPUTE", raising=False)
    monkeypatch.setattr(sweep, "run_group", lambda *args: pytest.fail("a read-only experiment computed a cell"))
    with pytest.raises(LookupError, match="holds none of experiment 'sensitivity'"):
        experiments.run_experiment("sensitivity", "smoke", compute=False)  # gaussians only
    assert not list(tmp_path.rglob("*.json"))


def test_coverage_counts_the_stored_cells_of_every_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    monkeypatch.setattr(experiments, "experiments", lambda: ["sensitivity"])  # its smoke grid is gaussians only
    (grid,) = experiments.experiment_grids("sensitivity", "smoke")
    one_variant = grid | {"variants": grid["variants"][:1], "widths": grid["widths"][:1]}
    sweep.run_sweep(one_variant, tmp_path / "smoke", progress=False)
    (row,) = experiments.coverage("smoke").to_dict("records")
    n_cells = len(grid["variants"]) * len(grid["depths"]) * len(grid["widths"]) * len(grid["seeds"])
    assert row["cells"] == n_cells and row["stored"] == len(grid["depths"]) * len(grid["seeds"])
    assert row["widths"] == str(grid["widths"][0]) and row["devices"].startswith("cpu")
