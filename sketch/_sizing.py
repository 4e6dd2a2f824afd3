"""Sizing helpers: sketch depth, bits and width from an accuracy target and the data size (in the spirit of
DataSketches).

    from sketch import suggest_bits, suggest_depth, suggest_width
    L = suggest_depth(relative_error=0.1, confidence=0.95)   # rows
    K = suggest_bits(num_samples=N)                          # sign bits per row: ~16 training items per code
    W = suggest_width(relative_error=0.1, mean_kernel=1/16)  # buckets per row, from the kernel ...
    W = suggest_width(relative_error=0.1, num_samples=N)     # ... or from the data size

The reasoning, for one query q over n inserted items:
- Depth. Row r reports the count C_r = sum_i 1[h_r(x_i) = h_r(q)], an unbiased estimate of the kernel mass
  K(q) = sum_i k(x_i, q) (likewise for the value sum). The rows are independent, so the row average of the
  per-item collision indicators, each in [0, 1], obeys Hoeffding: P[|avg - k| > eps] <= 2 exp(-2 L eps^2).
  Requiring this <= 1 - confidence gives L >= ln(2 / (1 - confidence)) / (2 eps^2). It bounds the additive
  error of every kernel value the sketch uses, hence of both sums of the ratio, and it is why the error
  falls exponentially in L (the paper's theorem). It is conservative: errors of many items average out.
- Width. A universal hash into W buckets sends a non-colliding item to q's bucket with probability 1/W,
  adding about (1 - k)/W spurious mass per item. Against a true mass of mean_kernel per item, the relative
  bias is (1 - mean_kernel) / (W * mean_kernel) <= eps when W >= (1 - mean_kernel) / (eps * mean_kernel).
  mean_kernel is the average collision probability between a query and the data (for SRP with K bits on
  spread-out data, about 2**-K). When the family has at most W codes per row (SRP with 2**K <= W), codes
  map to buckets one to one and there is no aliasing at all.
- Bits, from the data size N. A row's estimate at q is the mean loss of the training items that share q's
  bucket. With K sign bits a row has 2**K codes, which centred, spread-out keys use about evenly, so a
  bucket holds about N / 2**K items: with 4 bits and N = 10**6 that is ~60,000 items, and every estimate is
  close to the global mean (the sketch then samples almost uniformly, however good the hash). Asking for
  about `items_per_bucket` items per code gives K = ceil(log2(N / items_per_bucket)). Fewer items per bucket
  make the estimate more local (a narrower kernel) but each bucket has seen fewer losses (after one pass, about
  items_per_bucket per row), so it is noisier; the L rows average that noise. 16 is a middle ground: it gives
  12 bits for N = 60,000 (MNIST). (The benchmark harness's defaults were tuned on its development data
  instead: 10 bits with one set of buckets per class; docs/TUNING.md.)
- Width, from the data size N. The same count says what the kernel mass is: a query's own code holds about
  items_per_bucket of the N items, so mean_kernel ~ items_per_bucket / N, and the width rule above becomes
  W >= (N / items_per_bucket - 1) / eps: every bucket must hold far fewer aliased items than its own. For
  SRP, W = 2**K maps codes to buckets one to one instead and has no aliasing at all, which is always the
  cheaper choice; the N-based width is for families with unbounded codes (p-stable). Either way a bucket
  holds at least N / W items, so W must grow with N for the estimate to stay local.
"""
from __future__ import annotations

import math

from ._checks import check_fraction, check_positive_float, check_positive_int

__all__ = ["suggest_bits", "suggest_depth", "suggest_width"]


def suggest_depth(relative_error: float, confidence: float = 0.95) -> int:
    """Return the rows L so that each kernel value is within `relative_error` with prob. `confidence`."""
    eps = check_fraction("relative_error", relative_error, low_open=True, high_open=True)
    conf = check_fraction("confidence", confidence, low_open=True, high_open=True)
    return max(1, math.ceil(math.log(2.0 / (1.0 - conf)) / (2.0 * eps * eps)))


def suggest_bits(num_samples: int, items_per_bucket: float = 16.0) -> int:
    """Return the bits K per row so that a row's 2**K codes hold about `items_per_bucket` of the
    `num_samples` training items each: ceil(log2(N / items_per_bucket)), at least 1 and at most 62 (SRP's
    limit)."""
    n = check_positive_int("num_samples", num_samples)
    per_bucket = check_positive_float("items_per_bucket", items_per_bucket)
    return min(62, max(1, math.ceil(math.log2(n / per_bucket))))


def suggest_width(
    relative_error: float,
    mean_kernel: float | None = None,
    *,
    num_samples: int | None = None,
    items_per_bucket: float = 16.0,
) -> int:
    """Return the buckets W per row so that aliasing biases the kernel mass by <= `relative_error`.

    Give exactly one of `mean_kernel` (the mean collision probability between a query and the data) or
    `num_samples` (N; the mean kernel is then taken as items_per_bucket / N, see the module docstring).
    """
    eps = check_fraction("relative_error", relative_error, low_open=True, high_open=True)
    if (mean_kernel is None) == (num_samples is None):
        raise ValueError(f"mean_kernel must be given when num_samples is not, and not with it; got mean_kernel="
                         f"{mean_kernel!r}, num_samples={num_samples!r}")
    if mean_kernel is None:
        n = check_positive_int("num_samples", num_samples)
        mean_kernel = min(1.0, check_positive_float("items_per_bucket", items_per_bucket) / n)
    k = check_fraction("mean_kernel", mean_kernel, low_open=True)
    return max(1, math.ceil((1.0 - k) / (eps * k)))
