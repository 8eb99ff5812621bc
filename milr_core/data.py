"""The datasets of the eta* experiments: MNIST, Fashion-MNIST, CIFAR-10 and a synthetic Gaussian task.

``load_dataset(name, **options)`` returns a ``Dataset``: flattened, standardised float32 inputs and int64
labels, split into a training set and a validation set, and a json-serialisable ``meta`` saying exactly
which data this is (where it came from, whether it is lossy, the split, the normalisation, a fingerprint).
The dataset names and their default thresholds live in ``config`` (``DATASETS``, ``THRESHOLDS``).

Options. They change the data, so they are part of its identity; ``root``, ``download`` and ``cache_dir``
only say where it is. ``check_options(name, options)`` checks them and fills in the defaults without
touching the disk, and ``load_dataset`` calls it before anything else. An option given as None takes its
default.

- images (mnist, fashion_mnist, cifar10): ``val_size`` (5000), ``split_seed`` (0) and ``preprocessing``
  ("global", the default, or "per_feature");
- gaussians: ``dim``, ``separation``, ``seed``, ``n_train_per_class``, ``n_val_per_class``
  (``GAUSSIAN_DEFAULTS``).

Validation split. eta* is measured on a validation set. For the image datasets it is a fixed held-out
subset of the official *training* split: ``val_size`` (default 5000, our choice) indices drawn by a
seeded permutation (``split_seed``); the training set is the rest. Both sets come in that permuted
order. The official test split is never read. The permutation uses numpy's legacy ``RandomState``,
whose stream numpy keeps frozen, so a (val_size, split_seed) pair names the same split everywhere.
``gaussians`` draws its training and validation sets independently instead (9k + 1k per class, as
in the paper), so it takes no ``val_size`` or ``split_seed``.

Preprocessing (images). Pixels are scaled to [0, 1], standardised with statistics of the training set
(after the split, so nothing of the validation set leaks in), then flattened channel-major (C*H*W: 784
for MNIST, 3072 for CIFAR-10). "global" uses one mean and one std per channel (for MNIST, one for all
pixels; both stored in meta). "per_feature" uses each input feature's own mean and std (each pixel of
each channel); a feature constant on the training set (MNIST's always-black border) is only centred.
``gaussians`` is not normalised and takes no preprocessing option.

Files. Where they are looked for, their layouts, how they are verified and the decoded-array cache: see ``datafiles``.

Fingerprint and identity. ``meta["fingerprint"]`` is a canonical JSON string of what determines the
data: name, format (not the path or the source kind), the SHA-256 of the decoded arrays, the split,
the preprocessing and the resolved options. The same data found elsewhere gives the same fingerprint.
``identity(dataset)`` is what a result store records and hashes: the fingerprint's SHA-256, the format,
whether it is lossy, and the resolved options.

Manifest. ``data_manifest.json`` (next to this module, committed) records the identity of the data the
committed results were computed from (for cifar10, the JPEG mirror), keyed by name and resolved options,
so ``manifest_identity(name, options)`` gives a record's data identity without the data.
``write_manifest`` loads datasets and records theirs; a test checks that loading reproduces each entry.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from milr_core import datafiles
from milr_core.brief import brief
from milr_core.config import DATASETS, THRESHOLDS

# The one re-export: other modules (and tests) import the error classes from here.
from milr_core.datafiles import ChecksumError, DataError, DataOptionError, DatasetNotFoundError, UnknownDatasetError  # noqa: F401

FORMAT_VERSION = 1  # bump with any change to decoding, splitting or preprocessing; part of the fingerprint
N_OFFICIAL_TRAIN = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}

# The options of the image datasets and their defaults (val_size 5000 is our choice).
IMAGE_DEFAULTS = {"val_size": 5000, "split_seed": 0, "preprocessing": "global"}
# preprocessing -> the rule, as it enters the fingerprint
PREPROCESSING = {
    "global": "x / 255, then per channel (x - mean) / std with training-set statistics",
    "per_feature": "x / 255, then per feature (x - mean) / std with training-set statistics; constant features only centred",
}
# The Gaussian task: class k in {0, 1} is N((2k - 1) * separation / 2 * u, I_dim) for a unit vector u
# drawn from `seed`, so the Bayes classifier is sign(<u, x>) with accuracy Phi(separation / 2).
GAUSSIAN_DEFAULTS = {"dim": 64, "separation": 2.5, "seed": 0, "n_train_per_class": 9000, "n_val_per_class": 1000}

MANIFEST = Path(__file__).with_name("data_manifest.json")
# What the committed manifest holds; regenerate it after any change that moves a fingerprint:
# MILR_DATA=<offline data> MILR_OFFLINE=1 python -c "from milr_core import data; data.write_manifest(data.MANIFEST_ENTRIES)"
MANIFEST_ENTRIES = [
    ("mnist", {}),
    ("mnist", {"preprocessing": "per_feature"}),
    ("fashion_mnist", {}),
    ("cifar10", {}),
    ("cifar10", {"preprocessing": "per_feature"}),
    ("gaussians", {}),
    ("gaussians", {"dim": 16}),
]

@dataclass
class Dataset:
    """A training and a validation set, flattened and normalised, plus meta describing them."""

    name: str
    x_train: torch.Tensor  # (N, D) float32
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    meta: dict

    @property
    def in_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return self.meta["n_classes"]

    @property
    def default_threshold(self) -> float:
        return self.meta["default_threshold"]


def check_options(name: str, options: dict) -> dict:
    """The options of `name` with its defaults filled in, each checked and made a plain int, float or str.

    Reads nothing from disk. Raises UnknownDatasetError or DataOptionError, one line saying what is allowed.
    """
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    defaults = GAUSSIAN_DEFAULTS if name == "gaussians" else IMAGE_DEFAULTS
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        why = " (it draws its own training and validation sets and is not normalised)" if name == "gaussians" else ""
        raise DataOptionError(f"{name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(defaults)}{why}")
    given = {key: value for key, value in options.items() if value is not None}
    return {key: _checked_option(name, key, value) for key, value in {**defaults, **given}.items()}


def training_size(name: str, options: dict) -> int:
    """How many training examples ``name`` with ``options`` holds, known without reading it (batch and subset checks)."""
    resolved = check_options(name, options)
    if name == "gaussians":
        return 2 * resolved["n_train_per_class"]
    return N_OFFICIAL_TRAIN[name] - resolved["val_size"]


# The integer options' ranges (ours; val_size's is the official training set's size): large enough for any run,
# small enough that a typo (dim 10^9) is refused before any memory is asked for.
OPTION_RANGES = {"dim": (1, 100_000), "n_train_per_class": (1, 10**7), "n_val_per_class": (1, 10**7),
                 "seed": (0, 2**31 - 1), "split_seed": (0, 2**31 - 1)}  # fmt: skip


def _checked_option(name: str, key: str, value: object) -> int | float | str:
    if key == "preprocessing":
        if not isinstance(value, str) or value not in PREPROCESSING:
            raise DataOptionError(f"{name}: preprocessing must be one of {', '.join(PREPROCESSING)}, got {brief(value)}")
        return value
    if key == "separation":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise DataOptionError(f"{name}: separation must be a positive number, got {brief(value)}")
        return float(value)
    low, high = OPTION_RANGES[key] if key != "val_size" else (1, N_OFFICIAL_TRAIN[name] - 1)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        raise DataOptionError(f"{name}: {key} must be an integer in [{low}, {high}], got {brief(value)}")
    return int(value)


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool | None = None,
    cache_dir: str | Path | None = None,
    **options,
) -> Dataset:
    """Load ``name`` with ``options`` as a ``Dataset``: flattened, standardised inputs, labels and meta.

    Args:
        name: one of ``config.DATASETS`` (mnist, fashion_mnist, cifar10, gaussians).
        root, download, cache_dir: where the files are looked for (see ``datafiles.py``); never part of a record.
        options: what changes the data (images: val_size, split_seed, preprocessing; the Gaussian task: dim,
            separation, seed, n_train_per_class, n_val_per_class; the module docstring lists the defaults).

    Returns:
        The ``Dataset``: x_train, y_train, x_val, y_val, and meta (source, fingerprint, default threshold).

    Every error in the request is raised by ``check_options`` before any file is read.
    """
    resolved = check_options(name, options)
    if name == "gaussians":
        return _gaussians(resolved)
    cache = Path(cache_dir or os.environ.get("MILR_CACHE") or Path.home() / ".cache" / "milr").expanduser()
    if download is None:
        download = os.environ.get("MILR_OFFLINE", "").lower() not in ("1", "true", "yes")
    found = datafiles.locate(name, root, cache, download)
    x, y, data_sha256, cache_hit = datafiles.decoded(name, found, cache)
    return _image_dataset(name, found, x, y, data_sha256, cache_hit, resolved)


# ----------------------------------------------------------------------------------------------------
# Identity, with or without the data


def identity(dataset: Dataset) -> dict:
    """What a result store records and hashes of a dataset: never where it was found."""
    meta = dataset.meta
    return {
        "fingerprint_sha256": datafiles.hexdigest(meta["fingerprint"].encode(), "sha256"),
        "format": meta["format"],
        "lossy": meta["lossy"],
        "options": dict(meta["options"]),
    }


def manifest_identity(name: str, options: dict, path: Path = MANIFEST) -> dict | None:
    """The identity the manifest records for `name` with `options` (resolved), or None; opens no dataset file."""
    entry = _read_manifest(path).get(_manifest_key(name, check_options(name, options)))
    return None if entry is None else entry["identity"]


def write_manifest(entries: list[tuple[str, dict]], path: Path = MANIFEST) -> dict:
    """Load each (name, options) and record its identity in the manifest at `path`, kept with the entries there."""
    resolved = [(name, check_options(name, options)) for name, options in entries]  # all checked before any loads
    recorded = _read_manifest(path)
    for name, options in resolved:
        recorded[_manifest_key(name, options)] = {"dataset": name, "identity": identity(load_dataset(name, **options))}
    text = json.dumps({"format_version": FORMAT_VERSION, "entries": recorded}, indent=1, sort_keys=True) + "\n"
    datafiles.atomic_write(Path(path), lambda out: out.write(text.encode()))
    return recorded


def _manifest_key(name: str, resolved: dict) -> str:
    """E.g. "mnist preprocessing=global split_seed=0 val_size=5000": canonical, as check_options fixes each type."""
    return " ".join([name, *(f"{key}={value}" for key, value in sorted(resolved.items()))])


def _read_manifest(path: Path) -> dict:
    """The manifest's entries; none if it is absent or was written by another FORMAT_VERSION (its identities are stale)."""
    path = Path(path)
    if not path.is_file():
        return {}
    manifest = json.loads(path.read_text())
    return manifest["entries"] if manifest.get("format_version") == FORMAT_VERSION else {}


# ----------------------------------------------------------------------------------------------------
# Splitting, normalising, describing


def _image_dataset(
    name: str, found: datafiles.Found, x: np.ndarray, y: np.ndarray, data_sha256: str, cache_hit: bool, options: dict
) -> Dataset:
    """Split the official training split into train/val, standardise with train statistics, flatten."""
    n = len(x)
    val_size, split_seed = options["val_size"], options["split_seed"]
    if val_size >= n:
        raise DataOptionError(f"{name}: val_size {val_size} leaves no training examples out of {n}")
    perm = np.random.RandomState(split_seed).permutation(n)
    train, val = perm[val_size:], perm[:val_size]
    images = torch.from_numpy(x)
    x_train_u8 = images[torch.from_numpy(train)]
    scale, shift, normalisation = _standardisation(x_train_u8, options["preprocessing"])

    def prepare(u8: torch.Tensor) -> torch.Tensor:
        return u8.float().mul_(scale).sub_(shift).reshape(len(u8), -1)

    lossy = found.fmt == "cifar10-jpeg"
    split = {
        "kind": "held-out subset of the official training split (the test split is never used)",
        "val_size": val_size, "split_seed": split_seed, "rng": "numpy.random.RandomState(split_seed).permutation",
        "val_index_sha256": datafiles.hexdigest(val.astype("<i8").tobytes(), "sha256")[:16],
    }  # fmt: skip
    determined_by = {"dataset": name, "format": found.fmt, "data_sha256": data_sha256, "split": split,
                     "normalisation": PREPROCESSING[options["preprocessing"]]}  # fmt: skip
    meta = {
        "name": name,
        "source": found.source,
        "path": str(found.path),
        "format": found.fmt,
        "lossy": lossy,
        **({"mirror": "cifar10-jpeg"} if lossy else {}),
        "decoded_cache": "hit" if cache_hit else "miss",
        "data_sha256": data_sha256,
        "options": options,
        "image_shape": list(x.shape[1:]),
        "n_classes": 10,
        "classes": list(datafiles.CIFAR_CLASSES) if name == "cifar10" else None,
        "split": split,
        "normalisation": normalisation,
        "counts": _counts(y[train], y[val], 10),
        **_threshold(name),
        "fingerprint": _fingerprint(determined_by, options),
    }
    return Dataset(name, prepare(x_train_u8), torch.from_numpy(y[train].astype(np.int64)),
                   prepare(images[torch.from_numpy(val)]), torch.from_numpy(y[val].astype(np.int64)), meta)  # fmt: skip


def _standardisation(x_train: torch.Tensor, preprocessing: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(scale, shift, meta) with u8 * scale - shift = (u8 / 255 - mean) / std, from exact training-set statistics.

    Both statistics are of x / 255 over the training set (population std). A per_feature std of 0 (a
    feature constant on the training set) is replaced by 1, so that feature is only centred.
    """
    meta = {"preprocessing": preprocessing, "rule": PREPROCESSING[preprocessing], "statistics_of": "training set"}
    if preprocessing == "global":
        levels = np.arange(256) / 255.0
        mean, std = [], []
        for c in range(x_train.shape[1]):  # per channel, from the histogram of the 256 pixel levels
            p = torch.bincount(x_train[:, c].reshape(-1), minlength=256).numpy() / x_train[:, c].numel()
            mean.append(float(p @ levels))
            std.append(float(math.sqrt(p @ (levels - mean[-1]) ** 2)))
        scale = torch.tensor([1 / (255 * s) for s in std]).view(1, -1, 1, 1)
        shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(1, -1, 1, 1)
        return scale, shift, {**meta, "per_channel_mean": mean, "per_channel_std": std}
    s1 = np.zeros(x_train.shape[1:], np.int64)  # integer sums of u8 and u8^2 per feature: exact
    s2 = np.zeros(x_train.shape[1:], np.int64)
    for chunk in x_train.split(4096):
        wide = chunk.numpy().astype(np.int64)
        s1 += wide.sum(0)
        s2 += (wide * wide).sum(0)
    n = len(x_train)
    mean = s1 / (255 * n)
    std = np.sqrt(n * s2 - s1 * s1) / (255 * n)  # n * s2 - s1^2 = n^2 var(u8), exact in int64
    constant = std == 0
    divisor = np.where(constant, 1.0, std)
    scale = torch.from_numpy((1 / (255 * divisor)).astype(np.float32))[None]
    shift = torch.from_numpy((mean / divisor).astype(np.float32))[None]
    return scale, shift, {**meta, "n_features": int(std.size), "constant_features": int(constant.sum())}


def _gaussians(opts: dict) -> Dataset:
    """The paper's synthetic binary task: two unit-covariance Gaussians at +-(separation / 2) * u."""
    rng = np.random.RandomState(opts["seed"])
    u = rng.standard_normal(opts["dim"])
    mu = opts["separation"] / 2 * u / np.linalg.norm(u)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = np.repeat([0, 1], per_class)
        x = rng.standard_normal((2 * per_class, opts["dim"])) + np.where(y[:, None] == 1, mu, -mu)
        order = rng.permutation(2 * per_class)
        return torch.from_numpy(x[order].astype(np.float32)), torch.from_numpy(y[order])

    (x_train, y_train), (x_val, y_val) = draw(opts["n_train_per_class"]), draw(opts["n_val_per_class"])
    bayes = 0.5 * (1 + math.erf(opts["separation"] / 2 / math.sqrt(2)))
    split = {"kind": "independent draws", "rng": "numpy.random.RandomState(seed): direction, then train, then val"}
    meta = {
        "name": "gaussians",
        "source": "generated",
        "path": None,
        "format": "generated",
        "lossy": False,
        "options": opts,
        "class_means": "class 0: -(separation / 2) * u, class 1: +(separation / 2) * u, u a seeded random unit vector",
        "covariance": "identity",
        "bayes_accuracy": bayes,
        "n_classes": 2,
        "split": split,
        "normalisation": None,
        "counts": _counts(y_train.numpy(), y_val.numpy(), 2),
        **_threshold("gaussians"),
        "fingerprint": _fingerprint({"dataset": "gaussians", "format": "generated", "split": split}, opts),
    }
    return Dataset("gaussians", x_train, y_train, x_val, y_val, meta)


def _counts(y_train: np.ndarray, y_val: np.ndarray, n_classes: int) -> dict:
    return {
        "train": len(y_train), "val": len(y_val),
        "train_per_class": np.bincount(y_train, minlength=n_classes).tolist(),
        "val_per_class": np.bincount(y_val, minlength=n_classes).tolist(),
    }  # fmt: skip


def _threshold(name: str) -> dict:
    threshold, source = THRESHOLDS[name]
    return {"default_threshold": threshold, "threshold_source": source}


def _fingerprint(identity: dict, options: dict) -> str:
    """Canonical JSON of what determines the data (never a path), for a result store to hash."""
    return json.dumps({**identity, "options": options, "format_version": FORMAT_VERSION}, sort_keys=True, separators=(",", ":"))
