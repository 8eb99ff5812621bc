"""Cost of lambda_1 at initialisation: products and wall time of Lanczos and power iteration per (depth, width).

For each cell: HVPs and seconds to reach relative residual 1e-3 and 1e-6 with each method, the solver's
wall time per HVP against a bare HVP (solver overhead), and one HVP against one gradient. Targets on a
GPU: Lanczos reaches 1e-6 within 40 HVPs, wall per HVP within 1.2x of a bare HVP, one HVP <= 2 gradients.

    python benchmarks/bench_sharpness.py --device cuda --subset 2048 --out results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
import warnings
from collections.abc import Callable

import torch

from milr_core.model import NetworkSpec, init_params
from milr_core.sharpness import HessianOperator, synchronize, top_hessian_eigenvalue, training_subset

TOLERANCES = (1e-3, 1e-6)


def load_training_data(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's training split, or random data of MNIST shape (with a warning) when it cannot be loaded."""
    try:
        from milr_core.data import load_dataset

        dataset = load_dataset(name)
        return dataset.x_train, dataset.y_train
    except Exception as error:  # noqa: BLE001 -- any failure falls back, loudly
        warnings.warn(f"could not load {name!r} ({error!r}); timing on random data of MNIST shape instead")
        g = torch.Generator().manual_seed(0)
        return torch.randn(10_000, 784, generator=g), torch.randint(0, 10, (10_000,), generator=g)


def seconds_per_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean wall time of fn after one warm-up call."""
    fn()
    synchronize(device)
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - began) / repeats


def bench_cell(spec: NetworkSpec, x: torch.Tensor, y: torch.Tensor, device: torch.device, repeats: int) -> dict:
    params = init_params(spec, [0], x.dtype, device)
    synchronize(device)
    began = time.perf_counter()
    operator = HessianOperator(spec, params, x, y, chunk_size=x.shape[0])
    synchronize(device)
    setup_s = time.perf_counter() - began
    v = torch.randn(operator.n_params, device=device, dtype=x.dtype)
    bare_hvp_s = seconds_per_call(lambda: operator.matvec(v), device, repeats)
    leaf = operator.theta.clone().requires_grad_()
    gradient_s = seconds_per_call(
        lambda: torch.autograd.grad(operator.chunk_loss(leaf, x, y), leaf), device, repeats
    )
    cell = {"depth": spec.depth, "width": spec.width, "n_params": operator.n_params, "setup_s": setup_s,
            "bare_hvp_s": bare_hvp_s, "gradient_s": gradient_s, "hvp_over_gradient": bare_hvp_s / gradient_s}
    for method in ("lanczos", "power"):
        for tol in TOLERANCES:
            result = top_hessian_eigenvalue(operator, method, tol=tol)
            cell[f"{method}_{tol:g}"] = {
                **result.to_dict(), "wall_per_hvp_over_bare": result.wall_time_s / result.n_hvps / bare_hvp_s
            }
    return cell


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def print_table(cells: list[dict]) -> None:
    header = f"{'d':>3} {'w':>5} {'P':>9} {'HVP ms':>8} {'HVP/grad':>8}"
    for method in ("lanczos", "power"):
        for tol in TOLERANCES:
            header += f" | {method[:3]} {tol:g}: {'hvps':>5} {'s':>7} {'x bare':>6}"
    print(header)
    for c in cells:
        row = f"{c['depth']:>3} {c['width']:>5} {c['n_params']:>9} {1e3 * c['bare_hvp_s']:>8.2f} {c['hvp_over_gradient']:>8.2f}"
        for method in ("lanczos", "power"):
            for tol in TOLERANCES:
                r = c[f"{method}_{tol:g}"]
                flag = "" if r["converged"] else "*"
                row += f" | {'':>{len(method[:3]) + len(f'{tol:g}') + 2}} {r['n_hvps']:>4}{flag:1} {r['wall_time_s']:>7.3f} {r['wall_per_hvp_over_bare']:>6.2f}"
        print(row)
    print("* = not converged within the default max_iter (Lanczos 100, power 1000)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--subset", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls for the bare HVP and the gradient")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="float32 HVPs floor the relative residual near 1e-6; float64 shows the solver alone")
    parser.add_argument("--out", default="results.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    x, y = load_training_data(args.dataset)
    x, y = training_subset(x, y, args.subset, seed=0)
    x, y = x.to(device=device, dtype=getattr(torch, args.dtype)), y.to(device)
    n_classes = int(y.max().item()) + 1
    cells = []
    for depth in args.depths:
        for width in args.widths:
            cells.append(bench_cell(NetworkSpec(depth, width, x.shape[1], n_classes), x, y, device, args.repeats))
            print(f"done d={depth} w={width}", flush=True)
    print_table(cells)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    record = {"device": device_name, "torch": torch.__version__, "git_commit": git_commit(),
              "dataset": args.dataset, "subset": args.subset, "dtype": args.dtype, "cells": cells}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
