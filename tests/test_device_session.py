"""The device session (scripts/device_session.sh): its parts quickly, and its CPU dry run end to end (slow)."""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def session():
    spec = importlib.util.spec_from_file_location("device_session", ROOT / "scripts" / "device_session.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_budget_leaves_the_fill_most_of_a_long_session(session):
    shares = session.budget(9 * 60)
    fill = 9 * 60 - shares["checks"] - shares["bench"] - shares["summary"]
    assert fill > 0.5 * 9 * 60 and shares["checks"] >= 30 and shares["summary"] >= 20


def test_arguments_are_checked(session, capsys):
    args = session.parse(["--minutes", "2", "--out", "x", "--steps", "checks,summary"])
    assert args.steps == ["checks", "summary"] and args.device == "cuda" and args.profile == "paper" and not args.tf32
    for bad in (["--minutes", "0", "--out", "x"], ["--minutes", "1", "--out", "x", "--steps", "train"], ["--out", "x"]):
        with pytest.raises(SystemExit):
            session.parse(bad)
    capsys.readouterr()


def test_paper_fill_order_is_power_law_widest_and_deepest_first(session, tmp_path):
    from milr_core.store import ResultStore

    groups = session.missing_groups("paper", ResultStore(tmp_path))
    first = [(g["grid"], g["depth"], g["width"]) for g in groups[:3]]
    assert first == [("power_law_mnist", 16, 2048), ("power_law_cifar10", 16, 2048), ("power_law_gaussians", 16, 2048)]
    assert all(g["seeds"] == [0, 1, 2] for g in groups[:3])
    experiments = [g["experiment"] for g in groups]
    assert experiments.index("sharpness") > max(i for i, e in enumerate(experiments) if e == "power_law")


def test_a_step_past_its_deadline_is_stopped_and_its_output_kept(session, tmp_path):
    log = session.Log(tmp_path / "session.log", export=None)
    command = [sys.executable, "-u", "-c", "import time; print('started', flush=True); time.sleep(60)"]
    began = time.time()
    status = session.run_step("sleepy", command, time.time() + 1.0, log, dict(os.environ), grace=1.0)
    assert status["status"] == "timeout" and time.time() - began < 15
    assert "started" in (tmp_path / "session.log").read_text()
    ok = session.run_step("quick", [sys.executable, "-c", "print('fine')"], time.time() + 30, log, dict(os.environ))
    assert ok["status"] == "ok" and ok["exit_code"] == 0


def test_export_mirrors_files_and_packs_records(session, tmp_path):
    out, export = tmp_path / "out", tmp_path / "export"
    (out / "records").mkdir(parents=True)
    (out / "records" / "abc.json").write_text("{}\n")
    session.write_json(out / "fill.json", {"groups": []}, export)
    session.pack_records(out / "records", export)
    assert json.loads((export / "fill.json").read_text()) == {"groups": []}
    with tarfile.open(export / "records.tar") as tar:
        assert tar.getnames() == ["records/abc.json"]
    assert not list(export.glob(".*"))  # no temporary files left behind


@pytest.mark.slow
def test_cpu_dry_run_runs_every_step_and_fills_records(tmp_path):
    """The entry point exactly as on a GPU, on the CPU with one minute, the smoke grids and an empty store."""
    out, export, empty = tmp_path / "out", tmp_path / "export", tmp_path / "empty-store"
    empty.mkdir()
    command = ["bash", "scripts/device_session.sh", "--device", "cpu", "--minutes", "1", "--profile", "smoke",
               "--out", str(out), "--export", str(export), "--store", str(empty), "--threads", "1"]  # fmt: skip
    began = time.time()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    wall = time.time() - began
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert wall < 240, f"the dry run took {wall:.0f} s"

    for step in ("checks", "bench", "fill", "summary"):
        assert f"===== step {step}" in output
    state = json.loads((out / "session.json").read_text())
    assert {s: v["status"] for s, v in state["steps"].items()} == dict.fromkeys(["checks", "bench", "fill", "summary"], "ok")
    assert state["provenance"]["device"].startswith("cpu") and state["provenance"]["tf32"] is False

    checks = json.loads((out / "checks.json").read_text())
    assert checks["gate_passed"] and all(r["status"] == "pass" for r in checks["results"]), checks
    bench = json.loads((out / "bench.json").read_text())
    assert not bench["errors"] and not bench["skipped"], bench
    assert bench["eta_star"] and all(row["identical_answers"] for row in bench["eta_star"])
    assert bench["throughput"][0]["tflops"] > 0 and bench["sharpness"][0]["hvp_ms"] > 0
    assert "device benchmarks | cpu" in output and "fp32, TF32 off" in output

    from milr_core.store import ResultStore

    records = ResultStore(out / "records").records()
    assert records and len(records) == len(list((out / "records").glob("*.json")))  # every file verifies
    assert all(r["provenance"]["device"].startswith("cpu") for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["filled_records"] == len(records) and summary["coverage"]
    assert sum(row["filled"] for row in summary["coverage"]) >= len(records)
    assert "store summary (smoke)" in output.rsplit("device benchmarks", 1)[-1]  # the tables come last

    exported = sorted(p.name for p in export.iterdir())
    assert len(exported) <= 8 and {"session.json", "summary.json", "records.tar"} <= set(exported), exported
    with tarfile.open(export / "records.tar") as tar:
        assert len(tar.getnames()) == len(records)
