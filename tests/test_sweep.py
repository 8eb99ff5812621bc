"""Sweeps: grids are checked before any compute, cells hash stably, and a killed sweep resumes losing nothing."""

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from milr_core import sweep
from milr_core.store import ResultStore, dumps

REPO = Path(__file__).resolve().parent.parent
GRID = {
    "name": "tiny",
    "datasets": ["gaussians"],
    "dataset_options": {"gaussians": {"dim": 8, "n_train_per_class": 256, "n_val_per_class": 128}},
    "depths": [1, 2],
    "widths": [16],
    "seeds": [0, 1],
    "train": {"batch_size": 32, "max_steps": 40, "eval_every": 10},
    "search": {"lr_bounds": [0.01, 10.0], "rtol": 0.3, "lrs_per_round": 4},
}


def results(store: ResultStore) -> dict[str, str]:
    """Each record minus its provenance, as text (so NaN losses compare equal)."""
    return {r["hash"]: dumps({k: v for k, v in r.items() if k != "provenance"}) for r in store.records()}


def assert_same_results(a: ResultStore, b: ResultStore) -> None:
    """Records equal but for provenance, to the bit: a seed's arithmetic does not depend on the seeds
    batched with it, and a resumed sweep may batch a seed alone."""
    assert a.hashes() == b.hashes()
    for cell_hash in a.hashes():
        records = [store.get(cell_hash) | {"provenance": None} for store in (a, b)]
        assert dumps(records[0]) == dumps(records[1])


def count_calls(monkeypatch) -> list[list[int]]:
    """Record the seeds of every find_eta_star call the sweep makes."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(list(kwargs["seeds"]))
        return find_eta_star(*args, **kwargs)

    find_eta_star = sweep.find_eta_star
    monkeypatch.setattr(sweep, "find_eta_star", counted)
    return calls


def test_cells_and_hashes(monkeypatch):
    given = GRID | {"variants": [{"name": "base"}, {"name": "full", "network": {"input_lr_factor": 1}}]}
    snapshot = copy.deepcopy(given)
    grid = sweep.load_grid(given)
    assert given == snapshot and sweep.load_grid(grid) == grid  # a notebook's dict is left alone; idempotent
    datasets = sweep.load_datasets(grid)
    cells = sweep.expand(grid, datasets)
    assert len(cells) == 2 * 2 * 2 and len({c.hash for c in cells}) == len(cells)
    assert [len(g) for g in sweep.seed_groups(cells)] == [2, 2, 2, 2]
    assert [c.hash for c in sweep.expand(grid, datasets)] == [c.hash for c in cells]  # stable
    spec = cells[0].spec
    assert spec["threshold"] == 0.8 and spec["train"]["epochs"] == 2.0 and spec["search"]["max_widenings"] == 6
    assert len(spec["data"]["fingerprint_sha256"]) == 64 and spec["data"]["options"]["dim"] == 8
    same = sweep.load_grid(GRID | {"name": "other", "train": GRID["train"] | {"epochs": 2}, "threshold": 0.8})
    assert [c.hash for c in sweep.expand(same, datasets)] == [c.hash for c in cells[:4]]  # defaults, labels
    monkeypatch.setattr(sweep, "ENGINE_VERSION", "bumped")
    assert sweep.expand(grid, datasets)[0].hash != cells[0].hash


@pytest.mark.parametrize(
    "change, message",
    [
        ({"depths": []}, "depths is empty, so the grid has no cells"),
        ({"lr": 0.1}, "unknown key(s) 'lr' in grid; allowed: name, kind, datasets"),
        ({"train": {"batch_size": 32, "lr": 0.1}}, "unknown key(s) 'lr' in grid: train; allowed: batch_size, epochs"),
        ({"depths": 3}, "grid: depths must be of type list[int], got 3"),
        ({"widths": [16, "wide"]}, "grid: widths[1] must be of type int, got 'wide'"),
        ({"depths": [0, 1]}, "every entry of depths must be >= 1"),
        ({"datasets": ["imagenet"]}, "unknown dataset(s) imagenet; known: mnist"),
        ({"kind": "hessian"}, "kind must be one of eta_star, sharpness"),
        ({"search": {"lr_bounds": [1.0, 0.1]}}, "bounds are inverted"),
        ({"variants": [{"name": "a", "network": {"input_lr_factor": -1}}]}, "variants[0] (a): NetworkSpec.input_lr"),
        ({"variants": [{"name": "a"}, {"name": "b"}]}, "variants 'a' and 'b' have identical settings"),
        ({"dataset_options": {"gaussians": {"dims": 8}}}, "gaussians: unknown option(s) dims"),
    ],
)
def test_bad_grids_fail_before_any_compute(tmp_path, monkeypatch, change, message):
    monkeypatch.setattr(sweep, "find_eta_star", lambda *a, **k: pytest.fail("computed a cell of a bad grid"))
    grid = {key: value for key, value in (GRID | change).items() if value is not None}
    with pytest.raises(sweep.GridError) as error:
        sweep.run_sweep(grid, tmp_path / "store", progress=False)
    assert message in str(error.value)
    assert not (tmp_path / "store").exists()


def test_malformed_and_missing_grid_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("depths: [1, 2\nwidths: [16]\n")
    with pytest.raises(sweep.GridError, match=r"grid .*bad.yaml is not valid YAML"):
        sweep.run_sweep(bad, tmp_path / "store", progress=False)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(sweep.GridError, match="must be a mapping of settings, got list"):
        sweep.load_grid(bad)
    bad.write_text(yaml.safe_dump({k: v for k, v in GRID.items() if k != "seeds"}))
    with pytest.raises(sweep.GridError, match="lacks the required key.s. seeds"):
        sweep.load_grid(bad)
    with pytest.raises(sweep.GridError, match="cannot read grid"):
        sweep.load_grid(tmp_path / "absent.yaml")


def test_resume_skips_finished_cells_and_batches_seeds(tmp_path, monkeypatch):
    calls = count_calls(monkeypatch)
    frame = sweep.run_sweep(GRID, tmp_path / "a", progress=False)
    assert calls == [[0, 1], [0, 1]]  # one batched call per seed group
    assert len(frame) == 4 and frame["eta_star"].notna().all() and set(frame["variant"]) == {"base"}
    assert len(sweep.run_sweep(GRID, tmp_path / "a", progress=False)) == 4 and len(calls) == 2
    with pytest.raises(FileExistsError, match="already holds 4 of the 4 cells"):
        sweep.run_sweep(GRID, tmp_path / "a", resume=False, progress=False)
    # A seed's record does not depend on the seeds batched with it.
    sweep.run_sweep(GRID | {"seeds": [1]}, tmp_path / "b", progress=False)
    sweep.run_sweep(GRID | {"seeds": [0]}, tmp_path / "b", progress=False)
    assert_same_results(ResultStore(tmp_path / "a"), ResultStore(tmp_path / "b"))


def test_read_only_sweep_returns_the_stored_cells_and_computes_nothing(tmp_path, monkeypatch):
    calls = count_calls(monkeypatch)
    sweep.run_sweep(GRID | {"depths": [2]}, tmp_path, progress=False)  # half of GRID's cells
    stored = ResultStore(tmp_path).hashes()
    frame = sweep.run_sweep(GRID, tmp_path, compute=False, progress=False)
    assert len(calls) == 1 and ResultStore(tmp_path).hashes() == stored
    assert sorted(frame["hash"]) == stored and set(frame["depth"]) == {2}
    assert (frame["grid_cells"] == 4).all() and (frame["grid_stored"] == 2).all()
    full = sweep.run_sweep(GRID, tmp_path, progress=False)
    assert len(calls) == 2 and (full["grid_stored"] == 4).all() and list(full["depth"]) == [1, 1, 2, 2]


def test_sigkill_mid_grid_then_resume(tmp_path, monkeypatch):
    grid = GRID | {"depths": [1, 2, 3, 4]}
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    killed = ResultStore(tmp_path / "killed")
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "milr_core.sweep", str(grid_file), "--store", str(killed.path)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while not killed.hashes() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = {h: (killed.file(h).read_text(), killed.file(h).stat().st_mtime_ns) for h in killed.hashes()}
    assert process.returncode == -signal.SIGKILL, log.read_text()
    assert 1 <= len(finished) < 8, "the kill must land mid-grid"

    calls = count_calls(monkeypatch)
    frame = sweep.run_sweep(grid_file, killed.path, progress=False)
    assert sum(map(len, calls)) == 8 - len(finished)  # nothing finished is recomputed
    assert len(frame) == 8 and frame["hash"].is_unique and len(killed.hashes()) == 8
    for cell_hash, (text, mtime) in finished.items():
        assert killed.file(cell_hash).read_text() == text and killed.file(cell_hash).stat().st_mtime_ns == mtime

    sweep.run_sweep(grid_file, tmp_path / "whole", progress=False)
    assert_same_results(killed, ResultStore(tmp_path / "whole"))


def test_ray_executor_matches_local(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray executor is an optional extra: pip install 'milr_core[ray]'")
    # Workers import milr_core from this checkout, whatever the installed copy is.
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        frame = sweep.run_sweep(GRID, tmp_path / "ray", executor="ray", progress=False)
    finally:
        ray.shutdown()
    sweep.run_sweep(GRID, tmp_path / "local", progress=False)
    assert len(frame) == 4
    assert results(ResultStore(tmp_path / "ray")) == results(ResultStore(tmp_path / "local"))


def test_sharpness_grid(tmp_path):
    grid = GRID | {"kind": "sharpness", "depths": [1], "sharpness": {"subset_size": 128, "tol": 1e-3}}
    frame = sweep.run_sweep(grid, tmp_path, progress=False)
    assert len(frame) == 2 and (frame["lambda_1"] > 0).all() and frame["sharpness.subset_size"].eq(128).all()
    assert "train.batch_size" not in frame.columns and "wall_time_s" not in frame.columns
    assert all(record["ledger"] == [] for record in ResultStore(tmp_path).records())
