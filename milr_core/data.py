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

Where the files are looked for, in order (``meta["source"]`` says which was used):

1. ``root``, else the environment variable ``MILR_DATA`` ("explicit_root" / "MILR_DATA");
2. the user cache: ``cache_dir``, else ``MILR_CACHE``, else ``~/.cache/milr`` ("cache");
3. for Fashion-MNIST, the Debian package ``dataset-fashion-mnist`` ("debian"); it is local and
   verified, so it is tried before the network;
4. the canonical download into the cache ("download"), unless ``download=False`` or, when
   ``download`` is None, ``MILR_OFFLINE=1``. URLs and MD5s are torchvision's.

A root holds the canonical layout (``MNIST/raw/*-ubyte[.gz]``, ``FashionMNIST/raw/...``,
``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``) or the offline-mirror layout
(``MNIST/raw/*.gz``, ``cifar10-jpeg/cifar10-jpeg.tar.gz``). The JPEG mirror of CIFAR-10 is lossy:
meta then says ``lossy: True, mirror: "cifar10-jpeg"`` and its fingerprint differs from CIFAR-10's.

Integrity. Nothing is parsed before its checksum verifies: a download is renamed into place only
after its MD5 matches; an IDX file must match the SHA-256 of its decompressed bytes (which holds for
the canonical files, the offline mirror and the Debian package alike) or, for a ``.gz``, torchvision's
MD5; the CIFAR-10 archive and each pickled batch their MD5 (and unpickling allows numpy arrays only);
the JPEG mirror its SHA-256. Every data problem is a ``DataError`` whose one-line message names the file
and the fix: a missing dataset lists every place looked and where to put the files, a mismatching or
truncated file says which digest it has and which it should have.

Decoded-array cache. The decoded, un-normalised uint8 arrays of the official training split are saved
in ``<cache>/decoded/`` keyed by dataset, format and the SHA-256 of the source files, so decoding (60k
JPEGs for the mirror) happens once. ``meta["decoded_cache"]`` is "hit" or "miss". A cache file that
cannot be read or whose arrays do not match their recorded SHA-256 (a flipped byte, a truncation) is
decoded afresh from the source files and atomically replaced, with a warning.

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

import gzip
import hashlib
import http.client
import io
import json
import math
import numbers
import os
import pickle
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from zipfile import BadZipFile

import numpy as np
import torch
from PIL import Image

from milr_core.config import DATASETS, THRESHOLDS

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

# Download bases (torchvision's); a file's URL is base + file name.
URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}
# IDX files of the training split: name -> (torchvision's MD5 of the canonical .gz, SHA-256 of the
# decompressed bytes). The MNIST SHA-256s are the offline mirror's README's; the Fashion-MNIST ones
# were measured on the Debian package's files.
IDX_FILES = {
    "mnist": {
        "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    },
}  # fmt: skip
IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

CIFAR_TGZ = "cifar-10-python.tar.gz"
CIFAR_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
CIFAR_JPEG = "cifar10-jpeg/cifar10-jpeg.tar.gz"
CIFAR_JPEG_SHA256 = "0bfcb68717a0ecb0d51ed61034906a773d48d424d94b766a46d7d1c55702a4d9"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataError(Exception):
    """Any problem with a dataset request or its files."""


class UnknownDatasetError(DataError, ValueError):
    """The dataset name is not one of DATASETS."""


class DataOptionError(DataError, ValueError):
    """An unknown option, or a bad value of one (the message says what is allowed)."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """No source holds the dataset; the message lists every place looked."""


class ChecksumError(DataError):
    """A file is corrupt, truncated or not the expected one; the message names it."""


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


def _checked_option(name: str, key: str, value: object) -> int | float | str:
    if key == "preprocessing":
        if not isinstance(value, str) or value not in PREPROCESSING:
            raise DataOptionError(f"{name}: preprocessing must be one of {', '.join(PREPROCESSING)}, got {value!r}")
        return value
    if key == "separation":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise DataOptionError(f"{name}: separation must be a positive number, got {value!r}")
        return float(value)
    low = 0 if key in ("split_seed", "seed") else 1
    high = N_OFFICIAL_TRAIN[name] - 1 if key == "val_size" else math.inf
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        allowed = f"an integer in [{low}, {high}]" if high < math.inf else f"an integer >= {low}"
        raise DataOptionError(f"{name}: {key} must be {allowed}, got {value!r}")
    return int(value)


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool | None = None,
    cache_dir: str | Path | None = None,
    **options,
) -> Dataset:
    """Load `name` (one of DATASETS) with `options` (see the module docstring) as a Dataset.

    `root`, `download` and `cache_dir` say where the files are looked for; every error in the request
    is raised by check_options before any file is read.
    """
    resolved = check_options(name, options)
    if name == "gaussians":
        return _gaussians(resolved)
    cache = Path(cache_dir or os.environ.get("MILR_CACHE") or Path.home() / ".cache" / "milr").expanduser()
    if download is None:
        download = os.environ.get("MILR_OFFLINE", "").lower() not in ("1", "true", "yes")
    found = _locate(name, root, cache, download)
    x, y, data_sha256, cache_hit = _decoded(name, found, cache)
    return _image_dataset(name, found, x, y, data_sha256, cache_hit, resolved)


# ----------------------------------------------------------------------------------------------------
# Identity, with or without the data


def identity(dataset: Dataset) -> dict:
    """What a result store records and hashes of a dataset: never where it was found."""
    meta = dataset.meta
    return {
        "fingerprint_sha256": _hex(meta["fingerprint"].encode(), "sha256"),
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
    _atomic_write(Path(path), lambda out: out.write(text.encode()))
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
# Finding the files


@dataclass(frozen=True)
class _Found:
    """A complete set of source files: where it was found, in which format, and the files themselves."""

    source: str  # explicit_root | MILR_DATA | cache | debian | download
    fmt: str  # idx | cifar-python | cifar10-jpeg
    path: Path  # the folder or archive
    files: tuple[Path, ...]


def _layouts(name: str, root: Path) -> list[tuple[str, Path, tuple[Path, ...]]]:
    """The file sets under `root` that can hold `name`, preferred (lossless) first: (format, path, files)."""
    if name == "cifar10":
        batches = root / "cifar-10-batches-py"
        return [
            ("cifar-python", batches, tuple(batches / b for b in CIFAR_BATCH_MD5)),
            ("cifar-python", root / CIFAR_TGZ, (root / CIFAR_TGZ,)),
            ("cifar10-jpeg", root / CIFAR_JPEG, (root / CIFAR_JPEG,)),
        ]
    return _idx_layouts(name, root / IDX_FOLDERS[name] / "raw")


def _idx_layouts(name: str, folder: Path) -> list[tuple[str, Path, tuple[Path, ...]]]:
    """The IDX files of `name` in `folder`, uncompressed or gzipped."""
    return [("idx", folder, tuple(folder / f"{f}{ext}" for f in IDX_FILES[name])) for ext in ("", ".gz")]


def _locate(name: str, root: str | Path | None, cache: Path, download: bool) -> _Found:
    """The first complete source of `name`, trying the places in the documented order."""
    places: list[tuple[str, Path]] = []
    if root is not None:
        places.append(("explicit_root", Path(root).expanduser()))
    elif os.environ.get("MILR_DATA"):
        places.append(("MILR_DATA", Path(os.environ["MILR_DATA"]).expanduser()))
    places.append(("cache", cache))
    looked = [] if places[0][0] != "cache" else ["root: none given and MILR_DATA not set"]
    candidates = [(source, layout) for source, place in places for layout in _layouts(name, place)]
    if name == "fashion_mnist":
        candidates += [("debian", layout) for layout in _idx_layouts(name, DEBIAN_FASHION_MNIST)]
    for source, (fmt, path, files) in candidates:
        if all(f.is_file() for f in files):
            return _Found(source, fmt, path, files)
        looked.append(f"{source}: {', '.join(str(f) for f in files)}")

    target = cache / (CIFAR_TGZ if name == "cifar10" else f"{IDX_FOLDERS[name]}/raw")
    if not download:
        looked.append(f"download into {target}: not allowed (download=False or MILR_OFFLINE=1)")
    else:
        try:
            return _download(name, cache)
        except (OSError, http.client.HTTPException) as error:  # network trouble; a bad MD5 is a ChecksumError
            looked.append(f"download into {target}: failed ({error})")
    raise DatasetNotFoundError(f"{name} not found; looked, in order: {'; '.join(looked)}. To get it: {_how_to_get(name)}")


def _how_to_get(name: str) -> str:
    """Where to put the files of `name`, and the other ways to get them."""
    downloads = "or allow downloads (download=True, unset MILR_OFFLINE) to fetch"
    if name == "cifar10":
        return (
            f"set MILR_DATA (or pass root) to a folder holding {CIFAR_TGZ}, its cifar-10-batches-py/ folder or the "
            f"JPEG mirror {CIFAR_JPEG}; {downloads} {URLS[name]}{CIFAR_TGZ}."
        )
    files = " and ".join(f"{f}[.gz]" for f in IDX_FILES[name])
    debian = "; or install the Debian package: apt-get install dataset-fashion-mnist" if name == "fashion_mnist" else ""
    folder = f"$MILR_DATA/{IDX_FOLDERS[name]}/raw/"
    return f"set MILR_DATA (or pass root) and put {files} in {folder}; {downloads} them from {URLS[name]}{debian}."


def _download(name: str, cache: Path) -> _Found:
    """Download the canonical files of `name` into the cache; each is renamed into place once its MD5 verifies."""
    if name == "cifar10":
        dest = cache / CIFAR_TGZ
        _fetch(URLS[name] + CIFAR_TGZ, dest, CIFAR_TGZ_MD5)
        return _Found("download", "cifar-python", dest, (dest,))
    fmt, folder, files = _idx_layouts(name, cache / IDX_FOLDERS[name] / "raw")[1]
    for file, (md5, _) in zip(files, IDX_FILES[name].values()):
        if not file.is_file():
            _fetch(URLS[name] + file.name, file, md5)
    return _Found("download", fmt, folder, files)


def _fetch(url: str, dest: Path, md5: str) -> None:
    """Stream `url` to `dest` through a temp file, kept only if its MD5 is `md5`."""

    def write(out: BinaryIO) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ChecksumError(
                f"download {url}: MD5 {digest.hexdigest()}, expected {md5}; nothing was saved: try again, "
                f"or put an intact copy in {dest.parent}"
            )

    _atomic_write(dest, write)


def _atomic_write(dest: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `dest` via a temp file in its folder and os.replace, so no reader ever sees a partial file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------------------
# Verifying and decoding: each reader returns the official training split as uint8 images (N, C, H, W)
# and uint8 labels (N,)

_FIX = "the file is corrupt, truncated or not the expected one: delete it and put an intact copy there (or let it download again)"
_UNREADABLE = (OSError, EOFError, zlib.error, tarfile.TarError, KeyError)  # what a truncated gzip or tar raises


def _hex(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


def _mismatch(where: object, what: str, got: str, expected: str) -> ChecksumError:
    return ChecksumError(f"{where}: {what} {got}, expected {expected}; {_FIX}")


def _corrupt(where: object, error: Exception) -> ChecksumError:
    return ChecksumError(f"{where}: corrupt or truncated ({type(error).__name__}: {error}); {_FIX}")


def _read_idx(name: str, found: _Found) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST from its verified IDX files (plain or .gz)."""
    images, labels = (_idx_array(path, *IDX_FILES[name][path.name.removesuffix(".gz")]) for path in found.files)
    return images[:, None], labels


def _idx_array(path: Path, gz_md5: str, sha256: str) -> np.ndarray:
    """One IDX file, parsed only after its decompressed SHA-256 (or, for a .gz, its MD5) verifies."""
    data = stored = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(stored)
        except _UNREADABLE as error:
            raise _corrupt(path, error) from None
    got = _hex(data, "sha256")
    if got != sha256 and not (path.suffix == ".gz" and _hex(stored, "md5") == gz_md5):
        raise _mismatch(path, f"SHA-256 of the {'decompressed ' * (path.suffix == '.gz')}bytes is", got, sha256)
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()  # writable, for torch


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array-unpickling function, wherever this numpy keeps it
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: defence in depth behind the MD5 check."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise ChecksumError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only arrays")
        return _PICKLE_GLOBALS[module, name]


def _read_cifar_python(found: _Found) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from its pickled batches (a folder or the canonical archive), each verified before unpickling."""
    if found.fmt == "cifar-python" and found.path.name == CIFAR_TGZ:
        stored = found.path.read_bytes()
        if _hex(stored, "md5") != CIFAR_TGZ_MD5:
            raise _mismatch(found.path, "MD5", _hex(stored, "md5"), CIFAR_TGZ_MD5)
        try:
            with tarfile.open(fileobj=io.BytesIO(stored), mode="r:gz") as tar:
                batches = {b: tar.extractfile(f"cifar-10-batches-py/{b}").read() for b in CIFAR_BATCH_MD5}
        except _UNREADABLE as error:
            raise _corrupt(found.path, error) from None
        where = {b: f"{found.path}:cifar-10-batches-py/{b}" for b in CIFAR_BATCH_MD5}
    else:
        batches = {f.name: f.read_bytes() for f in found.files}
        where = {f.name: str(f) for f in found.files}
    xs, ys = [], []
    for batch, md5 in CIFAR_BATCH_MD5.items():
        if _hex(batches[batch], "md5") != md5:
            raise _mismatch(where[batch], "MD5", _hex(batches[batch], "md5"), md5)
        d = _ArrayUnpickler(io.BytesIO(batches[batch]), encoding="latin1").load()
        xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d["labels"], np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def _read_cifar_jpeg(found: _Found) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's training split from the verified JPEG mirror, decoded in memory (no extraction to disk)."""
    stored = found.path.read_bytes()
    if _hex(stored, "sha256") != CIFAR_JPEG_SHA256:
        raise _mismatch(found.path, "SHA-256", _hex(stored, "sha256"), CIFAR_JPEG_SHA256)
    try:
        tar_bytes = memoryview(gzip.decompress(stored))
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.startswith("train/")), key=lambda m: m.name)
    except _UNREADABLE as error:
        raise _corrupt(found.path, error) from None
    x = np.empty((len(members), 32, 32, 3), np.uint8)
    for i, m in enumerate(members):
        with Image.open(io.BytesIO(tar_bytes[m.offset_data : m.offset_data + m.size])) as image:
            x[i] = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    y = np.array([CIFAR_CLASSES.index(m.name.split("/")[1]) for m in members], np.uint8)
    return x.transpose(0, 3, 1, 2).copy(), y


def _decoded(name: str, found: _Found, cache: Path) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """(images, labels, SHA-256 of both, cache hit?) through the decoded-array cache in `cache`/decoded."""
    source_digest = hashlib.sha256()
    for f in found.files:
        source_digest.update(f.read_bytes())
    cached = cache / "decoded" / f"{name}-{found.fmt}-{source_digest.hexdigest()[:24]}.npz"
    hit = _read_decoded_cache(cached)
    if hit is not None:
        return *hit, True
    reader = {"idx": lambda f: _read_idx(name, f), "cifar-python": _read_cifar_python, "cifar10-jpeg": _read_cifar_jpeg}
    x, y = reader[found.fmt](found)
    data_sha256 = _arrays_sha256(x, y)
    try:
        _atomic_write(cached, lambda out: np.savez(out, x=x, y=y, data_sha256=np.array(data_sha256)))
    except OSError as error:
        warnings.warn(f"could not write the decoded-array cache {cached}: {error}", stacklevel=3)
    return x, y, data_sha256, False


def _read_decoded_cache(path: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The cached (images, labels, SHA-256), or None if absent or damaged (then with a warning: it is re-decoded)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            x, y, recorded = z["x"], z["y"], str(z["data_sha256"])
        if _arrays_sha256(x, y) == recorded:
            return x, y, recorded
        problem = "its arrays do not match their recorded SHA-256"
    except (BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as error:
        problem = f"{type(error).__name__}: {error}"
    warnings.warn(f"damaged decoded-array cache {path} ({problem}): decoding afresh and replacing it", stacklevel=4)
    return None


def _arrays_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """The SHA-256 of the decoded arrays: the content part of the fingerprint."""
    digest = hashlib.sha256(f"{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).data)
    digest.update(y.astype(np.uint8).data)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Splitting, normalising, describing


def _image_dataset(
    name: str, found: _Found, x: np.ndarray, y: np.ndarray, data_sha256: str, cache_hit: bool, options: dict
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
        "val_index_sha256": _hex(val.astype("<i8").tobytes(), "sha256")[:16],
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
        "classes": list(CIFAR_CLASSES) if name == "cifar10" else None,
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
