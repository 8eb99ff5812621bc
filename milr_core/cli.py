"""The ``milr`` command line: eta*, sharpness, sweeps, experiments, predictions and the book's notebooks.

The flags of a protocol section are read off its config dataclass: the field ``batch_size`` of
``TrainConfig`` is the flag ``--batch-size``, with the field's type, default and help text, and its
choices from the constants the dataclass checks it against; so a default lives in one place and a new
field is a new flag. Values are checked by constructing the dataclasses.

Every command checks its arguments, paths and device before it reads any data or trains anything. A
problem ends in one line on stderr, ``error: ...``, and exit status 2 (1 for a failure that is not bad
input); ``--debug`` adds the traceback. Results are strict JSON on stdout (a non-finite number is
written ``{"$float": "NaN"}``), optionally also written to ``--out``.

Only ``config`` and ``network`` (both torch-free) are imported with this module, so ``milr --help`` is
instant; torch, pandas and the rest of the engine are imported by the commands that use them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import traceback
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path

from milr_core.config import (
    DATASETS,
    OneOf,
    RunOptions,
    SearchConfig,
    SharpnessConfig,
    TrainConfig,
    check_threshold,
)
from milr_core.network import NetworkSpec

DESCRIPTION = (
    "Maximal initial learning rates in deep ReLU networks: find eta*, measure the sharpness lambda_1 at "
    "initialisation, run resumable sweeps and the book's experiments, predict eta* from a result store, "
    "execute the book's notebooks. Every command checks its arguments before it reads any data, and prints "
    "its result as JSON. 'milr COMMAND --help' lists a command's options."
)
SET_BY_DATA = ("in_dim", "out_dim")  # the NetworkSpec fields the dataset fixes


class InputError(Exception):
    """A command line that argparse refuses."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are raised (and so printed as one line), not printed with the usage."""

    def error(self, message: str) -> typing.NoReturn:
        raise InputError(f"{message} (see {self.prog} --help)")


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, written as the flags would set it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)  # e.g. --resume
        if switch or action.default in (None, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: {shown_default(action).replace('%', '%%')})"


def shown_default(action: argparse.Action) -> str:
    """An option's default as a user would type it: --flag / --no-flag, a list as its items."""
    value = action.default
    if isinstance(action, argparse.BooleanOptionalAction):
        return action.option_strings[0 if value else 1]
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    return str(value)


# ----------------------------------------------------------------------------------------------------------
# flags read off the dataclasses


def add_section(parser: argparse.ArgumentParser, key: str, cls: type, title: str, exclude: tuple[str, ...] = ()) -> None:
    """A flag per field of ``cls`` (bar ``exclude``), stored as ``<key>.<field>`` for ``section_values`` to read."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        required = field.default is dataclasses.MISSING
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=f"{key}.{field.name}",
            required=required,
            default=None if required else field.default,
            help=field.metadata.get("help", "").replace("%", "%%"),
            **value_kind(field.name, hints[field.name], choices_of(field)),
        )


def choices_of(field: dataclasses.Field) -> tuple | None:
    """A field's allowed values, from the constraint its dataclass declares (``config.OneOf``)."""
    check = field.metadata.get("check")
    return check.choices if isinstance(check, OneOf) else None


def value_kind(name: str, hint: object, choices: tuple | None) -> dict:
    """add_argument's type, nargs, action or choices (and metavar) for the field ``name`` of type ``hint``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: None can only be the default
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if Ellipsis in items:
            return {"type": items[0], "nargs": "*", "metavar": items[0].__name__.upper()}
        return {"type": items[0], "nargs": len(items), "metavar": tuple(item.__name__.upper() for item in items)}
    if choices:
        return {"type": hint, "choices": choices}
    return {"type": hint, "metavar": name.upper() if hint is str else hint.__name__.upper()}


def section_values(args: argparse.Namespace, key: str) -> dict:
    """The fields of the section stored under ``key``, as its dataclass takes them (lists as tuples)."""
    prefix = key + "."
    return {
        name.removeprefix(prefix): tuple(value) if isinstance(value, list) else value
        for name, value in vars(args).items()
        if name.startswith(prefix)
    }


def count(text: str) -> int:
    """An integer >= 1 (an argparse type)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def number(allowed: str, holds: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: a float for which ``holds`` is true, else an error saying it must be ``allowed``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not holds(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    return parse


fraction = number("a number in (0, 1)", lambda value: 0 < value < 1)
positive = number("a positive number", lambda value: 0 < value < math.inf)


# ----------------------------------------------------------------------------------------------------------
# the parser


def build_parser() -> Parser:
    parser = Parser(prog="milr", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, summary: str) -> Parser:
        sub = commands.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
        sub.set_defaults(handler=handler)
        return sub

    def add_task(sub: Parser) -> argparse._ArgumentGroup:
        task = sub.add_argument_group("task")
        task.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset, with its default options")
        task.add_argument("--seeds", type=count, default=1, metavar="N", help="number of seeds: 0 .. N-1")
        return task

    def add_out(sub: Parser) -> None:
        sub.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON result to this file")

    eta = command("eta-star", eta_star_command, "Find eta*, the largest initial learning rate that still trains, per seed.")
    add_task(eta).add_argument(
        "--threshold", type=float, metavar="T", help="validation accuracy t a probe must reach (default: the dataset's)"
    )
    add_section(eta, "network", NetworkSpec, "network (NetworkSpec)", SET_BY_DATA)
    add_section(eta, "train", TrainConfig, "training of each probe (TrainConfig)")
    add_section(eta, "search", SearchConfig, "search (SearchConfig)")
    add_section(eta, "run", RunOptions, "how it runs (RunOptions)", ("workers",))
    eta.add_argument("--ledger", action="store_true", help="include every probe in the JSON")
    add_out(eta)

    sharp = command("sharpness", sharpness_command, "Measure lambda_1, the top Hessian eigenvalue of the loss at initialisation.")
    add_task(sharp)
    add_section(sharp, "network", NetworkSpec, "network (NetworkSpec)", SET_BY_DATA)
    add_section(sharp, "sharpness", SharpnessConfig, "measurement (SharpnessConfig)")
    add_section(sharp, "run", RunOptions, "how it runs (RunOptions)", ("workers", "speculation", "lanes"))
    add_out(sharp)

    sweep = command("sweep", sweep_command, "Compute a grid (a YAML file) into a resumable result store.")
    sweep.add_argument("grid", type=Path, help="the grid's YAML file (milr_core/grid.py describes the format)")
    sweep.add_argument("--store", type=Path, metavar="FOLDER", help="result store folder (default: results/<grid name>)")
    sweep.add_argument("--resume", action="store_true", help="skip the cells the store holds (without it, a store "
                       "holding some of the grid's cells is refused)")  # fmt: skip
    sweep.add_argument("--executor", default="local", help="local (processes on this machine) or ray")
    add_section(sweep, "run", RunOptions, "how it runs (RunOptions)")

    experiment = command("experiment", experiment_command, "Compute or read a book experiment in its profile's store.")
    experiment.add_argument("name", help="an experiment (a grid file of milr_core/grids: power_law, sharpness, ...)")
    experiment.add_argument("--profile", default="paper", help="smoke (tiny grids) or paper (the book's grids)")
    experiment.add_argument("--compute", action=argparse.BooleanOptionalAction, default=True,
                            help="compute the cells the store lacks; --no-compute only reads what it holds")  # fmt: skip
    part = experiment.add_argument_group("part (only the cells with these values)")
    part.add_argument("--datasets", nargs="+", metavar="NAME")
    part.add_argument("--variants", nargs="+", metavar="NAME")
    part.add_argument("--depths", nargs="+", type=int, metavar="INT")
    part.add_argument("--widths", nargs="+", type=int, metavar="INT")
    part.add_argument("--seeds", nargs="+", type=int, metavar="INT")
    experiment.add_argument("--executor", default="local", help="local (processes on this machine) or ray")
    add_section(experiment, "run", RunOptions, "how it runs (RunOptions)")

    predict = command("predict", predict_command, "Predict eta* from the power law fitted to a store's eta* cells.")
    predict.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset whose eta* cells are fitted")
    add_section(predict, "network", NetworkSpec, "network (NetworkSpec)", (*SET_BY_DATA, "bias"))
    predict.add_argument("--store", type=Path, metavar="FOLDER", help="result store folder (default: results/paper)")
    predict.add_argument("--max-depth-over-width", type=positive, metavar="FLOAT", help="fit only cells with d/w at most this")
    predict.add_argument("--ci", type=fraction, default=0.95, metavar="FLOAT", help="level of the prediction interval")
    add_out(predict)

    reproduce = command("reproduce", reproduce_command, "Execute the book's notebooks (or one of them) with papermill.")
    reproduce.add_argument("--profile", default="smoke", help="smoke (tiny grids, live) or paper (the committed store)")
    reproduce.add_argument("--only", metavar="NOTEBOOK", help="execute only this notebook (e.g. 02_power_law)")
    reproduce.add_argument("--compute", action=argparse.BooleanOptionalAction,
                           help="compute the cells the store lacks (--no-compute: read it only); "
                           "default: MILR_COMPUTE, else smoke computes and paper reads")  # fmt: skip
    return parser


# ----------------------------------------------------------------------------------------------------------
# checks before anything is read or trained


def checked_network(args: argparse.Namespace) -> dict:
    """The network section, checked (with placeholder ends, which the dataset fixes later)."""
    network = section_values(args, "network")
    NetworkSpec(**network, in_dim=1, out_dim=1)
    return network


def check_fits_data(name: str, options: dict, configs, where: str = "") -> None:
    """Refuse a batch or a sharpness subset larger than the training set, from its known size (no file is read)."""
    from milr_core.grid import check_sizes

    sections = {"train": c for c in configs if isinstance(c, TrainConfig)} | {
        "sharpness": c for c in configs if isinstance(c, SharpnessConfig)}
    check_sizes(sections, [name], {name: options}, where.rstrip(": ") or "error")


def check_out(path: Path | None) -> None:
    """Refuse an --out path that cannot be written, before the computation."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"--out {path}: the folder {path.parent} is not writable")


def prepared_device(run: RunOptions) -> str:
    """The device to compute on, refused if torch sees no such device; torch's threads pinned, TF32 as asked."""
    from milr_core.runtime import pin_threads, resolve_device, set_precision

    device = resolve_device(run.device)
    pin_threads(run.threads, run.workers)
    set_precision(device, run.dtype)
    return device


def command_run(args: argparse.Namespace, options: RunOptions, seeds: int, threshold: float | None = None):
    """The ``Run`` of an eta-star or sharpness command: threads pinned, the dataset loaded, device, k, lanes resolved."""
    from milr_core.data import load_dataset
    from milr_core.runtime import make_run

    prepared_device(options)
    dataset = load_dataset(args.dataset)
    net = NetworkSpec(**checked_network(args), in_dim=dataset.in_dim, out_dim=dataset.n_classes)
    return make_run(dataset, net, range(seeds), threshold, options)


# ----------------------------------------------------------------------------------------------------------
# the commands


def eta_star_command(args: argparse.Namespace) -> dict:
    """eta* of one network per seed, with the search's summary (and ledger)."""
    check_threshold(args.threshold)
    checked_network(args)
    train, search = TrainConfig(**section_values(args, "train")), SearchConfig(**section_values(args, "search"))
    options = RunOptions(**section_values(args, "run"))
    check_fits_data(args.dataset, {}, [train])
    check_out(args.out)
    run = command_run(args, options, args.seeds, args.threshold)

    import torch

    from milr_core.search import find_eta_star

    result = find_eta_star(run, train, search)
    return {
        "dataset": args.dataset, "data_source": run.dataset.meta["source"], "depth": run.network.depth,
        "width": run.network.width, "device": run.device, "torch": torch.__version__, "lanes": run.lanes,
        **result.to_dict(ledger=args.ledger),
    }  # fmt: skip


def sharpness_command(args: argparse.Namespace) -> dict:
    """lambda_1 (and what the sharpness section adds) of one network per seed, at initialisation."""
    checked_network(args)
    config = SharpnessConfig(**section_values(args, "sharpness"))
    options = RunOptions(**section_values(args, "run"))
    check_fits_data(args.dataset, {}, [config])
    check_out(args.out)
    run = command_run(args, options, args.seeds)

    from milr_core.sharpness import sharpness_at_init

    seeds = sharpness_at_init(run, config)
    return {"dataset": args.dataset, "data_source": run.dataset.meta["source"], "device": run.device, "seeds": seeds}


def sweep_command(args: argparse.Namespace) -> dict:
    """The grid's missing cells computed into its store; how many it has and the store holds."""
    from milr_core.grid import load_grid
    from milr_core.sweep import run_sweep

    grid = load_grid(args.grid)
    run = RunOptions(**section_values(args, "run"))
    store = args.store or Path("results") / grid.name
    if store.exists() and not store.is_dir():
        raise ValueError(f"--store {store} is a file, not a result store folder")
    prepared_device(run)
    frame = run_sweep(grid, store, run=run, executor=args.executor, resume=args.resume, progress=run.progress)
    return {"grid": grid.name, "store": str(store), "cells": grid.n_cells, "stored": len(frame)}


def experiment_command(args: argparse.Namespace) -> dict:
    """An experiment's grids (or a part of them) computed or read; per grid, its cells and how many are stored."""
    from milr_core.experiments import PARTS, run_experiment
    from milr_core.repository import committed_store

    run = RunOptions(**section_values(args, "run"))
    if args.compute:
        prepared_device(run)
    part = {key: getattr(args, key) for key in PARTS if getattr(args, key) is not None}
    frame = run_experiment(args.name, args.profile, compute=args.compute, part=part, run=run, executor=args.executor)
    grids = frame.groupby("grid", sort=False)[["grid_cells", "grid_stored"]].first()
    return {
        "experiment": args.name,
        "store": str(committed_store(args.profile)),
        "grids": {name: {"cells": int(row.grid_cells), "stored": int(row.grid_stored)} for name, row in grids.iterrows()},
    }


def predict_command(args: argparse.Namespace) -> dict:
    """eta* predicted from a store's power law, with its interval; warnings go to stderr."""
    network = checked_network(args)
    check_out(args.out)

    from milr_core.repository import committed_store
    from milr_core.predict import eta_star_frame, predict_eta_star

    store = args.store or committed_store("paper")
    prediction = predict_eta_star(
        eta_star_frame(store), args.dataset, network["depth"], network["width"],
        parameterisation=network["parameterisation"], input_lr_factor=network["input_lr_factor"],
        max_depth_over_width=args.max_depth_over_width, ci=args.ci,
    )  # fmt: skip
    for warning in prediction.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return {"store": str(store), **prediction.to_dict()}


def reproduce_command(args: argparse.Namespace) -> dict:
    """Seconds per notebook executed."""
    from milr_core.reproduce import reproduce

    return reproduce(profile=args.profile, only=args.only, compute=args.compute)


# ----------------------------------------------------------------------------------------------------------
# running a command


def emit(result: dict, out: Path | None) -> None:
    """The result as strict JSON on stdout, and in ``out`` if given."""
    from milr_core.store import encode

    text = json.dumps(encode(result), indent=2, allow_nan=False)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, without the source line Python adds."""
    print(f"warning: {message}", file=sys.stderr)


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """What a user can fix: a bad value, path, grid, missing data or a missing optional package."""
    data = sys.modules.get("milr_core.data")  # its errors can only have been raised if it was imported
    return (InputError, ValueError, LookupError, OSError, ImportError, *((data.DataError,) if data else ()))


def describe(error: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, ModuleNotFoundError):
        return f"{error} (install the extra that provides it: see the README)"
    return str(error) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 2 bad input, 1 another failure, 130 interrupted."""
    args = None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            args, unknown = build_parser().parse_known_args(argv)
            if unknown:
                raise InputError(f"unrecognized arguments: {' '.join(unknown)} (see milr {args.command} --help)")
            emit(args.handler(args), getattr(args, "out", None))
        return 0
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout left (| head): nothing to report, and nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        if args is not None and args.debug:
            traceback.print_exc()
        if isinstance(error, bad_input_errors()):
            print(f"error: {describe(error)}", file=sys.stderr)
            return 2
        print(f"error: {type(error).__name__}: {describe(error)} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
