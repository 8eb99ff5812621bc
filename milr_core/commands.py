"""What each ``milr`` command does (``cli.py`` parses): checks first, then the one library call, then its JSON.

Each command checks everything it can before it reads data or trains: argument values (by building the config
dataclasses), paths, the device, the seeds, the memory a cell needs and a grid's size (``preflight.py``).
Torch, pandas and the engine are imported here, inside the commands, so ``milr --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from milr_core.config import RunOptions, SearchConfig, SharpnessConfig, TrainConfig, check_threshold
from milr_core.constraints import check_seeds
from milr_core.network import NetworkSpec


def section_values(args: argparse.Namespace, key: str) -> dict:
    """The fields of the section stored under ``key``, as its dataclass takes them (lists as tuples); progress, when
    no flag set it, is on where stderr is a terminal."""
    prefix = key + "."
    values = {name.removeprefix(prefix): tuple(value) if isinstance(value, list) else value
              for name, value in vars(args).items() if name.startswith(prefix)}  # fmt: skip
    if key == "run" and values.get("progress") is None:
        values["progress"] = sys.stderr.isatty()
    return values


def built(cls: type, args: argparse.Namespace, key: str, **extra):
    """The section's dataclass from the flags; its error names the flag (``--rtol must ...``), not the field."""
    try:
        return cls(**{**section_values(args, key), **extra})
    except ValueError as error:
        raise ValueError(re.sub(r"^(\w+\.)?(\w+) (must|are)", lambda m: f"--{m[2].replace('_', '-')} {m[3]}",
                                str(error))) from None  # fmt: skip


def _checked_network(args: argparse.Namespace) -> dict:
    """The network section, checked (with placeholder ends, which the dataset fixes later)."""
    network = section_values(args, "network")
    built(NetworkSpec, args, "network", in_dim=1, out_dim=1)
    return network


def _data_options(args: argparse.Namespace) -> dict:
    """The dataset options the flags set (``--preprocessing``), checked without reading data."""
    from milr_core.data import check_options

    options = {"preprocessing": args.preprocessing} if getattr(args, "preprocessing", None) else {}
    if options and args.dataset == "gaussians":
        raise ValueError("--preprocessing: the Gaussian task is generated standardised; it has no preprocessing option")
    check_options(args.dataset, options)
    return options


def _check_fits_data(name: str, options: dict, configs) -> None:
    """Refuse a batch or a sharpness subset larger than the training set, from its known size (no file is read)."""
    from milr_core.grid import check_sizes

    sections = {"train": c for c in configs if isinstance(c, TrainConfig)} | {
        "sharpness": c for c in configs if isinstance(c, SharpnessConfig)}
    check_sizes(sections, [name], {name: options}, "error")


def _check_out(path: Path | None) -> None:
    """Refuse an --out path that cannot be written, before the computation."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"--out {path}: the folder {path.parent} is not writable")


def _prepared_device(run: RunOptions) -> str:
    """The device to compute on, refused if torch sees no such device; torch's threads pinned, TF32 as asked."""
    from milr_core.runtime import pin_threads, resolve_device, set_precision

    device = resolve_device(run.device)
    pin_threads(run.threads, run.workers)
    set_precision(device, run.dtype)
    return device


def _check_cell_memory(args, network: dict, kind: str, sections: dict, options: RunOptions, device: str) -> None:
    """Refuse a network whose seeds, batched, do not fit in the device's memory (before any data is read)."""
    from milr_core import preflight

    n_train, n_val, in_dim, classes = preflight.data_shape(args.dataset, _data_options(args))
    net = NetworkSpec(**network, in_dim=in_dim, out_dim=classes)
    replicas = options.lanes or args.seeds * (2 ** (options.speculation or 1) - 1)
    need = preflight.cell_memory(kind, sections, net, replicas, options.dtype, (n_train + n_val) * in_dim)
    preflight.check_memory(f"{args.dataset} depth {net.depth} width {net.width} ({replicas} replicas)", need, device)


def _command_run(args: argparse.Namespace, options: RunOptions, kind: str, sections: dict, threshold=None):
    """The ``Run`` of an eta-star or sharpness command: every check done, threads pinned, then the data loaded and
    device, k and lanes resolved."""
    from milr_core.data import load_dataset
    from milr_core.runtime import make_run

    network = _checked_network(args)
    check_seeds(range(args.seeds), "--seeds")
    device = _prepared_device(options)
    _check_cell_memory(args, network, kind, sections, options, device)
    dataset = load_dataset(args.dataset, **_data_options(args))
    net = NetworkSpec(**network, in_dim=dataset.in_dim, out_dim=dataset.n_classes)
    return make_run(dataset, net, range(args.seeds), threshold, options)


def _module_run(args: argparse.Namespace, options: RunOptions, threshold=None):
    """The ``Run`` of ``eta-star --model``: the factory imported, its module built under seed 0 and checked against
    the dataset's shape (``modules.ModuleReplicas``) before any data is read; then the data loaded."""
    import dataclasses

    from milr_core.data import load_dataset
    from milr_core.modules import ModuleReplicas, accepts, load_factory
    from milr_core.preflight import data_shape
    from milr_core.runtime import make_run

    network = section_values(args, "network")
    defaults = {f.name: f.default for f in dataclasses.fields(NetworkSpec)}
    mlp_only = [name for name, value in network.items() if name not in ("depth", "width") and value != defaults[name]]
    if mlp_only:
        raise ValueError(f"--{mlp_only[0].replace('_', '-')} sets our MLP; with --model, pass the factory's own "
                         "arguments as --model-arg KEY=VALUE")  # fmt: skip
    check_seeds(range(args.seeds), "--seeds")
    _prepared_device(options)
    factory = load_factory(args.model)
    _, _, in_dim, classes = data_shape(args.dataset, _data_options(args))
    model_args = {name: value for name, value in (("in_dim", in_dim), ("out_dim", classes)) if accepts(factory, name)}
    for name in ("depth", "width"):
        if network[name] is not None:
            if not accepts(factory, name):
                raise ValueError(f"--{name}: {args.model} takes no argument {name!r}")
            model_args[name] = network[name]
    replicas = ModuleReplicas(factory, model_args | dict(args.model_arg), in_dim=in_dim, out_dim=classes, name=args.model)
    dataset = load_dataset(args.dataset, **_data_options(args))
    return make_run(dataset, replicas, range(args.seeds), threshold, options)


# ----------------------------------------------------------------------------------------------------------
# the commands


def eta_star(args: argparse.Namespace) -> dict:
    """eta* of one network per seed, with the search's summary (and ledger)."""
    check_threshold(args.threshold)
    train, search = built(TrainConfig, args, "train"), built(SearchConfig, args, "search")
    options = built(RunOptions, args, "run")
    _check_fits_data(args.dataset, _data_options(args), [train])
    _check_out(args.out)
    if args.model:
        run = _module_run(args, options, args.threshold)
    else:
        missing = [f"--{name}" for name in ("depth", "width") if getattr(args, f"network.{name}") is None]
        if missing:
            raise ValueError(f"the following arguments are required: {', '.join(missing)} (or --model)")
        run = _command_run(args, options, "eta_star", {"train": train, "search": search}, args.threshold)

    import torch

    from milr_core.search import find_eta_star

    result = find_eta_star(run, train, search)
    network = run.network
    shape = ({"model": network.name, "model_args": network.args} if args.model else
             {"depth": network.depth, "width": network.width})  # fmt: skip
    return {
        "dataset": args.dataset, "data_source": run.dataset.meta["source"], **shape, "device": run.device,
        "torch": torch.__version__, "lanes": run.lanes, **result.to_dict(ledger=args.ledger),
    }  # fmt: skip


def sharpness(args: argparse.Namespace) -> dict:
    """lambda_1 (and what the sharpness section adds) of one network per seed, at initialisation."""
    config = built(SharpnessConfig, args, "sharpness")
    options = built(RunOptions, args, "run")
    _check_fits_data(args.dataset, _data_options(args), [config])
    _check_out(args.out)
    run = _command_run(args, options, "sharpness", {"sharpness": config})

    from milr_core.sharpness import sharpness_at_init

    seeds = sharpness_at_init(run, config)
    return {"dataset": args.dataset, "data_source": run.dataset.meta["source"], "device": run.device, "seeds": seeds}


def _check_grid_size(grid, options: RunOptions, device: str, large: bool) -> None:
    """A grid refused above the stated size without --large, or if its largest cell does not fit in memory; its size
    and estimated hours announced on stderr with the progress (a terminal, or --progress)."""
    from milr_core import preflight

    announcement = preflight.check_size(preflight.grid_cost(grid, device), allowed=large)
    preflight.check_grid_memory(grid, device, speculation=lambda net, n: options.speculation or 1, workers=options.workers)
    if options.progress:
        print(announcement, file=sys.stderr)


def sweep(args: argparse.Namespace) -> dict:
    """The grid's missing cells computed into its store; how many it has and the store holds."""
    from milr_core.grid import default_store, load_grid
    from milr_core.sweep import run_sweep

    grid = load_grid(args.grid)
    options = built(RunOptions, args, "run")
    store = args.store or default_store(grid.name)
    if store.exists() and not store.is_dir():
        raise ValueError(f"--store {store} is a file, not a result store folder")
    device = _prepared_device(options)
    _check_grid_size(grid, options, device, args.large)
    frame = run_sweep(grid, store, run=options, executor=args.executor, resume=args.resume, progress=options.progress)
    return {"grid": grid.name, "store": str(store), "cells": grid.n_cells, "stored": len(frame)}


def experiment(args: argparse.Namespace) -> dict:
    """An experiment's grids (or a part of them) computed or read; per grid, its cells and how many are stored."""
    from milr_core.experiments import PARTS, experiment_grids, run_experiment
    from milr_core.grid import restricted
    from milr_core.repository import committed_store

    options = built(RunOptions, args, "run")
    part = {key: getattr(args, key) for key in PARTS if getattr(args, key) is not None}
    if args.compute:
        device = _prepared_device(options)
        for grid in experiment_grids(args.name, args.profile):
            if (cut := restricted(grid, part)) is not None:
                _check_grid_size(cut, options, device, args.large)
    frame = run_experiment(args.name, args.profile, compute=args.compute, part=part, run=options, executor=args.executor)
    held = frame.groupby("grid", sort=False)[["grid_stored"]].first()["grid_stored"] if "grid" in frame else {}
    cuts = [cut for grid in experiment_grids(args.name, args.profile) if (cut := restricted(grid, part)) is not None]
    return {
        "experiment": args.name,
        "store": str(committed_store(args.profile)),
        "grids": {cut.name: {"cells": cut.n_cells, "stored": int(held.get(cut.name, 0))} for cut in cuts},
    }  # every grid, those with no cell stored yet too


def predict(args: argparse.Namespace) -> dict:
    """eta* predicted from a store's power law (fitted over our regime unless asked otherwise), with its interval; the
    fit's summary (``--full``: every fitted cell); warnings go to stderr, one line each."""
    network = _checked_network(args)
    _check_out(args.out)
    _prepared_device(built(RunOptions, args, "run", progress=False))

    from milr_core.fit import MAX_DEPTH_OVER_WIDTH, MIN_DEPTH
    from milr_core.predict import eta_star_frame, predict_eta_star
    from milr_core.repository import committed_store

    store = args.store or committed_store("paper")
    prediction = predict_eta_star(
        eta_star_frame(store), args.dataset, network["depth"], network["width"],
        parameterisation=network["parameterisation"], input_lr_factor=network["input_lr_factor"],
        max_depth_over_width=args.max_depth_over_width or MAX_DEPTH_OVER_WIDTH, min_depth=args.min_depth or MIN_DEPTH,
        ci=args.ci,
    )  # fmt: skip
    for warning in prediction.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return {"store": str(store), **(prediction.to_dict() if args.full else prediction.summary())}


def reproduce(args: argparse.Namespace) -> dict:
    """Seconds per notebook executed."""
    from milr_core.reproduce import reproduce

    return reproduce(profile=args.profile, only=args.only, compute=args.compute)
