"""The memory-mapped cache of the large click-log datasets: raw little-endian arrays per split, read with np.memmap.

Layout of `<root>/<name>/`:
    train/, valid/, test/     x_num.f32 [n, d] float32, x_cat.i32 [n, F] int32 codes, y.f32 [n] float32 (row-major)
    nws_meta.json             layout "columnar", rows per split, d, cardinalities, versions (written last)
A cache folder only ever appears complete: a builder writes into `<root>/.tmp-<name>-<pid>-*` (`build_atomically`),
which is renamed into place after `nws_meta.json` is written; temporary folders left by a killed preparation are
removed by the next one (it holds the dataset's lock). Reading maps the files copy-on-write (`mode="c"`): a
training run gathers `x[idx]` from the page cache and never holds the whole table in its own memory.

    data = read(path, "criteo_x1", eval_split="test")   # TensorData backed by memory maps
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ._format import FORMAT_VERSION, META
from ._tensordata import TensorData

__all__ = ["LAYOUT", "SPLITS", "EVAL_SPLITS", "FILES", "build_atomically", "read", "verify", "SplitWriter"]

LAYOUT = "columnar"
SPLITS = ("train", "valid", "test")
EVAL_SPLITS = ("test", "valid")  # what the harness evaluates on: the published test split, or valid for choosing
FILES = {"x_num": ("x_num.f32", np.float32), "x_cat": ("x_cat.i32", np.int32), "y": ("y.f32", np.float32)}


class SplitWriter:
    """Append chunks of one split to its three files; `rows` counts what was written."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.handles = {k: open(folder / name, "wb") for k, (name, _) in FILES.items()}
        self.rows = 0

    def write(self, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray) -> None:
        for key, arr in (("x_num", x_num), ("x_cat", x_cat), ("y", y)):
            self.handles[key].write(np.ascontiguousarray(arr, dtype=FILES[key][1]).tobytes())
        self.rows += len(y)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def _clear_stale(path: Path) -> None:
    """Remove temporary folders of `path` left by a killed preparation (the caller holds the dataset's lock)."""
    for stale in path.parent.glob(f".tmp-{path.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def build_atomically(path: Path, build: Callable[[Path], dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Run `build(tmp_folder)` (it writes the splits and returns their metadata: task, cardinalities, rows, d, info),
    write `nws_meta.json` last and rename the folder to `path`. On any failure nothing is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-{os.getpid()}-"))
    os.chmod(tmp, 0o755)
    try:
        built = build(tmp)
        full = dict(meta, layout=LAYOUT, format_version=FORMAT_VERSION, num_classes=1, x_num_scale=1.0,
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **built)
        (tmp / META).write_text(json.dumps(full, indent=1, default=str))
        old = None
        if path.exists():
            old = path.parent / f".old-{path.name}-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _array(path: Path, key: str, shape: tuple[int, ...]) -> np.ndarray:
    name, dtype = FILES[key]
    file = path / name
    want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = file.stat().st_size
    if size != want:
        raise ValueError(f"{file} has {size} bytes, its metadata says {want} ({shape} {np.dtype(dtype).name})")
    if want == 0:
        return np.zeros(shape, dtype)
    return np.memmap(file, dtype=dtype, mode="c", shape=shape)  # copy-on-write: writable, never written back


def split_arrays(path: Path, meta: dict[str, Any], split: str) -> dict[str, np.ndarray]:
    """The memory-mapped arrays of one split (`x_num` [n, d], `x_cat` [n, F], `y` [n]); sizes checked."""
    n, d, fields = int(meta["rows"][split]), int(meta["x_num_shape"][0]), len(meta["cardinalities"])
    folder = Path(path) / split
    return {"x_num": _array(folder, "x_num", (n, d)), "x_cat": _array(folder, "x_cat", (n, fields)),
            "y": _array(folder, "y", (n,))}


def read(path: Path, name: str, meta: dict[str, Any], eval_split: str = "test") -> TensorData:
    """A columnar cache as `TensorData` whose tensors share memory with the mapped files (no copy of the table).

    `eval_split` picks the split that serves as the harness's test split: `test` (reporting) or `valid` (choosing)."""
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {eval_split!r}")
    out: dict[str, torch.Tensor] = {}
    for role, split in (("train", "train"), ("test", eval_split)):
        for key, arr in split_arrays(path, meta, split).items():
            out[f"{key}_{role}"] = torch.from_numpy(arr)
    return TensorData(name=name, task=meta["task"], num_classes=1, cardinalities=meta["cardinalities"], **out)


def verify(path: Path, meta: dict[str, Any]) -> None:
    """Check every split's file sizes and code ranges (reads the codes chunk by chunk); raise ValueError."""
    cards = np.asarray(meta["cardinalities"], dtype=np.int64)
    for split in SPLITS:
        arrays = split_arrays(path, meta, split)
        for start in range(0, len(arrays["y"]), 1 << 20):
            codes = np.asarray(arrays["x_cat"][start : start + (1 << 20)])
            if codes.size and ((codes < 0).any() or (codes.max(axis=0) >= cards).any()):
                raise ValueError(f"{split} has codes outside [0, cardinality) near row {start}")
            y = np.asarray(arrays["y"][start : start + (1 << 20)])
            if not np.isin(y, (0.0, 1.0)).all():
                raise ValueError(f"{split} has labels other than 0/1 near row {start}")
