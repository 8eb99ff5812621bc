"""The ``milr`` command line: the parser, read off the config dataclasses, and ``main``, which runs one command.

The flags of a protocol section are read off its config dataclass: the field ``batch_size`` of
``TrainConfig`` is the flag ``--batch-size``, with the field's type, default and help text, and its
choices from the constraint the dataclass declares (``config.OneOf``); so a default lives in one place and a
new field is a new flag. Values are checked by constructing the dataclasses (``built``), whose one-line error
then names the flag. What each command does is in ``commands.py``.

Every command checks its arguments, paths, device, memory and size before it reads any data or trains
anything. A problem ends in one line on stderr, ``error: ...``, and exit status 2 (1 for a failure that is not
bad input, 130 when interrupted by SIGINT or SIGTERM); ``--debug`` adds the traceback. Results are strict JSON
on stdout (a non-finite number is written ``{"$float": "NaN"}``), optionally also written to ``--out``.
Progress goes to stderr when it is a terminal (``--quiet`` silences it, ``--progress`` forces it).

Only ``config`` and ``network`` (both torch-free) are imported with this module, so ``milr --help`` is
instant; torch, pandas and the rest of the engine are imported by the commands that use them.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import traceback
import types
import typing
import warnings
from pathlib import Path

from milr_core import commands
from milr_core.config import DATASETS, RunOptions, SearchConfig, SharpnessConfig, TrainConfig
from milr_core.constraints import OneOf
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
        return f"{text} (default: {_shown_default(action).replace('%', '%%')})"


def _shown_default(action: argparse.Action) -> str:
    """An option's default as a user would type it: --flag / --no-flag, a list as its items."""
    value = action.default
    if isinstance(action, argparse.BooleanOptionalAction):
        return action.option_strings[0 if value else 1]
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    return str(value)


# ----------------------------------------------------------------------------------------------------------
# flags read off the dataclasses


def _add_section(parser: argparse.ArgumentParser, key: str, cls: type, title: str, exclude: tuple[str, ...] = (),
                optional: tuple[str, ...] = ()) -> None:  # fmt: skip
    """A flag per field of ``cls`` (bar ``exclude``), stored as ``<key>.<field>`` for ``section_values`` to read;
    a field without a default is a required flag unless named in ``optional`` (the command then checks it)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        missing = field.default is dataclasses.MISSING
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=f"{key}.{field.name}",
            required=missing and field.name not in optional,
            default=None if missing or (cls, field.name) == (RunOptions, "progress") else field.default,
            help=field.metadata.get("help", "").replace("%", "%%"),
            **_value_kind(field.name, hints[field.name], _choices_of(field)),
        )
    if cls is RunOptions:
        group.add_argument("--quiet", dest="run.progress", action="store_false", help="no progress on stderr "
                           "(default: progress when stderr is a terminal)")  # fmt: skip


def _choices_of(field: dataclasses.Field) -> tuple | None:
    """A field's allowed values, from the constraint its dataclass declares (``config.OneOf``)."""
    check = field.metadata.get("check")
    return check.choices if isinstance(check, OneOf) else None


def _value_kind(name: str, hint: object, choices: tuple | None) -> dict:
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


def count(text: str) -> int:
    """An integer >= 1 (an argparse type)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text[:40]!r}")
    return int(text)


def number(allowed: str, holds: typing.Callable[[float], bool]) -> typing.Callable[[str], float]:
    """An argparse type: a float for which ``holds`` is true, else an error saying it must be ``allowed``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not holds(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text[:40]!r}")
        return value

    return parse


fraction = number("a number in (0, 1)", lambda value: 0 < value < 1)
positive = number("a positive number", lambda value: 0 < value < math.inf)


def model_arg(text: str) -> tuple[str, object]:
    """KEY=VALUE (an argparse type): VALUE a Python literal (16, 0.1, True, 'x', (3, 3)), else the text itself."""
    key, equals, value = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE with KEY a Python name, got {text[:40]!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return key, value


# ----------------------------------------------------------------------------------------------------------
# the parser


def build_parser() -> Parser:
    parser = Parser(prog="milr", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, summary: str) -> Parser:
        sub = subparsers.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
        sub.set_defaults(handler=handler)
        return sub

    def add_task(sub: Parser) -> argparse._ArgumentGroup:
        task = sub.add_argument_group("task")
        task.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset, with its default options")
        task.add_argument("--preprocessing", choices=("global", "per_feature"), help="how images are standardised "
                          "(default: the dataset's, global; the Gaussian task has none)")  # fmt: skip
        task.add_argument("--seeds", type=count, default=1, metavar="N", help="number of seeds: 0 .. N-1")
        return task

    def add_out(sub: Parser) -> None:
        sub.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON result to this file")

    def add_size(sub: Parser) -> None:
        sub.add_argument("--large", action="store_true", help="run a grid above 2,000 cells or 100 estimated hours "
                         "(refused without it)")  # fmt: skip

    eta = command("eta-star", commands.eta_star, "Find eta*, the largest initial learning rate that still trains, per seed.")
    add_task(eta).add_argument(
        "--threshold", type=float, metavar="T", help="validation accuracy t a probe must reach (default: the dataset's)"
    )
    _add_section(eta, "network", NetworkSpec, "network (NetworkSpec)", SET_BY_DATA, optional=("depth", "width"))
    module = eta.add_argument_group("any torch module instead of our MLP (milr_core/modules.py)")
    module.add_argument("--model", metavar="PACKAGE.MODULE:FACTORY", help="train the nn.Module this class or function "
                        "returns, e.g. milr_core.families:ConvNet; --depth and --width, if given, are passed to it, "
                        "and in_dim and out_dim (the dataset's) where it takes them")  # fmt: skip
    module.add_argument("--model-arg", action="append", default=[], type=model_arg, metavar="KEY=VALUE",
                        help="a keyword argument of the factory (repeatable); VALUE a Python literal, else text")  # fmt: skip
    _add_section(eta, "train", TrainConfig, "training of each probe (TrainConfig)")
    _add_section(eta, "search", SearchConfig, "search (SearchConfig)")
    _add_section(eta, "run", RunOptions, "how it runs (RunOptions)", ("workers",))
    eta.add_argument("--ledger", action="store_true", help="include every probe in the JSON")
    add_out(eta)

    sharp = command("sharpness", commands.sharpness, "Measure lambda_1, the top Hessian eigenvalue of the loss at initialisation.")
    add_task(sharp)
    _add_section(sharp, "network", NetworkSpec, "network (NetworkSpec)", SET_BY_DATA)
    _add_section(sharp, "sharpness", SharpnessConfig, "measurement (SharpnessConfig)")
    _add_section(sharp, "run", RunOptions, "how it runs (RunOptions)", ("workers", "speculation", "lanes"))
    add_out(sharp)

    sweep = command("sweep", commands.sweep, "Compute a grid (a YAML file) into a resumable result store.")
    sweep.add_argument("grid", type=Path, help="the grid's YAML file (milr_core/grid.py describes the format)")
    sweep.add_argument("--store", type=Path, metavar="FOLDER", help="result store folder (default: results/<grid name>)")
    sweep.add_argument("--resume", action="store_true", help="skip the cells the store holds (without it, a store "
                       "holding some of the grid's cells is refused)")  # fmt: skip
    sweep.add_argument("--executor", default="local", help="local (processes on this machine) or ray")
    add_size(sweep)
    _add_section(sweep, "run", RunOptions, "how it runs (RunOptions)")

    experiment = command("experiment", commands.experiment, "Compute or read a book experiment in its profile's store.")
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
    add_size(experiment)
    _add_section(experiment, "run", RunOptions, "how it runs (RunOptions)")

    predict = command("predict", commands.predict, "Predict eta* from the power law fitted to a store's eta* cells.")
    predict.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset whose eta* cells are fitted")
    _add_section(predict, "network", NetworkSpec, "network (NetworkSpec)", (*SET_BY_DATA, "bias"))
    predict.add_argument("--store", type=Path, metavar="FOLDER", help="result store folder (default: results/paper)")
    predict.add_argument("--min-depth", type=count, metavar="INT", help="fit only cells this deep (default: our "
                         "regime's, 4; 1 fits every depth)")  # fmt: skip
    predict.add_argument("--max-depth-over-width", type=positive, metavar="FLOAT", help="fit only cells with d/w at most "
                         "this (default: our regime's, 1/16)")  # fmt: skip
    predict.add_argument("--ci", type=fraction, default=0.95, metavar="FLOAT", help="level of the prediction interval")
    predict.add_argument("--full", action="store_true", help="the whole fit in the JSON, every fitted cell included")
    _add_section(predict, "run", RunOptions, "how it runs (RunOptions)", ("dtype", "speculation", "lanes", "workers",
                                                                          "threads", "progress"))  # fmt: skip
    add_out(predict)

    reproduce = command("reproduce", commands.reproduce, "Execute the book's notebooks (or one of them) with papermill.")
    reproduce.add_argument("--profile", default="smoke", help="smoke (tiny grids, live) or paper (the committed store)")
    reproduce.add_argument("--only", metavar="NOTEBOOK", help="execute only this notebook (e.g. 02_power_law)")
    reproduce.add_argument("--compute", action=argparse.BooleanOptionalAction,
                           help="compute the cells the store lacks (--no-compute: read it only); "
                           "default: MILR_COMPUTE, else smoke computes and paper reads")  # fmt: skip
    return parser


# ----------------------------------------------------------------------------------------------------------
# running a command


def _emit(result: dict, out: Path | None) -> None:
    """The result as strict JSON on stdout, and in ``out`` if given."""
    from milr_core.store import encode

    text = json.dumps(encode(result), indent=2, allow_nan=False)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr, without the source line Python adds."""
    print(f"warning: {message}", file=sys.stderr)


def _bad_input_errors() -> tuple[type[BaseException], ...]:
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
    return str(error).strip().split("\n", 1)[0] or type(error).__name__


def interrupted(number, frame) -> None:
    """SIGTERM ends a command like Ctrl-C: its ``finally`` blocks run (claims released), then one line."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 2 bad input, 1 another failure, 130 interrupted."""
    args = None
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupted) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args, unknown = build_parser().parse_known_args(argv)
            if unknown:
                raise InputError(f"unrecognized arguments: {' '.join(unknown)[:200]} (see milr {args.command} --help)")
            _emit(args.handler(args), getattr(args, "out", None))
        return 0
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except KeyboardInterrupt:
        print("error: interrupted; what was finished is in the store, and a rerun resumes there", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout left (| head): nothing to report, and nothing more to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        if args is not None and args.debug:
            traceback.print_exc()
        if isinstance(error, _bad_input_errors()):
            print(f"error: {describe(error)}", file=sys.stderr)
            return 2
        print(f"error: {type(error).__name__}: {describe(error)} (--debug shows the traceback)", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
