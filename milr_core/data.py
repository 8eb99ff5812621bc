"""The datasets of the eta* experiments: MNIST, Fashion-MNIST, CIFAR-10 and a synthetic Gaussian task.

``load_dataset(name)`` returns a ``Dataset``: flattened, standardised float32 inputs and int64 labels,
split into a training set and a validation set, and a json-serialisable ``meta`` saying exactly which
data this is (where it came from, whether it is lossy, the split, the normalisation, a fingerprint).

Validation split. eta* is measured on a validation set. For the image datasets it is a fixed held-out
subset of the official *training* split: ``val_size`` (default 5000, our choice) indices drawn by a
seeded permutation (``split_seed``); the training set is the rest. Both sets come in that permuted
order. The official test split is never read. The permutation uses numpy's legacy ``RandomState``,
whose stream numpy keeps frozen, so a (val_size, split_seed) pair names the same split everywhere.
``gaussians`` draws its training and validation sets independently instead (9k + 1k per class, as
in the paper), so it takes no ``val_size`` or ``split_seed``.

Preprocessing (images). Pixels are scaled to [0, 1], then standardised per channel with the mean and
std of the training set (after the split, so nothing of the validation set leaks in; both stored in
meta), then flattened channel-major (C*H*W: 784 for MNIST, 3072 for CIFAR-10). ``gaussians`` is not
normalised.

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
the JPEG mirror its SHA-256.

Decoded-array cache. The decoded, un-normalised uint8 arrays of the official training split are saved
in ``<cache>/decoded/`` keyed by dataset, format and the SHA-256 of the source files, so decoding (60k
JPEGs for the mirror) happens once. ``meta["decoded_cache"]`` is "hit" or "miss".

Fingerprint. ``meta["fingerprint"]`` is a canonical JSON string of what determines the data: name,
format (not the path or the source kind), the SHA-256 of the decoded arrays, the split, the
preprocessing and the options. The same data found elsewhere gives the same fingerprint.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
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

import numpy as np
import torch
from PIL import Image

DATASETS = ("mnist", "fashion_mnist", "cifar10", "gaussians")
DEFAULT_VAL_SIZE = 5000
FORMAT_VERSION = 1  # bump with any change to decoding, splitting or preprocessing; part of the fingerprint

# (threshold, where it comes from): the paper's for MNIST and CIFAR-10, ours (below the Bayes
# accuracy 0.894 of the default Gaussian task) elsewhere.
THRESHOLDS = {"mnist": (0.925, "paper"), "fashion_mnist": (0.80, "ours"), "cifar10": (0.34, "paper"), "gaussians": (0.80, "ours")}
N_OFFICIAL_TRAIN = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}

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

# The Gaussian task: class k in {0, 1} is N((2k - 1) * separation / 2 * u, I_dim) for a unit vector u
# drawn from `seed`, so the Bayes classifier is sign(<u, x>) with accuracy Phi(separation / 2).
GAUSSIAN_DEFAULTS = {"dim": 64, "separation": 2.5, "seed": 0, "n_train_per_class": 9000, "n_val_per_class": 1000}


class DataError(Exception):
    """Any problem with a dataset request or its files."""


class UnknownDatasetError(DataError, ValueError):
    """The dataset name is not one of DATASETS."""


class DataOptionError(DataError, ValueError):
    """A bad val_size, split_seed or dataset option."""


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


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool | None = None,
    cache_dir: str | Path | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
    **options,
) -> Dataset:
    """Load `name` (one of DATASETS) as a Dataset; every request error is raised before any file is read."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if name == "gaussians":
        if val_size is not None or split_seed != 0:
            raise DataOptionError(
                "gaussians draws its own training and validation sets: val_size and split_seed do not apply; "
                "use the options n_val_per_class and seed"
            )
        return _gaussians(_gaussian_options(options))
    if options:
        raise DataOptionError(f"{name} takes no options; got {', '.join(sorted(options))}")
    n = N_OFFICIAL_TRAIN[name]
    val_size = DEFAULT_VAL_SIZE if val_size is None else val_size
    if not _is_int(val_size) or not 1 <= val_size <= n - 1:
        raise DataOptionError(f"val_size must be an integer in [1, {n - 1}] for {name}, got {val_size!r}")
    if not _is_int(split_seed) or split_seed < 0:
        raise DataOptionError(f"split_seed must be a non-negative integer, got {split_seed!r}")
    val_size, split_seed = int(val_size), int(split_seed)  # plain ints in meta, even from numpy

    cache = Path(cache_dir or os.environ.get("MILR_CACHE") or Path.home() / ".cache" / "milr").expanduser()
    if download is None:
        download = os.environ.get("MILR_OFFLINE", "").lower() not in ("1", "true", "yes")
    found = _locate(name, root, cache, download)
    x, y, data_sha256, cache_hit = _decoded(name, found, cache)
    return _image_dataset(name, found, x, y, data_sha256, cache_hit, val_size, split_seed)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
        except OSError as error:  # network trouble; a checksum mismatch is a ChecksumError and propagates
            looked.append(f"download into {target}: failed ({error})")
    hint = "; or install the Debian package: apt-get install dataset-fashion-mnist" if name == "fashion_mnist" else ""
    raise DatasetNotFoundError(
        f"{name} not found. Looked, in order:\n  " + "\n  ".join(looked) + "\nTo get it: set MILR_DATA (or pass root) to a "
        f"folder holding the files in one of the layouts above; or allow downloads (download=True, unset MILR_OFFLINE){hint}."
    )


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
            raise ChecksumError(f"download {url}: MD5 {digest.hexdigest()}, expected {md5}; nothing was saved")

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


def _hex(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


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
        except (OSError, EOFError, zlib.error) as error:
            raise ChecksumError(f"{path}: corrupt or truncated gzip ({error})") from None
    got = _hex(data, "sha256")
    if got != sha256 and not (path.suffix == ".gz" and _hex(stored, "md5") == gz_md5):
        raise ChecksumError(f"{path}: SHA-256 of the {'decompressed ' * (path.suffix == '.gz')}bytes is {got}, expected {sha256}")
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
            raise ChecksumError(f"{found.path}: MD5 {_hex(stored, 'md5')}, expected {CIFAR_TGZ_MD5}")
        with tarfile.open(fileobj=io.BytesIO(stored), mode="r:gz") as tar:
            batches = {b: tar.extractfile(f"cifar-10-batches-py/{b}").read() for b in CIFAR_BATCH_MD5}
        where = {b: f"{found.path}:cifar-10-batches-py/{b}" for b in CIFAR_BATCH_MD5}
    else:
        batches = {f.name: f.read_bytes() for f in found.files}
        where = {f.name: str(f) for f in found.files}
    xs, ys = [], []
    for batch, md5 in CIFAR_BATCH_MD5.items():
        if _hex(batches[batch], "md5") != md5:
            raise ChecksumError(f"{where[batch]}: MD5 {_hex(batches[batch], 'md5')}, expected {md5}")
        d = _ArrayUnpickler(io.BytesIO(batches[batch]), encoding="latin1").load()
        xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d["labels"], np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def _read_cifar_jpeg(found: _Found) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's training split from the verified JPEG mirror, decoded in memory (no extraction to disk)."""
    stored = found.path.read_bytes()
    if _hex(stored, "sha256") != CIFAR_JPEG_SHA256:
        raise ChecksumError(f"{found.path}: SHA-256 {_hex(stored, 'sha256')}, expected {CIFAR_JPEG_SHA256}")
    tar_bytes = memoryview(gzip.decompress(stored))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.startswith("train/")), key=lambda m: m.name)
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
    try:
        with np.load(cached) as z:
            return z["x"], z["y"], str(z["data_sha256"]), True
    except (OSError, ValueError, KeyError):  # absent or unreadable: decode afresh
        pass
    reader = {"idx": lambda f: _read_idx(name, f), "cifar-python": _read_cifar_python, "cifar10-jpeg": _read_cifar_jpeg}
    x, y = reader[found.fmt](found)
    digest = hashlib.sha256(f"{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).data)
    digest.update(y.astype(np.uint8).data)
    try:
        _atomic_write(cached, lambda out: np.savez(out, x=x, y=y, data_sha256=np.array(digest.hexdigest())))
    except OSError as error:
        warnings.warn(f"could not write the decoded-array cache {cached}: {error}", stacklevel=3)
    return x, y, digest.hexdigest(), False


# ----------------------------------------------------------------------------------------------------
# Splitting, normalising, describing


def _image_dataset(
    name: str, found: _Found, x: np.ndarray, y: np.ndarray, data_sha256: str, cache_hit: bool, val_size: int, split_seed: int
) -> Dataset:
    """Split the official training split into train/val, standardise per channel with train statistics, flatten."""
    n, channels = x.shape[:2]
    if val_size >= n:
        raise DataOptionError(f"val_size {val_size} leaves no training examples out of {n}")
    perm = np.random.RandomState(split_seed).permutation(n)
    train, val = perm[val_size:], perm[:val_size]
    images = torch.from_numpy(x)
    x_train_u8 = images[torch.from_numpy(train)]
    levels = np.arange(256) / 255.0
    mean, std = [], []
    for c in range(channels):  # exact statistics from the histogram of the 256 pixel levels
        p = torch.bincount(x_train_u8[:, c].reshape(-1), minlength=256).numpy() / x_train_u8[:, c].numel()
        mean.append(float(p @ levels))
        std.append(float(math.sqrt(p @ (levels - mean[-1]) ** 2)))
    scale = torch.tensor([1 / (255 * s) for s in std]).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(1, -1, 1, 1)

    def prepare(u8: torch.Tensor) -> torch.Tensor:
        return u8.float().mul_(scale).sub_(shift).reshape(len(u8), -1)

    lossy = found.fmt == "cifar10-jpeg"
    split = {
        "kind": "held-out subset of the official training split (the test split is never used)",
        "val_size": val_size, "split_seed": split_seed, "rng": "numpy.random.RandomState(split_seed).permutation",
        "val_index_sha256": _hex(val.astype("<i8").tobytes(), "sha256")[:16],
    }  # fmt: skip
    normalisation = {"scale": "x / 255", "per_channel_mean": mean, "per_channel_std": std, "statistics_of": "training set"}
    identity = {"dataset": name, "format": found.fmt, "data_sha256": data_sha256, "split": split,
                "normalisation": "x / 255, then per channel (x - mean) / std with training-set statistics"}  # fmt: skip
    meta = {
        "name": name,
        "source": found.source,
        "path": str(found.path),
        "format": found.fmt,
        "lossy": lossy,
        **({"mirror": "cifar10-jpeg"} if lossy else {}),
        "decoded_cache": "hit" if cache_hit else "miss",
        "data_sha256": data_sha256,
        "image_shape": list(x.shape[1:]),
        "n_classes": 10,
        "classes": list(CIFAR_CLASSES) if name == "cifar10" else None,
        "split": split,
        "normalisation": normalisation,
        "counts": _counts(y[train], y[val], 10),
        **_threshold(name),
        "fingerprint": _fingerprint(identity, {}),
    }
    return Dataset(name, prepare(x_train_u8), torch.from_numpy(y[train].astype(np.int64)),
                   prepare(images[torch.from_numpy(val)]), torch.from_numpy(y[val].astype(np.int64)), meta)  # fmt: skip


def _gaussian_options(options: dict) -> dict:
    """GAUSSIAN_DEFAULTS overridden by `options`, each checked."""
    unknown = sorted(set(options) - set(GAUSSIAN_DEFAULTS))
    if unknown:
        raise DataOptionError(f"gaussians: unknown option(s) {', '.join(unknown)}; known: {', '.join(GAUSSIAN_DEFAULTS)}")
    resolved = {**GAUSSIAN_DEFAULTS, **options}
    for key in ("dim", "n_train_per_class", "n_val_per_class"):
        if not _is_int(resolved[key]) or resolved[key] < 1:
            raise DataOptionError(f"gaussians: {key} must be a positive integer, got {resolved[key]!r}")
    if not _is_int(resolved["seed"]) or resolved["seed"] < 0:
        raise DataOptionError(f"gaussians: seed must be a non-negative integer, got {resolved['seed']!r}")
    sep = resolved["separation"]
    if isinstance(sep, bool) or not isinstance(sep, (int, float)) or not 0 < sep < math.inf:
        raise DataOptionError(f"gaussians: separation must be a positive number, got {sep!r}")
    return {key: float(value) if key == "separation" else int(value) for key, value in resolved.items()}


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
