"""A GPU put to use in one call: CUDA correctness, device benchmarks, then the store's missing cells until the budget.

    bash scripts/device_session.sh --minutes 9 --out DIR [--device cuda] [--profile paper|smoke] [--tf32]
                                   [--export DIR2] [--store STORE] [--data DATA] [--commit SHA] [--threads N]
                                   [--steps checks,bench,fill,summary]

Steps, in order, each in its own process with its own deadline (derived from ``--minutes``), each writing its
output under DIR as it goes, so that a deadline or a crash loses nothing already finished:

1. ``checks``: every check of ``milr_core.checks`` on the device (``checks.json``). If a gating check fails,
   the store is not filled from this device (``--fill-anyway`` overrides).
2. ``bench``: Algorithm 1 with speculation k=best against k=1 on a small and a mid cell (identical answers,
   wall ratio), the probe's fp32 TFLOP/s at d=16, w=2048, one HVP against one gradient, and Lanczos's per-HVP
   overhead; one table (``bench.txt``, and in ``bench.json`` with every number).
3. ``fill``: the cells of the profile's grids that the store (a copy of ``results/<profile>`` of the checkout, or
   ``--store``, on the machine's own disk) lacks, by priority (the power-law grids first, costliest first:
   width^2 x depth, so the widest and deepest; then the sharpness grids, then the rest), one
   ``run_experiment(..., part=...)`` per seed group (seeds batched); every new record is copied to
   ``DIR/records/`` the moment its group finishes (``fill.json`` logs each group).
4. ``summary``: ``experiments.coverage`` of the store with the new records: what was filled, what remains
   (``summary.json``, and a table printed last).

``session.json`` holds the provenance (device, torch, CUDA, commit, TF32, threads) and each step's status;
``session.log`` everything printed. ``--export DIR2`` also mirrors, as they change, the top-level files and a
``records.tar`` of ``records/`` into DIR2 (seven files at most): for tools that fetch only a few files back.

fp32 by default, TF32 off; ``--tf32`` allows TF32 matmuls in the checks and benchmarks (recorded). The store's
cells always run in their grid's dtype (``sweep.run_group`` sets TF32 from it), so ``--tf32`` never reaches a record.

Data: ``--data``, else ``$MILR_DATA``, else ``.device-data/`` in the checkout if present (a folder holding
``MNIST/raw`` and ``cifar10-jpeg/``, as in the offline mirrors). Commit for provenance: ``--commit``, else git,
else ``<data>/COMMIT`` (a copy of the checkout without ``.git`` cannot say), else "unknown".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's milr_core, installed or not
STEPS = ("checks", "bench", "fill", "summary")
OUTPUTS = {"checks": ("checks.json",), "bench": ("bench.json", "bench.txt"), "fill": ("fill.json",),
           "summary": ("summary.json", "summary.txt")}  # fmt: skip
GRACE_S = 15.0  # after a step's deadline: time to write its last output before it is stopped

# Benchmark sizes per profile: the paper profile's on a GPU, the smoke profile's tiny (a CPU dry run).
BENCH = {
    "paper": {
        "eta_cells": ["mnist:2x128:300", "mnist:4x512:300"], "seeds": [0, 1, 2],
        "throughput": {"dataset": "mnist", "depth": 16, "width": 2048, "replicas": [3, 12], "steps": [10, 60]},
        "sharpness": {"dataset": "mnist", "subset": 2048, "cells": ["4x1024", "16x2048"], "tols": [1e-5]},
    },
    "smoke": {
        "eta_cells": ["gaussians:1x16:60", "gaussians:2x32:60"], "seeds": [0],
        "throughput": {"dataset": "gaussians", "depth": 2, "width": 32, "replicas": [2], "steps": [5, 15]},
        "sharpness": {"dataset": "gaussians", "subset": 256, "cells": ["2x32"], "tols": [1e-5]},
    },
}  # fmt: skip
# The order the fill step takes the profile's experiments in (others after these, by name).
EXPERIMENT_ORDER = ("power_law", "sharpness", "input_layer", "parameterisations", "sensitivity", "late_lr",
                    "catapult", "preprocessing", "trajectory")  # fmt: skip
DATASET_ORDER = ("mnist", "cifar10", "gaussians", "fashion_mnist")


# ----------------------------------------------------------------------------------------------------------
# small helpers


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, value, export: Path | None = None) -> None:
    """Atomically (a temporary file, then rename), and mirrored into ``export`` if given."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(value, indent=1, default=str) + "\n")
    os.replace(temp, path)
    publish(path, export)


def publish(path: Path, export: Path | None) -> None:
    if export is None or not path.exists():
        return
    export.mkdir(parents=True, exist_ok=True)
    temp = export / f".{path.name}.tmp"
    shutil.copyfile(path, temp)
    os.replace(temp, export / path.name)


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def data_folder(args: argparse.Namespace) -> str | None:
    if args.data:
        return str(Path(args.data).resolve())
    if os.environ.get("MILR_DATA"):
        return os.environ["MILR_DATA"]
    local = ROOT / ".device-data"
    return str(local) if local.is_dir() else None


def resolve_commit(args: argparse.Namespace) -> str:
    if args.commit:
        return args.commit
    from milr_core.store import git_commit

    commit = git_commit()
    data = data_folder(args)
    if commit == "unknown" and data and (Path(data) / "COMMIT").is_file():
        commit = (Path(data) / "COMMIT").read_text().strip() or "unknown"
    return commit


def remaining(deadline: float) -> float:
    return deadline - time.time()


# ----------------------------------------------------------------------------------------------------------
# arguments


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="device_session.sh", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.add_argument("--minutes", type=float, required=True, help="the whole session's budget, all steps together")
    parser.add_argument("--out", required=True, help="the output folder (created)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--profile", choices=["paper", "smoke"], default="paper", help="which grids to fill")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls in checks and benchmarks (recorded)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    parser.add_argument("--store", help="the store to start from (default: results/<profile> of the checkout)")
    parser.add_argument("--data", help="data root (default: $MILR_DATA, else .device-data/ of the checkout)")
    parser.add_argument("--commit", help="the commit to name in provenance, where the checkout has no .git")
    parser.add_argument("--export", help="also mirror the top-level outputs and records.tar here as they change")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"which steps to run (default {','.join(STEPS)})")
    parser.add_argument("--fill-anyway", action="store_true", help="fill the store even if a gating check failed")
    # internal: one step, run by the session in a child process
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    args.steps = steps
    if not args.minutes > 0:
        parser.error("--minutes must be positive")
    return args


def budget(total_s: float) -> dict[str, float]:
    """Each step's share of the session: caps for checks and benchmarks, a reserve for the summary, the rest fills."""
    return {"checks": max(30.0, 0.15 * total_s), "bench": max(20.0, 0.25 * total_s),
            "summary": max(20.0, 0.05 * total_s), "fill_min": 15.0}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# the session (parent): runs each step in a child process, bounded in time


class Log:
    """Everything printed goes to stdout and session.log (mirrored to the export folder now and then)."""

    def __init__(self, path: Path, export: Path | None) -> None:
        self.path, self.export = path, export
        self.file = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
        self.lock = threading.Lock()
        self.published = 0.0

    def line(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            self.file.write(text + "\n")
            if self.export and time.time() - self.published > 20:
                self.publish()

    def publish(self) -> None:
        self.file.flush()
        publish(self.path, self.export)
        self.published = time.time()


def child_command(args: argparse.Namespace, step: str, deadline: float, work: Path) -> list[str]:
    command = [sys.executable, "-u", str(Path(__file__).resolve()), "--step", step, "--deadline", repr(deadline),
               "--work", str(work), "--minutes", str(args.minutes), "--out", str(args.out), "--device", args.device,
               "--profile", args.profile, "--threads", str(args.threads), "--commit", args.commit]  # fmt: skip
    if args.tf32:
        command.append("--tf32")
    if args.export:
        command += ["--export", str(args.export)]
    return command


def run_step(step: str, command: list[str], deadline: float, log: Log, env: dict, grace: float = GRACE_S) -> dict:
    """Run one step's command in a child process (its own process group); stop it ``grace`` s after its deadline."""
    began = time.time()
    log.line(f"\n===== step {step}: {max(0.0, deadline - began):.0f} s until its deadline =====")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               encoding="utf-8", errors="replace", env=env, cwd=ROOT,
                               start_new_session=True)  # fmt: skip

    def pump() -> None:
        for text in process.stdout:
            log.line(text.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=max(1.0, deadline + grace - time.time()))
    except subprocess.TimeoutExpired:
        timed_out = True
        log.line(f"[session] step {step} ran past its deadline: stopping it (pid {process.pid})")
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)  # the group of the child this session started, nothing else
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    reader.join(timeout=5.0)
    rc = process.returncode
    status = "timeout" if timed_out else "ok" if rc == 0 else "crashed"
    log.line(f"[session] step {step}: {status} (exit {rc}) after {time.time() - began:.1f} s")
    return {"status": status, "exit_code": rc, "wall_s": round(time.time() - began, 2),
            "deadline_s": round(deadline - began, 1), "started_utc": datetime.datetime.fromtimestamp(
                began, datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip


def provenance(args: argparse.Namespace) -> dict:
    import torch

    from milr_core import ENGINE_VERSION
    from milr_core.store import device_name

    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    return {
        "device": device_name(args.device) if cuda or args.device == "cpu" else f"{args.device} (not available)",
        "device_arg": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "commit": args.commit, "engine_version": ENGINE_VERSION,
        "dtype": "float32", "tf32": args.tf32, "tf32_scope": "checks and benchmarks only; store cells use their grid's dtype",
        "threads": args.threads, "python": platform.python_version(), "host": socket.gethostname(),
        "cpu_count": os.cpu_count(), "profile": args.profile, "minutes": args.minutes, "data": data_folder(args),
    }  # fmt: skip


def session(args: argparse.Namespace) -> int:
    t0 = time.time()
    total = 60.0 * args.minutes
    shares = budget(total)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "records").mkdir(exist_ok=True)
    args.out = str(out)
    export = Path(args.export).resolve() if args.export else None
    args.export = str(export) if export else None
    log = Log(out / "session.log", export)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # progress bars must not crash an ASCII terminal
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    data = data_folder(args)
    if data:
        env["MILR_DATA"] = data
        env.setdefault("MILR_OFFLINE", "1")  # a lent machine reaches nothing; a missing file fails at once
    args.commit = resolve_commit(args)

    work = Path(tempfile.mkdtemp(prefix="milr-device-store-"))
    source = Path(args.store) if args.store else ROOT / "results" / args.profile
    store = work / args.profile
    if source.is_dir():
        shutil.copytree(source, store, ignore=shutil.ignore_patterns(".claims", "quarantine", ".*.tmp"))
    else:
        store.mkdir(parents=True)
    for record in (out / "records").glob("*.json"):  # an earlier session into the same DIR: resume, never recompute
        shutil.copyfile(record, store / record.name)
    state = {"provenance": provenance(args), "started_utc": now_utc(), "store_source": str(source),
             "store_records_at_start": len(list(store.glob("[!.]*.json"))), "out": str(out), "steps": {}}  # fmt: skip
    write_json(out / "session.json", state, export)
    log.line(f"[session] {json.dumps(state['provenance'])}")
    log.line(f"[session] {args.minutes:g} min; store {source} ({state['store_records_at_start']} records) copied to {store}")

    for folder in filter(None, (out, export)):  # never read an earlier session's output as this one's
        for name in (name for step in args.steps for name in OUTPUTS[step]):
            (folder / name).unlink(missing_ok=True)
    failed_gate = False
    try:
        for step in STEPS:
            if step not in args.steps:
                continue
            if step == "fill" and failed_gate and not args.fill_anyway:
                log.line("\n===== step fill: skipped: a gating check failed on this device (--fill-anyway overrides) =====")
                state["steps"][step] = {"status": "skipped", "why": "a gating check failed"}
                write_json(out / "session.json", state, export)
                continue
            start = time.time()
            if step == "fill":
                deadline = max(start + shares["fill_min"], t0 + total - shares["summary"])
            else:
                deadline = start + shares[step]
            state["steps"][step] = {"status": "running"}
            write_json(out / "session.json", state, export)
            state["steps"][step] = run_step(step, child_command(args, step, deadline, work), deadline, log, env)
            if step == "checks":
                checks = read_json(out / "checks.json", {})
                failed_gate = not checks.get("gate_passed", False)
                state["steps"][step]["gate_passed"] = not failed_gate
            write_json(out / "session.json", state, export)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    state["finished_utc"], state["wall_s"] = now_utc(), round(time.time() - t0, 1)
    fill = read_json(out / "fill.json", {}) if "fill" in state["steps"] else {}
    state["records_filled"] = sum(len(g.get("records", [])) for g in (fill or {}).get("groups", []))
    state["records_in_out"] = len(list((out / "records").glob("*.json")))
    write_json(out / "session.json", state, export)

    # The two tables last, where a tool that keeps only the end of the output sees them.
    for name in ("bench.txt", "summary.txt"):
        if (out / name).is_file():
            log.line("\n" + (out / name).read_text().rstrip())
    steps = ", ".join(f"{s} {v['status']}" for s, v in state["steps"].items())
    log.line(f"\n[session] done in {state['wall_s']:.0f} s: {steps}; {state['records_filled']} records filled, "
             f"{state['records_in_out']} in {out / 'records'}")
    log.publish()
    crashed = [s for s, v in state["steps"].items() if v["status"] == "crashed"]
    return 1 if crashed or failed_gate else 0


# ----------------------------------------------------------------------------------------------------------
# the steps (children)


def setup_child(args: argparse.Namespace) -> None:
    import torch

    from milr_core.runtime import set_precision

    torch.set_num_threads(args.threads)
    set_precision(args.device, "tf32" if args.tf32 else "float32")
    if args.commit and args.commit != "unknown":  # records name the commit even where the checkout has no .git
        os.environ["MILR_GIT_COMMIT"] = args.commit
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {args.device} asked for, but torch {torch.__version__} sees no CUDA device")


def step_checks(args: argparse.Namespace, out: Path, export: Path | None) -> None:
    from milr_core.checks import CHECKS, GATING

    report = {"device": args.device, "results": [], "gate_passed": False}
    for check in CHECKS:
        name = check.__name__
        if remaining(args.deadline) <= 0:
            report["results"].append({"name": name, "status": "not_run", "gating": name in GATING})
            print(f"SKIP {name}: the step's deadline has passed", flush=True)
            continue
        began = time.perf_counter()
        try:
            summary, status = check(args.device), "pass"
        except AssertionError as error:
            summary, status = str(error), "fail"
        except Exception as error:  # noqa: BLE001 -- a device bug in the engine is a failed check, with its traceback
            summary, status = f"{type(error).__name__}: {error}\n{traceback.format_exc()}", "error"
        wall = time.perf_counter() - began
        report["results"].append({"name": name, "status": status, "gating": name in GATING, "wall_s": round(wall, 2),
                                  "summary": summary})  # fmt: skip
        print(f"{status.upper():5} {name} ({wall:.1f} s): {summary}", flush=True)
        report["gate_passed"] = gate(report["results"])
        write_json(out / "checks.json", report, export)
    ran = [r for r in report["results"] if r["status"] != "not_run"]
    report["gate_passed"] = gate(report["results"]) and bool(ran)
    report["summary"] = f"{sum(r['status'] == 'pass' for r in ran)}/{len(CHECKS)} checks passed on {args.device}"
    write_json(out / "checks.json", report, export)
    print(report["summary"], flush=True)


def gate(results: list[dict]) -> bool:
    """The store may be filled from this device: no gating check failed, and no check raised an error (a crash on
    the device is a device-handling bug whatever the check)."""
    return not any(r["status"] == "error" or (r["status"] == "fail" and r["gating"]) for r in results)


def bench_module(name: str):
    import importlib.util

    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"milr_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def step_bench(args: argparse.Namespace, out: Path, export: Path | None) -> None:
    eta_bench, sharp_bench = bench_module("bench_eta_star"), bench_module("bench_sharpness")
    sizes = BENCH[args.profile]
    report = {**eta_bench.environment(args.device, args.tf32), "profile": args.profile, "sizes": sizes,
              "eta_star": [], "throughput": [], "sharpness": [], "skipped": [], "errors": []}  # fmt: skip
    datasets: dict = {}

    def item(label: str, fn) -> None:
        if remaining(args.deadline) <= 0:
            report["skipped"].append(label)
            print(f"bench: {label}: skipped (the step's deadline has passed)", flush=True)
            return
        began = time.perf_counter()
        try:
            fn()
            print(f"bench: {label}: done in {time.perf_counter() - began:.1f} s", flush=True)
        except Exception as error:  # noqa: BLE001 -- one failed measurement must not lose the others
            report["errors"].append({"item": label, "error": f"{type(error).__name__}: {error}"})
            print(f"bench: {label}: FAILED {type(error).__name__}: {error}\n{traceback.format_exc()}", flush=True)
        write_json(out / "bench.json", report, export)

    tp = sizes["throughput"]

    def throughput() -> None:
        dataset = eta_bench.load(tp["dataset"], datasets)
        for replicas in tp["replicas"]:
            report["throughput"].append(eta_bench.probe_throughput(
                dataset, tp["depth"], tp["width"], replicas, args.device, steps=tuple(tp["steps"])))  # fmt: skip

    sp = sizes["sharpness"]

    def sharpness(shape: str):
        def run() -> None:
            import torch

            if "subset" not in datasets:
                datasets["subset"] = sharp_bench.subset(sp["dataset"], sp["subset"], torch.device(args.device), torch.float32)
            x, y, n_classes = datasets["subset"]
            depth, width = map(int, shape.split("x"))
            report["sharpness"].append(sharp_bench.bench_cell(depth, width, x, y, n_classes, tols=sp["tols"],
                                                              repeats=10, overhead_steps=30))  # fmt: skip

        return run

    def eta(text: str):
        def run() -> None:
            cell = eta_bench.Cell.parse(text)
            dataset = eta_bench.load(cell.dataset, datasets)
            net = eta_bench.net_for(dataset, cell.depth, cell.width)
            best = eta_bench.speculation_for(args.device, net.n_params(), len(sizes["seeds"]), None)
            ks = [1, best] if best > 1 else [1, 2]  # on a CPU k=best is 1: k=2 still shows the answers agree
            row = eta_bench.compare_cell(dataset, cell, sizes["seeds"], args.device, ks, ksection=False)
            row["k_best"] = best
            report["eta_star"].append(row)
            assert row["identical_answers"], f"{cell}: speculation changed the answer: {row['runs']}"

        return run

    first_eta, *other_eta = sizes["eta_cells"]
    first_sharp, *other_sharp = sp["cells"]
    item(f"probe throughput d={tp['depth']} w={tp['width']}", throughput)
    item(f"HVP, gradient and Lanczos {sp['dataset']} {first_sharp}", sharpness(first_sharp))
    item(f"Algorithm 1 k=best vs k=1 {first_eta}", eta(first_eta))
    for text in other_eta:
        item(f"Algorithm 1 k=best vs k=1 {text}", eta(text))
    for shape in other_sharp:
        item(f"HVP, gradient and Lanczos {sp['dataset']} {shape}", sharpness(shape))
    table = bench_table(report)
    report["table"] = table
    write_json(out / "bench.json", report, export)
    (out / "bench.txt").write_text(table + "\n")
    print(table, flush=True)


def bench_table(report: dict) -> str:
    tf32 = "TF32 ON" if report["tf32"] else "fp32, TF32 off"
    cuda = f" (CUDA {report['cuda']})" if report.get("cuda") else ""
    lines = [f"device benchmarks | {report['device']} | torch {report['torch']}{cuda} | commit {report['commit']} | "
             f"{tf32} | {report['threads']} CPU threads", f"{'measurement':<60} {'value':>16}  detail"]  # fmt: skip
    for row in report["eta_star"]:
        runs = list(row["runs"].values())
        ref, best = runs[0], runs[-1]
        answer = "identical answers" if row["identical_answers"] else f"ANSWERS DIFFER: {best.get('difference')}"
        lines.append(f"{'eta* ' + row['cell'] + ', seeds ' + ','.join(map(str, row['seeds'])):<60} "
                     f"{'k=%d / k=1 %.2fx' % (best['k'], best['wall_vs_first_k']):>16}  wall {best['wall_s']:.2f} s vs "
                     f"{ref['wall_s']:.2f} s, rounds {best['rounds']} vs {ref['rounds']}, replica-steps "
                     f"{best['replica_steps']} vs {ref['replica_steps']}; k=best is {row['k_best']}; {answer}")  # fmt: skip
    for row in report["throughput"]:
        lines.append(f"{'probe d=%d w=%d, %d replicas x batch %d' % (row['depth'], row['width'], row['replicas'], row['batch']):<60} "
                     f"{'%.2f TFLOP/s' % row['tflops']:>16}  {row['ms_per_step']:.2f} ms/step, fp32 FLOPs = 3 x forward")  # fmt: skip
    for cell in report["sharpness"]:
        shape = f"d={cell['depth']} w={cell['width']}, {cell['subset']} examples"
        lines.append(f"{'HVP / gradient, ' + shape:<60} {'%.2fx' % cell['hvp_over_gradient']:>16}  "
                     f"HVP {cell['hvp_ms']:.2f} ms, gradient {cell['gradient_ms']:.2f} ms")  # fmt: skip
        over = cell["overhead"]
        lines.append(f"{'Lanczos wall per HVP / bare HVP, ' + shape:<60} {'%.2fx' % over['per_product_over_bare_hvp']:>16}  "
                     f"{over['products']} products in {over['wall_s']:.3f} s")  # fmt: skip
        for run in cell["lanczos"]:
            flag = "" if run["converged"] else " (NOT converged)"
            lines.append(f"{'Lanczos %s to %g, %s' % (run['of'], run['tol'], shape):<60} {'%d HVPs' % run['n_products']:>16}  "
                         f"{run['wall_time_s']:.3f} s, residual {run['residual']:.1e}, answered in {run['dtype']}{flag}")  # fmt: skip
    for label in report["skipped"]:
        lines.append(f"{label:<60} {'skipped':>16}  the step's deadline had passed")
    for error in report["errors"]:
        lines.append(f"{error['item']:<60} {'FAILED':>16}  {error['error']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# fill


def missing_groups(profile: str, store) -> list[dict]:
    """Every seed group of the profile's grids with a cell the store lacks, in fill order: by experiment
    (``EXPERIMENT_ORDER``), then costliest first (width^2 x depth: the widest and deepest cells, which a CPU cannot
    reach), deeper first among equals, then by dataset (``DATASET_ORDER``)."""
    from milr_core.experiments import experiment_grids, experiments
    from milr_core.sweep import expand, seed_groups, stored_identity

    names = sorted(experiments(), key=lambda n: (EXPERIMENT_ORDER.index(n) if n in EXPERIMENT_ORDER else 99, n))
    groups = []
    for rank, name in enumerate(names):
        for grid in experiment_grids(name, profile):
            for group in seed_groups(expand(grid, stored_identity)):
                todo = [c for c in group if not store.has(c.hash)]
                if not todo:
                    continue
                spec = group[0].spec
                groups.append({"experiment": name, "grid": grid.name, "kind": grid.kind, "dataset": spec["dataset"],
                               "variant": group[0].labels["variant"], "depth": spec["depth"], "width": spec["width"],
                               "seeds": [c.spec["seed"] for c in todo], "hashes": [c.hash for c in todo],
                               "rank": rank})  # fmt: skip
    dataset_rank = {name: i for i, name in enumerate(DATASET_ORDER)}
    cost = lambda g: g["width"] ** 2 * g["depth"]  # noqa: E731 -- what a CPU cannot reach first
    return sorted(groups, key=lambda g: (g["rank"], -cost(g), -g["depth"], dataset_rank.get(g["dataset"], 9)))


def part_of(group: dict) -> dict:
    return {"datasets": [group["dataset"]], "variants": [group["variant"]], "depths": [group["depth"]],
            "widths": [group["width"]], "seeds": group["seeds"]}  # fmt: skip


def pack_records(records: Path, export: Path | None) -> None:
    """records.tar of records/*.json, replaced atomically, in the export folder."""
    if export is None:
        return
    export.mkdir(parents=True, exist_ok=True)
    temp = export / ".records.tar.tmp"
    with tarfile.open(temp, "w") as tar:
        for path in sorted(records.glob("*.json")):
            tar.add(path, arcname=f"records/{path.name}")
    os.replace(temp, export / "records.tar")


def estimate_s(group: dict, done: list[dict]) -> float | None:
    """A rough cost from the groups of the same kind (and dataset, if any) done so far, scaled up by width^2 x depth
    and seeds; None before the first."""
    filled = [g for g in done if g["kind"] == group["kind"] and g["status"] == "filled"]
    same = [g for g in filled if g["dataset"] == group["dataset"]] or filled
    if not same:
        return None
    last = same[-1]
    scale = max(1.0, (group["width"] ** 2 * group["depth"]) / (last["width"] ** 2 * last["depth"]))
    return last["wall_s"] * scale * len(group["seeds"]) / max(1, len(last["seeds"]))


def step_fill(args: argparse.Namespace, out: Path, export: Path | None) -> None:
    os.environ["MILR_RESULTS"] = str(args.work)  # the experiments' store: the copy on this machine's disk
    from milr_core.config import RunOptions
    from milr_core.experiments import run_experiment
    from milr_core.store import ResultStore

    store = ResultStore(Path(args.work) / args.profile)
    records = out / "records"
    records.mkdir(exist_ok=True)
    known = set(store.hashes())
    plan = missing_groups(args.profile, store)
    report = {"profile": args.profile, "device": args.device, "groups_missing_at_start": len(plan),
              "cells_missing_at_start": sum(len(g["seeds"]) for g in plan), "groups": []}  # fmt: skip
    write_json(out / "fill.json", report, export)
    print(f"fill: {len(plan)} seed groups ({report['cells_missing_at_start']} cells) missing from the {args.profile} store", flush=True)
    run = RunOptions(device=args.device, threads=args.threads)
    report["skipped"] = []  # groups passed over because their estimated cost exceeded the time left
    for group in plan:
        left = remaining(args.deadline)
        label = f"{group['grid']} {group['variant']} {group['dataset']} d={group['depth']} w={group['width']} seeds {group['seeds']}"
        entry = {k: v for k, v in group.items() if k not in ("hashes", "rank")}
        if left < 1.0:
            break
        guess = estimate_s(group, report["groups"])
        if guess is not None and guess > left:
            report["skipped"].append(f"{label} (about {guess:.0f} s, {left:.0f} s left)")
            continue
        print(f"fill: {label}: computing ({left:.0f} s left)", flush=True)
        began = time.perf_counter()
        try:
            run_experiment(group["experiment"], args.profile, compute=True, part=part_of(group), run=run)
            entry["status"] = "filled"
        except Exception as error:  # noqa: BLE001 -- one failed group (memory, data) must not stop the others
            entry["status"], entry["error"] = "failed", f"{type(error).__name__}: {error}"
            print(f"fill: {label}: FAILED {entry['error']}\n{traceback.format_exc()}", flush=True)
        entry["wall_s"] = round(time.perf_counter() - began, 2)
        new = [h for h in store.hashes() if h not in known]
        for cell_hash in new:  # the verified file as the store wrote it, digest and all
            shutil.copyfile(store.file(cell_hash), records / f"{cell_hash}.json")
        known.update(new)
        entry["records"] = new
        entry["results"] = [summarise(store.get(h)) for h in new]
        report["groups"].append(entry)
        pack_records(records, export)
        write_json(out / "fill.json", report, export)
        print(f"fill: {label}: {entry['status']} in {entry['wall_s']:.1f} s, {len(new)} records: "
              f"{'; '.join(map(str, entry['results']))}", flush=True)  # fmt: skip
    report["filled_records"] = sum(len(g.get("records", [])) for g in report["groups"])
    write_json(out / "fill.json", report, export)
    if report["skipped"]:
        print(f"fill: {len(report['skipped'])} groups passed over as too long for the time left, e.g. {report['skipped'][0]}")
    print(f"fill: {report['filled_records']} records written to {records}", flush=True)


def summarise(record: dict) -> dict:
    result, cell = record["result"], record["cell"]
    keep = ("status", "eta_star", "lambda_1", "lambda_1_eff", "late_max_lr")
    return {"kind": cell["kind"], "dataset": cell["dataset"], "depth": cell["depth"], "width": cell["width"],
            "seed": cell["seed"], **{k: result[k] for k in keep if k in result},
            "wall_s": record["provenance"]["wall_time_s"]}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# summary


def step_summary(args: argparse.Namespace, out: Path, export: Path | None) -> None:
    os.environ["MILR_RESULTS"] = str(args.work)
    import pandas as pd

    from milr_core.experiments import coverage, experiment_grids
    from milr_core.store import ResultStore
    from milr_core.sweep import expand, stored_identity

    new = {p.stem for p in (out / "records").glob("*.json")}
    table = coverage(args.profile)
    filled = []
    for experiment, grid_name in zip(table["experiment"], table["grid"]):
        grid = next(g for g in experiment_grids(experiment, args.profile) if g.name == grid_name)
        filled.append(sum(cell.hash in new for cell in expand(grid, stored_identity)))
    table["filled"] = filled
    table["remaining"] = table["cells"] - table["stored"]
    store = ResultStore(Path(args.work) / args.profile)
    remains = missing_groups(args.profile, store)
    fill = read_json(out / "fill.json", {}) or {}
    summary = {
        "profile": args.profile, "device": args.device, "filled_records": len(new),
        "filled_this_session": sum(len(g.get("records", [])) for g in fill.get("groups", [])),
        "filled_cells": [summarise(store.get(h)) for h in sorted(new) if store.has(h)],
        "coverage": table.to_dict("records"),
        "remaining_cells": int(table["remaining"].sum()), "remaining_groups": len(remains),
        "next_groups": [{k: g[k] for k in ("grid", "variant", "dataset", "depth", "width", "seeds")} for g in remains[:25]],
        "fill_groups": [{k: g.get(k) for k in ("grid", "dataset", "depth", "width", "status", "wall_s")}
                        for g in fill.get("groups", [])],
    }  # fmt: skip
    write_json(out / "summary.json", summary, export)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        columns = ["experiment", "grid", "cells", "stored", "filled", "remaining", "widths", "hours"]
        text = table[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}")
    lines = [f"store summary ({args.profile}): {summary['filled_this_session']} records filled on {args.device} this "
             f"session ({len(new)} in {out / 'records'}); {summary['remaining_cells']} cells ({len(remains)} seed "
             "groups) remain", text]  # fmt: skip
    if remains:
        lines.append("next to fill: " + "; ".join(
            f"{g['grid']} {g['variant']} d={g['depth']} w={g['width']}" for g in remains[:6]))  # fmt: skip
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def child(args: argparse.Namespace) -> int:
    out = Path(args.out)
    export = Path(args.export) if args.export else None
    setup_child(args)
    {"checks": step_checks, "bench": step_bench, "fill": step_fill, "summary": step_summary}[args.step](args, out, export)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.step:
        return child(args)
    return session(args)


if __name__ == "__main__":
    sys.exit(main())
