"""Sizing helpers: sketch depth and width from an accuracy target (in the spirit of DataSketches).

    from sketch import suggest_depth, suggest_width
    L = suggest_depth(relative_error=0.1, confidence=0.95)   # rows
    W = suggest_width(relative_error=0.1, mean_kernel=1/16)  # buckets per row

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
"""
from __future__ import annotations

import math

from ._checks import check_fraction

__all__ = ["suggest_depth", "suggest_width"]


def suggest_depth(relative_error: float, confidence: float = 0.95) -> int:
    """Return the rows L so that each kernel value is within `relative_error` with prob. `confidence`."""
    eps = check_fraction("relative_error", relative_error, low_open=True, high_open=True)
    conf = check_fraction("confidence", confidence, low_open=True, high_open=True)
    return max(1, math.ceil(math.log(2.0 / (1.0 - conf)) / (2.0 * eps * eps)))


def suggest_width(relative_error: float, mean_kernel: float) -> int:
    """Return the buckets W per row so that aliasing biases the kernel mass by <= `relative_error`."""
    eps = check_fraction("relative_error", relative_error, low_open=True, high_open=True)
    k = check_fraction("mean_kernel", mean_kernel, low_open=True)
    return max(1, math.ceil((1.0 - k) / (eps * k)))
