"""Sweeps that survive: expand a grid into cells, compute those the store lacks, write each as it finishes.

A grid is a YAML file or the equivalent dict (a notebook's parameters)::

    name: mnist_eta_star      # labels the records; default: the file's stem, or "sweep"
    kind: eta_star            # eta_star | sharpness | late_lr (eta* and the late-training maximum LR) | catapult
    datasets: [mnist]         # names known to milr_core.data
    dataset_options:          # optional, per dataset: load_dataset options that change the data (images:
      gaussians: {dim: 64}    #   val_size, split_seed; gaussians: dim, separation, seed, n_*_per_class)
    data: {root: null, download: null, cache_dir: null}   # optional: where data lives; not hashed
    depths: [1, 2, 4]
    widths: [64, 256]
    seeds: [0, 1, 2]
    threshold: null           # null: the dataset's default (the resolved value is hashed)
    network: {input_lr_factor: 0.1, bias: true}           # NetworkSpec fields but the shape
    train: {batch_size: 128, epochs: 1, eval_every: 25}   # TrainConfig fields
    search: {method: batched, lr_bounds: [0.01, 10.0], rtol: 0.05, lrs_per_round: 8}  # SearchConfig fields
    sharpness: {subset_size: 2048, method: lanczos, tol: 1.0e-6}                       # sharpness_at_init's
    late: {base_fraction: 0.5, pretrain_steps: 1000, late_steps: 200}                  # find_late_max_lr's
    catapult: {subset_size: 2048, tol: 1.0e-6}  # catapult_window's (eta* and lambda_1 under MSE: train.loss mse)
    variants:                 # optional; each overrides the sections (network, train, ...), threshold, dtype
      - {name: base}
      - {name: full_input_lr, network: {input_lr_factor: 1.0}}
    dtype: float32            # float32 | float64

Only ``datasets``, ``depths``, ``widths`` and ``seeds`` are required; every other setting defaults to
the engine's default. The allowed keys and types of the sections ``network``, ``train``, ``search``,
``sharpness``, ``late`` and ``catapult`` are read off ``NetworkSpec``, ``TrainConfig``, ``SearchConfig``,
``sharpness_at_init``, ``find_late_max_lr`` and ``catapult_window``, so the schema follows the engine.
``load_grid`` checks everything (unknown keys, types, values, empty lists) before any data is loaded or
any network trained, and raises one ``GridError`` naming the problem.

A *cell* is one (dataset, variant, depth, width, seed). Its hash is the sha256 of the canonical JSON of
everything that determines its result, defaults filled in: the dataset's name and the sha256 of its
``meta["fingerprint"]`` (content, format, split, preprocessing and options: a JPEG mirror of CIFAR-10 is
not CIFAR-10) with its format, lossiness and resolved options in clear, depth, width, seed, the resolved
threshold, network, train and search (or sharpness) settings, the kind's own section (late, catapult),
dtype and ``milr_core.ENGINE_VERSION``.
Not hashed: where the data was found (``meta["source"]``: cache, download, root), the device, the
executor, the grid's and the variant's names, so the same cell in two grids is computed once.

``run_sweep`` computes only the cells the store lacks and writes each record as soon as it exists, so a
sweep killed at any instant resumes where it stopped. Cells equal but for the seed form a *seed group*,
computed by one batched ``find_eta_star(..., seeds=[...])`` call (a seed's result does not depend on
which seeds it was batched with) and written as one record per seed. Executors: ``local`` runs the seed
groups one after another on ``device``; ``ray`` runs one seed group per task (one GPU, or one CPU, per
task) on the current Ray cluster (a local one is started if none is), the driver writing each group's
records as its task completes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from milr_core import ENGINE_VERSION, data
from milr_core.catapult import catapult_window, validate_catapult_inputs
from milr_core.late import find_late_max_lr, validate_late_inputs
from milr_core.model import NetworkSpec
from milr_core.probe import TrainConfig
from milr_core.search import SearchConfig, find_eta_star
from milr_core.sharpness import MATRICES, check_operator_args, check_solver_args, sharpness_at_init
from milr_core.store import ResultStore, provenance

KINDS = ("eta_star", "sharpness", "late_lr", "catapult")
TRAINED = ("eta_star", "late_lr", "catapult")  # the kinds that run the eta* search
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DATA_LOCATION = ("root", "download", "cache_dir")  # load_dataset arguments that say where, not what
GRID_KEYS: dict[str, object] = {
    "name": str,
    "kind": str,
    "datasets": list[str],
    "dataset_options": dict,
    "data": dict,
    "depths": list[int],
    "widths": list[int],
    "seeds": list[int],
    "threshold": float | None,
    "network": dict,
    "train": dict,
    "search": dict,
    "sharpness": dict,
    "late": dict,
    "catapult": dict,
    "variants": list[dict],
    "dtype": str,
}
REQUIRED = ("datasets", "depths", "widths", "seeds")
SECTIONS = ("network", "train", "search", "sharpness", "late", "catapult")
VARIANT_KEYS = ("name", *SECTIONS, "threshold", "dtype")


class GridError(ValueError):
    """A grid that cannot be run; the message names the problem."""


# ----------------------------------------------------------------------------- schema of the sections


def settings_of(target: Callable, exclude: tuple[str, ...]) -> dict[str, tuple[object, object]]:
    """{name: (type hint, default)} of a dataclass's fields or a function's keyword arguments."""
    hints = typing.get_type_hints(target)
    if dataclasses.is_dataclass(target):
        defaults = {f.name: f.default for f in dataclasses.fields(target)}
    else:
        parameters = inspect.signature(target).parameters.values()
        defaults = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
    return {
        name: (hints.get(name, object), None if default is inspect.Parameter.empty else default)
        for name, default in defaults.items()
        if name not in exclude
    }


SCHEMA = {
    "network": settings_of(NetworkSpec, ("depth", "width", "in_dim", "out_dim")),
    "train": settings_of(TrainConfig, ()),
    "search": settings_of(SearchConfig, ()),
    "sharpness": settings_of(sharpness_at_init, ("device", "dtype")),
    "late": settings_of(find_late_max_lr, ("threshold", "seeds", "device", "dtype", "progress")),
    "catapult": settings_of(catapult_window, ("threshold", "seeds", "device", "dtype", "progress")),
}


def type_name(hint: object) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def checked(value: object, hint: object, where: str) -> object:
    """``value`` if it has type ``hint`` (ints widened to floats where floats are expected), else GridError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in sorted(args, key=lambda a: a is not type(None)):  # None first, then in order
            try:
                return checked(value, option, where)
            except GridError:
                pass
    elif origin in (tuple, list) and isinstance(value, (list, tuple)):
        if origin is tuple and Ellipsis not in args:
            item_hints = list(args)
        else:
            item_hints = [args[0] if args else object] * len(value)
        if len(item_hints) == len(value):
            return [checked(item, h, f"{where}[{i}]") for i, (item, h) in enumerate(zip(value, item_hints))]
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is type(None) and value is None:
        return value
    elif isinstance(hint, type) and hint not in (float, int) and isinstance(value, hint):
        return value
    elif not isinstance(hint, type) and origin is None:  # a hint we do not check (Any, a string, ...)
        return value
    raise GridError(f"{where} must be of type {type_name(hint)}, got {value!r}")


def checked_keys(given: dict, allowed: typing.Iterable[str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise GridError(f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; allowed: {', '.join(allowed)}")


def checked_section(name: str, given: object, where: str) -> dict:
    """A network/train/search/sharpness section: known keys, right types."""
    given = checked(given, dict, where)
    checked_keys(given, SCHEMA[name], where)
    return {key: checked(value, SCHEMA[name][key][0], f"{where}.{key}") for key, value in given.items()}


def with_defaults(name: str, given: dict) -> dict:
    """A section with every default filled in, so that a changed default changes the cell hash."""
    return {key: default for key, (_, default) in SCHEMA[name].items()} | given


def settings(grid: dict, variant: dict) -> dict:
    """A variant's effective settings: the grid's, its sections updated key by key with the variant's."""
    merged = {key: variant.get(key, grid[key]) for key in ("threshold", "dtype")}
    merged.update({name: {**grid[name], **variant.get(name, {})} for name in SECTIONS})
    return merged


def check_values(kind: str, effective: dict, where: str) -> None:
    """Value checks of one variant's settings, by the engine's own validators where it has them."""
    threshold, dtype = effective["threshold"], effective["dtype"]
    if threshold is not None and not 0 < threshold < 1:
        raise GridError(f"{where}threshold must lie in (0, 1) or be null, got {threshold}")
    if dtype not in DTYPES:
        raise GridError(f"{where}dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        NetworkSpec(1, 1, 1, 1, **effective["network"])
        if kind in TRAINED:
            TrainConfig(**effective["train"])
            SearchConfig(**effective["search"])
        if kind == "late_lr":
            validate_late_inputs(**with_defaults("late", effective["late"]))
        if kind == "catapult":
            catapult = with_defaults("catapult", effective["catapult"])
            validate_catapult_inputs(TrainConfig(**effective["train"]), catapult["subset_size"], catapult["tol"])
        if kind == "sharpness":
            sharpness = with_defaults("sharpness", effective["sharpness"])
            check_solver_args(sharpness["method"], sharpness["tol"], sharpness["max_iter"])
            check_operator_args(sharpness["loss"], sharpness["chunk_size"])
            if sharpness["matrix"] not in MATRICES:
                raise ValueError(f"sharpness.matrix must be one of {', '.join(MATRICES)}, got {sharpness['matrix']!r}")
    except (ValueError, TypeError) as error:
        raise GridError(f"{where}{error}") from None


def load_grid(grid: dict | str | Path) -> dict:
    """Parse and check a grid; returns it with every top-level default filled in. Raises GridError."""
    where = "grid"
    name = "sweep"
    if isinstance(grid, (str, Path)):
        path, where, name = Path(grid), f"grid {grid}", Path(grid).stem
        try:
            grid = yaml.safe_load(path.read_text())
        except OSError as error:
            raise GridError(f"cannot read {where}: {error}") from None
        except yaml.YAMLError as error:
            raise GridError(f"{where} is not valid YAML: {error}") from None
    if not isinstance(grid, dict):
        raise GridError(f"{where} must be a mapping of settings, got {type(grid).__name__}")
    checked_keys(grid, GRID_KEYS, where)
    missing = [key for key in REQUIRED if key not in grid]
    if missing:
        raise GridError(f"{where} lacks the required key(s) {', '.join(missing)}")
    grid = {key: checked(value, GRID_KEYS[key], f"{where}: {key}") for key, value in grid.items()}
    grid = {
        "name": name, "kind": "eta_star", "dataset_options": {}, "data": {}, "threshold": None,
        "variants": [{"name": "base"}], "dtype": "float32", **{s: {} for s in SECTIONS}, **grid,
    }  # fmt: skip
    if grid["kind"] not in KINDS:
        raise GridError(f"{where}: kind must be one of {', '.join(KINDS)}, got {grid['kind']!r}")
    for key, low in (("datasets", None), ("depths", 1), ("widths", 1), ("seeds", 0), ("variants", None)):
        values = grid[key]
        if not values:
            raise GridError(f"{where}: {key} is empty, so the grid has no cells")
        if low is not None and min(values) < low:
            raise GridError(f"{where}: every entry of {key} must be >= {low}, got {values}")
        if key != "variants" and len(set(values)) != len(values):
            raise GridError(f"{where}: {key} has duplicates: {values}")
    unknown = sorted(set(grid["datasets"]) - set(data.DATASETS))
    if unknown:
        raise GridError(f"{where}: unknown dataset(s) {', '.join(unknown)}; known: {', '.join(data.DATASETS)}")
    checked_keys(grid["dataset_options"], grid["datasets"], f"{where}: dataset_options (keys are datasets)")
    for dataset, options in grid["dataset_options"].items():
        checked(options, dict, f"{where}: dataset_options.{dataset}")
    checked_keys(grid["data"], DATA_LOCATION, f"{where}: data")
    for section in SECTIONS:
        grid[section] = checked_section(section, grid[section], f"{where}: {section}")
    grid["variants"] = [checked_variant(grid, v, f"{where}: variants[{i}]") for i, v in enumerate(grid["variants"])]
    names = [variant["name"] for variant in grid["variants"]]
    if len(set(names)) != len(names):
        raise GridError(f"{where}: variant names must be distinct, got {names}")
    return grid


def checked_variant(grid: dict, variant: dict, where: str) -> dict:
    """A variant with checked keys, types and (merged into the grid's settings) values."""
    checked_keys(variant, VARIANT_KEYS, where)
    if not isinstance(variant.get("name"), str):
        raise GridError(f"{where} needs a name (a string)")
    variant = {key: checked(variant[key], GRID_KEYS[key], f"{where}.{key}") for key in variant}
    variant.update({s: checked_section(s, variant[s], f"{where}.{s}") for s in SECTIONS if s in variant})
    check_values(grid["kind"], settings(grid, variant), f"{where} ({variant['name']}): ")
    return variant


# ----------------------------------------------------------------------------- cells


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (dataset, variant, depth, width, seed): what is hashed (spec), its labels, and its seed group."""

    hash: str
    spec: dict
    labels: dict
    group: str


def content_hash(spec: dict) -> str:
    """sha256 of the canonical JSON of ``spec`` (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_datasets(grid: dict) -> dict:
    """Each dataset of the grid, loaded once per sweep."""
    datasets = {}
    for name in grid["datasets"]:
        try:
            datasets[name] = data.load_dataset(name, **grid["data"], **grid["dataset_options"].get(name, {}))
        except data.DataOptionError as error:
            raise GridError(f"grid: dataset_options.{name}: {error}") from None
    return datasets


def data_identity(dataset) -> dict:
    """What a cell records of its data: the sha256 of the fingerprint (name, format, content, split,
    preprocessing, options), and readable parts of it. Never where the data was found."""
    meta = dataset.meta
    split = meta.get("split") or {}
    return {
        "fingerprint_sha256": hashlib.sha256(meta["fingerprint"].encode()).hexdigest(),
        "format": meta.get("format"),
        "lossy": meta.get("lossy"),
        "options": meta.get("options") or {key: split[key] for key in ("val_size", "split_seed") if key in split},
    }


def expand(grid: dict, datasets: dict) -> list[Cell]:
    """The grid's cells in the order dataset, variant, depth, width, seed (seeds of a group are adjacent)."""
    cells = []
    for name, dataset in datasets.items():
        identity = data_identity(dataset)
        for variant in grid["variants"]:
            effective = settings(grid, variant)
            common = {
                "kind": grid["kind"],
                "engine_version": ENGINE_VERSION,
                "dataset": name,
                "data": identity,
                "network": with_defaults("network", effective["network"]),
                "dtype": effective["dtype"],
            }
            if grid["kind"] in TRAINED:
                threshold = effective["threshold"]
                common["threshold"] = dataset.meta["default_threshold"] if threshold is None else threshold
                common["train"] = dataclasses.asdict(TrainConfig(**effective["train"]))
                common["search"] = with_defaults("search", effective["search"])
            if grid["kind"] == "late_lr":
                common["late"] = with_defaults("late", effective["late"])
            if grid["kind"] == "catapult":
                common["catapult"] = with_defaults("catapult", effective["catapult"])
            if grid["kind"] == "sharpness":
                common["sharpness"] = with_defaults("sharpness", effective["sharpness"])
            labels = {"grid": grid["name"], "variant": variant["name"]}
            for depth in grid["depths"]:
                for width in grid["widths"]:
                    group = content_hash({**common, "depth": depth, "width": width})
                    for seed in grid["seeds"]:
                        spec = {**common, "depth": depth, "width": width, "seed": seed}
                        cells.append(Cell(content_hash(spec), spec, labels, group))
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.hash in seen:
            twin = seen[cell.hash].labels["variant"]
            raise GridError(f"variants {twin!r} and {cell.labels['variant']!r} have identical settings")
        seen[cell.hash] = cell
    return cells


def seed_groups(cells: list[Cell]) -> list[list[Cell]]:
    """Cells equal but for the seed, grouped, in the order of their first cell."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    return list(groups.values())


# ----------------------------------------------------------------------------- computing


NOT_RESULT = ("device", "wall_time_s")  # reported by sharpness_at_init, kept in the provenance instead


def run_group(dataset, cells: list[Cell], device: str) -> list[dict]:
    """Compute one seed group in one call; returns one record per cell. Runs wherever the executor puts it."""
    spec = cells[0].spec
    seeds = [cell.spec["seed"] for cell in cells]
    net = NetworkSpec(spec["depth"], spec["width"], dataset.in_dim, dataset.n_classes, **spec["network"])
    dtype = DTYPES[spec["dtype"]]
    start = time.perf_counter()
    if spec["kind"] in TRAINED:
        train = TrainConfig(**spec["train"])
        search = SearchConfig(**spec["search"])
        options = dict(threshold=spec["threshold"], seeds=seeds, device=device, dtype=dtype)
    if spec["kind"] == "eta_star":
        result = find_eta_star(dataset, net, train, search, **options)
        outcomes = [(s.record(), s.ledger_records()) for s in map(result.seed_result, seeds)]
    elif spec["kind"] == "late_lr":
        late = find_late_max_lr(dataset, net, train, search, **options, **spec["late"])
        outcomes = [(late.seed_record(seed), late.seed_ledger(seed)) for seed in seeds]
    elif spec["kind"] == "catapult":
        window = catapult_window(dataset, net, train, search, **options, **spec["catapult"])
        outcomes = [(window.seed_record(seed), window.seed_ledger(seed)) for seed in seeds]
    else:
        sharpness = [
            sharpness_at_init(dataset, net, seed, device=device, dtype=dtype, **spec["sharpness"]).to_dict()
            for seed in seeds
        ]
        outcomes = [({k: v for k, v in r.items() if k not in NOT_RESULT}, []) for r in sharpness]
    origin = provenance(device, time.perf_counter() - start) | {"seeds_batched": len(seeds)}
    return [
        {"hash": cell.hash, "cell": cell.spec, "labels": cell.labels, "result": result, "ledger": ledger,
         "provenance": origin}
        for cell, (result, ledger) in zip(cells, outcomes)
    ]  # fmt: skip


def run_local(groups: list[list[Cell]], datasets: dict, device: str, write: Callable[[list[dict]], None]) -> None:
    for group in groups:
        write(run_group(datasets[group[0].spec["dataset"]], group, device))


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("executor='ray' needs ray: pip install 'milr_core[ray]'") from None
    return ray


def run_ray(groups: list[list[Cell]], datasets: dict, device: str, write: Callable[[list[dict]], None]) -> None:
    """One task per seed group on the current Ray cluster; the driver writes each group as its task completes."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init()
    pending = []
    try:
        resources = {"num_gpus": 1} if torch.device(device).type == "cuda" else {"num_cpus": 1}
        task = ray.remote(**resources)(run_group)
        refs = {name: ray.put(dataset) for name, dataset in datasets.items()}
        pending = [task.remote(refs[group[0].spec["dataset"]], group, device) for group in groups]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            write(ray.get(done[0]))
    finally:
        for ref in pending:  # a failed task or an interrupt: stop the rest, keep what was written
            ray.cancel(ref)
        if started:
            ray.shutdown()


EXECUTORS = {"local": run_local, "ray": run_ray}


def run_sweep(
    grid: dict | str | Path,
    store: str | Path,
    *,
    executor: str = "local",
    device: str = "cpu",
    resume: bool = True,
    progress: bool = True,
    compute: bool = True,
) -> pd.DataFrame:
    """Compute the grid's cells missing from ``store``, writing each as it finishes; returns the grid's frame.

    resume=True skips the cells already in the store (a killed sweep continues where it stopped).
    resume=False refuses to run if the store holds any of the grid's cells, so that a sweep never
    silently mixes with an earlier one: use a fresh store, or resume. compute=False computes nothing:
    the frame then holds the stored cells only (a CPU machine rendering a GPU-sized grid's committed
    store). The frame is ``ResultStore.to_frame`` of the grid's cells, in grid order, labelled with this
    grid's name and variant names, and with ``grid_cells`` (the grid's size) and ``grid_stored`` (how
    many of its cells the frame holds), so that a figure can say that it shows part of a grid.
    """
    grid = load_grid(grid)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if executor == "ray":
        import_ray()
    datasets = load_datasets(grid)
    cells = expand(grid, datasets)
    results = ResultStore(store)
    finished = {cell.hash for cell in cells if results.has(cell.hash)}
    if finished and not resume:
        raise FileExistsError(
            f"{results.path} already holds {len(finished)} of the {len(cells)} cells of grid {grid['name']!r}; "
            "pass resume=True (--resume) to skip them, or use a fresh store"
        )
    todo = [cell for cell in cells if cell.hash not in finished] if compute else []
    bar = tqdm(total=len(cells), initial=len(finished), desc=grid["name"], unit="cell", disable=not progress)

    def write(records: list[dict]) -> None:
        for record in records:
            results.put(record)
        bar.update(len(records))

    try:
        EXECUTORS[executor](seed_groups(todo), datasets, device, write)
    finally:
        bar.close()
    present = [cell for cell in cells if results.has(cell.hash)]
    frame = results.to_frame([cell.hash for cell in present])
    frame["grid"] = grid["name"]
    frame["variant"] = [cell.labels["variant"] for cell in present]
    frame["grid_cells"], frame["grid_stored"] = len(cells), len(present)
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a sweep grid into a resumable result store.")
    parser.add_argument("grid", type=Path, help="grid YAML file")
    parser.add_argument("--store", type=Path, required=True, help="result store directory")
    parser.add_argument("--executor", default="local", choices=list(EXECUTORS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true", help="skip the cells already in the store")
    args = parser.parse_args(argv)
    frame = run_sweep(args.grid, args.store, executor=args.executor, device=args.device, resume=args.resume)
    print(f"{len(frame)} cells in {args.store}")


if __name__ == "__main__":
    main()
