"""Bisection (Algorithm 1) against the batched search on the same config, and the probe's raw throughput.

    python benchmarks/bench_eta_star.py --dataset mnist --cells 4x256 8x1024 --device cuda --out bench.json
    python benchmarks/bench_eta_star.py --throughput 16x2048 --device cuda

For each cell it prints eta* from both methods, whether they agree within the tolerance, the wall
times and their ratio. ``--throughput`` trains one probe of K replicas at a learning rate too small
to finish and reports fp32 TFLOP/s (forward + backward counted as 3x the forward's 2 * multiply-adds).
Results are written as JSON with the device, torch version and git commit.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time

import torch

from milr_core.data import load_dataset
from milr_core.model import NetworkSpec
from milr_core.probe import TrainConfig, run_probe
from milr_core.search import SearchConfig, find_eta_star


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def provenance(device: str) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu: {platform.processor() or platform.machine()}"
    return {"device": name, "torch": torch.__version__, "commit": commit}


def parse_cell(text: str) -> tuple[int, int]:
    depth, width = text.lower().split("x")
    return int(depth), int(width)


def compare_methods(dataset, depth: int, width: int, args: argparse.Namespace) -> dict:
    net = NetworkSpec(depth=depth, width=width, in_dim=dataset.in_dim, out_dim=dataset.n_classes)
    train = TrainConfig(batch_size=args.batch_size, epochs=args.epochs, eval_every=args.eval_every)
    row = {"depth": depth, "width": width}
    for method in ("batched", "bisection"):
        synchronize(args.device)
        start = time.perf_counter()
        result = find_eta_star(
            dataset,
            net,
            train,
            SearchConfig(method, (args.lr_min, args.lr_max), args.rtol, args.lrs_per_round),
            seeds=list(range(args.seeds)),
            device=args.device,
        )
        synchronize(args.device)
        row[method] = {
            "eta_star": [s.eta_star for s in result.per_seed],
            "seconds": time.perf_counter() - start,
            "rounds": result.n_rounds,
            "probes": sum(len(s.ledger) for s in result.per_seed),
        }
    pairs = zip(row["batched"]["eta_star"], row["bisection"]["eta_star"])
    row["agree"] = all(a and b and abs(math.log(a / b)) <= math.log(1 + args.rtol) for a, b in pairs)
    row["speedup"] = row["bisection"]["seconds"] / row["batched"]["seconds"]
    return row


def throughput(dataset, depth: int, width: int, args: argparse.Namespace) -> dict:
    net = NetworkSpec(depth=depth, width=width, in_dim=dataset.in_dim, out_dim=dataset.n_classes)
    train = TrainConfig(batch_size=args.batch_size, max_steps=args.steps, eval_every=args.steps)
    lrs = [1e-7] * args.lrs_per_round  # far too small to reach the threshold: every replica trains all steps
    run_probe(dataset, net, TrainConfig(batch_size=args.batch_size, max_steps=3), lrs, [0] * len(lrs), 0.999, device=args.device)
    synchronize(args.device)
    start = time.perf_counter()
    run_probe(dataset, net, train, lrs, [0] * len(lrs), 0.999, device=args.device)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    flops = 3 * net.flops_per_example() * args.batch_size * args.steps * len(lrs)
    return {"depth": depth, "width": width, "replicas": len(lrs), "steps": args.steps, "seconds": seconds, "tflops": flops / seconds / 1e12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--cells", nargs="*", default=[], help="DEPTHxWIDTH cells to compare methods on")
    parser.add_argument("--throughput", nargs="*", default=[], help="DEPTHxWIDTH cells to measure TFLOP/s on")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--lr-min", type=float, default=1e-3)
    parser.add_argument("--lr-max", type=float, default=10.0)
    parser.add_argument("--rtol", type=float, default=0.05)
    parser.add_argument("--lrs-per-round", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--steps", type=int, default=50, help="steps of the throughput probe")
    parser.add_argument("--out", help="write the JSON here")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    report = {**provenance(args.device), "dataset": args.dataset, "source": dataset.meta["source"], "compare": [], "throughput": []}
    for depth, width in map(parse_cell, args.cells):
        row = compare_methods(dataset, depth, width, args)
        report["compare"].append(row)
        print(
            f"d={depth:3d} w={width:5d}  eta* batched {row['batched']['eta_star']} ({row['batched']['seconds']:.1f}s, "
            f"{row['batched']['rounds']} rounds)  bisection {row['bisection']['eta_star']} "
            f"({row['bisection']['seconds']:.1f}s, {row['bisection']['rounds']} rounds)  "
            f"agree={row['agree']}  speedup={row['speedup']:.1f}x",
            flush=True,
        )
    for depth, width in map(parse_cell, args.throughput):
        row = throughput(dataset, depth, width, args)
        report["throughput"].append(row)
        print(f"d={depth:3d} w={width:5d}  K={row['replicas']}  {row['tflops']:.2f} TFLOP/s (fp32)", flush=True)
    print(json.dumps({k: report[k] for k in ("device", "torch", "commit")}))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
