"""milr_core.data and milr_core.datafiles: real datasets from MILR_DATA (skipped without it), options, identity and
the manifest, errors, the decoded-array cache, downloads, the Gaussian task. Small synthetic IDX files stand in for
MNIST where they can."""

import gzip
import hashlib
import json
import os
import pickle
import shutil
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from milr_core import data, datafiles
from milr_core.data import (
    ChecksumError,
    DataOptionError,
    DatasetNotFoundError,
    UnknownDatasetError,
    check_options,
    identity,
    load_dataset,
    manifest_identity,
    write_manifest,
)

MILR_DATA = os.environ.get("MILR_DATA")
needs_data = pytest.mark.skipif(not MILR_DATA, reason="set MILR_DATA to a data root (e.g. /work/shared/data) to load real data")
MNIST_RAW = Path(MILR_DATA or "/nonexistent") / "MNIST" / "raw"
MANIFEST_ENTRIES = json.loads(data.MANIFEST.read_text())["entries"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test reads the user's cache, finds MILR_DATA unless it sets it, or touches the network by accident."""
    monkeypatch.delenv("MILR_DATA", raising=False)
    monkeypatch.setenv("MILR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MILR_OFFLINE", "1")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One cache for the session, so the 50k-JPEG decode happens once."""
    return tmp_path_factory.mktemp("session-cache")


@pytest.fixture(scope="session")
def cifar(session_cache):
    if not MILR_DATA:
        pytest.skip("set MILR_DATA to a data root to load CIFAR-10")
    start = time.perf_counter()
    dataset = load_dataset("cifar10", root=MILR_DATA, cache_dir=session_cache)
    return dataset, time.perf_counter() - start


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` as an IDX file of unsigned bytes."""
    return bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.astype(np.uint8).tobytes()


def fake_mnist(root: Path, monkeypatch, images: np.ndarray, labels: np.ndarray) -> Path:
    """`images` and `labels` as gzipped IDX files in root/MNIST/raw, their digests swapped in for MNIST's."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    digests = {}
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        packed = gzip.compress(raw, mtime=0)
        (folder / f"{name}.gz").write_bytes(packed)
        digests[name] = (hashlib.md5(packed).hexdigest(), hashlib.sha256(raw).hexdigest())
    monkeypatch.setitem(datafiles.IDX_FILES, "mnist", digests)
    return folder


@pytest.fixture
def small_mnist(tmp_path, monkeypatch):
    """60 synthetic 28x28 images: random pixels, a black 2-pixel border and one pixel always 7."""
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (60, 28, 28)).astype(np.uint8)
    images[:, :2] = images[:, -2:] = images[:, :, :2] = images[:, :, -2:] = 0
    images[:, 10, 10] = 7
    labels = (np.arange(60) % 10).astype(np.uint8)
    fake_mnist(tmp_path / "small", monkeypatch, images, labels)
    return tmp_path / "small", images, labels


def check_image_dataset(d, n_train, n_val, dim, channels):
    assert d.x_train.shape == (n_train, dim) and d.x_val.shape == (n_val, dim)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.in_dim == dim and d.n_classes == 10
    for y, n in ((d.y_train, n_train), (d.y_val, n_val)):
        counts = torch.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.sum() == n
        assert counts.min() > 0.07 * n and counts.max() < 0.13 * n
    assert torch.isfinite(d.x_train).all() and torch.isfinite(d.x_val).all()
    std, mean = torch.std_mean(d.x_train.view(n_train, channels, -1), dim=(0, 2))
    assert torch.allclose(mean, torch.zeros(channels), atol=1e-4) and torch.allclose(std, torch.ones(channels), atol=1e-4)
    assert d.meta["counts"]["train"] == n_train and d.meta["split"]["val_size"] == n_val
    json.dumps(d.meta)


@needs_data
def test_mnist_from_mirror(monkeypatch):
    monkeypatch.setenv("MILR_DATA", MILR_DATA)
    d = load_dataset("mnist")
    check_image_dataset(d, 55000, 5000, 784, 1)
    assert d.meta["source"] == "MILR_DATA" and d.meta["format"] == "idx" and d.meta["lossy"] is False
    assert d.default_threshold == 0.925 and d.meta["threshold_source"] == "paper"
    assert d.meta["decoded_cache"] == "miss"
    again = load_dataset("mnist", root=MILR_DATA)
    assert again.meta["decoded_cache"] == "hit" and again.meta["source"] == "explicit_root"
    assert again.meta["fingerprint"] == d.meta["fingerprint"]
    assert torch.equal(again.x_val, d.x_val)
    other = load_dataset("mnist", split_seed=1, val_size=1000)
    assert other.x_val.shape == (1000, 784) and other.meta["fingerprint"] != d.meta["fingerprint"]


@needs_data
def test_same_data_elsewhere_same_fingerprint(tmp_path):
    copy = tmp_path / "elsewhere" / "MNIST" / "raw"
    shutil.copytree(MNIST_RAW, copy)
    for f in copy.glob("*.gz"):  # the canonical uncompressed layout
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
        f.unlink()
    a = load_dataset("mnist", root=MILR_DATA)
    b = load_dataset("mnist", root=tmp_path / "elsewhere")
    assert b.meta["path"] != a.meta["path"] and b.meta["fingerprint"] == a.meta["fingerprint"]


def test_cifar10_from_jpeg_mirror(cifar):
    d, seconds = cifar
    print(f"first CIFAR-10 load (JPEG decode): {seconds:.1f} s")
    check_image_dataset(d, 45000, 5000, 3072, 3)
    assert d.meta["source"] == "explicit_root" and d.meta["lossy"] is True and d.meta["mirror"] == "cifar10-jpeg"
    assert d.meta["format"] == "cifar10-jpeg" and '"format":"cifar10-jpeg"' in d.meta["fingerprint"]
    assert d.default_threshold == 0.34 and len(d.meta["normalisation"]["per_channel_mean"]) == 3
    assert d.meta["counts"]["train_per_class"] != [4500] * 10  # a random split, not stratified


def test_cifar10_second_load_hits_decoded_cache(cifar, session_cache, monkeypatch):
    first, first_seconds = cifar
    monkeypatch.setenv("MILR_DATA", MILR_DATA)
    start = time.perf_counter()
    d = load_dataset("cifar10", cache_dir=session_cache)
    seconds = time.perf_counter() - start
    print(f"cached CIFAR-10 load: {seconds:.1f} s (first: {first_seconds:.1f} s)")
    assert d.meta["decoded_cache"] == "hit" and first.meta["decoded_cache"] == "miss"
    assert d.meta["fingerprint"] == first.meta["fingerprint"] and torch.equal(d.y_val, first.y_val)


def test_fashion_mnist_from_debian(monkeypatch):
    if not (datafiles.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    d = load_dataset("fashion_mnist")
    check_image_dataset(d, 55000, 5000, 784, 1)
    assert d.meta["source"] == "debian" and d.meta["threshold_source"] == "ours"


# ----------------------------------------------------------------------------------------------------
# options, checked before any file is read


def test_check_options_fills_defaults_without_touching_the_disk(monkeypatch):
    def no_disk(*args, **kwargs):
        raise AssertionError("check_options touched the disk")

    with monkeypatch.context() as m:
        for target, name in ((Path, "stat"), (Path, "open"), (Path, "read_bytes")):
            m.setattr(target, name, no_disk)
        m.setattr("builtins.open", no_disk)
        images = check_options("cifar10", {"val_size": np.int64(100), "split_seed": None})
        gaussians = check_options("gaussians", {"dim": 16, "separation": 3})
    assert images == {"val_size": 100, "split_seed": 0, "preprocessing": "global"} and type(images["val_size"]) is int
    assert gaussians == {**data.GAUSSIAN_DEFAULTS, "dim": 16, "separation": 3.0}


@pytest.mark.parametrize(
    "name, options, error, message",
    [
        ("imagenet", {}, UnknownDatasetError, "unknown dataset 'imagenet'; known: mnist, fashion_mnist, cifar10, gaussians"),
        ("mnist", {"dim": 3}, DataOptionError, "mnist: unknown option(s) dim; known: val_size, split_seed, preprocessing"),
        ("mnist", {"preprocessing": "pca"}, DataOptionError, "mnist: preprocessing must be one of global, per_feature, got 'pca'"),
        ("cifar10", {"preprocessing": 1}, DataOptionError, "cifar10: preprocessing must be one of global, per_feature, got 1"),
        ("cifar10", {"val_size": 50000}, DataOptionError, "cifar10: val_size must be an integer in [1, 49999], got 50000"),
        ("mnist", {"split_seed": "0"}, DataOptionError, "mnist: split_seed must be an integer in [0, 2147483647], got '0'"),
        ("gaussians", {"preprocessing": "global"}, DataOptionError,
         "gaussians: unknown option(s) preprocessing; known: dim, separation, seed, n_train_per_class, n_val_per_class"),
        ("gaussians", {"separation": True}, DataOptionError, "gaussians: separation must be a positive number, got True"),
        ("gaussians", {"n_val_per_class": 0}, DataOptionError, "gaussians: n_val_per_class must be an integer in [1, 10000000], got 0"),
    ],
)  # fmt: skip
def test_bad_options_one_line(name, options, error, message, monkeypatch):
    monkeypatch.setattr(datafiles, "locate", lambda *a: pytest.fail("looked for files"))
    for call in (lambda: check_options(name, options), lambda: load_dataset(name, **options)):
        with pytest.raises(error) as raised:
            call()
        assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("val_size", [0, -1, 60000, 2.5, True])
def test_bad_val_size_before_anything_loads(val_size, tmp_path, monkeypatch):
    monkeypatch.setattr(datafiles, "locate", lambda *a: pytest.fail("looked for files"))
    with pytest.raises(DataOptionError, match=r"val_size must be an integer in \[1, 59999\]"):
        load_dataset("mnist", val_size=val_size)


def test_gaussians_refuses_image_options():
    with pytest.raises(DataOptionError, match="unknown option.* val_size; known: dim.*draws its own training and validation"):
        load_dataset("gaussians", val_size=100)
    with pytest.raises(DataOptionError, match="unknown option.* dimension; known: dim"):
        load_dataset("gaussians", dimension=3)


# ----------------------------------------------------------------------------------------------------
# preprocessing, on synthetic IDX files


def test_global_preprocessing_is_the_default(small_mnist):
    root, _, _ = small_mnist
    d = load_dataset("mnist", root=root, val_size=10)
    assert d.meta["options"] == {"val_size": 10, "split_seed": 0, "preprocessing": "global"}
    assert d.meta["normalisation"]["preprocessing"] == "global" and len(d.meta["normalisation"]["per_channel_mean"]) == 1
    std, mean = torch.std_mean(d.x_train.double(), unbiased=False)
    assert abs(mean) < 1e-6 and abs(std - 1) < 1e-6
    assert torch.equal(load_dataset("mnist", root=root, val_size=10, preprocessing="global").x_val, d.x_val)


def test_per_feature_standardises_each_feature_with_training_statistics(small_mnist):
    root, images, _ = small_mnist
    d = load_dataset("mnist", root=root, val_size=10, preprocessing="per_feature")
    std, mean = torch.std_mean(d.x_train.double(), dim=0, unbiased=False)
    constant = torch.from_numpy((images.reshape(60, -1) == images.reshape(60, -1)[0]).all(0))
    assert constant.sum() == 28 * 28 - 24 * 24 + 1  # the border and the pixel always 7
    assert mean.abs().max() < 1e-5 and (std[constant] == 0).all() and (std[~constant] - 1).abs().max() < 1e-5
    assert d.meta["normalisation"]["constant_features"] == constant.sum() and d.meta["normalisation"]["n_features"] == 784
    # the validation set is standardised with the training set's statistics, not its own
    perm = np.random.RandomState(0).permutation(60)
    pixels = images.reshape(60, -1) / 255.0
    train_mean, train_std = pixels[perm[10:]].mean(0), pixels[perm[10:]].std(0)
    expected = (pixels[perm[:10]] - train_mean) / np.where(constant.numpy(), 1, train_std)  # float std of a constant: ~1e-17
    assert np.allclose(d.x_val.numpy(), expected, atol=1e-5)
    assert (d.x_val.double().mean(0)[~constant]).abs().max() > 0.1


def test_preprocessing_changes_fingerprint_and_identity(small_mnist):
    root, _, _ = small_mnist
    default, per_feature = (load_dataset("mnist", root=root, val_size=10, preprocessing=p) for p in (None, "per_feature"))
    assert default.meta["fingerprint"] != per_feature.meta["fingerprint"]
    assert '"preprocessing":"per_feature"' in per_feature.meta["fingerprint"]
    a, b = identity(default), identity(per_feature)
    assert a["fingerprint_sha256"] != b["fingerprint_sha256"] and b["options"]["preprocessing"] == "per_feature"
    assert a == identity(load_dataset("mnist", root=root, val_size=10))  # deterministic
    assert a == {"fingerprint_sha256": hashlib.sha256(default.meta["fingerprint"].encode()).hexdigest(), "format": "idx",
                 "lossy": False, "options": {"val_size": 10, "split_seed": 0, "preprocessing": "global"}}  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# identity without the data: the committed manifest


def test_manifest_identity_without_any_data(tmp_path, monkeypatch):
    for module, name in ((datafiles, "locate"), (datafiles, "decoded"), (data, "load_dataset")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("loaded data"))
    assert not (tmp_path / "cache").exists()
    mnist = manifest_identity("mnist", {})
    assert mnist["options"] == {"val_size": 5000, "split_seed": 0, "preprocessing": "global"} and mnist["format"] == "idx"
    assert manifest_identity("mnist", {"val_size": 5000, "split_seed": None}) == mnist
    assert manifest_identity("mnist", {"preprocessing": "per_feature"})["fingerprint_sha256"] != mnist["fingerprint_sha256"]
    assert manifest_identity("cifar10", {})["lossy"] is True
    assert manifest_identity("gaussians", {"dim": 16})["options"]["dim"] == 16
    assert manifest_identity("mnist", {"val_size": 1234}) is None
    assert manifest_identity("gaussians", {"dim": 17}) is None
    with pytest.raises(DataOptionError):
        manifest_identity("mnist", {"preprocessing": "pca"})


def test_committed_manifest_holds_every_listed_entry():
    assert len(MANIFEST_ENTRIES) == len(data.MANIFEST_ENTRIES)
    assert all(manifest_identity(name, options) is not None for name, options in data.MANIFEST_ENTRIES)


def test_write_manifest_merges_and_is_stable(small_mnist, tmp_path, monkeypatch):
    root, _, _ = small_mnist
    monkeypatch.setenv("MILR_DATA", str(root))
    path = tmp_path / "manifest.json"
    small = {"dim": 4, "n_train_per_class": 5, "n_val_per_class": 5}
    write_manifest([("gaussians", small)], path)
    write_manifest([("mnist", {"val_size": 10}), ("mnist", {"val_size": 10, "preprocessing": "per_feature"})], path)
    assert manifest_identity("gaussians", small, path) == identity(load_dataset("gaussians", **small))
    for preprocessing in ("global", "per_feature"):
        options = {"val_size": 10, "preprocessing": preprocessing}
        assert manifest_identity("mnist", options, path) == identity(load_dataset("mnist", **options))
    text = path.read_text()
    write_manifest([("gaussians", small)], path)
    assert path.read_text() == text and len(json.loads(text)["entries"]) == 3
    monkeypatch.setattr(data, "FORMAT_VERSION", data.FORMAT_VERSION + 1)  # a stale manifest is not trusted
    assert manifest_identity("gaussians", small, path) is None


@needs_data
@pytest.mark.parametrize("key", sorted(MANIFEST_ENTRIES))
def test_manifest_entry_reproduced_by_loading(key, session_cache, monkeypatch, request):
    entry = MANIFEST_ENTRIES[key]
    if entry["dataset"] == "fashion_mnist" and not (datafiles.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    if entry["dataset"] == "cifar10":
        request.getfixturevalue("cifar")  # its first load is the one that decodes
    monkeypatch.setenv("MILR_DATA", MILR_DATA)
    loaded = load_dataset(entry["dataset"], cache_dir=session_cache, **entry["identity"]["options"])
    assert identity(loaded) == entry["identity"]


# ----------------------------------------------------------------------------------------------------
# errors: one line, naming the file and the fix


def test_missing_data_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(datafiles, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion_mnist", cache_dir=tmp_path / "c")
    message = str(error.value)
    order = ["MILR_DATA:", str(tmp_path / "nowhere" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"),
             "cache:", "debian:", str(tmp_path / "no-debian"), "download into", "not allowed",
             "$MILR_DATA/FashionMNIST/raw/", datafiles.URLS["fashion_mnist"], "apt-get install dataset-fashion-mnist"]  # fmt: skip
    positions = [message.index(s) for s in order]
    assert positions == sorted(positions) and "\n" not in message
    assert "set MILR_DATA" in message and "allow downloads" in message
    monkeypatch.delenv("MILR_DATA")
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("mnist")
    message = str(error.value)
    assert message.startswith("mnist not found; looked, in order: root: none given and MILR_DATA not set; cache:")
    assert "put train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] in $MILR_DATA/MNIST/raw/" in message
    assert datafiles.URLS["mnist"] in message and "apt-get" not in message and "\n" not in message
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py.*cifar10-jpeg.tar.gz.*cs.toronto.edu"):
        load_dataset("cifar10", root=tmp_path / "nowhere")


def test_flipped_byte_is_a_checksum_error(small_mnist):
    root, _, labels = small_mnist
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[20] ^= 1
    path.write_bytes(gzip.compress(bytes(raw)))
    expected = datafiles.IDX_FILES["mnist"]["train-labels-idx1-ubyte"][1]
    with pytest.raises(ChecksumError) as error:
        load_dataset("mnist", root=root, val_size=10)
    message = str(error.value)
    assert message.startswith(f"{path}: SHA-256 of the decompressed bytes is {hashlib.sha256(raw).hexdigest()}, expected {expected}")
    assert "delete it" in message and "\n" not in message


def test_truncated_gzip_is_a_checksum_error(small_mnist):
    root, _, _ = small_mnist
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ChecksumError) as error:
        load_dataset("mnist", root=root, val_size=10)
    assert str(error.value).startswith(f"{path}: corrupt or truncated (") and "delete it" in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_corrupt_jpeg_tarball_is_a_checksum_error(tmp_path):
    tarball = tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    tarball.parent.mkdir()
    tarball.write_bytes(b"not the mirror")
    with pytest.raises(ChecksumError, match=r"cifar10-jpeg\.tar\.gz: SHA-256 [0-9a-f]{64}, expected 0bfcb687.*; .*delete it"):
        load_dataset("cifar10", root=tmp_path)


def test_truncated_archives_are_checksum_errors(tmp_path, monkeypatch):
    """Even an archive whose digest matches (swapped in here) is reported, not a raw tarfile or zlib error."""
    fake_cifar_batches(tmp_path / "cifar-10-batches-py", monkeypatch)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "train" / "cat" / "0001.jpg")
    archives = [("python", datafiles.CIFAR_TGZ, "cifar-10-batches-py", "CIFAR_TGZ_MD5", "md5"),
                ("mirror", datafiles.CIFAR_JPEG, "train", "CIFAR_JPEG_SHA256", "sha256")]  # fmt: skip
    for root, name, folder, digest, algorithm in archives:
        archive = tmp_path / root / name
        archive.parent.mkdir(parents=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tmp_path / folder, arcname=folder)
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        monkeypatch.setattr(datafiles, digest, hashlib.new(algorithm, archive.read_bytes()).hexdigest())
        with pytest.raises(ChecksumError) as error:
            load_dataset("cifar10", root=tmp_path / root, val_size=10)
        assert str(error.value).startswith(f"{archive}: corrupt or truncated (") and "\n" not in str(error.value)


# ----------------------------------------------------------------------------------------------------
# the decoded-array cache


@pytest.mark.parametrize("damage", ["flip a byte in the middle", "truncate to half"])
def test_damaged_decoded_cache_is_decoded_afresh(damage, small_mnist, tmp_path):
    root, _, _ = small_mnist
    first = load_dataset("mnist", root=root, val_size=10)
    (cached,) = (tmp_path / "cache" / "decoded").glob("*.npz")
    stored = bytearray(cached.read_bytes())
    if damage == "truncate to half":
        stored = stored[: len(stored) // 2]
    else:
        stored[len(stored) // 2] ^= 0xFF
    cached.write_bytes(stored)
    with pytest.warns(UserWarning, match=f"damaged decoded-array cache {cached}"):
        again = load_dataset("mnist", root=root, val_size=10)
    assert again.meta["decoded_cache"] == "miss" and again.meta["fingerprint"] == first.meta["fingerprint"]
    assert torch.equal(again.x_train, first.x_train) and torch.equal(again.y_val, first.y_val)
    assert cached.read_bytes() != stored and not list(cached.parent.glob(".*"))  # replaced, no temp file left
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = load_dataset("mnist", root=root, val_size=10)
    assert third.meta["decoded_cache"] == "hit" and torch.equal(third.x_val, first.x_val)


# ----------------------------------------------------------------------------------------------------
# downloads, served from a local folder through file:// URLs


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The mirror's MNIST .gz files served from tmp; torchvision's MD5s swapped for theirs (the mirror re-gzipped)."""
    if not MILR_DATA:
        pytest.skip("set MILR_DATA to a data root holding MNIST/raw")
    server = tmp_path / "server"
    shutil.copytree(MNIST_RAW, server)
    monkeypatch.setitem(datafiles.URLS, "mnist", server.as_uri() + "/")
    files = {name: (hashlib.md5((server / f"{name}.gz").read_bytes()).hexdigest(), sha)
             for name, (_, sha) in datafiles.IDX_FILES["mnist"].items()}  # fmt: skip
    monkeypatch.setitem(datafiles.IDX_FILES, "mnist", files)
    return server


def test_download_verifies_and_lands_in_cache(served, tmp_path):
    cache = tmp_path / "dl-cache"
    d = load_dataset("mnist", cache_dir=cache, download=True)
    assert d.meta["source"] == "download" and d.x_train.shape == (55000, 784)
    assert sorted(p.name for p in (cache / "MNIST" / "raw").iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    again = load_dataset("mnist", cache_dir=cache, download=False)
    assert again.meta["source"] == "cache" and again.meta["decoded_cache"] == "hit"


def test_download_with_bad_md5_leaves_nothing(served, tmp_path, monkeypatch):
    monkeypatch.setitem(datafiles.IDX_FILES["mnist"], "train-images-idx3-ubyte", ("0" * 32, "unused"))
    cache = tmp_path / "dl-cache"
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz: MD5 [0-9a-f]{32}, expected 0000"):
        load_dataset("mnist", cache_dir=cache, download=True)
    assert not (cache / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in (cache / "MNIST" / "raw").iterdir() if p.name.startswith(".")]


def test_download_failure_is_listed(tmp_path, monkeypatch):
    monkeypatch.setitem(datafiles.URLS, "mnist", (tmp_path / "empty").as_uri() + "/")
    with pytest.raises(DatasetNotFoundError, match="download into .*: failed"):
        load_dataset("mnist", cache_dir=tmp_path / "c", download=True)


# ----------------------------------------------------------------------------------------------------
# the canonical CIFAR-10 pickles, faked small (their MD5s swapped in) since only the mirror is offline


def fake_cifar_batches(folder: Path, monkeypatch, payload=None) -> None:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    md5s = {}
    for name in datafiles.CIFAR_BATCH_MD5:
        batch = payload or {"data": rng.randint(0, 256, (20, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.randint(0, 10, 20)]}
        blob = pickle.dumps(batch)
        (folder / name).write_bytes(blob)
        md5s[name] = hashlib.md5(blob).hexdigest()
    monkeypatch.setattr(datafiles, "CIFAR_BATCH_MD5", md5s)


def test_cifar_python_batches_and_archive(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "root" / "cifar-10-batches-py", monkeypatch)
    d = load_dataset("cifar10", root=tmp_path / "root", val_size=10)
    assert d.x_train.shape == (90, 3072) and d.meta["format"] == "cifar-python" and d.meta["lossy"] is False
    archive = tmp_path / "root2" / datafiles.CIFAR_TGZ
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "root" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(datafiles, "CIFAR_TGZ_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    from_archive = load_dataset("cifar10", root=tmp_path / "root2", val_size=10)
    assert from_archive.meta["fingerprint"] == d.meta["fingerprint"] and torch.equal(from_archive.x_val, d.x_val)


def test_cifar_pickle_checked_before_unpickling(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "cifar-10-batches-py", monkeypatch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match=r"data_batch_3: MD5 [0-9a-f]{32}, expected"):
        load_dataset("cifar10", root=tmp_path, val_size=10)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickling_refuses_code(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "cifar-10-batches-py", monkeypatch, payload={"data": Evil()})
    with pytest.raises(ChecksumError, match="refusing to unpickle"):
        load_dataset("cifar10", root=tmp_path, val_size=10)


# ----------------------------------------------------------------------------------------------------
# the Gaussian task


def test_gaussians():
    d = load_dataset("gaussians")
    assert d.x_train.shape == (18000, 64) and d.x_val.shape == (2000, 64) and d.in_dim == 64 and d.n_classes == 2
    assert torch.bincount(d.y_train).tolist() == [9000, 9000] and torch.bincount(d.y_val).tolist() == [1000, 1000]
    assert abs(d.meta["bayes_accuracy"] - 0.8944) < 1e-3 and d.default_threshold < d.meta["bayes_accuracy"]
    # the Bayes classifier sign(<mean difference, x>) reaches about the stated accuracy
    direction = d.x_train[d.y_train == 1].mean(0) - d.x_train[d.y_train == 0].mean(0)
    accuracy = ((d.x_val @ direction > 0).long() == d.y_val).float().mean().item()
    assert abs(accuracy - d.meta["bayes_accuracy"]) < 0.03
    same = load_dataset("gaussians", seed=0)
    assert torch.equal(same.x_train, d.x_train) and same.meta["fingerprint"] == d.meta["fingerprint"]
    other = load_dataset("gaussians", seed=1)
    assert not torch.equal(other.x_train, d.x_train) and other.meta["fingerprint"] != d.meta["fingerprint"]
    small = load_dataset("gaussians", dim=8, separation=4, n_train_per_class=10, n_val_per_class=5, seed=np.int64(3))
    assert small.x_train.shape == (20, 8) and small.meta["bayes_accuracy"] > 0.97
    json.dumps(small.meta)
