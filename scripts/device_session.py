"""A GPU put to use in one call: CUDA correctness, device benchmarks, then the store's missing cells until the budget.

    bash scripts/device_session.sh --minutes 9 --out DIR [--device cuda] [--profile paper|smoke] [--tf32]
                                   [--export DIR2] [--store STORE] [--data DATA] [--commit SHA] [--threads N]
                                   [--steps checks,bench,fill,summary]

Steps, in order, each in its own process with its own deadline (derived from ``--minutes``), each writing its
output under DIR as it goes, so that a deadline or a crash loses nothing already finished:

1. ``checks``: every check of ``milr_core.checks`` on the device (``checks.json``). If a gating check fails,
   the store is not filled from this device (``--fill-anyway`` overrides); until the device has passed
   ``check_speculation`` and ``check_packing`` in this session, the fill runs at k=1 and packs nothing.
2. ``bench`` (``benchmarks/bench_device.py``): the probe's TFLOP/s against the lane count, and the fill's lanes (the
   fewest within 10% of the best rate); Algorithm 1 at k=1 and k>1 in those fixed lanes (identical answers,
   asserted); one HVP against one gradient and Lanczos's overhead; one table (``bench.txt``, ``bench.json``).
3. ``fill`` (``milr_core/fill.py``): the cells of the profile's grids that the store (a copy of
   ``results/<profile>`` of the checkout, or ``--store``, on the machine's own disk) lacks, the power-law grids
   first, costliest first; compatible eta* groups packed into the bench's lanes; the planner's estimate printed
   before it starts and calls that do not fit in the time left passed over; every new record copied to
   ``DIR/records/`` the moment its group finishes (``fill.json`` logs each call), and the records per minute.
4. ``summary``: ``experiments.coverage`` of the store with the new records, what remains and how long it would take
   here, and the planner's estimate of the whole paper profile from an empty store on this device
   (``summary.json``, and a table printed last).

``milr_core/device_session.py`` holds the checks, fill and summary steps; this script the arguments, the parent
that runs each step in a child process with a deadline, the log and the exports. ``session.json`` holds the
provenance (device, torch, CUDA, commit, TF32, threads) and each step's status; ``session.log`` everything
printed. ``--export DIR2`` also mirrors, as they change, the top-level files and a ``records.tar`` of ``records/``
into DIR2 (seven files at most): for tools that fetch only a few files back.

fp32 by default, TF32 off; ``--tf32`` allows TF32 matmuls in the checks and benchmarks (recorded). The store's
cells always run in their grid's dtype (the fill sets TF32 from it), so ``--tf32`` never reaches a record.

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
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's milr_core, installed or not

from milr_core.device_session import publish, read_json, write_json  # noqa: E402  (no torch: the parent stays light)

STEPS = ("checks", "bench", "fill", "summary")
OUTPUTS = {"checks": ("checks.json",), "bench": ("bench.json", "bench.txt"), "fill": ("fill.json",),
           "summary": ("summary.json", "summary.txt")}  # fmt: skip
GRACE_S = 15.0  # after a step's deadline: time to write its last output before it is stopped


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
                state["steps"][step].update(gate_passed=not failed_gate, exact=checks.get("exact", False))
            write_json(out / "session.json", state, export)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    state["finished_utc"], state["wall_s"] = now_utc(), round(time.time() - t0, 1)
    fill = read_json(out / "fill.json", {}) if "fill" in state["steps"] else {}
    state["records_filled"] = (fill or {}).get("filled_records", 0)
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
# one step (a child process)


def child(args: argparse.Namespace) -> int:
    """Run ``args.step`` in this process: threads pinned, precision set, the store the fill and summary use."""
    import torch

    from milr_core import device_session
    from milr_core.runtime import set_precision
    from milr_core.store import ResultStore

    torch.set_num_threads(args.threads)
    set_precision(args.device, "tf32" if args.tf32 else "float32")
    if args.commit and args.commit != "unknown":  # records name the commit even where the checkout has no .git
        os.environ["MILR_GIT_COMMIT"] = args.commit
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"device {args.device} asked for, but torch {torch.__version__} sees no CUDA device")
    os.environ["MILR_RESULTS"] = str(args.work)  # the experiments' store: the copy on this machine's disk
    out, export = Path(args.out), Path(args.export) if args.export else None
    if args.step == "checks":
        device_session.run_checks(args.device, out, args.deadline, export)
    elif args.step == "bench":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_device import run_bench

        run_bench(out, args.device, args.profile, args.deadline, args.tf32, export)
    elif args.step == "fill":
        store = ResultStore(Path(args.work) / args.profile)
        device_session.run_fill(args.profile, args.device, args.threads, store, out, args.deadline, export)
    else:
        device_session.run_summary(args.profile, args.device, ResultStore(Path(args.work) / args.profile), out, export)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.step:
        return child(args)
    return session(args)


if __name__ == "__main__":
    sys.exit(main())
