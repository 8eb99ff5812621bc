"""Sweeps: cells hash stably, seeds are batched, a killed sweep resumes losing nothing, and sweeps share a store."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from milr_core import sweep
from milr_core.config import RunOptions
from milr_core.grid import GridError, load_grid
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
    "search": {"lr_bounds": [0.01, 10.0], "rtol": 0.3},
}
CPU = RunOptions(device="cpu")


def assert_same_results(a: ResultStore, b: ResultStore) -> None:
    """Records equal but for provenance and digest, to the bit: a seed's arithmetic does not depend on the seeds
    batched with it, and a resumed sweep may batch a seed alone."""
    assert a.hashes() == b.hashes()
    for cell_hash in a.hashes():
        records = [store.get(cell_hash) | {"provenance": None, "digest": None} for store in (a, b)]
        assert dumps(records[0]) == dumps(records[1])


def count_groups(monkeypatch) -> list[list[int]]:
    """Record the seeds of every group the sweep computes."""
    calls = []
    real = sweep.run_group

    def counted(dataset, cells, run):
        calls.append([c.spec["seed"] for c in cells])
        return real(dataset, cells, run)

    monkeypatch.setattr(sweep, "run_group", counted)
    return calls


def identity_of(grid):
    from milr_core.data import identity

    datasets = sweep.load_datasets(grid)
    return lambda name, options: identity(datasets[sweep.data_key(name, options)])


def test_cells_and_hashes(monkeypatch):
    given = GRID | {"variants": [{"name": "base"}, {"name": "full", "network": {"input_lr_factor": 1}}]}
    snapshot = copy.deepcopy(given)
    grid = load_grid(given)
    assert given == snapshot and load_grid(grid) is grid  # a notebook's dict is left alone; idempotent
    identity = identity_of(grid)
    cells = sweep.expand(grid, identity)
    assert len(cells) == 2 * 2 * 2 and len({c.hash for c in cells}) == len(cells)
    assert [len(g) for g in sweep.seed_groups(cells)] == [2, 2, 2, 2]
    assert [c.hash for c in sweep.expand(grid, identity)] == [c.hash for c in cells]  # stable
    spec = cells[0].spec
    assert spec["threshold"] == 0.8 and spec["train"]["epochs"] == 2.0 and spec["search"]["max_widenings"] == 6
    assert "lrs_per_round" not in spec["search"]  # the estimand, not how it ran
    assert len(spec["data"]["fingerprint_sha256"]) == 64 and spec["data"]["options"]["dim"] == 8
    same = load_grid(GRID | {"name": "other", "train": GRID["train"] | {"epochs": 2}, "threshold": 0.8})
    assert [c.hash for c in sweep.expand(same, identity)] == [c.hash for c in cells[:4]]  # defaults, labels
    monkeypatch.setattr(sweep, "ENGINE_VERSION", "bumped")
    assert sweep.expand(grid, identity)[0].hash != cells[0].hash


def test_reading_needs_no_data(monkeypatch, tmp_path):
    """compute=False takes the data identity from the committed manifest: no dataset is opened."""
    import milr_core.data as data

    grid = GRID | {"dataset_options": {"gaussians": {"dim": 16}}}
    sweep.run_sweep(grid, tmp_path, run=CPU, progress=False)
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("read data to render a store"))
    frame = sweep.run_sweep(grid, tmp_path, compute=False, progress=False)
    assert len(frame) == 4 and frame["grid_stored"].iloc[0] == 4


def test_variants_with_identical_settings_are_refused():
    grid = load_grid(GRID | {"variants": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(GridError, match="variants 'a' and 'b' have identical settings"):
        sweep.expand(grid, identity_of(grid))


def test_resume_skips_finished_cells_and_batches_seeds(tmp_path, monkeypatch):
    calls = count_groups(monkeypatch)
    frame = sweep.run_sweep(GRID, tmp_path / "a", run=CPU, progress=False)
    assert calls == [[0, 1], [0, 1]]  # one batched call per seed group
    assert len(frame) == 4 and set(frame["grid"]) == {"tiny"}
    assert frame["provenance.seeds_batched"].tolist() == [2, 2, 2, 2]
    calls.clear()
    again = sweep.run_sweep(GRID, tmp_path / "a", run=CPU, progress=False)
    assert calls == [] and again["hash"].tolist() == frame["hash"].tolist()
    with pytest.raises(FileExistsError, match="already holds 4 of the 4 cells"):
        sweep.run_sweep(GRID, tmp_path / "a", run=CPU, resume=False, progress=False)


def test_a_damaged_record_is_recomputed_on_resume(tmp_path):
    store = ResultStore(tmp_path)
    sweep.run_sweep(GRID, tmp_path, run=CPU, progress=False)
    victim = store.file(store.hashes()[0])
    original = victim.read_text()
    victim.write_text(original.replace('"seed": 0', '"seed": 7', 1))  # edited by hand
    with pytest.warns(UserWarning, match="damaged"):
        sweep.run_sweep(GRID, tmp_path, run=CPU, progress=False)
    assert (tmp_path / "quarantine" / victim.name).exists()
    assert json.loads(victim.read_text())["result"] == json.loads(original)["result"]


DRIVER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    from milr_core import sweep
    from milr_core.config import RunOptions

    log, store, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    grid = {grid!r}
    real = sweep.run_group
    sweep.POLL_S = 0.2

    def logged(dataset, cells, run):
        with open(log, "a") as f:
            f.write(f"start {{os.getpid()}} {{cells[0].group}}\\n")
        time.sleep(pause)
        records = real(dataset, cells, run)
        with open(log, "a") as f:
            f.write(f"done {{os.getpid()}} {{cells[0].group}}\\n")
        return records

    sweep.run_group = logged
    sweep.run_sweep(grid, store, run=RunOptions(device="cpu"), progress=False)
    """
)


def start_workers(tmp_path, n: int, pause: float) -> tuple[list[subprocess.Popen], Path]:
    grid = GRID | {"depths": [1, 2, 3], "widths": [16, 24]}
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(grid=grid))
    log = tmp_path / "log.txt"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([sys.executable, str(script), str(log), str(tmp_path / "store"), str(pause)], env=env)
               for _ in range(n)]  # fmt: skip
    return workers, log


def events(log: Path) -> list[tuple[str, int, str]]:
    if not log.exists():
        return []
    return [(kind, int(pid), group) for kind, pid, group in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.integration
@pytest.mark.parametrize("kill", [False, True])
def test_two_sweeps_share_a_store_each_cell_computed_once(tmp_path, kill):
    workers, log = start_workers(tmp_path, 2, pause=0.6)
    if kill:  # SIGKILL the first worker in the middle of its first group
        deadline = time.time() + 60
        while not any(kind == "start" and pid == workers[0].pid for kind, pid, _ in events(log)):
            assert time.time() < deadline, "the first worker never started a group"
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
    for worker in workers:
        worker.wait(timeout=180)
    done = [(pid, group) for kind, pid, group in events(log) if kind == "done"]
    groups = [group for _, group in done]
    assert len(groups) == 6 and len(set(groups)) == 6  # every group finished exactly once
    if kill:
        killed = {group for kind, pid, group in events(log) if kind == "start" and pid == workers[0].pid}
        assert killed and all(pid == workers[1].pid for pid, group in done if group in killed)  # taken up
    else:
        assert {pid for pid, _ in done} == {w.pid for w in workers}  # both did work
    assert len(ResultStore(tmp_path / "store").records()) == 12


@pytest.mark.integration
def test_local_workers_fill_the_store_like_one_process(tmp_path):
    sweep.run_sweep(GRID, tmp_path / "one", run=CPU, progress=False)
    sweep.run_sweep(GRID, tmp_path / "two", run=RunOptions(device="cpu", workers=2, threads=1), progress=False)
    assert_same_results(ResultStore(tmp_path / "one"), ResultStore(tmp_path / "two"))


@pytest.mark.integration
def test_sigkill_mid_grid_then_resume_equals_a_clean_run(tmp_path):
    clean = tmp_path / "clean"
    sweep.run_sweep(GRID, clean, run=CPU, progress=False)
    workers, _ = start_workers(tmp_path, 1, pause=0.3)
    partial = ResultStore(tmp_path / "store")
    deadline = time.time() + 60
    while not partial.records():  # the first group's records are written after its "done" is logged
        assert time.time() < deadline
        time.sleep(0.05)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    assert 0 < len(partial.records()) < 12
    grid = GRID | {"depths": [1, 2, 3], "widths": [16, 24]}
    sweep.run_sweep(grid, tmp_path / "store", run=CPU, progress=False)
    sweep.run_sweep(grid, tmp_path / "fresh", run=CPU, progress=False)
    assert_same_results(ResultStore(tmp_path / "store"), ResultStore(tmp_path / "fresh"))


@pytest.mark.integration
def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray")
    sweep.run_sweep(GRID, tmp_path / "local", run=CPU, progress=False)
    sweep.run_sweep(GRID, tmp_path / "ray", run=CPU, executor="ray", progress=False)
    assert_same_results(ResultStore(tmp_path / "local"), ResultStore(tmp_path / "ray"))


def test_every_kind_runs_through_the_registry(tmp_path):
    grids = {
        "sharpness": {"sharpness": {"subset_size": 64, "tol": 1e-4, "bounds": True}},
        "late_lr": {"train": GRID["train"], "search": GRID["search"], "late": {"pretrain_steps": 20, "late_steps": 10},
                    "sharpness": {"subset_size": 64, "tol": 1e-4}},
        "catapult": {"train": GRID["train"] | {"loss": "mse"}, "search": GRID["search"],
                     "sharpness": {"subset_size": 64, "tol": 1e-4, "loss": "mse"}},
        "trajectory": {"sharpness": {"subset_size": 64, "tol": 1e-4, "loss": "mse"},
                       "trajectory": {"steps": 4, "every": 2}, "dtype": "float64"},
    }  # fmt: skip
    base = {k: v for k, v in GRID.items() if k not in ("train", "search")} | {"depths": [1], "seeds": [0]}
    for kind, sections in grids.items():
        frame = sweep.run_sweep(base | {"kind": kind, "name": kind} | sections, tmp_path, run=CPU, progress=False)
        assert len(frame) == 1 and frame["kind"].iloc[0] == kind
    assert len(ResultStore(tmp_path).records()) == 4


def test_a_search_trace_keeps_every_probes_curves(tmp_path):
    trace = {k: v for k, v in GRID.items()} | {"kind": "search_trace", "name": "trace", "depths": [1], "seeds": [0]}
    frame = sweep.run_sweep(trace, tmp_path, run=CPU, progress=False)
    (record,) = ResultStore(tmp_path).records()
    assert frame["status"].iloc[0] == "converged"
    for probe in record["ledger"]:
        assert probe["loss"] and probe["loss"][-1][1] == probe["final_loss"]
        if probe["outcome"] != "diverged":  # every check counted in full, the first one included
            assert [step for step, _ in probe["accuracy"]] == [step for step, _ in probe["loss"]]
