"""eta* search cost: the k-section search against Algorithm 1 at k=1 and k>1 in fixed lanes; the probe's FLOP/s by lanes.

    python benchmarks/bench_eta_star.py --out eta_star_cpu.json                 # the two CPU cells of issue 15
    python benchmarks/bench_eta_star.py --device cuda --seeds 0 1 2 --out eta_star_gpu.json
    python benchmarks/bench_eta_star.py --device cuda --methods --throughput 16x2048   # TFLOP/s against the lanes

For each cell (``--cell DATASET:DxW[:MAX_STEPS]``; default Gaussians 2x64 at the grids' budget of two epochs and
MNIST 2x128 at 300 steps) it runs, on the same seeds and bracket ([1e-3, 10], rtol 0.05), every search in ``--lanes``
fixed lanes (``runtime.py``): the k-section search with 8 learning rates per round (a different estimand, the one the
old store used), and Algorithm 1 at each speculation depth of ``--k`` (default 1 and 3), all in the same fixed lanes.
It prints eta*, rounds, probes, replica-steps (the steps of every probe, speculative ones and the k-section's
included) and wall time, with each method's ratios to the k-section search, and asserts that every speculation depth
gives k=1's answer bit for bit (eta*, bracket and ledger): in fixed lanes a replica's arithmetic does not depend on
what shares its batch. Issue 15's goal: Algorithm 1 at <= 0.45x the k-section's replica-steps.

``--throughput DxW`` times the training probe alone in a pool of L fixed lanes for each L of ``--lane-counts``: L
replicas at a learning rate too small to finish, two budgets, and TFLOP/s from the difference (an SGD step's FLOPs
are ``NetworkSpec.training_flops_per_example`` x batch x lanes: forward, weight gradients, and input gradients of
every layer but the first), so setup and validation cancel; ``pick_lanes`` takes the smallest L within 10% of the
best rate (the device session's fill uses it). Results go to JSON with the device, torch version, git commit,
thread count and whether TF32 was allowed (off unless ``--tf32``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's milr_core, when run from anywhere

from milr_core.checks import ledger_difference, path_of  # noqa: E402
from milr_core.config import Run, SearchConfig, TrainConfig  # noqa: E402
from milr_core.network import NetworkSpec  # noqa: E402
from milr_core.search import EtaStarResult, find_eta_star  # noqa: E402
from milr_core.store import device_name, git_commit  # noqa: E402
from milr_core.runtime import set_precision  # noqa: E402

DEFAULT_CELLS = ("gaussians:2x64", "mnist:2x128:300")
BOUNDS, RTOL, KSECTION_K = (1e-3, 10.0), 0.05, 8
GOAL = 0.45  # issue 15: Algorithm 1 at <= 0.45x the k-section's replica-steps
LANE_TOLERANCE = 0.10  # the fill's lanes: the fewest within 10% of the best measured rate (ours)


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: str, tf32: bool = False) -> dict:
    return {"device": device_name(device), "device_arg": device, "torch": torch.__version__,
            "cuda": torch.version.cuda, "commit": git_commit(), "threads": torch.get_num_threads(),
            "dtype": "float32", "tf32": tf32}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    dataset: str
    depth: int
    width: int
    max_steps: int | None  # None: the paper grids' two epochs

    @classmethod
    def parse(cls, text: str) -> Cell:
        parts = text.split(":")
        if len(parts) not in (2, 3) or "x" not in parts[1]:
            raise argparse.ArgumentTypeError(f"a cell is DATASET:DEPTHxWIDTH[:MAX_STEPS], got {text!r}")
        depth, width = map(int, parts[1].lower().split("x"))
        return cls(parts[0], depth, width, int(parts[2]) if len(parts) == 3 else None)

    def __str__(self) -> str:
        budget = "2 epochs" if self.max_steps is None else f"{self.max_steps} steps"
        return f"{self.dataset} {self.depth}x{self.width} ({budget})"

    def train(self) -> TrainConfig:
        return TrainConfig(batch_size=128, epochs=2.0, max_steps=self.max_steps, eval_every=25)


def load(name: str, cache: dict) -> object:
    from milr_core.data import load_dataset

    if name not in cache:
        cache[name] = load_dataset(name)
    return cache[name]


def net_for(dataset, depth: int, width: int) -> NetworkSpec:
    return NetworkSpec(depth=depth, width=width, in_dim=dataset.in_dim, out_dim=dataset.n_classes)


def replica_steps(result: EtaStarResult) -> int:
    """Every SGD step any replica took: the path, the speculative probes off it, and the probes above eta*."""
    return sum(o.steps for s in result.per_seed for o in [*(p for _, p in s.ledger), *s.speculative, *s.above])


def timed_search(dataset, net, train, search, seeds, k, device, lanes: int | None) -> tuple[EtaStarResult, dict]:
    synchronize(device)
    began = time.perf_counter()
    result = find_eta_star(Run(dataset, net, tuple(seeds), device=device, speculation=k, lanes=lanes), train, search)
    synchronize(device)
    wall = time.perf_counter() - began
    return result, {
        "eta_star": [s.eta_star for s in result.per_seed],
        "status": [s.status for s in result.per_seed],
        "bracket": [[s.lo, s.hi] for s in result.per_seed],
        "rounds": result.n_rounds,
        "probes": sum(len(s.ledger) + len(s.speculative) + len(s.above) for s in result.per_seed),
        "replica_steps": replica_steps(result),
        "wall_s": wall,
    }


def answer_difference(a: EtaStarResult, b: EtaStarResult, rtol: float) -> str | None:
    """None when b gives a's answer (status, eta*, bracket, ledger with round numbers aside), else what differs."""
    for x, y in zip(a.per_seed, b.per_seed):
        if (x.status, x.eta_star, x.lo, x.hi) != (y.status, y.eta_star, y.lo, y.hi):
            return f"seed {x.seed}: {x.status} {x.eta_star!r} [{x.lo!r}, {x.hi!r}] vs {y.status} {y.eta_star!r} [{y.lo!r}, {y.hi!r}]"
        difference = ledger_difference(path_of(x, rounds=False), path_of(y, rounds=False), rtol)
        if difference:
            return f"seed {x.seed}: {difference}"
    return None


def compare_cell(dataset, cell: Cell, seeds: list[int], device: str, ks: list[int], ksection: bool = True,
                 lanes: int | None = 8) -> dict:  # fmt: skip
    """The k-section search (if asked) and Algorithm 1 at each speculation depth on one cell, every search in the
    same ``lanes`` fixed lanes, with ratios; ``identical_answers``: every k gave the first k's answer bit for bit."""
    net = net_for(dataset, cell.depth, cell.width)
    train = cell.train()
    bisection = SearchConfig(method="bisection", lr_bounds=BOUNDS, rtol=RTOL)
    row = {"cell": str(cell), "dataset": cell.dataset, "depth": cell.depth, "width": cell.width, "lanes": lanes,
           "max_steps": train.budget_steps(dataset.x_train.shape[0]), "seeds": seeds, "runs": {}}  # fmt: skip
    if ksection:
        search = SearchConfig(method="ksection", lr_bounds=BOUNDS, rtol=RTOL, lrs_per_round=KSECTION_K)
        row["runs"][f"ksection K={KSECTION_K}"] = timed_search(dataset, net, train, search, seeds, 1, device, lanes)[1]
    rtol = 0.0  # bit for bit: lanes make every k compute the same replicas (runtime.py)
    if torch.device(device).type == "cuda":  # kernels, allocator and cuBLAS handles warm before the first timing
        from milr_core.probe import train_replicas

        train_replicas(dataset, net, TrainConfig(batch_size=128, max_steps=3), [1e-3, 1e-3], [0, 1], 0.999,
                       lanes=lanes, device=device)  # fmt: skip
    reference = None
    for label, k in ((f"k={k}", k) for k in ks):
        result, run = timed_search(dataset, net, train, bisection, seeds, k, device, lanes)
        run["k"] = k
        if reference is None:
            reference, run["same_answer_as"] = result, None
        else:
            run["same_answer_as"] = ks[0]
            run["difference"] = answer_difference(reference, result, rtol)
        row["runs"][f"Algorithm 1 {label}"] = run
    base = row["runs"].get(f"ksection K={KSECTION_K}")
    first = row["runs"][f"Algorithm 1 k={ks[0]}"] if ks else None
    for run in row["runs"].values():
        if base:
            run["steps_vs_ksection"] = run["replica_steps"] / base["replica_steps"]
            run["wall_vs_ksection"] = run["wall_s"] / base["wall_s"]
        if first and "k" in run:
            run["wall_vs_first_k"] = run["wall_s"] / first["wall_s"]
    row["identical_answers"] = all(run.get("difference") is None for run in row["runs"].values())
    return row


def probe_throughput(dataset, depth: int, width: int, lanes: int, device: str, *, batch: int = 128,
                     steps: tuple[int, int] = (10, 60)) -> dict:  # fmt: skip
    """TFLOP/s of the training probe in ``lanes`` fixed lanes (every lane busy): the wall-time difference of two
    budgets, so setup and validation cancel. Every lane starts from one network drawn once on the device, so that
    drawing networks on the CPU (``init_s_per_param``) is not timed here."""
    from milr_core.model import init_params
    from milr_core.probe import train_replicas

    net = net_for(dataset, depth, width)
    lrs, seeds = [1e-7] * lanes, list(range(lanes))  # far too small to reach the threshold: every step runs
    start = [p.expand(lanes, *p.shape[1:]) for p in init_params(net, [0], torch.float32, device)]

    def wall(n_steps: int) -> float:
        train = TrainConfig(batch_size=batch, max_steps=n_steps, eval_every=n_steps)
        synchronize(device)
        began = time.perf_counter()
        outcomes, _ = train_replicas(dataset, net, train, lrs, seeds, 0.999, lanes=lanes, device=device, init=start)
        synchronize(device)
        assert all(o.steps == n_steps for o in outcomes), "a throughput replica stopped early"
        return time.perf_counter() - began

    wall(3)  # warm-up: kernels, allocator, cuBLAS handles
    short, long = wall(steps[0]), wall(steps[1])
    seconds = max(long - short, 1e-9)
    flops = net.training_flops_per_example() * batch * lanes * (steps[1] - steps[0])
    return {"dataset": dataset.name, "depth": depth, "width": width, "lanes": lanes, "batch": batch,
            "steps": list(steps), "n_params": net.n_params(), "wall_s": [short, long],
            "ms_per_step": 1e3 * seconds / (steps[1] - steps[0]), "tflops": flops / seconds / 1e12}  # fmt: skip


def pick_lanes(rows: list[dict], tolerance: float = LANE_TOLERANCE) -> dict:
    """The row with the fewest lanes whose rate is within ``tolerance`` of the best (more lanes only pad the pool)."""
    best = max(row["tflops"] for row in rows)
    return min((row for row in rows if row["tflops"] >= (1 - tolerance) * best), key=lambda row: row["lanes"])


def init_seconds_per_parameter(dataset, depth: int, width: int, device: str) -> float:
    """Wall time per parameter of one fresh network (drawn on the CPU, moved to ``device``: ``model.init_params``)."""
    from milr_core.model import init_params

    net = net_for(dataset, depth, width)
    init_params(net, [0], torch.float32, device)  # warm-up
    synchronize(device)
    began = time.perf_counter()
    init_params(net, [1], torch.float32, device)
    synchronize(device)
    return (time.perf_counter() - began) / net.n_params()


def print_compare(rows: list[dict]) -> None:
    print(f"{'cell':<30} {'search':<22} {'eta* per seed':<28} {'rounds':>6} {'probes':>6} {'replica-steps':>13} "
          f"{'wall s':>8} {'steps/ks':>8} {'wall/ks':>7} {'wall/k1':>7}  answer")  # fmt: skip
    for row in rows:
        for name, run in row["runs"].items():
            etas = ", ".join("-" if e is None else f"{e:.4g}" for e in run["eta_star"])
            answer = "" if "k" not in run else "reference" if run["same_answer_as"] is None else (
                "identical" if run["difference"] is None else f"DIFFERS: {run['difference']}")
            ratio = lambda key: f"{run[key]:.2f}" if key in run else "-"  # noqa: E731
            print(f"{row['cell']:<30} {name:<22} {etas:<28} {run['rounds']:>6} {run['probes']:>6} "
                  f"{run['replica_steps']:>13} {run['wall_s']:>8.2f} {ratio('steps_vs_ksection'):>8} "
                  f"{ratio('wall_vs_ksection'):>7} {ratio('wall_vs_first_k'):>7}  {answer}")  # fmt: skip
        serial = next((run for run in row["runs"].values() if run.get("k") == 1 and "steps_vs_ksection" in run), None)
        if serial:
            verdict = "meets" if serial["steps_vs_ksection"] <= GOAL else "misses"
            print(f"{'':<30} Algorithm 1 k=1 at {serial['steps_vs_ksection']:.2f}x the k-section's replica-steps: "
                  f"{verdict} issue 15's goal of <= {GOAL}x; speculation depths "
                  f"{'give identical answers' if row['identical_answers'] else 'CHANGE THE ANSWER'}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", dest="cells", type=Cell.parse, action="append",
                        help=f"DATASET:DEPTHxWIDTH[:MAX_STEPS], repeatable (default {' '.join(DEFAULT_CELLS)})")
    parser.add_argument("--methods", nargs="*", default=None, choices=["ksection", "bisection"],
                        help="searches to compare (default both; give the flag alone for none, e.g. with --throughput)")
    parser.add_argument("--k", dest="ks", type=int, nargs="+", default=[1, 3], help="speculation depths (first: the reference)")
    parser.add_argument("--lanes", type=int, default=8, help="fixed lanes of every search (default 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (pinned)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on a GPU (default: plain fp32)")
    parser.add_argument("--throughput", nargs="*", default=[], metavar="DxW", help="probe TFLOP/s at these shapes")
    parser.add_argument("--throughput-dataset", default="mnist")
    parser.add_argument("--lane-counts", type=int, nargs="+", default=[3, 6, 12, 24, 48], help="lanes of the throughput probe")
    parser.add_argument("--out", help="write the JSON report here")
    args = parser.parse_args(argv)
    methods = ["ksection", "bisection"] if args.methods is None else args.methods

    torch.set_num_threads(args.threads)
    set_precision(args.device, "tf32" if args.tf32 else "float32")
    report = {**environment(args.device, args.tf32), "bounds": list(BOUNDS), "rtol": RTOL, "compare": [], "throughput": []}
    datasets: dict = {}
    if "bisection" in methods or "ksection" in methods:
        for cell in args.cells or [Cell.parse(c) for c in DEFAULT_CELLS]:
            dataset = load(cell.dataset, datasets)
            ks = args.ks if "bisection" in methods else []
            row = compare_cell(dataset, cell, args.seeds, args.device, ks, ksection="ksection" in methods, lanes=args.lanes)
            report["compare"].append(row)
        print_compare(report["compare"])
    for shape in args.throughput:
        depth, width = map(int, shape.lower().split("x"))
        dataset = load(args.throughput_dataset, datasets)
        rows = []
        for lanes in args.lane_counts:
            rows.append(probe_throughput(dataset, depth, width, lanes, args.device))
            print(f"probe d={depth} w={width} in {lanes} lanes: {rows[-1]['ms_per_step']:.2f} ms/step, "
                  f"{rows[-1]['tflops']:.3g} TFLOP/s{' (TF32 on)' if args.tf32 else ''}", flush=True)  # fmt: skip
        chosen = pick_lanes(rows)
        print(f"probe d={depth} w={width}: {chosen['lanes']} lanes, the fewest within {LANE_TOLERANCE:.0%} of the best rate")
        report["throughput"].append({"rows": rows, "chosen": chosen["lanes"]})
    print(json.dumps({k: report[k] for k in ("device", "torch", "commit", "threads", "tf32")}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    failed = [row["cell"] for row in report["compare"] if not row["identical_answers"]]
    if failed:
        print(f"speculation changed the answer in {args.lanes} fixed lanes on: {', '.join(failed)}: the lanes promise "
              "bit-identical replicas (runtime.py), so this is a bug on this device", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
