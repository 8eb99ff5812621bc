"""The device session's bench step: the fill's lane count, Algorithm 1 in those lanes, and the sharpness operators.

    python benchmarks/bench_device.py --out DIR [--device cuda] [--profile paper|smoke] [--seconds 120]

At a profile's sizes (``SIZES``: the paper profile's on a GPU, the smoke profile's tiny, for a CPU dry run), in order,
each item writing ``bench.json`` as it ends (an item past the deadline is skipped, one that fails is reported):

1. **lanes**: the probe's TFLOP/s in L fixed lanes for each L of the profile (``bench_eta_star.probe_throughput``) at
   a large shape; the fill's lane count is the fewest within 10% of the best rate (``bench_eta_star.pick_lanes``).
   Then, for the planner (``milr_core.planner.Speed``): the floor of one pool step per linear layer (launch and
   Python overhead: a tiny shape's step time in those lanes less its FLOPs at the large shape's rate), and the
   seconds per parameter of drawing a fresh network.
2. **Algorithm 1 k=1 vs k>1** on the profile's cells in those fixed lanes: the answers must be identical bit for bit
   (asserted; the fill speculates only where this device passed its checks), and the wall ratio.
3. **sharpness**: one HVP against one gradient, Lanczos's per-HVP overhead and its HVPs to tolerance
   (``bench_sharpness.bench_cell``).

One table (``bench.txt``, and in ``bench.json`` with every number).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's milr_core

import bench_eta_star as eta_bench  # noqa: E402
import bench_sharpness as sharp_bench  # noqa: E402

from milr_core.device_session import write_json  # noqa: E402
from milr_core.fill import speculation_depth  # noqa: E402

SIZES = {
    "paper": {
        "lanes": {"dataset": "mnist", "depth": 16, "width": 2048, "counts": [3, 6, 12, 24, 48], "steps": [10, 40]},
        "floor": {"dataset": "mnist", "depth": 4, "width": 64, "steps": [10, 60]},
        "eta_cells": ["mnist:2x128:300", "mnist:4x512:300"], "seeds": [0, 1, 2],
        "sharpness": {"dataset": "mnist", "subset": 2048, "cells": ["4x1024", "16x2048"], "tols": [1e-5]},
    },
    "smoke": {
        "lanes": {"dataset": "gaussians", "depth": 2, "width": 64, "counts": [4, 8, 16], "steps": [5, 20]},
        "floor": {"dataset": "gaussians", "depth": 2, "width": 8, "steps": [5, 30]},
        "eta_cells": ["gaussians:1x16:60"], "seeds": [0, 1],
        "sharpness": {"dataset": "gaussians", "subset": 256, "cells": ["2x32"], "tols": [1e-5]},
    },
}  # fmt: skip


def run_bench(out: Path, device: str, profile: str, deadline: float, tf32: bool = False, export: Path | None = None) -> dict:
    """Every item of the module docstring at ``profile``'s sizes until ``deadline`` (a ``time.time()``); returns the
    report it also wrote to ``out/bench.json`` (and the table to ``out/bench.txt``)."""
    sizes = SIZES[profile]
    report = {**eta_bench.environment(device, tf32), "profile": profile, "sizes": sizes, "lanes": None,
              "eta_star": [], "sharpness": [], "skipped": [], "errors": []}  # fmt: skip
    datasets: dict = {}

    def item(label: str, fn: Callable[[], None]) -> None:
        if time.time() >= deadline:
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

    def lanes() -> None:
        big, tiny = sizes["lanes"], sizes["floor"]
        rows = [eta_bench.probe_throughput(eta_bench.load(big["dataset"], datasets), big["depth"], big["width"], count,
                                           device, steps=tuple(big["steps"])) for count in big["counts"]]  # fmt: skip
        chosen = eta_bench.pick_lanes(rows)
        small = eta_bench.load(tiny["dataset"], datasets)
        floor = eta_bench.probe_throughput(small, tiny["depth"], tiny["width"], chosen["lanes"], device,
                                           steps=tuple(tiny["steps"]))  # fmt: skip
        compute_s = floor["tflops"] / chosen["tflops"] * floor["ms_per_step"] / 1e3  # its FLOPs at the large shape's rate
        report["lanes"] = {"rows": rows, "chosen": chosen["lanes"], "tflops": chosen["tflops"],
                           "tolerance": eta_bench.LANE_TOLERANCE, "floor": floor,
                           "layer_floor_s": max(0.0, floor["ms_per_step"] / 1e3 - compute_s) / (tiny["depth"] + 1),
                           "init_s_per_param": eta_bench.init_seconds_per_parameter(
                               eta_bench.load(big["dataset"], datasets), big["depth"], big["width"], device)}  # fmt: skip

    def eta(text: str) -> Callable[[], None]:
        def run() -> None:
            cell = eta_bench.Cell.parse(text)
            count = report["lanes"]["chosen"] if report["lanes"] else 8
            k = max(2, speculation_depth(len(sizes["seeds"]), count))  # k > 1 even where packing fills the lanes
            row = eta_bench.compare_cell(eta_bench.load(cell.dataset, datasets), cell, sizes["seeds"], device, [1, k],
                                         ksection=False, lanes=count)  # fmt: skip
            report["eta_star"].append(row)
            assert row["identical_answers"], f"{cell}: speculation changed the answer in {count} fixed lanes: {row['runs']}"

        return run

    def sharpness(shape: str) -> Callable[[], None]:
        def run() -> None:
            import torch

            sp = sizes["sharpness"]
            if "subset" not in datasets:
                datasets["subset"] = sharp_bench.subset(sp["dataset"], sp["subset"], torch.device(device), torch.float32)
            x, y, n_classes = datasets["subset"]
            depth, width = map(int, shape.split("x"))
            report["sharpness"].append(sharp_bench.bench_cell(depth, width, x, y, n_classes, tols=sp["tols"],
                                                              repeats=10, overhead_steps=30))  # fmt: skip

        return run

    big = sizes["lanes"]
    item(f"probe TFLOP/s against lanes {big['counts']}, d={big['depth']} w={big['width']}", lanes)
    for text in sizes["eta_cells"]:
        item(f"Algorithm 1 k=1 vs k>1 in fixed lanes {text}", eta(text))
    for shape in sizes["sharpness"]["cells"]:
        item(f"HVP, gradient and Lanczos {sizes['sharpness']['dataset']} {shape}", sharpness(shape))
    report["table"] = table(report)
    write_json(out / "bench.json", report, export)
    (out / "bench.txt").write_text(report["table"] + "\n")
    print(report["table"], flush=True)
    return report


def table(report: dict) -> str:
    """The bench as one table: one line per measurement."""
    tf32 = "TF32 ON" if report["tf32"] else "fp32, TF32 off"
    cuda = f" (CUDA {report['cuda']})" if report.get("cuda") else ""
    lines = [f"device benchmarks | {report['device']} | torch {report['torch']}{cuda} | commit {report['commit']} | "
             f"{tf32} | {report['threads']} CPU threads", f"{'measurement':<60} {'value':>16}  detail"]  # fmt: skip
    lanes = report["lanes"]
    for row in lanes["rows"] if lanes else []:
        mark = "  <- the fill's lanes" if row["lanes"] == lanes["chosen"] else ""
        lines.append(f"{'probe %s d=%d w=%d, %d lanes x batch %d' % (row['dataset'], row['depth'], row['width'], row['lanes'], row['batch']):<60} "
                     f"{'%.3g TFLOP/s' % row['tflops']:>16}  {row['ms_per_step']:.2f} ms/step, FLOPs = training_flops_per_example{mark}")  # fmt: skip
    if lanes:
        floor = lanes["floor"]
        lines.append(f"{'pool step floor, %s d=%d w=%d in %d lanes' % (floor['dataset'], floor['depth'], floor['width'], floor['lanes']):<60} "
                     f"{'%.3f ms/layer' % (1e3 * lanes['layer_floor_s']):>16}  {floor['ms_per_step']:.2f} ms/step, less its FLOPs "
                     "at the fill's rate")  # fmt: skip
        lines.append(f"{'a fresh network (drawn on the CPU)':<60} {'%.2f ns/param' % (1e9 * lanes['init_s_per_param']):>16}  "
                     "model.init_params, every probe")  # fmt: skip
    for row in report["eta_star"]:
        runs = list(row["runs"].values())
        ref, best = runs[0], runs[-1]
        answer = "identical answers" if row["identical_answers"] else f"ANSWERS DIFFER: {best.get('difference')}"
        lines.append(f"{'eta* ' + row['cell'] + ', seeds ' + ','.join(map(str, row['seeds'])):<60} "
                     f"{'k=%d / k=1 %.2fx' % (best['k'], best['wall_vs_first_k']):>16}  in {row['lanes']} fixed lanes, wall "
                     f"{best['wall_s']:.2f} s vs {ref['wall_s']:.2f} s, rounds {best['rounds']} vs {ref['rounds']}, "
                     f"replica-steps {best['replica_steps']} vs {ref['replica_steps']}; {answer}")  # fmt: skip
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


def main(argv: list[str] | None = None) -> int:
    import torch

    from milr_core.runtime import set_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the folder for bench.json and bench.txt (created)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", choices=sorted(SIZES), default="paper")
    parser.add_argument("--seconds", type=float, default=300.0, help="no item starts after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (recorded)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_precision(args.device, "tf32" if args.tf32 else "float32")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = run_bench(out, args.device, args.profile, time.time() + args.seconds, args.tf32)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
