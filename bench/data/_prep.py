"""Small numpy helpers the dataset builders share: fixed splits, standardization, category codes."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["split_indices", "group_split_indices", "standardize", "codes", "make_splits", "SPLIT_SEED", "TEST_FRACTION"]

SPLIT_SEED = 0  # the fixed permutation seed of every split we make (sources without an official split)
TEST_FRACTION = 0.2


def split_indices(n: int, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
    """A fixed random (train, test) partition of `range(n)`, each sorted (keeps the source's row order)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def group_split_indices(groups: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
    """A fixed (train, test) partition that keeps every group whole: a `test_fraction` of the groups go to test."""
    uniq = np.unique(groups)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    test_groups = uniq[perm[: int(round(len(uniq) * test_fraction))]]
    is_test = np.isin(groups, test_groups)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale columns to zero mean and unit variance with the train statistics (constant columns: std 1)."""
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return ((train - mean) / std).astype(np.float32), ((np.asarray(test, np.float64) - mean) / std).astype(np.float32)


def codes(values) -> tuple[np.ndarray, int]:
    """Integer codes `0..k-1` of the sorted distinct values (missing values get a code of their own), and `k`."""
    coded, uniques = pd.factorize(pd.Series(values), sort=True, use_na_sentinel=False)
    return coded.astype(np.int32), int(len(uniques))


def make_splits(train_rows: np.ndarray, test_rows: np.ndarray, x_num: np.ndarray, x_cat: np.ndarray,
                y: np.ndarray, scale: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cut arrays into the (train, test) dicts `Prepared` expects, standardizing `x_num` with train statistics."""
    num_tr, num_te = x_num[train_rows], x_num[test_rows]
    if scale and num_tr.shape[1]:
        num_tr, num_te = standardize(num_tr, num_te)
    return (
        {"x_num": num_tr, "x_cat": x_cat[train_rows], "y": y[train_rows]},
        {"x_num": num_te, "x_cat": x_cat[test_rows], "y": y[test_rows]},
    )
