"""Experiments: the paper profile reads the committed store unless asked to compute, and says what it lacks."""

import re
import shutil
import subprocess

import pytest

import dataclasses
import json

from milr_core import experiments, sweep
from milr_core.config import RunOptions
from milr_core.repository import committed_store
from milr_core.store import ResultStore


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
    one_variant = dataclasses.replace(grid, variants=grid.variants[:1], widths=grid.widths[:1])
    sweep.run_sweep(one_variant, tmp_path / "smoke", run=RunOptions(device="cpu"), progress=False)
    (row,) = experiments.coverage("smoke").to_dict("records")
    assert row["cells"] == grid.n_cells and row["stored"] == len(grid.depths) * len(grid.seeds)
    assert row["widths"] == str(grid.widths[0]) and row["devices"].startswith("cpu")
    origins = [record["provenance"] for record in ResultStore(tmp_path / "smoke").records()]
    assert row["hours"] > 0 and row["hours"] == pytest.approx(sum(o["wall_time_s"] / o["seeds_batched"] for o in origins) / 3600)


def test_committed_paper_store_holds_only_verified_paper_cells_with_provenance():
    """Every committed record verifies (strict JSON, digest, hash) and is a cell of a paper grid; reading needs no data."""
    store = ResultStore(committed_store("paper"))
    known = set()
    for name in experiments.experiments():
        for grid in experiments.experiment_grids(name, "paper"):
            known |= {cell.hash for cell in sweep.expand(grid, sweep.stored_identity)}
    stored = set(store.hashes())
    assert stored, "no committed paper results"
    assert len(store.records()) == len(stored), "some committed records do not verify"
    assert stored <= known, f"{len(stored - known)} records match no cell of the paper grids (stale hashes)"
    commits = set()
    for record in store.records():
        origin = record["provenance"]
        assert origin["device"] and origin["torch"], record["hash"]
        commits.add(origin["git_commit"].removesuffix("+dirty"))  # +dirty: tracked files differed from it
    repo = committed_store("paper").parent.parent
    git = (repo / ".git").exists() and shutil.which("git")
    shallow = git and subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], cwd=repo, capture_output=True, text=True
    ).stdout.strip() == "true"  # fmt: skip
    for commit in commits:
        assert re.fullmatch(r"[0-9a-f]{40}", commit), f"a record names no git commit: {commit!r}"
        if git and not shallow:  # a shallow clone lacks the history to check against
            ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=repo)
            assert ancestor.returncode == 0, f"records were computed at {commit}, which is not in this history"


def test_every_committed_sharpness_record_converged():
    """Issue 16's floor: no eigenvalue in the committed store is reported without reaching its tolerance."""
    unconverged = [
        (record["hash"][:12], key)
        for record in ResultStore(committed_store("paper")).records()
        if record["cell"]["kind"] == "sharpness"
        for key in ("lambda_1_converged", "lambda_1_eff_converged", "lambda_1_ggn_converged")
        if record["result"].get(key) is not True
    ]
    assert not unconverged, f"{len(unconverged)} unconverged: {unconverged[:5]}"


def test_the_h200_records_of_2026_12_04_are_committed_and_verified():
    """Issue 23: the 99 records the device session wrote on an H200 (listed in its fill log) are in the paper store,
    each verified (strict JSON, digest, hash), a cell of a current paper grid, and naming the H200 and its torch."""
    run = committed_store("paper").parent.parent / "benchmarks" / "device-runs" / "2026-12-04-h200"
    fill = json.loads((run / "fill.json").read_text())
    listed = [h for group in fill["groups"] if group["status"] == "filled" for h in group["records"]]
    assert len(listed) == len(set(listed)) == 99
    known = set()
    for name in experiments.experiments():
        for grid in experiments.experiment_grids(name, "paper"):
            known |= {cell.hash for cell in sweep.expand(grid, sweep.stored_identity)}
    store = ResultStore(committed_store("paper"))
    for cell_hash in listed:
        record = store.read(cell_hash)
        assert record is not None, f"{cell_hash} is not in the store or does not verify"
        assert cell_hash in known, f"{cell_hash} is no cell of a current paper grid"
        origin = record["provenance"]
        assert (origin["device"], origin["torch"], origin["seeds_batched"]) == ("NVIDIA H200", "2.11.0+cu130", 3)
