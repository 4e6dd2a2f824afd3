"""The paper lineage's click-through datasets in their published BARS form: `criteo_x1`, `avazu_x4`,
`movielens_latest_x1`, at full size, prepared by streaming into a memory-mapped cache (`_columnar`).

    python -m bench.prepare criteo_x1                                       # downloads Criteo_x1.zip (a network)
    python -m bench.run dataset=criteo_x1 dataset.options.path=~/Criteo_x1.zip   # or a local copy (zip or folder)
    from bench import data; ds = data.load("avazu_x4", path="Avazu_x4.zip", max_rows=1_000_000)

Source: the Hub dataset repos `reczoo/Criteo_x1`, `reczoo/Avazu_x4`, `reczoo/MovielensLatest_x1`, each one zip
(`<Repo>.zip`) fetched with `huggingface_hub.hf_hub_download` into `<root>/downloads`. Offline, preparing fails at
once with one line saying how to pass a local copy. `path=` may name the zip or the folder it unpacks to;
`train.csv`, `valid.csv`, `test.csv` sit at its root or inside one folder.

Preparation (docs/DATA.md): vocabularies from train only; a value seen fewer than `min_count` times in train,
a value first seen in valid/test and a missing value share code 0 (BARS' thresholds are the defaults: Criteo_x1 1,
Avazu_x4 2 (its "_001" protocol), MovielensLatest_x1 1); numerics as float32 as published (Criteo's I1..I13 lie
in [0, 1]; missing -> 0). Avazu's `id` is not a feature (never parsed: many exceed 2^63); its `hour` (YYMMDDHH)
becomes two fields, hour of day and weekday. The splits are kept: train trains; `eval_split=test` (default)
evaluates on the published test split, `eval_split=valid` on valid (for choosing settings); both live in one cache.
`max_rows` keeps the first rows of every split (a prefix).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._columnar import SPLITS, SplitWriter
from ._fetch import DataUnavailable
from ._hub import require_hub
from ._spec import dataset
from ._stream import CsvSchema, Source, count_values, encode_split, vocabularies

__all__ = ["criteo_x1", "avazu_x4", "movielens_latest_x1", "SCHEMAS", "HUB", "locate", "location_fingerprint"]

HUB = {"criteo_x1": ("reczoo/Criteo_x1", "Criteo_x1.zip"), "avazu_x4": ("reczoo/Avazu_x4", "Avazu_x4.zip"),
       "movielens_latest_x1": ("reczoo/MovielensLatest_x1", "MovielensLatest_x1.zip")}
_VERSION = 1


# ------------------------------------------------------------------------------------------------ schemas
def _criteo() -> CsvSchema:
    num = tuple(f"I{i}" for i in range(1, 14))
    cat = tuple(f"C{i}" for i in range(1, 27))
    types = {"label": pa.float64(), **{c: pa.float32() for c in num}, **{c: pa.int64() for c in cat}}
    return CsvSchema("criteo_x1", ("label", *num, *cat), types, "label", num, cat)


_AVAZU_HEX = ("site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category", "device_id",
              "device_ip", "device_model")
_AVAZU_INT = ("C1", "banner_pos", "device_type", "device_conn_type", *(f"C{i}" for i in range(14, 22)))
_AVAZU_COLUMNS = ("id", "click", "hour", "C1", "banner_pos", *_AVAZU_HEX, "device_type", "device_conn_type",
                  *(f"C{i}" for i in range(14, 22)))


def _weekday(yymmdd: np.ndarray) -> np.ndarray:
    """Weekday (0 = Monday) of each YYMMDD date (20YY); an impossible date raises ValueError naming it."""
    days, inverse = np.unique(yymmdd, return_inverse=True)
    try:
        table = np.array([datetime.date(2000 + int(d) // 10000, int(d) // 100 % 100, int(d) % 100).weekday()
                          for d in days], np.int64)
    except ValueError:
        raise ValueError(f"hour has a value whose date is not YYMMDD: one of {days[:5].tolist()}") from None
    return table[inverse]


def _avazu_time(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    """`hour` (YYMMDDHH) as hour of day and weekday; a missing hour stays missing in both."""
    col = batch.column("hour")
    hour = pc.fill_null(col, 14102100).to_numpy(zero_copy_only=False)
    mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
    return {"hour_of_day": pa.array(hour % 100, mask=mask), "weekday": pa.array(_weekday(hour // 100), mask=mask)}


def _avazu() -> CsvSchema:
    types = {"click": pa.float64(), "hour": pa.int64(), **{c: pa.string() for c in _AVAZU_HEX},
             **{c: pa.int64() for c in _AVAZU_INT}}
    cat = tuple(c for c in _AVAZU_COLUMNS if c not in ("id", "click", "hour"))
    return CsvSchema("avazu_x4", _AVAZU_COLUMNS, types, "click", (), cat, ("hour_of_day", "weekday"), _avazu_time)


def _movielens() -> CsvSchema:
    cat = ("user_id", "item_id", "tag_id")
    return CsvSchema("movielens_latest_x1", ("label", *cat), {"label": pa.float64(), **{c: pa.int64() for c in cat}},
                     "label", (), cat)


SCHEMAS = {"criteo_x1": _criteo(), "avazu_x4": _avazu(), "movielens_latest_x1": _movielens()}


# ----------------------------------------------------------------------------------------------- locating
def _split_names(names: list[str]) -> dict[str, str]:
    """Map split -> member name for `train.csv` etc. at the root or inside exactly one folder; {} if none."""
    for prefix in sorted({n.rsplit("/", 1)[0] + "/" if "/" in n else "" for n in names}, key=len):
        found = {s: f"{prefix}{s}.csv" for s in SPLITS if f"{prefix}{s}.csv" in names}
        if found and prefix.count("/") <= 1:
            return found
    return {}


def _zip_sources(dataset_name: str, path: Path) -> dict[str, Source]:
    try:
        archive = zipfile.ZipFile(path)
        infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataUnavailable(f"{dataset_name}: {path} is not a readable zip ({type(exc).__name__}: {exc}); "
                              f"expected {HUB[dataset_name][1]} as published, complete") from None
    found = _split_names(list(infos))
    return {s: Source(f"{path.name}:{m}", infos[m].file_size, lambda m=m: archive.open(m)) for s, m in found.items()}


def _folder_sources(path: Path) -> dict[str, Source]:
    names = [str(p.relative_to(path)).replace(os.sep, "/") for p in path.glob("*.csv")]
    names += [str(p.relative_to(path)).replace(os.sep, "/") for p in path.glob("*/*.csv")]
    found = _split_names(names)
    return {s: Source(m, (path / m).stat().st_size, lambda m=m: open(path / m, "rb")) for s, m in found.items()}


def locate(dataset_name: str, path: str | Path) -> dict[str, Source]:
    """The three splits of a published zip or of the folder it unpacks to; one line naming what is missing."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataUnavailable(f"{dataset_name}: path={str(path)!r}: no such file or folder; pass the published "
                              f"{HUB[dataset_name][1]} or the folder it unpacks to")
    sources = _zip_sources(dataset_name, p) if p.is_file() else _folder_sources(p)
    missing = [f"{s}.csv" for s in SPLITS if s not in sources]
    if missing:
        raise DataUnavailable(f"{dataset_name}: {p} has no {', '.join(missing)} (the published splits train.csv, "
                              f"valid.csv and test.csv must sit at its root or inside one folder)")
    return sources


def download(dataset_name: str, downloads: Path) -> Path:
    """The published zip from the Hub (one file, kept in `downloads`); offline: one line saying how to pass a copy."""
    repo, filename = HUB[dataset_name]
    if (downloads / filename).is_file():
        return downloads / filename
    local = f"or pass a local copy: dataset.options.path=/path/to/{filename} (or the folder it unpacks to)"
    try:
        require_hub(dataset_name, repo)
    except DataUnavailable as exc:
        raise DataUnavailable(f"{exc}; {local}") from None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset", local_dir=downloads))
    except Exception as exc:  # noqa: BLE001 - any Hub failure is one line
        raise DataUnavailable(f"{dataset_name}: downloading {filename} from the Hub dataset {repo} failed "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); {local}") from None


def location_fingerprint(path: Optional[str] = None, **_: Any) -> str:
    """A cheap content key of a local copy: for each file, its name, size and first and last MiB (a zip's last
    MiB holds the CRC-32 of every member); `hub` for the downloaded copy."""
    if path is None:
        return "hub"
    p = Path(path).expanduser()
    if not p.exists():
        raise DataUnavailable(f"path={str(path)!r}: no such file or folder")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*.csv") if f.is_file())
    digest = hashlib.sha1()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- preparing
def _check(min_count: Any, max_rows: Any) -> None:
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows must be an integer >= 1 or null (every row), got {max_rows!r}")


def _build(dataset_name: str, downloads: Path, out: Path, path: Optional[str], min_count: int,
           max_rows: Optional[int]) -> dict[str, Any]:
    """Write the three coded splits into `out`; return their metadata."""
    schema = SCHEMAS[dataset_name]
    source_path = Path(path).expanduser() if path is not None else download(dataset_name, downloads)
    sources = locate(dataset_name, source_path)
    vocab = vocabularies(count_values(sources["train"], schema, max_rows), min_count)
    rows = {}
    for split in SPLITS:
        writer = SplitWriter(out / split)
        try:
            rows[split] = encode_split(sources[split], schema, vocab, writer, max_rows)
        finally:
            writer.close()
    return {"task": "binary", "cardinalities": [len(vocab[f]) + 1 for f in schema.fields],
            "x_num_shape": [len(schema.numeric)], "rows": rows,
            "info": {"source": HUB[dataset_name][0] if path is None else f"local {source_path.name}",
                     "fields": list(schema.fields), "numeric": list(schema.numeric), "min_count": min_count,
                     "max_rows": max_rows, "oov_code": 0}}


_OPTS = dict(layout="columnar", version=_VERSION, locations=("path",), read_options=("eval_split",),
             fingerprint=location_fingerprint)


def _register(name: str, description: str, default_min_count: int, doc: str) -> Callable[..., dict[str, Any]]:
    """Register the builder of one published dataset (its options and their defaults are the signature's)."""

    def build(downloads: Path, out: Path, path: Optional[str] = None, min_count: int = default_min_count,
              max_rows: Optional[int] = None, eval_split: str = "test") -> dict[str, Any]:
        _check(min_count, max_rows)  # eval_split only chooses what is read (bench.data._columnar.read)
        return _build(name, downloads, out, path, min_count, max_rows)

    build.__name__, build.__qualname__, build.__doc__ = name, name, doc
    return dataset("hub", description=description, **_OPTS)(build)


criteo_x1 = _register(
    "criteo_x1", "Criteo_x1 (BARS): 33.0M/8.25M/4.59M rows, 13 numeric + 26 categorical; Hub reczoo/Criteo_x1 or "
    "path=", 1, "Criteo_x1 as published: `label`, I1..I13 (floats in [0, 1]), C1..C26 (integer ids).")
avazu_x4 = _register(
    "avazu_x4", "Avazu_x4 (BARS): 32.3M/4.04M/4.04M rows, 23 categorical fields; Hub reczoo/Avazu_x4 or path=", 2,
    "Avazu_x4 as published: `id` (dropped), `click`, `hour` (hour of day, weekday), 21 categorical columns.")
movielens_latest_x1 = _register(
    "movielens_latest_x1", "MovielensLatest_x1 (BARS): 1.40M/0.40M/0.20M rows, user/item/tag; Hub "
    "reczoo/MovielensLatest_x1 or path=", 1, "MovielensLatest_x1 as published: `label`, `user_id`, `item_id`, `tag_id`.")
