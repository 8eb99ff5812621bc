"""Where the dataset files are and how they are read and verified; ``data`` builds datasets from them.

``locate`` finds a complete set of source files (a ``Found``), ``decoded`` turns it into the official
training split as uint8 arrays through the decoded-array cache, and every problem on the way is a
``DataError`` (defined here; ``data`` imports the error classes for its callers).

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
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
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
from PIL import Image

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


# ----------------------------------------------------------------------------------------------------
# Finding the files


@dataclass(frozen=True)
class Found:
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


def locate(name: str, root: str | Path | None, cache: Path, download: bool) -> Found:
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
            return Found(source, fmt, path, files)
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


def _download(name: str, cache: Path) -> Found:
    """Download the canonical files of `name` into the cache; each is renamed into place once its MD5 verifies."""
    if name == "cifar10":
        dest = cache / CIFAR_TGZ
        _fetch(URLS[name] + CIFAR_TGZ, dest, CIFAR_TGZ_MD5)
        return Found("download", "cifar-python", dest, (dest,))
    fmt, folder, files = _idx_layouts(name, cache / IDX_FOLDERS[name] / "raw")[1]
    for file, (md5, _) in zip(files, IDX_FILES[name].values()):
        if not file.is_file():
            _fetch(URLS[name] + file.name, file, md5)
    return Found("download", fmt, folder, files)


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

    atomic_write(dest, write)


def atomic_write(dest: Path, write: Callable[[BinaryIO], None]) -> None:
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


def hexdigest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


def _mismatch(where: object, what: str, got: str, expected: str) -> ChecksumError:
    return ChecksumError(f"{where}: {what} {got}, expected {expected}; {_FIX}")


def _corrupt(where: object, error: Exception) -> ChecksumError:
    return ChecksumError(f"{where}: corrupt or truncated ({type(error).__name__}: {error}); {_FIX}")


def _read_idx(name: str, found: Found) -> tuple[np.ndarray, np.ndarray]:
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
    got = hexdigest(data, "sha256")
    if got != sha256 and not (path.suffix == ".gz" and hexdigest(stored, "md5") == gz_md5):
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


def _read_cifar_python(found: Found) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from its pickled batches (a folder or the canonical archive), each verified before unpickling."""
    if found.fmt == "cifar-python" and found.path.name == CIFAR_TGZ:
        stored = found.path.read_bytes()
        if hexdigest(stored, "md5") != CIFAR_TGZ_MD5:
            raise _mismatch(found.path, "MD5", hexdigest(stored, "md5"), CIFAR_TGZ_MD5)
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
        if hexdigest(batches[batch], "md5") != md5:
            raise _mismatch(where[batch], "MD5", hexdigest(batches[batch], "md5"), md5)
        d = _ArrayUnpickler(io.BytesIO(batches[batch]), encoding="latin1").load()
        xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d["labels"], np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def _read_cifar_jpeg(found: Found) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's training split from the verified JPEG mirror, decoded in memory (no extraction to disk)."""
    stored = found.path.read_bytes()
    if hexdigest(stored, "sha256") != CIFAR_JPEG_SHA256:
        raise _mismatch(found.path, "SHA-256", hexdigest(stored, "sha256"), CIFAR_JPEG_SHA256)
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


def decoded(name: str, found: Found, cache: Path) -> tuple[np.ndarray, np.ndarray, str, bool]:
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
        atomic_write(cached, lambda out: np.savez(out, x=x, y=y, data_sha256=np.array(data_sha256)))
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
