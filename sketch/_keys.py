"""Hash keys from raw features: what the sketch should hash so that its buckets mean something.

Sign random projections hash directions through the origin. On uncentred features (raw pixels, counts,
tabular columns that are all positive) every point sits in the same orthant-like cone, almost every sign bit
agrees, and a row puts nearly all items in one or two buckets: each bucket's estimate is then the global
mean and NWS silently becomes uniform sampling. Centring by the column mean spreads the directions around
the origin; standardising also stops large-scale columns from deciding every bit on their own.

    from sketch import feature_keys
    keys = feature_keys(x_train)                                   # centred, float [N, d]
    keys = feature_keys(x_train, mode="standardize")               # centred and scaled to unit variance
    query_keys = feature_keys(x_test, reference=x_train)           # the same fixed shift/scale as training

The statistics are fixed: they come from `reference` (default: the features given), never from a batch.
Works on any device and float dtype; the result has the input's dtype and device.
"""
from __future__ import annotations

import torch

from ._checks import check_tensor, one_of

__all__ = ["feature_keys", "KEY_MODES"]

KEY_MODES = ("center", "standardize", "none")  # what `feature_keys` (and NWSSampler.from_features' keys=) accepts


def feature_keys(features: torch.Tensor, mode: str = "center", *, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Return the hash keys of `features` [N, d] (float): a new tensor of the same shape, dtype and device.

    mode: "center" subtracts the column mean; "standardize" also divides by the column standard deviation
        (population, ddof 0; constant columns are left at 0, not divided); "none" returns a copy unchanged.
    reference: float [M, d] whose column statistics are used (e.g. the training features, when `features`
        are queries); default: `features` itself.
    """
    one_of(*KEY_MODES)("mode", mode)
    check_tensor("features", features, ndim=2, floating=True)
    ref = features if reference is None else check_tensor("reference", reference, ndim=2, floating=True,
                                                            size={1: features.shape[1]})
    if mode == "none":
        return features.clone()
    if ref.shape[0] == 0:
        name = "features" if reference is None else "reference"
        raise ValueError(f"{name} must have at least one row to take column statistics from, got 0 rows")
    ref = ref.to(features.device)
    if mode == "center":
        return features - ref.mean(0, keepdim=True).to(features.dtype)
    std, mean = torch.std_mean(ref, dim=0, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (features - mean.to(features.dtype)) / std.to(features.dtype)
