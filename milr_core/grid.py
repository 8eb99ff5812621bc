"""Grids: which cells a sweep computes, read from YAML (or a dict) and checked before anything runs.

A grid::

    name: mnist_eta_star      # labels the records; default: the file's stem, or "sweep"
    kind: eta_star            # eta_star | search_trace | sharpness | late_lr | catapult | trajectory
    datasets: [mnist]         # names in config.DATASETS
    dataset_options:          # optional, per dataset, what changes the data (images: val_size, split_seed,
      mnist: {preprocessing: per_feature}   # preprocessing; gaussians: dim, separation, seed, n_*_per_class)
    data: {root: null, download: null, cache_dir: null}   # optional: where data lives; never hashed
    depths: [1, 2, 4]
    widths: [64, 256]
    seeds: [0, 1, 2]
    threshold: null           # null: the dataset's default (the resolved value is hashed)
    dtype: float32            # float32 | float64 | tf32
    network: {input_lr_factor: 0.1}        # NetworkSpec's fields but the shape
    train: {batch_size: 128, epochs: 2}    # config.TrainConfig's fields, and so on for each section the kind
    search: {rtol: 0.05}                   #   reads: search, sharpness, late, trajectory
    variants:                 # optional; each overrides sections (key by key), threshold, dtype, dataset_options
      - {name: base}
      - {name: full_input_lr, network: {input_lr_factor: 1.0}}

Only ``datasets``, ``depths``, ``widths`` and ``seeds`` are required. A grid's ``name`` is a name, not a
path (letters, digits, ``_``, ``-`` and ``.``, not starting with ``.``, at most 100 characters): a sweep
without ``--store`` writes into ``default_store(name)``, ``results/<name>``, and nowhere else.

The keys, types and defaults of the sections are read off the dataclasses of ``config.py`` (and
``NetworkSpec``), which also check the values, so the schema follows the engine and a default lives in one
place. ``load_grid`` checks everything (unknown keys, types, values, empty lists, sections the kind does not
read) without touching data, and raises one ``GridError`` naming the file, the place and the problem; a value
it quotes is cut short (``brief``). The YAML itself is read by ``safe_yaml`` (sizes, aliases and duplicate
keys bounded), and every number against its field's range (``config.py``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from milr_core import safe_yaml
from milr_core.brief import brief, clip, listing
from milr_core.config import DATASETS, DTYPES, SECTIONS, check_threshold
from milr_core.constraints import check_each, check_seeds
from milr_core.network import NetworkSpec

SHAPE = ("depth", "width", "in_dim", "out_dim")  # NetworkSpec fields a grid's axes and the data set
DATA_LOCATION = ("root", "download", "cache_dir")  # load_dataset arguments that say where, not what
# What each kind reads besides the network (kinds.KINDS registers the runners; this is its schema).
KIND_SECTIONS = {
    "eta_star": ("train", "search"),
    "search_trace": ("train", "search"),  # eta*, with every probe's accuracy and loss curves kept
    "sharpness": ("sharpness",),
    "late_lr": ("train", "search", "late", "sharpness"),
    "catapult": ("train", "search", "sharpness"),
    "trajectory": ("sharpness", "trajectory"),
    "resolution": ("train", "search", "arithmetic"),  # eta* in another arithmetic (threads, lanes, k; dtype)
    "predictors": ("train", "sharpness", "range_test", "predictors"),  # cheap predictors of eta* (predictors.py)
    "model_eta_star": ("train", "search", "model"),  # eta* of a model family's network (families.py)
    "model_range_test": ("train", "range_test", "model"),  # and its LR range test (lr_finder.py)
}
MODEL_KINDS = ("model_eta_star", "model_range_test")  # depths and widths are the model section's family's
TRAINED = ("eta_star", "search_trace", "late_lr", "catapult", "resolution", "model_eta_star")  # the kinds with a threshold
TOP_KEYS: dict[str, object] = {
    "name": str, "kind": str, "datasets": list[str], "dataset_options": dict, "data": dict,
    "depths": list[int], "widths": list[int], "seeds": list[int], "threshold": float | None, "dtype": str,
    "network": dict, **{section: dict for section in SECTIONS}, "variants": list[dict],
}  # fmt: skip
REQUIRED = ("datasets", "depths", "widths", "seeds")
VARIANT_KEYS = ("name", "network", *SECTIONS, "threshold", "dtype", "dataset_options")
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")  # a grid's name: also its store's folder name
RESULTS = Path("results")  # where a sweep without --store writes: RESULTS / <grid name>


class GridError(ValueError):
    """A grid that cannot be run; the message names the problem."""


@dataclass(frozen=True)
class Variant:
    """One variant's resolved settings: every default filled in, every value checked."""

    name: str
    network: dict
    sections: dict[str, object]  # section name -> its config dataclass
    threshold: float | None
    dtype: str
    dataset_options: dict[str, dict]


@dataclass(frozen=True)
class Grid:
    name: str
    kind: str
    datasets: list[str]
    depths: list[int]
    widths: list[int]
    seeds: list[int]
    variants: list[Variant]
    data: dict = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return len(self.datasets) * len(self.variants) * len(self.depths) * len(self.widths) * len(self.seeds)


# ----------------------------------------------------------------------------------------------------------
# schema read off the dataclasses


def _fields_of(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, tuple[object, object]]:
    """{field: (type hint, default)} of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls) if f.name not in exclude}


SCHEMA = {"network": _fields_of(NetworkSpec, SHAPE), **{name: _fields_of(cls) for name, cls in SECTIONS.items()}}


def _type_name(hint: object) -> str:
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
        items = args if origin is tuple and Ellipsis not in args else (args[0],) * len(value)
        if len(items) == len(value):
            return [checked(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items))]
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is type(None) and value is None:
        return None
    elif isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise GridError(f"{where} must be {_type_name(hint)}, got {brief(value)}")


def _checked_keys(given: dict, allowed, where: str) -> None:
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise GridError(f"{where}: unknown key(s) {listing(unknown)}; allowed: {', '.join(allowed)}")


def _checked_section(name: str, given: object, where: str) -> dict:
    """A section's keys and types (values are checked once the variant's settings are merged)."""
    given = checked(given, dict, where)
    _checked_keys(given, SCHEMA[name], where)
    return {key: checked(value, SCHEMA[name][key][0], f"{where}.{key}") for key, value in given.items()}


# ----------------------------------------------------------------------------------------------------------
# loading


def _check_name(name: object, where: str) -> str:
    """A grid's name, if it is one (see the module docstring); GridError otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise GridError(f"{where}: name must be letters, digits, '_', '-' or '.' (not first), at most 100 "
                        f"characters, got {brief(name)}")  # fmt: skip
    return name


def default_store(name: str, root: Path = RESULTS) -> Path:
    """The store of a grid run without --store: ``root / name``, a folder directly inside ``root``, never elsewhere."""
    store = root / _check_name(name, "grid")
    assert store.parent == root and store.name == name  # what NAME guarantees: no separator, no "..", not empty
    return store


def _read_grid(source: dict | str | Path) -> tuple[dict, str, str]:
    """(the raw mapping, where it came from for messages, its default name)."""
    if not isinstance(source, (str, Path)):
        return source, "grid", "sweep"
    path = Path(source)
    try:
        raw = safe_yaml.load(path)
    except OSError as error:
        raise GridError(f"cannot read grid {path}: {error.strerror or error}") from None
    except safe_yaml.YamlError as error:
        raise GridError(f"grid {path} {error}") from None
    if raw is None:
        raise GridError(f"grid {path} is empty")
    return raw, f"grid {path}", path.stem


def load_grid(source: dict | str | Path | Grid) -> Grid:
    """Parse and check a grid (a YAML file, a mapping, or an already checked Grid). Raises GridError."""
    if isinstance(source, Grid):
        return source
    raw, where, default_name = _read_grid(source)
    if not isinstance(raw, dict):
        raise GridError(f"{where} must be a mapping of settings, got {type(raw).__name__}")
    _checked_keys(raw, TOP_KEYS, where)
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise GridError(f"{where} lacks the required key(s) {', '.join(missing)}")
    raw = {key: checked(value, TOP_KEYS[key], f"{where}: {key}") for key, value in raw.items()}
    kind = raw.get("kind", "eta_star")
    if kind not in KIND_SECTIONS:
        raise GridError(f"{where}: kind must be one of {', '.join(KIND_SECTIONS)}, got {brief(kind)}")
    unread = [s for s in SECTIONS if s in raw and s not in KIND_SECTIONS[kind]]
    if unread:
        raise GridError(f"{where}: kind {kind} does not read the section(s) {', '.join(unread)}")
    name = _check_name(raw.get("name", default_name), where)
    for key in ("datasets", "depths", "widths", "seeds"):
        values = raw[key]
        if not values:
            raise GridError(f"{where}: {key} is empty, so the grid has no cells")
        if len(set(values)) != len(values):
            raise GridError(f"{where}: {key} has duplicates: {brief(values)}")
    try:
        check_each(NetworkSpec, "depth", raw["depths"], f"{where}: depths")
        check_each(NetworkSpec, "width", raw["widths"], f"{where}: widths")
        check_seeds(raw["seeds"], f"{where}: seeds")
    except ValueError as error:
        raise GridError(str(error)) from None
    unknown = sorted(set(raw["datasets"]) - set(DATASETS))
    if unknown:
        raise GridError(f"{where}: unknown dataset(s) {listing(unknown, bare=True)}; known: {', '.join(DATASETS)}")
    data = raw.get("data", {})
    _checked_keys(data, DATA_LOCATION, f"{where}: data")
    base = {
        "network": _checked_section("network", raw.get("network", {}), f"{where}: network"),
        **{s: _checked_section(s, raw.get(s, {}), f"{where}: {s}") for s in KIND_SECTIONS[kind]},
        "threshold": raw.get("threshold"), "dtype": raw.get("dtype", "float32"),
        "dataset_options": _checked_options(raw.get("dataset_options", {}), raw["datasets"], f"{where}: dataset_options"),
    }  # fmt: skip
    variants = [
        _resolve_variant(kind, base, raw["datasets"], v, f"{where}: variants[{i}]")
        for i, v in enumerate(raw.get("variants", [{"name": "base"}]))
    ]
    if not variants:
        raise GridError(f"{where}: variants is empty, so the grid has no cells")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise GridError(f"{where}: variant names must be distinct, got {brief(names)}")
    return Grid(name, kind, raw["datasets"], raw["depths"], raw["widths"], raw["seeds"], variants, data)


def _checked_options(options: dict, datasets: list[str], where: str) -> dict[str, dict]:
    """Per-dataset options, keys and values checked by the data layer without reading any data."""
    from milr_core.data import DataError, check_options

    _checked_keys(options, datasets, f"{where} (keys are the grid's datasets)")
    resolved = {}
    for name in datasets:
        given = checked(options.get(name, {}), dict, f"{where}.{name}")
        try:
            resolved[name] = check_options(name, given)
        except DataError as error:
            raise GridError(f"{where}: {clip(str(error), 300)}") from None
    return resolved


def _resolve_variant(kind: str, base: dict, datasets: list[str], variant: object, where: str) -> Variant:
    """A variant's settings: the grid's, each section updated key by key with the variant's, then checked."""
    variant = checked(variant, dict, where)
    _checked_keys(variant, VARIANT_KEYS, where)
    name = variant.get("name")
    if not isinstance(name, str) or not name:
        raise GridError(f"{where} needs a name (a non-empty string)")
    if len(name) > 100 or not name.isprintable():
        raise GridError(f"{where}: a variant's name is one printable line of at most 100 characters, got {brief(name)}")
    where = f"{where} ({name})"
    unread = [s for s in SECTIONS if s in variant and s not in KIND_SECTIONS[kind]]
    if unread:
        raise GridError(f"{where}: kind {kind} does not read the section(s) {', '.join(unread)}")
    merged = {s: {**base[s], **_checked_section(s, variant.get(s, {}), f"{where}.{s}")} for s in ("network", *KIND_SECTIONS[kind])}
    if kind in MODEL_KINDS and merged["network"]:
        raise GridError(f"{where}: kind {kind} reads no network section; the model section's args are the family's")
    threshold = checked(variant.get("threshold", base["threshold"]), TOP_KEYS["threshold"], f"{where}.threshold")
    dtype = checked(variant.get("dtype", base["dtype"]), str, f"{where}.dtype")
    options = base["dataset_options"]
    if "dataset_options" in variant:
        extra = checked(variant["dataset_options"], dict, f"{where}.dataset_options")
        given = {d: {**options[d], **extra.get(d, {})} for d in datasets}
        options = _checked_options({d: o for d, o in given.items()}, datasets, f"{where}.dataset_options")
    try:
        check_threshold(threshold)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {brief(dtype)}")
        network = dataclasses.asdict(NetworkSpec(1, 1, 1, 1, **merged["network"]))
        sections = {s: SECTIONS[s](**merged[s]) for s in KIND_SECTIONS[kind]}
    except (ValueError, TypeError) as error:
        raise GridError(f"{where}: {clip(str(error), 300)}") from None
    _check_kind(kind, sections, where)
    check_sizes(sections, datasets, options, where)
    network = {} if kind in MODEL_KINDS else {key: value for key, value in network.items() if key not in SHAPE}
    return Variant(name, network, sections, threshold if kind in TRAINED else None, dtype, options)


def _check_kind(kind: str, sections: dict, where: str) -> None:
    """Checks across sections that one kind needs."""
    if kind == "catapult" and (sections["train"].loss, sections["sharpness"].loss) != ("mse", "mse"):
        raise GridError(f"{where}: the catapult window is an MSE picture: train.loss and sharpness.loss must be mse")
    if kind == "trajectory" and sections["sharpness"].loss != "mse":
        raise GridError(f"{where}: a catapult trajectory is trained on MSE: sharpness.loss must be mse")
    if kind in MODEL_KINDS:
        from milr_core.families import check_family

        try:
            check_family(sections["model"])
        except (ValueError, ImportError) as error:
            raise GridError(f"{where}: {clip(str(error), 300)}") from None


def check_sizes(sections: dict, datasets: list[str], options: dict[str, dict], where: str) -> None:
    """A batch or a sharpness subset larger than the training set, refused before any data is read."""
    from milr_core.data import training_size

    for name in datasets:
        n_train = training_size(name, options[name])
        if "train" in sections and sections["train"].batch_size > n_train:
            raise GridError(f"{where}: train.batch_size {sections['train'].batch_size} exceeds the {n_train} training examples of {name}")
        if "sharpness" in sections and sections["sharpness"].subset_size > n_train:
            raise GridError(f"{where}: sharpness.subset_size {sections['sharpness'].subset_size} exceeds the {n_train} training examples of {name}")


def restricted(grid: Grid, part: dict[str, list]) -> Grid | None:
    """The grid with each axis cut to the values in ``part`` (variants by name); None if an axis ends up empty."""
    axes = ("datasets", "variants", "depths", "widths", "seeds")
    unknown = sorted(set(part) - set(axes))
    if unknown:
        raise ValueError(f"cannot restrict {', '.join(unknown)}; known: {', '.join(axes)}")
    cut = {}
    for key, keep in part.items():
        cut[key] = [v for v in getattr(grid, key) if (v.name if key == "variants" else v) in keep]
        if not cut[key]:
            return None
    return dataclasses.replace(grid, **cut)
