"""How long a store's missing cells take on a device, and the fill against the clock.

- **The estimate** (``Planner``): seconds per call (``fill.Call``) = pool steps x (FLOPs of one step of all lanes /
  the device's FLOP/s + the device's floor per step), Hessian-vector products likewise, and a fresh network per probe.
  Pool steps come from the *expected replica-steps* of each seed: the ledgers of the store's records of the same grid
  and variant at the same or smaller widths (same depth first), else a stated default (every bisection probe runs its
  whole budget: ``preflight``'s counts). A step's FLOPs are ``NetworkSpec.training_flops_per_example`` x batch plus a
  validation pass every ``eval_every`` steps (counted in full: an upper bound). The FLOP/s, the floor and the cost of
  drawing a network are what the session's bench measured at the fill's lane count (``Speed``). Checked against the
  2026-12-04 H200 fill (its 33 groups at that bench's 21.5 TFLOP/s in 3 lanes, with ``default_speed``'s floor and
  network cost, which that bench did not measure): 332 s estimated, 418 s measured, which also loaded the data once
  per group (the fill now loads each dataset once). Ours and rough.
- **The fill** (``fill_calls``): the calls in order, each while its estimate, scaled by what the calls already done
  measured against theirs, fits in the time left; the records per minute it reached (``FillReport``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from milr_core.config import RunOptions
from milr_core.fill import Call, Group, compute_call
from milr_core.grid import KIND_SECTIONS
from milr_core.network import NetworkSpec
from milr_core.store import ResultStore, content_hash
from milr_core.sweep import rebuild

# A Hessian-vector product inside Lanczos, in forward passes of its examples: on an H200 (2026-12-04 bench, d=16,
# w=2048) an HVP took 2.11x a gradient (3 forward passes) and Lanczos 1.27x a bare HVP per product (ours).
HVP_FORWARDS = 8


@dataclass(frozen=True)
class Speed:
    """What a device does at the fill's lane count: training FLOP/s (``tflops``, at a large shape); the floor of one
    pool step per linear layer (launch and Python overhead: a tiny shape's step time less its FLOPs at that rate); the
    seconds per parameter of a fresh network (drawn on the CPU, ``model.init_params``). ``source``: "bench" or
    "default"."""

    lanes: int
    tflops: float
    layer_floor_s: float
    init_s_per_param: float
    source: str = "bench"


def default_speed(device: str) -> Speed:
    """A stated guess where no bench ran: ``preflight.FLOP_RATES``; a floor of 0.1 ms (GPU) or 0.05 ms (CPU) per layer
    and step, and 5 ns per initial parameter (ours)."""
    from milr_core.preflight import FLOP_RATES
    from milr_core.runtime import GPU_LANES

    cuda = device.startswith("cuda")
    return Speed(GPU_LANES if cuda else 4, FLOP_RATES["cuda" if cuda else "cpu"] / 1e12, 1e-4 if cuda else 5e-5, 5e-9,
                 "default")  # fmt: skip


@dataclass(frozen=True)
class Work:
    """One seed's expected work: replica-steps of training, Hessian-vector products, fresh networks (probes), and
    whence the numbers."""

    steps: float
    products: float
    probes: float
    source: str


def _work_of(record: dict) -> tuple[float, float, float]:
    """(replica-steps, Hessian-vector products, probes) a stored record took: its ledger's steps and probes (one
    network where it has no ledger) and its result's products."""
    steps = sum(probe.get("steps") or 0 for probe in record["ledger"])
    products = sum(v for k, v in record["result"].items() if k.endswith("n_products") and isinstance(v, (int, float)))
    return float(steps), float(products), float(max(1, len(record["ledger"])))


def _default_work(sections: dict, n_train: int) -> Work:
    """One seed's work by our counts, where the store has no sibling: every bisection probe runs its whole budget
    (``preflight.probes_per_search``; an upper bound), each eigensolve ``preflight.EIGEN_PRODUCTS`` products."""
    from milr_core.preflight import EIGEN_PRODUCTS, probes_per_search

    train, search = sections.get("train"), sections.get("search")
    probes = probes_per_search(search) if search else 0
    steps = probes * train.budget_steps(n_train) if train and search else 0
    solves = 0
    if "late" in sections:
        steps += sections["late"].pretrain_steps + probes * sections["late"].late_steps
        probes *= 2  # a search from theta_0, then one from theta_T
    if "range_test" in sections:
        steps += sections["range_test"].steps
    if "sharpness" in sections:
        sharpness = sections["sharpness"]
        solves = (1 + sharpness.effective + sharpness.bounds) * (2 if "late" in sections else 1)
    if "trajectory" in sections:
        trajectory = sections["trajectory"]
        steps += len(trajectory.eta_lambdas) * trajectory.steps
        solves = len(trajectory.eta_lambdas) * (trajectory.steps // trajectory.every + 1)
    return Work(float(steps), float(solves * EIGEN_PRODUCTS), float(max(1, probes)), "default")


class Planner:
    """Seconds the fill's calls take on a device (module docstring).

    Args:
        speed: the device's ``Speed`` at the fill's lane count.
        references: a store whose records' ledgers say how much work a cell takes (None: the defaults only).
    """

    def __init__(self, speed: Speed, references: ResultStore | None = None) -> None:
        self.speed, self.references = speed, references
        self.works: dict[str, Work] = {}
        self.read: dict[str, dict | None] = {}  # the reference records read so far, by hash

    def sections(self, group: Group) -> dict:
        """The config dataclasses of the sections the group's kind reads."""
        return {s: rebuild(s, group.spec[s]) for s in KIND_SECTIONS[group.kind]}

    def shape(self, group: Group) -> tuple[NetworkSpec, int, int]:
        """The group's network, and its dataset's training and validation sizes (known without reading the data)."""
        from milr_core.preflight import data_shape

        spec = group.spec
        n_train, n_val, in_dim, classes = data_shape(spec["dataset"], group.variant.dataset_options[spec["dataset"]])
        network = NetworkSpec(spec["depth"], spec["width"], in_dim, classes, **spec["network"])
        return network, n_train, n_val

    def work(self, group: Group) -> Work:
        """One seed's expected work: the mean over the stored records of the nearest sibling cells (same grid settings
        but depth, width and seed; the same depth first, then the widest width up to the group's), else the default."""
        if group.key in self.works:
            return self.works[group.key]
        spec, grid = group.spec, group.grid
        depths = sorted(grid.depths, key=lambda d: (d != spec["depth"], abs(d - spec["depth"])))
        widths = sorted((w for w in grid.widths if w <= spec["width"]), reverse=True)
        found = None
        for depth in depths if self.references else []:
            for width in widths:
                records = [self.reference(content_hash({**spec, "depth": depth, "width": width, "seed": seed}))
                           for seed in grid.seeds]  # fmt: skip
                works = [_work_of(r) for r in records if r is not None]
                works = [w for w in works if w[:2] != (0.0, 0.0)]
                if works:
                    steps, products, probes = (statistics.fmean(column) for column in zip(*works))
                    found = Work(steps, products, probes, f"{len(works)} stored cells at d={depth} w={width}")
                    break
            if found:
                break
        if found is None:
            found = _default_work(self.sections(group), self.shape(group)[1])
        self.works[group.key] = found
        return found

    def reference(self, cell_hash: str) -> dict | None:
        """A reference record (None if the store lacks it), read once."""
        if cell_hash not in self.read:
            self.read[cell_hash] = self.references.read(cell_hash)
        return self.read[cell_hash]

    def seconds(self, call: Call) -> float:
        """Pool steps x (one step's FLOPs / FLOP/s + the floor), the products likewise, and every probe's fresh network;
        speculation k takes k bisection steps per round with 2^k - 1 probes: (2^k - 1) / k times the steps and probes."""
        first = call.groups[0]
        network, _, n_val = self.shape(first)
        sections = self.sections(first)
        train, sharpness = sections.get("train"), sections.get("sharpness")
        if train:
            lane_flops = train.batch_size * network.training_flops_per_example() + (
                n_val * network.flops_per_example() / train.eval_every)  # fmt: skip
        else:  # trained full-batch on the curvature subset (the trajectory)
            lane_flops = (sharpness.subset_size if sharpness else 1) * network.training_flops_per_example()
        product_flops = HVP_FORWARDS * (sharpness.subset_size if sharpness else 0) * network.flops_per_example()
        k, lanes, rate = call.speculation, self.speed.lanes, self.speed.tflops * 1e12
        steps = sum(len(g.seeds) * self.work(g).steps for g in call.groups) * (2**k - 1) / k
        bounds = (network.out_dim + 2) / 2 if sharpness and sharpness.bounds else 0  # C + 2 backward passes, in HVPs
        products = sum(len(g.seeds) * (self.work(g).products + bounds) for g in call.groups)
        probes = sum(len(g.seeds) * self.work(g).probes for g in call.groups) * (2**k - 1) / k
        busy = max(1, min(lanes, call.seeds * (2**k - 1)))
        floor = self.speed.layer_floor_s * network.n_layers
        return (steps / busy * (lanes * lane_flops / rate + floor) + products * (product_flops / rate + floor)
                + probes * network.n_params() * self.speed.init_s_per_param)  # fmt: skip

    def announce(self, calls: list[Call], device: str, what: str) -> dict:
        """The plan in one line (``line``) and in numbers: groups, cells, calls, seconds, and how many groups the
        ledgers informed."""
        seconds = sum(self.seconds(call) for call in calls)
        groups = [g for call in calls for g in call.groups]
        informed = sum(self.work(g).source != "default" for g in groups)
        packed = sum(len(call.groups) for call in calls if len(call.groups) > 1)
        speed = self.speed
        line = (f"planner: {what}: {len(groups)} seed groups ({sum(call.seeds for call in calls)} cells) in {len(calls)} "
                f"calls ({packed} groups packed), about {duration(seconds)} on {device} at {speed.tflops:.3g} TFLOP/s in "
                f"{speed.lanes} lanes ({speed.source}); work of "
                f"{informed} groups from stored ledgers, {len(groups) - informed} by default counts (ours, rough)")  # fmt: skip
        return {"line": line, "groups": len(groups), "cells": sum(call.seeds for call in calls), "calls": len(calls),
                "packed_groups": packed, "estimate_s": round(seconds, 1), "from_ledgers": informed,
                "speed": dataclasses.asdict(speed)}  # fmt: skip


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "40 s", "12.5 min", "3.2 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------------------------------------
# the fill


@dataclass
class FillReport:
    """What ``fill_calls`` did: one entry per call (as fill.json lists them) and the calls passed over."""

    calls: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(len(g.get("records", [])) for call in self.calls for g in call["groups"])

    @property
    def wall_s(self) -> float:
        return sum(call["wall_s"] for call in self.calls)

    def per_minute(self) -> float | None:
        """Records per minute of the calls' wall time (None before any)."""
        return 60 * self.records / self.wall_s if self.wall_s > 0 else None

    def correction(self) -> float:
        """Measured over estimated seconds of the calls done so far (1 before the first)."""
        estimated = sum(call["estimate_s"] for call in self.calls if call["status"] == "filled")
        measured = sum(call["wall_s"] for call in self.calls if call["status"] == "filled")
        return measured / estimated if estimated > 0 and measured > 0 else 1.0


def fill_calls(calls: list[Call], store: ResultStore, options: RunOptions, planner: Planner, *,
               deadline: float | None = None, on_group: Callable[[Group, list[dict]], None] | None = None,
               on_call: Callable[[FillReport], None] | None = None, say: Callable[[str], None] = print) -> FillReport:  # fmt: skip
    """Compute the calls in order while each fits in the time left (its estimate x the correction measured so far).

    Args:
        calls: ``plan_calls``'s list. store, options: where and how (``compute_call``). planner: the estimates.
        deadline: a ``time.time()`` after which nothing starts (None: no limit).
        on_group: each group's records as they are written. on_call: the report after each call. say: progress lines.

    Returns:
        The ``FillReport``; a call that fails (memory, data) is reported and the next one runs.
    """
    report, datasets = FillReport(), {}
    for call in calls:
        left = None if deadline is None else deadline - time.time()
        if left is not None and left < 1.0:
            report.skipped += [g.label() + " (no time left)" for g in call.groups]
            continue
        estimate = planner.seconds(call)
        expected = estimate * report.correction()
        names = "; ".join(g.label() for g in call.groups)
        if left is not None and expected > left:
            report.skipped.append(f"{names} (about {expected:.0f} s, {left:.0f} s left)")
            continue
        entry = {"groups": [g.describe() for g in call.groups], "packed": len(call.groups), "lanes": options.lanes,
                 "speculation": call.speculation, "estimate_s": round(estimate, 2), "status": "filled"}  # fmt: skip
        say(f"fill: {len(call.groups)} group(s) in one call, k={call.speculation}, about {expected:.1f} s: {names}")
        began = time.perf_counter()
        written: dict[str, list[dict]] = {}

        def group_done(group: Group, records: list[dict]) -> None:
            written[group.key] = records
            if on_group:
                on_group(group, records)

        try:
            compute_call(call, store, options, datasets, group_done)
        except Exception as error:  # noqa: BLE001 -- one failed call (memory, data) must not stop the others
            entry["status"], entry["error"] = "failed", f"{type(error).__name__}: {error}"
            say(f"fill: FAILED {entry['error']}\n{traceback.format_exc()}")
        entry["wall_s"] = round(time.perf_counter() - began, 2)
        for described, group in zip(entry["groups"], call.groups):
            described["records"] = [r["hash"] for r in written.get(group.key, [])]
        report.calls.append(entry)
        say(f"fill: {entry['status']} in {entry['wall_s']:.1f} s (estimated {estimate:.1f} s), "
            f"{sum(len(g['records']) for g in entry['groups'])} records")  # fmt: skip
        if on_call:
            on_call(report)
    return report
