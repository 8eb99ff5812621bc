"""The device session's steps: the checks, the fill and the summary, each writing its output as it goes.

``scripts/device_session.py`` runs each step in a child process with a deadline (and the bench step,
``benchmarks/bench_device.py``, between the checks and the fill); these functions are the steps themselves. Every
output is written atomically (a temporary file, then a rename) and, if an export folder is given, mirrored there, so
that a deadline or a crash loses nothing already finished.

- ``run_checks``: every check of ``checks.CHECKS`` on the device (``checks.json``); ``gate`` says whether the store may
  be filled from it, ``exact`` whether it may speculate and pack (``check_speculation`` and ``check_packing`` passed).
- ``run_fill``: the store's missing seed groups (``fill.py``, ``planner.py``), packed into the bench's lanes where the device is exact,
  k=1 otherwise; the planner's estimate printed first; each record copied to ``records/`` the moment its group ends
  (``fill.json`` logs every call); then the fill's records per minute beside the 2026-12-04 fill's.
- ``run_summary``: the store's coverage with the new records, what remains and the planner's estimate of it, and the
  estimate of the whole paper profile from an empty store on this device (``summary.json``, a table printed last).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from pathlib import Path

from milr_core.config import RunOptions
from milr_core.fill import missing_groups, plan_calls
from milr_core.planner import FillReport, Planner, Speed, default_speed, duration, fill_calls
from milr_core.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
EXACT = ("check_speculation", "check_packing")  # what a device must pass before k > 1 and packing
REFERENCE_FILL = ROOT / "benchmarks" / "device-runs" / "2026-12-04-h200" / "fill.json"  # the first GPU fill, ours


# ----------------------------------------------------------------------------------------------------------
# outputs


def write_json(path: Path, value, export: Path | None = None) -> None:
    """Atomically (a temporary file, then rename), and mirrored into ``export`` if given."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(value, indent=1, default=str) + "\n")
    os.replace(temp, path)
    publish(path, export)


def publish(path: Path, export: Path | None) -> None:
    """Copy ``path`` into ``export`` atomically (nothing if either is missing)."""
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


def pack_records(records: Path, export: Path | None) -> None:
    """``records.tar`` of ``records/*.json``, replaced atomically, in the export folder."""
    if export is None:
        return
    export.mkdir(parents=True, exist_ok=True)
    temp = export / ".records.tar.tmp"
    with tarfile.open(temp, "w") as tar:
        for path in sorted(records.glob("*.json")):
            tar.add(path, arcname=f"records/{path.name}")
    os.replace(temp, export / "records.tar")


# ----------------------------------------------------------------------------------------------------------
# checks


def gate(results: list[dict]) -> bool:
    """The store may be filled from this device: no gating check failed, and no check raised an error (a crash on
    the device is a device-handling bug whatever the check)."""
    return not any(r["status"] == "error" or (r["status"] == "fail" and r["gating"]) for r in results)


def exact(checks: dict | None) -> bool:
    """Whether this session's checks passed ``EXACT`` on the device: then the fill packs and speculates."""
    passed = {r["name"] for r in (checks or {}).get("results", []) if r["status"] == "pass"}
    return all(name in passed for name in EXACT)


def run_checks(device: str, out: Path, deadline: float, export: Path | None = None) -> dict:
    """Every check of ``checks.CHECKS`` on ``device`` until ``deadline`` (a ``time.time()``); returns and writes the
    report (``checks.json``): per check its status (pass, fail, error, not_run), whether it gates, its summary."""
    import traceback

    from milr_core.checks import CHECKS, GATING

    report = {"device": device, "results": [], "gate_passed": False}
    for check in CHECKS:
        name = check.__name__
        if time.time() >= deadline:
            report["results"].append({"name": name, "status": "not_run", "gating": name in GATING})
            print(f"SKIP {name}: the step's deadline has passed", flush=True)
            continue
        began = time.perf_counter()
        try:
            summary, status = check(device), "pass"
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
    report["exact"] = exact(report)
    report["summary"] = f"{sum(r['status'] == 'pass' for r in ran)}/{len(CHECKS)} checks passed on {device}"
    write_json(out / "checks.json", report, export)
    print(report["summary"] + ("" if report["exact"] else "; the fill runs at k=1, unpacked"), flush=True)
    return report


# ----------------------------------------------------------------------------------------------------------
# fill


def speed_of(bench: dict | None, device: str) -> Speed:
    """The fill's ``Speed`` from the bench's lanes item, else ``fill.default_speed``."""
    lanes = (bench or {}).get("lanes")
    if not lanes:
        return default_speed(device)
    return Speed(lanes["chosen"], lanes["tflops"], lanes["layer_floor_s"], lanes["init_s_per_param"], "bench")


def reference_rate() -> dict | None:
    """The 2026-12-04 H200 fill's records per minute (records over the summed wall time of its groups)."""
    fill = read_json(REFERENCE_FILL)
    if not fill:
        return None
    records = sum(len(g.get("records", [])) for g in fill["groups"])
    wall = sum(g.get("wall_s", 0.0) for g in fill["groups"])
    return {"records": records, "wall_s": round(wall, 1), "per_minute": round(60 * records / wall, 2), "device": "NVIDIA H200"}


def rate_line(report: FillReport) -> str:
    """The fill's records per minute, beside the 2026-12-04 fill's (the issue's target: at least 3x on comparable cells)."""
    ours = report.per_minute()
    line = (f"fill: {report.records} records in {report.wall_s:.0f} s of calls: "
            f"{'-' if ours is None else f'{ours:.1f}'} records per minute")  # fmt: skip
    reference = reference_rate()
    if reference:
        line += (f" (the 2026-12-04 H200 fill: {reference['records']} records in {reference['wall_s']:.0f} s of groups, "
                 f"{reference['per_minute']:.1f} per minute; the target is 3x that on comparable cells)")  # fmt: skip
    return line


def run_fill(profile: str, device: str, threads: int, store: ResultStore, out: Path, deadline: float,
             export: Path | None = None) -> dict:  # fmt: skip
    """Fill ``store`` with the profile's missing cells until ``deadline``; returns and writes ``fill.json``.

    The lanes and the device's speed come from ``out/bench.json``, packing and k > 1 only if ``out/checks.json`` says
    the device passed ``EXACT``. Every new record is copied to ``out/records/`` as its group ends.
    """
    checks, bench = read_json(out / "checks.json"), read_json(out / "bench.json")
    speed, packing = speed_of(bench, device), exact(checks)
    records = out / "records"
    records.mkdir(exist_ok=True)
    calls = plan_calls(missing_groups(profile, store), speed.lanes, packing)
    planner = Planner(speed, store)
    plan = planner.announce(calls, device, f"the {profile} store's missing cells")
    print(plan.pop("line"), flush=True)
    report = {"profile": profile, "device": device, "exact": packing, "plan": plan, "calls": [], "skipped": [],
              "filled_records": 0}  # fmt: skip
    write_json(out / "fill.json", report, export)

    def on_group(group, written: list[dict]) -> None:
        for record in written:  # the verified file as the store wrote it, digest and all
            shutil.copyfile(store.file(record["hash"]), records / f"{record['hash']}.json")
        pack_records(records, export)
        report["filled_records"] += len(written)  # kept current: a fill stopped past its deadline still counts right
        write_json(out / "fill.json", report, export)

    def on_call(done: FillReport) -> None:
        report["calls"] = done.calls
        write_json(out / "fill.json", report, export)

    options = RunOptions(device=device, threads=threads, lanes=speed.lanes)
    done = fill_calls(calls, store, options, planner, deadline=deadline, on_group=on_group, on_call=on_call,
                      say=lambda line: print(line, flush=True))  # fmt: skip
    report.update(calls=done.calls, skipped=done.skipped, filled_records=done.records, wall_s=round(done.wall_s, 2),
                  records_per_minute=done.per_minute(), reference=reference_rate(),
                  measured_over_estimated=round(done.correction(), 3))  # fmt: skip
    write_json(out / "fill.json", report, export)
    if done.skipped:
        print(f"fill: {len(done.skipped)} calls passed over as too long for the time left, e.g. {done.skipped[0]}")
    print(rate_line(done), flush=True)
    print(f"fill: measured / estimated time of the calls done: {done.correction():.2f}", flush=True)
    return report


# ----------------------------------------------------------------------------------------------------------
# summary


def _summarise(record: dict) -> dict:
    """A record in one line: kind, cell, its main result and wall time."""
    result, cell = record["result"], record["cell"]
    keep = ("status", "eta_star", "lambda_1", "lambda_1_eff", "late_max_lr")
    return {"kind": cell["kind"], "dataset": cell["dataset"], "depth": cell["depth"], "width": cell["width"],
            "seed": cell["seed"], **{k: result[k] for k in keep if k in result},
            "wall_s": record["provenance"]["wall_time_s"]}  # fmt: skip


def _whole_profile_estimate(speed: Speed, device: str, references: ResultStore | None, packing: bool) -> dict:
    """The planner's estimate of the whole paper profile from an empty store on this device (work per cell from the
    ``references``' ledgers where they have a sibling)."""
    calls = plan_calls(missing_groups("paper", None), speed.lanes, packing)
    return Planner(speed, references).announce(calls, device, "the whole paper profile from an empty store")


def run_summary(profile: str, device: str, store: ResultStore, out: Path, export: Path | None = None) -> dict:
    """The coverage of ``store`` (which ``$MILR_RESULTS/<profile>`` names) with the new records, the remaining cells
    and their estimate, and the whole paper profile's estimate; returns and writes ``summary.json``."""
    import pandas as pd

    from milr_core.experiments import coverage, experiment_grids
    from milr_core.sweep import expand, stored_identity

    new = {p.stem for p in (out / "records").glob("*.json")}
    table = coverage(profile)
    filled = []
    for experiment, grid_name in zip(table["experiment"], table["grid"]):
        grid = next(g for g in experiment_grids(experiment, profile) if g.name == grid_name)
        filled.append(sum(cell.hash in new for cell in expand(grid, stored_identity)))
    table["filled"] = filled
    table["remaining"] = table["cells"] - table["stored"]
    checks, bench, fill = (read_json(out / name, {}) or {} for name in ("checks.json", "bench.json", "fill.json"))
    speed, packing = speed_of(bench, device), exact(checks)
    remains = missing_groups(profile, store)
    left = Planner(speed, store).announce(plan_calls(remains, speed.lanes, packing), device, f"what the {profile} store lacks")
    paper = store if profile == "paper" else ResultStore(ROOT / "results" / "paper") if (ROOT / "results" / "paper").is_dir() else None
    whole = _whole_profile_estimate(speed, device, paper, packing)
    summary = {
        "profile": profile, "device": device, "filled_records": len(new),
        "filled_this_session": fill.get("filled_records", 0), "records_per_minute": fill.get("records_per_minute"),
        "reference": reference_rate(), "filled_cells": [_summarise(store.get(h)) for h in sorted(new) if store.has(h)],
        "coverage": table.to_dict("records"), "remaining_cells": int(table["remaining"].sum()),
        "remaining_groups": len(remains), "remaining_estimate": left, "paper_profile_estimate": whole,
        "next_groups": [{k: g.describe()[k] for k in ("grid", "variant", "dataset", "depth", "width", "seeds")}
                        for g in remains[:25]],
    }  # fmt: skip
    write_json(out / "summary.json", summary, export)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        columns = ["experiment", "grid", "cells", "stored", "filled", "remaining", "widths", "hours"]
        text = table[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}")
    per_minute = summary["records_per_minute"]
    reference = summary["reference"]
    lines = [f"store summary ({profile}): {summary['filled_this_session']} records filled on {device} this session "
             f"({len(new)} in {out / 'records'}), {'-' if per_minute is None else f'{per_minute:.1f}'} records per minute"
             + (f" (2026-12-04 H200 fill: {reference['per_minute']:.1f})" if reference else "")
             + f"; {summary['remaining_cells']} cells ({len(remains)} seed groups) remain", text,
             left["line"], whole["line"]]  # fmt: skip
    if remains:
        lines.append("next to fill: " + "; ".join(g.label() for g in remains[:6]))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    print(f"whole paper profile, empty store, this device ({device}): about {duration(whole['estimate_s'])}", flush=True)
    return summary
