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

from milr_core import device_session as steps

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def session():
    return load(ROOT / "scripts" / "device_session.py", "device_session_script")


def test_no_part_of_the_session_is_long():
    parts = [*(ROOT / "scripts").glob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
             *(ROOT / "milr_core" / f"{name}.py" for name in ("fill", "planner", "device_session"))]  # fmt: skip
    for path in parts:
        assert len(path.read_text().splitlines()) <= 450, f"{path.name} is over 450 lines: split it by idea"


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


def test_a_step_past_its_deadline_is_stopped_and_its_output_kept(session, tmp_path):
    log = session.Log(tmp_path / "session.log", export=None)
    command = [sys.executable, "-u", "-c", "import time; print('started', flush=True); time.sleep(60)"]
    began = time.time()
    status = session.run_step("sleepy", command, time.time() + 1.0, log, dict(os.environ), grace=1.0)
    assert status["status"] == "timeout" and time.time() - began < 15
    assert "started" in (tmp_path / "session.log").read_text()
    ok = session.run_step("quick", [sys.executable, "-c", "print('fine')"], time.time() + 30, log, dict(os.environ))
    assert ok["status"] == "ok" and ok["exit_code"] == 0


def test_export_mirrors_files_and_packs_records(tmp_path):
    out, export = tmp_path / "out", tmp_path / "export"
    (out / "records").mkdir(parents=True)
    (out / "records" / "abc.json").write_text("{}\n")
    steps.write_json(out / "fill.json", {"calls": []}, export)
    steps.pack_records(out / "records", export)
    assert json.loads((export / "fill.json").read_text()) == {"calls": []}
    with tarfile.open(export / "records.tar") as tar:
        assert tar.getnames() == ["records/abc.json"]
    assert not list(export.glob(".*"))  # no temporary files left behind


def test_the_fill_packs_and_speculates_only_after_the_exactness_checks_passed():
    def report(**statuses):
        return {"results": [{"name": name, "status": status, "gating": True} for name, status in statuses.items()]}

    assert steps.exact(report(check_speculation="pass", check_packing="pass", check_same_seed="pass"))
    assert not steps.exact(report(check_speculation="fail", check_packing="pass"))
    assert not steps.exact(report(check_speculation="pass", check_packing="not_run"))
    assert not steps.exact(None)  # no checks ran in this session: k=1, one group per call
    assert not steps.gate(report(check_speculation="fail")["results"]) and steps.gate(report(check_packing="pass")["results"])


def test_the_fill_takes_the_benchs_lanes_and_speed():
    bench = {"lanes": {"chosen": 12, "tflops": 55.7, "layer_floor_s": 1e-4, "init_s_per_param": 5e-9}}
    assert steps.speed_of(bench, "cuda") == steps.Speed(12, 55.7, 1e-4, 5e-9, "bench")
    assert steps.speed_of({"lanes": None}, "cuda").source == "default"


def test_the_bench_picks_the_fewest_lanes_within_ten_percent_of_the_best_rate():
    bench = load(ROOT / "benchmarks" / "bench_eta_star.py", "bench_eta_star_test")
    rows = [{"lanes": 3, "tflops": 21.5}, {"lanes": 6, "tflops": 38.0}, {"lanes": 12, "tflops": 49.0},
            {"lanes": 24, "tflops": 55.7}, {"lanes": 48, "tflops": 56.0}]  # fmt: skip
    assert bench.pick_lanes(rows)["lanes"] == 24  # 12 lanes' 49.0 is below 0.9 x 56.0 = 50.4
    assert bench.pick_lanes(rows, tolerance=0.15)["lanes"] == 12


def test_the_fill_rate_is_compared_with_the_first_gpu_fill():
    reference = steps.reference_rate()  # benchmarks/device-runs/2026-12-04-h200/fill.json
    assert reference["records"] == 99 and round(reference["wall_s"]) == 419 and reference["per_minute"] == 14.18
    report = steps.FillReport(calls=[{"groups": [{"records": ["a"] * 30}], "wall_s": 60.0, "estimate_s": 50.0,
                                      "status": "filled"}])  # fmt: skip
    assert report.per_minute() == 30.0 and report.correction() == 1.2
    assert "30.0 records per minute" in steps.rate_line(report) and "14.2 per minute" in steps.rate_line(report)


@pytest.mark.slow
@pytest.mark.integration
def test_cpu_dry_run_runs_every_step_packs_and_fills_records(tmp_path):
    """The entry point exactly as on a GPU, on the CPU with two minutes, the smoke grids and an empty store; a packed
    call's records equal those of its groups computed alone by sweep.run_group in the same lanes, bit for bit."""
    out, export, empty = tmp_path / "out", tmp_path / "export", tmp_path / "empty-store"
    empty.mkdir()
    command = ["bash", "scripts/device_session.sh", "--device", "cpu", "--minutes", "2", "--profile", "smoke",
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
    statuses = {s: v["status"] for s, v in state["steps"].items()}
    fill_status = statuses.pop("fill")
    assert fill_status in ("ok", "timeout")  # a fill stopped at its deadline keeps what it finished
    assert statuses == dict.fromkeys(["checks", "bench", "summary"], "ok")
    assert state["provenance"]["device"].startswith("cpu") and state["provenance"]["tf32"] is False
    assert state["steps"]["checks"]["exact"]

    checks = json.loads((out / "checks.json").read_text())
    assert checks["gate_passed"] and checks["exact"] and all(r["status"] == "pass" for r in checks["results"]), checks
    bench = json.loads((out / "bench.json").read_text())
    assert not bench["errors"] and not bench["skipped"], bench
    lanes = bench["lanes"]["chosen"]
    assert lanes in bench["sizes"]["lanes"]["counts"] and bench["lanes"]["tflops"] > 0 and bench["lanes"]["layer_floor_s"] > 0
    assert bench["eta_star"] and all(row["identical_answers"] and row["lanes"] == lanes for row in bench["eta_star"])
    assert bench["sharpness"][0]["hvp_ms"] > 0
    assert "device benchmarks | cpu" in output and "fp32, TF32 off" in output

    from milr_core.config import RunOptions
    from milr_core.fill import dataset_for, missing_groups
    from milr_core.store import ResultStore, canonical
    from milr_core.sweep import run_group

    records = ResultStore(out / "records").records()
    assert records and len(records) == len(list((out / "records").glob("*.json")))  # every file verifies
    assert all(r["provenance"]["device"].startswith("cpu") for r in records)
    fill = json.loads((out / "fill.json").read_text())
    assert fill["exact"] and fill["plan"]["estimate_s"] > 0 and "planner: the smoke store's missing cells" in output
    assert fill["filled_records"] == len(records)  # counted as each group ends, so right even for a stopped fill
    assert fill_status == "timeout" or "records per minute (the 2026-12-04 H200 fill" in output
    packs = [call for call in fill["calls"] if call["packed"] >= 2 and call["status"] == "filled"]
    packed = min(packs, key=lambda call: call["packed"])  # the smallest, to recompute its groups one by one
    assert packed["lanes"] == lanes
    by_hash = {c.hash: g for g in missing_groups("smoke") for c in g.cells}
    options = RunOptions(device="cpu", threads=1, lanes=lanes, speculation=packed["speculation"])
    datasets: dict = {}
    for described in packed["groups"]:
        group = by_hash[described["hashes"][0]]
        assert described["records"] == [c.hash for c in group.cells]
        for alone in run_group(dataset_for(group, datasets), group.cells, options):
            stored = next(r for r in records if r["hash"] == alone["hash"])
            assert stored["provenance"]["packed_groups"] == packed["packed"]
            same = canonical([stored["result"], stored["ledger"]]) == canonical([alone["result"], alone["ledger"]])
            assert same, described["variant"]  # canonical: NaN losses compare equal, every other float bit for bit

    summary = json.loads((out / "summary.json").read_text())
    assert summary["filled_records"] == len(records) and summary["coverage"]
    assert sum(row["filled"] for row in summary["coverage"]) >= len(records)
    assert summary["paper_profile_estimate"]["estimate_s"] > 0 and summary["paper_profile_estimate"]["cells"] > 2000
    tail = output.rsplit("device benchmarks", 1)[-1]  # the tables come last
    assert "store summary (smoke)" in tail and "planner: the whole paper profile from an empty store" in tail

    exported = sorted(p.name for p in export.iterdir())
    assert len(exported) <= 8 and {"session.json", "summary.json", "records.tar"} <= set(exported), exported
    with tarfile.open(export / "records.tar") as tar:
        assert len(tar.getnames()) == len(records)
