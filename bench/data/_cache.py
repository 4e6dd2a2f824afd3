"""The on-disk cache: prepared arrays saved as Hugging Face `datasets` arrow, written atomically, read fast.

Layout of `<root>/<name>/` (a `DatasetDict.save_to_disk` folder plus our metadata):
    dataset_dict.json, train/, test/   columns: `x_num` (fixed-size list, flat per sample; absent if no dense
                                        features), `x_cat` (fixed-size list of int32 codes; absent if none), `y`
    nws_meta.json                       task, classes, cardinalities, per-sample x_num shape and scale, versions
A cache folder only ever appears complete: it is built in `<root>/.tmp-<name>-*` and renamed into place, and
`nws_meta.json` is written last, with the sha1 of every file of the splits. Loading memory-maps the arrow files and
converts columns to tensors directly; a cache that cannot be read (truncated, deleted files, wrong row counts)
raises `CacheError` (`bench.data.load` then rebuilds it). `verify` reads a cache fully and checks the sha1s too
(`python -m bench.prepare NAME --check`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ._format import FORMAT_VERSION, META
from ._tensordata import TensorData

__all__ = ["Prepared", "FORMAT_VERSION", "default_root", "write_cache", "read_cache", "read_meta", "verify", "CacheError"]



class CacheError(RuntimeError):
    """A dataset cache that cannot be read or fails its checks. The message is one line naming the cache."""


@dataclass
class Prepared:
    """What a dataset builder returns: numpy arrays per split, before caching.

    `x_num` is stored as given (float32, or uint8 for images with `x_num_scale = 1/255`); the tensor a user
    gets is `x_num.astype(float32) * x_num_scale`. `info` is free-form provenance saved in the metadata.
    """

    task: str
    num_classes: int
    cardinalities: list[int]
    train: dict[str, np.ndarray]  # keys: x_num [N, ...], x_cat [N, F], y [N]
    test: dict[str, np.ndarray]
    x_num_scale: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)


def default_root() -> Path:
    """`$NWS_DATA` if set, else `~/.cache/nws-bench/data`."""
    return Path(os.environ.get("NWS_DATA") or "~/.cache/nws-bench/data").expanduser()


def _table(split: dict[str, np.ndarray]) -> pa.Table:
    x_num, x_cat, y = split["x_num"], split["x_cat"], split["y"]
    n = len(y)
    if x_num.shape[0] != n or x_cat.shape[0] != n:
        raise ValueError(f"rows differ: x_num {x_num.shape}, x_cat {x_cat.shape}, y {y.shape}")
    cols: dict[str, pa.Array] = {}
    width = int(np.prod(x_num.shape[1:], dtype=np.int64))
    if width:
        cols["x_num"] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x_num).reshape(-1)), width)
    if x_cat.shape[1]:
        codes = np.ascontiguousarray(x_cat, dtype=np.int32).reshape(-1)
        cols["x_cat"] = pa.FixedSizeListArray.from_arrays(pa.array(codes), x_cat.shape[1])
    cols["y"] = pa.array(y)
    return pa.table(cols)


def _save_split(table: pa.Table, path: Path) -> None:
    import datasets

    datasets.Dataset(table).save_to_disk(str(path))


def write_cache(prepared: Prepared, path: Path, meta: dict[str, Any]) -> Path:
    """Save `prepared` at `path` atomically (temporary folder + rename); replaces an existing cache there."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache is shared like any folder
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        rows = {}
        for split in ("train", "test"):
            arrays = getattr(prepared, split)
            _save_split(_table(arrays), tmp / split)
            rows[split] = int(len(arrays["y"]))
        (tmp / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
        checksums = _checksums(tmp)
        meta = dict(
            meta,
            format_version=FORMAT_VERSION,
            task=prepared.task,
            num_classes=int(prepared.num_classes),
            cardinalities=[int(c) for c in prepared.cardinalities],
            x_num_shape=[int(s) for s in prepared.train["x_num"].shape[1:]],
            x_num_dtype=str(prepared.train["x_num"].dtype),
            x_num_scale=float(prepared.x_num_scale),
            rows=rows,
            checksums=checksums,
            info=prepared.info,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
        old = None
        if path.exists():  # a stale cache: move it aside, then swap the new one in
            old = path.parent / f".old-{path.name}-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if read_meta(path) is None:  # a concurrent prepare won the race with a complete cache: keep it
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    return path


def _checksums(path: Path) -> dict[str, str]:
    """sha1 of every file of the splits, by path relative to the cache folder."""
    out = {}
    for f in sorted(p for split in ("train", "test") for p in (Path(path) / split).rglob("*") if p.is_file()):
        digest = hashlib.sha1()
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out[str(f.relative_to(path))] = digest.hexdigest()
    return out


def read_meta(path: Path) -> dict[str, Any] | None:
    """The metadata of a complete cache at `path`, or None if there is none."""
    try:
        return json.loads((Path(path) / META).read_text())
    except (OSError, ValueError):
        return None


def _column(table: pa.Table, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    n = table.num_rows
    if name not in table.column_names:
        return np.zeros((n, *shape), dtype=dtype)
    col = table.column(name)
    chunks = [c.flatten() for c in col.chunks] if pa.types.is_fixed_size_list(col.type) else col.chunks
    flat = pa.concat_arrays(chunks) if len(chunks) != 1 else chunks[0]
    return flat.to_numpy(zero_copy_only=False).reshape(n, *shape)


def read_cache(path: Path, name: str, **read_options: Any) -> TensorData:
    """Load a cache written by `write_cache` as `TensorData` (arrow -> numpy -> torch, no per-row Python), or a
    memory-mapped one (`_columnar`, layout "columnar"; `read_options` such as `eval_split` go to its reader).

    Raises `CacheError` (one line) when the cache is incomplete or cannot be read, or its rows or values do not
    match its metadata."""
    meta = read_meta(path)
    if meta is None:
        raise CacheError(f"no complete dataset cache at {path} (its {META} is missing or unreadable)")
    try:
        if meta.get("layout") == "columnar":
            from ._columnar import read as read_columnar

            return read_columnar(Path(path), name, meta, **read_options)
        return _read(Path(path), name, meta)
    except CacheError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException) as exc:
        text = " ".join(str(exc).split())[:200]
        raise CacheError(f"the dataset cache at {path} cannot be read ({type(exc).__name__}: {text})") from None


def _read(path: Path, name: str, meta: dict[str, Any]) -> TensorData:
    import datasets

    shape = tuple(meta["x_num_shape"])
    fields = len(meta["cardinalities"])
    out: dict[str, torch.Tensor] = {}
    for split in ("train", "test"):
        table = datasets.load_from_disk(str(path / split)).data.table
        want = meta.get("rows", {}).get(split)
        if want is not None and table.num_rows != want:
            raise CacheError(f"the dataset cache at {path} has {table.num_rows} {split} rows, its metadata says {want}")
        x_num = _column(table, "x_num", shape, np.dtype(meta["x_num_dtype"]))
        x_num_t = torch.from_numpy(np.array(x_num, dtype=np.float32))  # a writable float32 copy
        if meta["x_num_scale"] != 1.0:
            x_num_t.mul_(meta["x_num_scale"])
        out[f"x_num_{split}"] = x_num_t
        x_cat = _column(table, "x_cat", (fields,), np.dtype(np.int32))
        out[f"x_cat_{split}"] = torch.from_numpy(x_cat.astype(np.int64))
        y = table.column("y").to_numpy()
        y_dtype = np.int64 if meta["task"] == "multiclass" else np.float32
        out[f"y_{split}"] = torch.from_numpy(np.array(y, dtype=y_dtype))
    return TensorData(name=name, task=meta["task"], num_classes=meta["num_classes"],
                      cardinalities=meta["cardinalities"], **out)


def verify(path: Path, checksums: bool = True) -> dict[str, Any]:
    """Check a cache thoroughly: its metadata, the sha1 of every file (when recorded; `checksums=False` skips
    them), and a full read with the row counts and value checks of `read_cache`. Return its metadata; raise
    `CacheError` (one line) at the first problem."""
    path = Path(path)
    meta = read_meta(path)
    if meta is None:
        raise CacheError(f"no complete dataset cache at {path} (its {META} is missing or unreadable)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"the dataset cache at {path} has format {meta.get('format_version')}, this version reads "
                         f"{FORMAT_VERSION}")
    if meta.get("layout") == "columnar":
        from ._columnar import verify as verify_columnar

        try:
            verify_columnar(path, meta)
        except (OSError, ValueError, KeyError) as exc:
            raise CacheError(f"the dataset cache at {path} fails its checks ({type(exc).__name__}: {exc})") from None
        return meta
    recorded = meta.get("checksums")
    if checksums and recorded:
        try:
            found = _checksums(path)
        except OSError as exc:
            raise CacheError(f"the dataset cache at {path} cannot be read ({type(exc).__name__}: {exc})") from None
        for rel, digest in recorded.items():
            if rel not in found:
                raise CacheError(f"the dataset cache at {path} lacks {rel}")
            if found[rel] != digest:
                raise CacheError(f"the dataset cache at {path} has a corrupt {rel} (its sha1 differs from the one "
                                 f"recorded when it was written)")
    read_cache(path, str(meta.get("name", path.name)))
    return meta
