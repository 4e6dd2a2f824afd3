"""Datasets that need the Hugging Face Hub (`datasets.load_dataset`): for users with a network.

They are converted once into our arrow cache like every other dataset, so later runs work offline. Without a
network (or with `HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1`) preparing one fails at once with a one-line
`DataUnavailable`. The Hub ids are options (`load("criteo", hub_id=..., max_rows=...)`); defaults:

- `mnist_hub`: `ylecun/mnist` (the canonical Hub copy of MNIST; columns `image`, `label`).
- `cifar10`: `uoft-cs/cifar10` (the canonical Hub copy; columns `img`, `label`), 50,000 + 10,000 32x32 RGB.
- `criteo`: `criteo/CriteoClickLogs`, Criteo's own upload of the 1TB click logs (linked from
  ailab.criteo.com), one TSV file per day; we stream the first `max_rows` rows of `data_file` (day_0.gz).
- `avazu`: `reczoo/Avazu_x4` (the BARS/FuxiCTR benchmark's copy of the Kaggle Avazu data, with its splits).
- `movielens1m`: `nbtpj/movielens-1m-ratings` (a parquet copy of the 1,000,209 ML-1M ratings); rating >= 4
  is a click, every other column but time stamps is a categorical field.
These ids could not be tried from the machines this was written on (no Hub access): the converters read
columns by role (image / label / numeric / categorical) and raise a clear error naming the columns they found.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from ._cache import Prepared
from ._spec import dataset
from ._fetch import DataUnavailable
from ._prep import SPLIT_SEED, make_splits, split_indices

__all__ = ["mnist_hub", "cifar10", "criteo", "avazu", "movielens1m", "require_hub"]

_TRUE = {"1", "ON", "YES", "TRUE"}


def require_hub(dataset: str, hub_id: str) -> None:
    """Fail fast, in one line, if the Hub is switched off or cannot be reached."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            raise DataUnavailable(
                f"{dataset}: needs a network to download the Hub dataset {hub_id}, but {var}=1 (offline); "
                f"unset it on a machine with a network, or use an offline dataset (movielens100k, mnist, ...)"
            )
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # behind a proxy a direct probe says nothing; let `datasets` try
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
    except OSError as exc:
        raise DataUnavailable(
            f"{dataset}: needs a network to download the Hub dataset {hub_id}; cannot reach {url.hostname} "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _load(dataset: str, hub_id: str, *args, **kwargs):
    import datasets

    require_hub(dataset, hub_id)
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of the Hub is reported as one line
        msg = " ".join(str(exc).split())[:300]
        raise DataUnavailable(f"{dataset}: loading {hub_id} from the Hub failed: {type(exc).__name__}: {msg}") from None


# ----------------------------------------------------------------------------------------------- images
def _images(dataset: str, hub_id: str, counts: tuple[int, int]) -> Prepared:
    import datasets

    splits = {}
    num_classes = 0
    for split in ("train", "test"):
        ds = _load(dataset, hub_id, hub_id, split=split)
        img = [k for k, f in ds.features.items() if isinstance(f, datasets.Image)]
        lab = [k for k, f in ds.features.items() if isinstance(f, datasets.ClassLabel)]
        if len(img) != 1 or len(lab) != 1:
            raise DataUnavailable(f"{dataset}: {hub_id} has columns {ds.column_names}; need one image and one label")
        num_classes = ds.features[lab[0]].num_classes
        x = np.stack([np.asarray(im, dtype=np.uint8) for im in ds[img[0]]])
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # [N, H, W] or [N, H, W, C] -> [N, C, H, W]
        y = np.asarray(ds[lab[0]], dtype=np.int64)
        splits[split] = {"x_num": np.ascontiguousarray(x), "x_cat": np.zeros((len(y), 0), np.int32), "y": y}
    got = (len(splits["train"]["y"]), len(splits["test"]["y"]))
    if got != counts:
        raise DataUnavailable(f"{dataset}: {hub_id} has {got} train/test rows, expected {counts}")
    return Prepared("multiclass", num_classes, [], splits["train"], splits["test"], x_num_scale=1 / 255,
                    info={"source": f"hub {hub_id}"})


@dataset("hub", description="MNIST from the Hugging Face Hub (ylecun/mnist); needs a network")
def mnist_hub(downloads: Path, hub_id: str = "ylecun/mnist") -> Prepared:
    """MNIST from the Hub (60,000 + 10,000)."""
    return _images("mnist_hub", hub_id, (60000, 10000))


@dataset("hub", description="CIFAR-10 32x32 RGB, 50k + 10k (Hub uoft-cs/cifar10); needs a network")
def cifar10(downloads: Path, hub_id: str = "uoft-cs/cifar10") -> Prepared:
    """CIFAR-10 from the Hub (50,000 + 10,000 RGB 32x32, stored [N, 3, 32, 32])."""
    return _images("cifar10", hub_id, (50000, 10000))


# ------------------------------------------------------------------------------------------ click logs
def _take(ds, max_rows: int) -> pd.DataFrame:
    """The first `max_rows` rows of a (streaming) dataset as a DataFrame."""
    frames, n = [], 0
    for batch in ds.iter(batch_size=100_000):
        frames.append(pd.DataFrame(batch))
        n += len(frames[-1])
        if n >= max_rows:
            break
    if not frames:
        raise DataUnavailable("the Hub dataset is empty")
    return pd.concat(frames, ignore_index=True).iloc[:max_rows]


def _cat_codes(train: pd.Series, test: pd.Series, min_count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes 1..k for values seen >= `min_count` times in train (sorted); 0 for rare, unseen and missing."""
    train, test = train.astype("string"), test.astype("string")
    counts = train.value_counts(dropna=True)
    vocab = pd.Index(np.sort(counts.index[counts >= min_count].to_numpy(dtype=object).astype(str)))
    code = lambda s: (vocab.get_indexer(s.fillna("\0")) + 1).astype(np.int32)  # noqa: E731
    return code(train), code(test), len(vocab) + 1


def _ctr(dataset: str, train: pd.DataFrame, test: pd.DataFrame | None, label: np.ndarray | str,
         num_cols: list[str], cat_cols: list[str], min_count: int, info: dict) -> Prepared:
    """Turn click-log frames into a binary `Prepared`: dense columns sign-log1p'd and standardized."""
    y_all = train[label].to_numpy() if isinstance(label, str) else label
    if test is None:  # no official test split: a fixed random one
        tr, te = split_indices(len(train), seed=SPLIT_SEED)
        test, train = train.iloc[te].reset_index(drop=True), train.iloc[tr].reset_index(drop=True)
        y_tr, y_te = y_all[tr], y_all[te]
    else:
        y_tr, y_te = y_all, test[label].to_numpy()
    cat_tr, cat_te, cards = [], [], []
    for col in cat_cols:
        a, b, k = _cat_codes(train[col], test[col], min_count)
        cat_tr.append(a), cat_te.append(b), cards.append(k)
    both = pd.concat([train[num_cols], test[num_cols]], ignore_index=True).apply(pd.to_numeric, errors="coerce")
    num = np.nan_to_num(both.to_numpy(np.float64), nan=0.0)
    num = np.sign(num) * np.log1p(np.abs(num))
    n_tr = len(train)
    if cat_cols:
        x_cat = np.stack([np.concatenate([a, b]) for a, b in zip(cat_tr, cat_te, strict=True)], axis=1)
    else:
        x_cat = np.zeros((n_tr + len(test), 0), np.int32)
    y = np.concatenate([np.asarray(y_tr), np.asarray(y_te)]).astype(np.float32)
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise DataUnavailable(f"{dataset}: the label column is not 0/1")
    rows = np.arange(n_tr + len(test))
    tr_set, te_set = make_splits(rows[:n_tr], rows[n_tr:], num, x_cat, y)
    info = dict(info, numeric=num_cols, categorical=cat_cols, min_count=min_count)
    return Prepared("binary", 1, cards, tr_set, te_set, info=info)


_CRITEO_NUM = [f"I{i}" for i in range(1, 14)]
_CRITEO_CAT = [f"C{i}" for i in range(1, 27)]


@dataset("hub", description="Criteo 1TB click logs, first 1M rows of day 0 (Hub criteo/CriteoClickLogs); needs a network")
def criteo(downloads: Path, hub_id: str = "criteo/CriteoClickLogs", data_file: str = "day_0.gz",
           max_rows: int = 1_000_000, min_count: int = 10) -> Prepared:
    """The first `max_rows` rows of one day of the Criteo 1TB click logs: 13 count features, 26 hashed categories.

    Categories seen fewer than `min_count` times in train share code 0 (with missing ones). Random 80/20 split.
    """
    import datasets

    names = ["label", *_CRITEO_NUM, *_CRITEO_CAT]
    features = datasets.Features({"label": datasets.Value("int64"),
                                  **{c: datasets.Value("float64") for c in _CRITEO_NUM},
                                  **{c: datasets.Value("string") for c in _CRITEO_CAT}})
    ds = _load("criteo", hub_id, "csv", data_files=f"hf://datasets/{hub_id}/{data_file}", split="train",
               streaming=True, delimiter="\t", column_names=names, features=features)
    df = _take(ds, max_rows)
    return _ctr("criteo", df, None, "label", _CRITEO_NUM, _CRITEO_CAT, min_count,
                {"source": f"hub {hub_id}/{data_file}", "max_rows": max_rows})


def _pick_label(dataset: str, hub_id: str, columns: list[str], choices: tuple[str, ...]) -> str:
    for c in choices:
        if c in columns:
            return c
    raise DataUnavailable(f"{dataset}: {hub_id} has columns {columns}; expected a label column among {choices}")


@dataset("hub", description="Avazu CTR, first 1M rows (Hub reczoo/Avazu_x4); needs a network")
def avazu(downloads: Path, hub_id: str = "reczoo/Avazu_x4", max_rows: int = 1_000_000,
          min_count: int = 10) -> Prepared:
    """The first `max_rows` train (and `max_rows // 4` test) rows of Avazu; every feature is categorical.

    `hour` (YYMMDDHH) becomes hour-of-day and weekday fields; `id` is dropped.
    """
    frames = {}
    for split, rows in (("train", max_rows), ("test", max(1, max_rows // 4))):
        frames[split] = _take(_load("avazu", hub_id, hub_id, split=split, streaming=True), rows)
    for df in frames.values():
        if "hour" in df.columns and pd.api.types.is_numeric_dtype(df["hour"]) and df["hour"].min() > 1e7:
            stamp = pd.to_datetime(df["hour"].astype(np.int64).astype(str), format="%y%m%d%H")
            df["hour_of_day"], df["weekday"] = stamp.dt.hour, stamp.dt.weekday
            df.drop(columns="hour", inplace=True)
    cols = list(frames["train"].columns)
    label = _pick_label("avazu", hub_id, cols, ("click", "label"))
    cat_cols = [c for c in cols if c not in (label, "id")]
    return _ctr("avazu", frames["train"], frames["test"], label, [], cat_cols, min_count,
                {"source": f"hub {hub_id}", "max_rows": max_rows})


@dataset("hub", description="MovieLens-1M as CTR (Hub nbtpj/movielens-1m-ratings); needs a network")
def movielens1m(downloads: Path, hub_id: str = "nbtpj/movielens-1m-ratings", min_count: int = 1) -> Prepared:
    """MovieLens-1M as click prediction (rating >= 4, or a 0/1 `label` column); random 80/20 split."""
    ds = _load("movielens1m", hub_id, hub_id, split="train")
    df = ds.to_pandas()
    cols = list(df.columns)
    label = _pick_label("movielens1m", hub_id, cols, ("rating", "label", "click"))
    y = (df[label].to_numpy() >= 4) if label == "rating" else df[label].to_numpy()
    skip = {label, "rating", "timestamp", "time", "title", "movie_title"}
    cat_cols = [c for c in cols if c not in skip and df[c].nunique() < len(df) // 2]
    if not cat_cols:
        raise DataUnavailable(f"movielens1m: {hub_id} has columns {cols}; found no categorical fields")
    return _ctr("movielens1m", df, None, np.asarray(y, np.float32), [], cat_cols, min_count,
                {"source": f"hub {hub_id}", "label": f"{label} >= 4" if label == "rating" else label})
