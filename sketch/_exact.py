"""The exact Nadaraya-Watson estimator: the reference the sketch approximates, and simple kernels.

    from sketch import nadaraya_watson, SRPHash, GaussianKernel
    f = nadaraya_watson(queries, keys, values, kernel=SRPHash(dim=d, depth=1, bits=4).collision_probability)
    f = nadaraya_watson(queries, keys, values, kernel=GaussianKernel(bandwidth=1.0))

Cost is O(m * n * d): use it on small data (tests, fidelity plots), never in a training loop.
"""
from __future__ import annotations

from typing import Callable

import torch

from ._checks import check_positive_float, check_positive_int, check_tensor

__all__ = ["nadaraya_watson", "GaussianKernel"]

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GaussianKernel:
    """k(x, y) = exp(-||x - y||^2 / (2 h^2)), a callable kernel returning [m, n]."""

    def __init__(self, bandwidth: float = 1.0) -> None:
        self.bandwidth = check_positive_float("bandwidth", bandwidth)
        self._inv_two_h2 = 1.0 / (2.0 * self.bandwidth**2)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(x, y).pow(2) * self._inv_two_h2)

    def __repr__(self) -> str:
        return f"GaussianKernel(bandwidth={self.bandwidth})"


def nadaraya_watson(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kernel: Kernel,
    fallback: str | float = "mean",
    chunk: int = 4096,
) -> torch.Tensor:
    """Return f(q) = sum_i k(q, x_i) y_i / sum_i k(q, x_i) for each query: Tensor [m].

    `kernel(queries, keys)` must return the [m, n] kernel matrix. Where the kernel mass of a query is 0,
    `fallback` answers: "mean" gives the mean of `values` (as `NWSketch` does), a number gives itself.
    Queries are processed `chunk` at a time to bound memory.
    """
    check_tensor("queries", queries, ndim=2, floating=True)
    check_tensor("keys", keys, ndim=2, floating=True, size={1: queries.shape[1]})
    check_tensor("values", values, ndim=1, size={0: keys.shape[0]})
    check_positive_int("chunk", chunk)
    if not callable(kernel):
        raise TypeError(f"kernel must be a callable (x, y) -> [m, n], got {type(kernel).__name__}")
    vals = values.to(queries.dtype)
    default = vals.mean() if fallback == "mean" else torch.tensor(float(fallback), dtype=queries.dtype)
    out = []
    for start in range(0, queries.shape[0], chunk):
        k = kernel(queries[start : start + chunk], keys).to(queries.dtype)
        if k.shape != (min(chunk, queries.shape[0] - start), keys.shape[0]):
            raise ValueError(f"kernel must return shape [m, n], got {tuple(k.shape)}")
        mass = k.sum(1)
        est = (k @ vals) / torch.where(mass > 0, mass, torch.ones_like(mass))
        out.append(torch.where(mass > 0, est, default.to(est.device)))
    return torch.cat(out) if out else queries.new_zeros(0)
