"""milr_core.data: real datasets from MILR_DATA (skipped without it), errors, downloads, the Gaussian task."""

import gzip
import hashlib
import json
import os
import pickle
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from milr_core import data
from milr_core.data import (
    ChecksumError,
    DataOptionError,
    DatasetNotFoundError,
    UnknownDatasetError,
    load_dataset,
)

MILR_DATA = os.environ.get("MILR_DATA")
needs_data = pytest.mark.skipif(not MILR_DATA, reason="set MILR_DATA to a data root (e.g. /work/shared/data) to load real data")
MNIST_RAW = Path(MILR_DATA or "/nonexistent") / "MNIST" / "raw"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test reads the user's cache, finds MILR_DATA unless it sets it, or touches the network by accident."""
    monkeypatch.delenv("MILR_DATA", raising=False)
    monkeypatch.setenv("MILR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MILR_OFFLINE", "1")


@pytest.fixture(scope="session")
def cifar_cache(tmp_path_factory):
    """One cache for the session, so the 50k-JPEG decode happens once."""
    return tmp_path_factory.mktemp("cifar-cache")


@pytest.fixture(scope="session")
def cifar(cifar_cache):
    if not MILR_DATA:
        pytest.skip("set MILR_DATA to a data root to load CIFAR-10")
    start = time.perf_counter()
    dataset = load_dataset("cifar10", root=MILR_DATA, cache_dir=cifar_cache)
    return dataset, time.perf_counter() - start


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


def test_cifar10_second_load_hits_decoded_cache(cifar, cifar_cache, monkeypatch):
    first, first_seconds = cifar
    monkeypatch.setenv("MILR_DATA", MILR_DATA)
    start = time.perf_counter()
    d = load_dataset("cifar10", cache_dir=cifar_cache)
    seconds = time.perf_counter() - start
    print(f"cached CIFAR-10 load: {seconds:.1f} s (first: {first_seconds:.1f} s)")
    assert d.meta["decoded_cache"] == "hit" and first.meta["decoded_cache"] == "miss"
    assert d.meta["fingerprint"] == first.meta["fingerprint"] and torch.equal(d.y_val, first.y_val)


def test_fashion_mnist_from_debian(monkeypatch):
    if not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    d = load_dataset("fashion_mnist")
    check_image_dataset(d, 55000, 5000, 784, 1)
    assert d.meta["source"] == "debian" and d.meta["threshold_source"] == "ours"


# ----------------------------------------------------------------------------------------------------
# errors


def test_unknown_dataset():
    with pytest.raises(UnknownDatasetError, match="known: mnist, fashion_mnist, cifar10, gaussians"):
        load_dataset("imagenet")


@pytest.mark.parametrize("val_size", [0, -1, 60000, 2.5, True])
def test_bad_val_size_before_anything_loads(val_size, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_locate", lambda *a: pytest.fail("looked for files"))
    with pytest.raises(DataOptionError, match=r"val_size must be an integer in \[1, 59999\]"):
        load_dataset("mnist", val_size=val_size)


def test_bad_options():
    with pytest.raises(DataOptionError, match="mnist takes no options; got dim"):
        load_dataset("mnist", dim=3)
    with pytest.raises(DataOptionError, match="unknown option"):
        load_dataset("gaussians", dimension=3)
    with pytest.raises(DataOptionError, match="separation must be a positive number"):
        load_dataset("gaussians", separation=-1.0)
    with pytest.raises(DataOptionError, match="val_size and split_seed do not apply"):
        load_dataset("gaussians", val_size=100)


def test_missing_data_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion_mnist", cache_dir=tmp_path / "c")
    message = str(error.value)
    order = ["MILR_DATA:", str(tmp_path / "nowhere" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"),
             "cache:", "debian:", str(tmp_path / "no-debian"), "download into", "not allowed"]  # fmt: skip
    positions = [message.index(s) for s in order]
    assert positions == sorted(positions)
    assert "set MILR_DATA" in message and "allow downloads" in message and "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py(.|\n)*cifar10-jpeg.tar.gz"):
        load_dataset("cifar10", root=tmp_path / "nowhere")


@pytest.fixture
def mnist_copy(tmp_path):
    if not MILR_DATA:
        pytest.skip("set MILR_DATA to a data root holding MNIST/raw")
    shutil.copytree(MNIST_RAW, tmp_path / "root" / "MNIST" / "raw")
    return tmp_path / "root"


def test_flipped_byte_is_a_checksum_error(mnist_copy):
    labels = mnist_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] ^= 1
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ChecksumError, match=r"train-labels-idx1-ubyte\.gz: SHA-256 of the decompressed bytes is [0-9a-f]{64}, expected 65a50cbb"):
        load_dataset("mnist", root=mnist_copy)


def test_truncated_file_is_a_checksum_error(mnist_copy):
    images = mnist_copy / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:100000])
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated"):
        load_dataset("mnist", root=mnist_copy)


def test_corrupt_jpeg_tarball_is_a_checksum_error(tmp_path):
    tarball = tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    tarball.parent.mkdir()
    tarball.write_bytes(b"not the mirror")
    with pytest.raises(ChecksumError, match=r"cifar10-jpeg\.tar\.gz: SHA-256 [0-9a-f]{64}, expected 0bfcb687"):
        load_dataset("cifar10", root=tmp_path)


# ----------------------------------------------------------------------------------------------------
# downloads, served from a local folder through file:// URLs


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The mirror's MNIST .gz files served from tmp; torchvision's MD5s swapped for theirs (the mirror re-gzipped)."""
    if not MILR_DATA:
        pytest.skip("set MILR_DATA to a data root holding MNIST/raw")
    server = tmp_path / "server"
    shutil.copytree(MNIST_RAW, server)
    monkeypatch.setitem(data.URLS, "mnist", server.as_uri() + "/")
    files = {name: (hashlib.md5((server / f"{name}.gz").read_bytes()).hexdigest(), sha)
             for name, (_, sha) in data.IDX_FILES["mnist"].items()}  # fmt: skip
    monkeypatch.setitem(data.IDX_FILES, "mnist", files)
    return server


def test_download_verifies_and_lands_in_cache(served, tmp_path):
    cache = tmp_path / "dl-cache"
    d = load_dataset("mnist", cache_dir=cache, download=True)
    assert d.meta["source"] == "download" and d.x_train.shape == (55000, 784)
    assert sorted(p.name for p in (cache / "MNIST" / "raw").iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    again = load_dataset("mnist", cache_dir=cache, download=False)
    assert again.meta["source"] == "cache" and again.meta["decoded_cache"] == "hit"


def test_download_with_bad_md5_leaves_nothing(served, tmp_path, monkeypatch):
    monkeypatch.setitem(data.IDX_FILES["mnist"], "train-images-idx3-ubyte", ("0" * 32, "unused"))
    cache = tmp_path / "dl-cache"
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz: MD5 [0-9a-f]{32}, expected 0000"):
        load_dataset("mnist", cache_dir=cache, download=True)
    assert not (cache / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in (cache / "MNIST" / "raw").iterdir() if p.name.startswith(".")]


def test_download_failure_is_listed(tmp_path, monkeypatch):
    monkeypatch.setitem(data.URLS, "mnist", (tmp_path / "empty").as_uri() + "/")
    with pytest.raises(DatasetNotFoundError, match="download into .*: failed"):
        load_dataset("mnist", cache_dir=tmp_path / "c", download=True)


# ----------------------------------------------------------------------------------------------------
# the canonical CIFAR-10 pickles, faked small (their MD5s swapped in) since only the mirror is offline


def fake_cifar_batches(folder: Path, monkeypatch, payload=None) -> None:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    md5s = {}
    for name in data.CIFAR_BATCH_MD5:
        batch = payload or {"data": rng.randint(0, 256, (20, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.randint(0, 10, 20)]}
        blob = pickle.dumps(batch)
        (folder / name).write_bytes(blob)
        md5s[name] = hashlib.md5(blob).hexdigest()
    monkeypatch.setattr(data, "CIFAR_BATCH_MD5", md5s)


def test_cifar_python_batches_and_archive(tmp_path, monkeypatch):
    fake_cifar_batches(tmp_path / "root" / "cifar-10-batches-py", monkeypatch)
    d = load_dataset("cifar10", root=tmp_path / "root", val_size=10)
    assert d.x_train.shape == (90, 3072) and d.meta["format"] == "cifar-python" and d.meta["lossy"] is False
    archive = tmp_path / "root2" / data.CIFAR_TGZ
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "root" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(data, "CIFAR_TGZ_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
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
