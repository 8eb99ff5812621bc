"""Cost of lambda_1 at initialisation: Lanczos to tolerance, its per-HVP overhead, and one HVP against one gradient.

    python benchmarks/bench_sharpness.py --out sharpness_cpu.json                       # MNIST, small cells
    python benchmarks/bench_sharpness.py --device cuda --cells 4x1024 8x1024 16x2048 --out sharpness_gpu.json

Per cell (``--cells DxW``), on the sharpness protocol's training subset (``--subset``, default 2048 examples, one
chunk, so the Hessian operator keeps its double-backward graph) of the network ``init_params(net, [0])``:

- ``hvp_ms``, ``gradient_ms``: the median wall time of one bare Hessian-vector product and of one gradient of the
  mean loss (``--repeats`` timed calls after a warm-up), and their ratio;
- Lanczos on H and on P^1/2 H P^1/2 (effective sharpness) to each ``--tol`` with the protocol's float64 fallback:
  HVPs, wall time, residual, and which precision answered;
- ``overhead``: the wall time per product of a fixed-length Lanczos run in the operator's own precision
  (``--overhead-steps`` steps, no fallback) over a bare HVP: 1.0 means the solver costs nothing beyond its products.

Results go to JSON with the device, torch version, git commit, threads and whether TF32 was allowed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's milr_core, when run from anywhere

from milr_core.curvature import HessianOperator, PreconditionedOperator, synchronize, top_hessian_eigenvalue  # noqa: E402
from milr_core.model import flat_lr_multipliers, init_params  # noqa: E402
from milr_core.network import NetworkSpec  # noqa: E402
from milr_core.runtime import set_precision  # noqa: E402
from milr_core.sharpness import training_subset  # noqa: E402
from milr_core.store import device_name, git_commit  # noqa: E402

DEFAULT_CELLS = ("2x64", "4x256", "8x256")


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of one call, each call synchronised, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        began = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def subset(dataset_name: str, size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, int]:
    from milr_core.data import load_dataset

    dataset = load_dataset(dataset_name)
    x, y = training_subset(dataset.x_train, dataset.y_train, size, 0)
    return x.to(device=device, dtype=dtype), y.to(device), dataset.n_classes


def bench_cell(depth: int, width: int, x: torch.Tensor, y: torch.Tensor, n_classes: int, *, tols: list[float],
               repeats: int, overhead_steps: int) -> dict:  # fmt: skip
    device = x.device
    spec = NetworkSpec(depth, width, x.shape[1], n_classes)
    params = init_params(spec, [0], x.dtype, device)
    synchronize(device)
    began = time.perf_counter()
    operator = HessianOperator(spec, params, x, y, chunk_size=x.shape[0])
    synchronize(device)
    setup_s = time.perf_counter() - began
    v = torch.randn(operator.n_params, generator=torch.Generator().manual_seed(1), dtype=x.dtype).to(device)
    hvp_s = median_seconds(lambda: operator.matvec(v), device, repeats)
    leaf = operator.theta.clone().requires_grad_()
    gradient_s = median_seconds(lambda: torch.autograd.grad(operator.chunk_loss(leaf, x, y), leaf), device, repeats)
    cell = {"depth": depth, "width": width, "n_params": operator.n_params, "subset": x.shape[0],
            "graph_kept": operator.graph_kept, "setup_s": setup_s, "hvp_ms": 1e3 * hvp_s,
            "gradient_ms": 1e3 * gradient_s, "hvp_over_gradient": hvp_s / gradient_s, "lanczos": []}  # fmt: skip
    effective = PreconditionedOperator(operator, flat_lr_multipliers(spec, dtype=x.dtype, device=device))
    for name, op in (("lambda_1", operator), ("lambda_1_eff", effective)):
        for tol in tols:
            result = top_hessian_eigenvalue(op, "lanczos", tol=tol)
            cell["lanczos"].append({"of": name, "tol": tol, **result.to_dict()})
    # Overhead: a fixed number of Lanczos steps (tol unreachable, so it runs them all, plus one residual product).
    fixed = top_hessian_eigenvalue(operator, "lanczos", tol=1e-300, max_iter=overhead_steps, float64_fallback=False)
    cell["overhead"] = {"products": fixed.n_products, "wall_s": fixed.wall_time_s,
                        "per_product_over_bare_hvp": fixed.wall_time_s / fixed.n_products / hvp_s}  # fmt: skip
    return cell


def print_table(cells: list[dict]) -> None:
    print(f"{'d':>3} {'w':>5} {'params':>9} {'HVP ms':>8} {'grad ms':>8} {'HVP/grad':>8} {'overhead':>8}  "
          "Lanczos to tol: of, tol -> HVPs, s, precision (* not converged)")  # fmt: skip
    for c in cells:
        runs = "; ".join(
            f"{r['of'].removeprefix('lambda_1').lstrip('_') or 'H'} {r['tol']:g} -> {r['n_products']}"
            f"{'' if r['converged'] else '*'}, {r['wall_time_s']:.3f}s, {r['dtype']}"
            for r in c["lanczos"]
        )
        print(f"{c['depth']:>3} {c['width']:>5} {c['n_params']:>9} {c['hvp_ms']:>8.2f} {c['gradient_ms']:>8.2f} "
              f"{c['hvp_over_gradient']:>8.2f} {c['overhead']['per_product_over_bare_hvp']:>8.2f}  {runs}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS), metavar="DxW")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--subset", type=int, default=2048)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--tol", dest="tols", type=float, nargs="+", default=[1e-5], help="Lanczos tolerances (true residual)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of the bare HVP and the gradient")
    parser.add_argument("--overhead-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (pinned)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on a GPU (default: plain fp32)")
    parser.add_argument("--out", help="write the JSON report here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    set_precision(args.device, "tf32" if args.tf32 else "float32")
    device = torch.device(args.device)
    x, y, n_classes = subset(args.dataset, args.subset, device, getattr(torch, args.dtype))
    cells = []
    for shape in args.cells:
        depth, width = map(int, shape.lower().split("x"))
        cells.append(bench_cell(depth, width, x, y, n_classes, tols=args.tols, repeats=args.repeats,
                                overhead_steps=args.overhead_steps))  # fmt: skip
    print_table(cells)
    report = {"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
              "commit": git_commit(), "threads": torch.get_num_threads(), "tf32": args.tf32, "dataset": args.dataset,
              "subset": args.subset, "dtype": args.dtype, "cells": cells}  # fmt: skip
    print(json.dumps({k: report[k] for k in ("device", "torch", "commit", "threads", "tf32")}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
