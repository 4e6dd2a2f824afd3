"""The dataset registry's entries: `DatasetSpec`, and the `dataset` decorator with which each builder registers
itself where it is written (one place per dataset, as timm registers its models).

    @dataset("pip", description="KDD Cup 2004 protein homology: 74 dense features, ~0.9% positives, 146k rows")
    def kdd04(downloads: Path) -> Prepared: ...

`DATASETS` (name -> DatasetSpec) fills as the builder modules are imported (bench.data._registry imports them).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["DatasetSpec", "DATASETS", "dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    `build(downloads_dir, **options)` returns a `_cache.Prepared` (or, for `cached=False`, `build(**options)`
    returns `TensorData` directly). `source` says what preparing it needs: pip, npm, apt, sklearn, hub, file
    (the user's own) or none. Bump `version` when the builder's output changes: caches of an older version are
    rebuilt. A dataset read from the user's files names the options that locate them (`locations`) and a
    `fingerprint(**options)` of their content: its cache is keyed by the content, not by where the files are.
    A `layout="columnar"` builder streams large files itself: `build(downloads_dir, out_dir, **options)` writes the
    splits into `out_dir` and returns their metadata (`_columnar.build_atomically`); loading memory-maps them.
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
    layout: str = "arrow"  # "columnar": `build(downloads, out, **options)` writes memory-mapped splits (bench.data._columnar)
    read_options: tuple[str, ...] = ()  # options that only choose what is read from the cache (not in its key)

    @staticmethod
    def of(name: str, description: str, source: str, build: Callable[..., Any], **kw) -> DatasetSpec:
        params = list(inspect.signature(build).parameters.values())
        if kw.get("cached", True):
            params = params[2:] if kw.get("layout") == "columnar" else params[1:]  # the downloads (and out) folder
        options = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        return DatasetSpec(name, description, source, build, options=options, **kw)


DATASETS: dict[str, DatasetSpec] = {}


def dataset(source: str, *, description: str, name: Optional[str] = None, **kw: Any) -> Callable[[Callable], Callable]:
    """Register the decorated builder as dataset `name` (default: the function's name); `kw` as `DatasetSpec.of`."""

    def register(build: Callable) -> Callable:
        spec = DatasetSpec.of(name or build.__name__, description, source, build, **kw)
        if spec.name in DATASETS:
            raise ValueError(f"dataset {spec.name!r} is registered already")
        DATASETS[spec.name] = spec
        return build

    return register
