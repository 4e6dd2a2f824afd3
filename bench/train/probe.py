"""The proxy-quality probe: how much of the loss signal a sampler's distribution captures, at every evaluation.

A fixed, seeded probe set of M training items (the same for every sampler and seed of an experiment). At each
evaluation, outside the fair clock (its time is recorded separately as `probe_s`), the probe takes the true
current per-sample losses l of those items (a no-grad forward pass in eval mode) and the sampler's current
probabilities restricted to them and renormalised, p~ = p / sum(p), and reports:

- `probe_spearman`: Spearman's rank correlation of p~ and l (None where either is constant, e.g. uniform);
- `probe_vr`: the variance ratio VR = mean(l^2 / (M p~)) / mean(l^2), the second moment of the importance-weighted
  loss relative to uniform sampling's (1: no gain; < 1: less gradient noise; > 1: worse than uniform);
- `probe_vr_ideal`: VR* = mean(l)^2 / mean(l^2), the VR of sampling exactly in proportion to the loss (the best a
  loss-proportional proxy can do);
- `probe_captured`: (1 - VR) / (1 - VR*), the share of the achievable reduction the sampler captures (1: as good
  as the exact loss; 0: uniform; negative: worse than uniform).

    probe = Probe(data, size=2048)
    numbers = probe.measure(model, sampler)     # {"probe_spearman": ..., "probe_vr": ..., ...}

Every sampler exposes `probabilities(indices)` (sketch.samplers), so the probe works for all of them; it tells a
user *why* a sampler wins or loses. A sampler whose weights are not 1/(N p) (stream_filter's Horvitz-Thompson
weights, selective_backprop's none) is still measured by its p: VR then says how well its choice of items
follows the loss, not the variance of its own gradient estimate.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from .metrics import per_sample_loss, predict_logits

__all__ = ["Probe", "probe_numbers", "spearman"]

PROBE_SEED = 20231122  # one probe set per dataset: the same items for every sampler and seed


def spearman(a: torch.Tensor, b: torch.Tensor) -> Optional[float]:
    """Spearman's rank correlation of two 1-D tensors (average ranks for ties); None if either is constant."""
    ra, rb = _ranks(a.double()), _ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return None if denom == 0.0 else float((ra * rb).sum()) / denom


def _ranks(x: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(x)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=x.dtype, device=x.device)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=x.dtype, device=x.device).index_add_(0, inverse, ranks)
    return (sums / counts)[inverse]  # ties share their average rank


def probe_numbers(losses: torch.Tensor, p: torch.Tensor) -> dict[str, Optional[float]]:
    """The probe's numbers for true losses `l` [M] and the sampler's probabilities `p` [M] of the same items."""
    l, p = losses.double().clamp_min(0.0), p.double()
    m2 = float((l * l).mean())
    total = float(p.sum())
    if m2 == 0.0 or not total > 0.0:
        return {"probe_spearman": None, "probe_vr": None, "probe_vr_ideal": None, "probe_captured": None}
    q = p / total
    with torch.no_grad():
        vr = float((l * l / (len(l) * q)).mean()) / m2 if bool((q > 0).all()) else math.inf
    ideal = float(l.mean()) ** 2 / m2
    captured = (1.0 - vr) / (1.0 - ideal) if ideal < 1.0 and math.isfinite(vr) else None
    return {"probe_spearman": spearman(q, l), "probe_vr": vr, "probe_vr_ideal": ideal, "probe_captured": captured}


class Probe:
    """A fixed probe set of `size` training items of `data` (all of them when the data is smaller)."""

    def __init__(self, data: Any, size: int = 2048, eval_batch_size: int = 4096) -> None:
        g = torch.Generator().manual_seed(PROBE_SEED)
        n = data.num_train
        self.indices = torch.randperm(n, generator=g)[: min(size, n)].sort().values.to(data.y_train.device)
        self.data, self.eval_batch_size = data, eval_batch_size

    def losses(self, model: torch.nn.Module) -> torch.Tensor:
        """The current per-sample losses of the probe items (no grad, eval mode; the mode is restored)."""
        was_training = model.training
        model.eval()
        d, idx = self.data, self.indices
        device = next(model.parameters()).device
        logits = predict_logits(model, d.x_num_train[idx], d.x_cat_train[idx], self.eval_batch_size, device)
        model.train(was_training)
        return per_sample_loss(logits, d.y_train[idx].to(device), d.task)

    def measure(self, model: torch.nn.Module, sampler: Any) -> dict[str, Optional[float]]:
        """The probe's numbers for `sampler`'s current distribution against `model`'s current losses."""
        with torch.no_grad():
            p = sampler.probabilities(self.indices)
        return probe_numbers(self.losses(model), p.to(self.indices.device))
