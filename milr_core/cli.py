"""The ``milr`` command line: eta*, sharpness, sweeps, predictions and the book, each a thin wrapper over the library.

Every command checks its arguments before loading data or training, prints a JSON result on stdout
(progress bars go to stderr), and can also write the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but torch sees no CUDA device")
    return name


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """What names a network in a store: dataset, depth, width, parameterisation, input-layer LR factor."""
    from milr_core.model import PARAMETERISATIONS

    parser.add_argument("--dataset", required=True, help="mnist, fashion_mnist, cifar10 or gaussians")
    parser.add_argument("--depth", type=int, required=True, help="number of hidden layers")
    parser.add_argument("--width", type=int, required=True, help="units per hidden layer")
    parser.add_argument("--parameterisation", default="standard", choices=sorted(PARAMETERISATIONS))
    parser.add_argument("--input-lr-factor", type=float, default=0.1, help="LR multiplier of the input layer (ours)")


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    add_shape_arguments(parser)
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0 .. n-1)")
    parser.add_argument("--no-bias", action="store_true", help="networks without biases")
    parser.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--out", type=Path, help="also write the JSON result here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="milr", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    eta = commands.add_parser("eta-star", help="find eta* (Algorithm 1 or the batched search)")
    add_network_arguments(eta)
    eta.add_argument("--threshold", type=float, help="validation accuracy t (default: the dataset's)")
    eta.add_argument("--method", default="batched", choices=["batched", "bisection"])
    eta.add_argument("--lr-min", type=float, default=1e-3)
    eta.add_argument("--lr-max", type=float, default=10.0)
    eta.add_argument("--rtol", type=float, default=0.05, help="stop when the bracket ratio is <= 1 + rtol")
    eta.add_argument("--lrs-per-round", type=int, default=8)
    eta.add_argument("--batch-size", type=int, default=128)
    eta.add_argument("--epochs", type=float, default=2.0)
    eta.add_argument("--max-steps", type=int, help="step budget (overrides --epochs)")
    eta.add_argument("--eval-every", type=int, default=25)
    eta.add_argument("--ledger", action="store_true", help="include every probe in the JSON")

    sharp = commands.add_parser("sharpness", help="top Hessian eigenvalue lambda_1 at initialisation")
    add_network_arguments(sharp)
    sharp.add_argument("--method", default="lanczos", choices=["lanczos", "power"])
    sharp.add_argument("--matrix", default="hessian", choices=["hessian", "ggn"])
    sharp.add_argument("--subset", type=int, default=2048, help="training examples in the loss")
    sharp.add_argument("--tol", type=float, default=1e-6, help="relative residual to stop at")
    sharp.add_argument("--per-layer", action="store_true", help="also each layer's diagonal block")

    sweep = commands.add_parser("sweep", help="run a grid into a resumable result store")
    sweep.add_argument("grid", type=Path, help="grid YAML file")
    sweep.add_argument("--store", type=Path, help="result store directory (default: results/<grid name>)")
    sweep.add_argument("--executor", default="local", choices=["local", "ray"])
    sweep.add_argument("--resume", action="store_true", help="skip cells already in the store")
    sweep.add_argument("--device", default="auto")

    experiment = commands.add_parser("experiment", help="one book experiment's grids into its profile's store")
    experiment.add_argument("name", help="an experiment of milr_core/grids (power_law, sharpness, ...)")
    experiment.add_argument("--profile", default="paper", choices=["smoke", "paper"])
    experiment.add_argument(
        "--compute", action=argparse.BooleanOptionalAction, default=True,
        help="compute the cells the store lacks (default); --no-compute only reports what it holds",
    )  # fmt: skip
    experiment.add_argument("--datasets", nargs="+", help="only these datasets")
    experiment.add_argument("--variants", nargs="+", help="only the variants with these names")
    experiment.add_argument("--depths", nargs="+", type=int, help="only these depths")
    experiment.add_argument("--widths", nargs="+", type=int, help="only these widths")
    experiment.add_argument("--seeds", nargs="+", type=int, help="only these seeds")
    experiment.add_argument("--executor", default="local", choices=["local", "ray"])
    experiment.add_argument("--device", default="auto")

    predict = commands.add_parser("predict", help="eta* from the power law fitted to a store's eta* cells")
    add_shape_arguments(predict)
    predict.add_argument("--store", type=Path, help="result store directory (default: the committed results/paper)")
    predict.add_argument("--max-depth-over-width", type=float, help="fit only cells with d/w at most this")
    predict.add_argument("--ci", type=float, default=0.95, help="level of the prediction interval")
    predict.add_argument("--out", type=Path, help="also write the JSON result here")

    reproduce = commands.add_parser("reproduce", help="execute every notebook with papermill")
    reproduce.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    reproduce.add_argument("--only", help="run only the notebook with this name")
    reproduce.add_argument(
        "--compute", action=argparse.BooleanOptionalAction, default=None,
        help="compute the cells the profile's store lacks (--no-compute: read the store only); "
        "default: MILR_COMPUTE, else smoke computes and paper only reads",
    )  # fmt: skip
    return parser


def emit(result: dict, out: Path | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def check_network_arguments(args: argparse.Namespace) -> None:
    """Refuse bad input before any data is loaded."""
    from milr_core.data import DATASETS

    if args.dataset not in DATASETS:
        raise SystemExit(f"error: unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    for name in ("depth", "width", "seeds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be >= 1, got {getattr(args, name)}")


def network_for(args: argparse.Namespace, dataset):
    from milr_core.model import NetworkSpec

    return NetworkSpec(
        depth=args.depth,
        width=args.width,
        in_dim=dataset.in_dim,
        out_dim=dataset.n_classes,
        bias=not args.no_bias,
        input_lr_factor=args.input_lr_factor,
        parameterisation=args.parameterisation,
    )


def run_eta_star(args: argparse.Namespace) -> dict:
    from milr_core.data import load_dataset
    from milr_core.probe import TrainConfig
    from milr_core.search import SearchConfig, find_eta_star

    check_network_arguments(args)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise SystemExit(f"error: --threshold must lie in (0, 1), got {args.threshold}")
    try:
        search = SearchConfig(args.method, (args.lr_min, args.lr_max), args.rtol, args.lrs_per_round)
        train = TrainConfig(args.batch_size, args.epochs, args.max_steps, args.eval_every, args.loss)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset)
    result = find_eta_star(
        dataset,
        network_for(args, dataset),
        train,
        search,
        threshold=args.threshold,
        seeds=list(range(args.seeds)),
        device=device,
        dtype=DTYPES[args.dtype],
        progress=True,
    )
    return {
        "dataset": args.dataset,
        "data_source": dataset.meta["source"],
        "depth": args.depth,
        "width": args.width,
        "device": device,
        "torch": torch.__version__,
        **result.to_dict(ledger=args.ledger),
    }


def run_sharpness(args: argparse.Namespace) -> dict:
    from tqdm.auto import tqdm

    from milr_core.data import load_dataset
    from milr_core.sharpness import sharpness_at_init

    check_network_arguments(args)
    if not args.tol > 0:
        raise SystemExit(f"error: --tol must be positive, got {args.tol}")
    if args.subset < 1:
        raise SystemExit(f"error: --subset must be >= 1, got {args.subset}")
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset)
    spec = network_for(args, dataset)
    results = []
    for seed in tqdm(range(args.seeds), desc="lambda_1", unit="seed"):
        result = sharpness_at_init(
            dataset,
            spec,
            seed,
            subset_size=args.subset,
            method=args.method,
            tol=args.tol,
            loss=args.loss,
            matrix=args.matrix,
            per_layer=args.per_layer,
            device=device,
            dtype=DTYPES[args.dtype],
        )
        results.append(result.to_dict())
    return {"dataset": args.dataset, "data_source": dataset.meta["source"], "device": device, "seeds": results}


def run_sweep_command(args: argparse.Namespace) -> dict:
    from milr_core.sweep import load_grid, run_sweep

    grid = load_grid(args.grid)
    store = args.store or Path("results") / grid["name"]
    frame = run_sweep(grid, store, executor=args.executor, device=resolve_device(args.device), resume=args.resume)
    return {"grid": grid["name"], "store": str(store), "cells": len(frame)}


def run_experiment_command(args: argparse.Namespace) -> dict:
    from milr_core.experiments import PARTS, results_root, run_experiment

    part = {key: getattr(args, key) for key in PARTS if getattr(args, key) is not None}
    try:
        frame = run_experiment(
            args.name, args.profile, compute=args.compute, part=part, device=resolve_device(args.device),
            executor=args.executor,
        )  # fmt: skip
    except (LookupError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    grids = frame.groupby("grid", sort=False)[["grid_cells", "grid_stored"]].first()
    return {
        "experiment": args.name,
        "store": str(results_root() / args.profile),
        "grids": {name: {"cells": int(row.grid_cells), "stored": int(row.grid_stored)} for name, row in grids.iterrows()},
    }


def run_predict(args: argparse.Namespace) -> dict:
    from milr_core.experiments import results_root
    from milr_core.predict import eta_star_frame, predict_eta_star

    store = args.store or results_root() / "paper"
    try:
        prediction = predict_eta_star(
            eta_star_frame(store), args.dataset, args.depth, args.width, parameterisation=args.parameterisation,
            input_lr_factor=args.input_lr_factor, max_depth_over_width=args.max_depth_over_width, ci=args.ci,
        )  # fmt: skip
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    for warning in prediction.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return {"store": str(store), **prediction.to_dict()}


def run_reproduce(args: argparse.Namespace) -> dict:
    from milr_core.reproduce import reproduce

    return reproduce(profile=args.profile, only=args.only, compute=args.compute)


COMMANDS = {
    "eta-star": run_eta_star,
    "sharpness": run_sharpness,
    "sweep": run_sweep_command,
    "experiment": run_experiment_command,
    "predict": run_predict,
    "reproduce": run_reproduce,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emit(COMMANDS[args.command](args), getattr(args, "out", None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
