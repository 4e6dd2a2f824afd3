"""Sampling in proportion to fixed scores known before training (e.g. the losses of a short proxy run).

    sampler = StaticSampler(scores, batch_size=512, mix=0.1, seed=0)   # scores: Tensor [N] >= 0
    for idx in sampler:
        loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
        (sampler.weights(idx) * loss).mean().backward()

p = (1 - mix) * s / sum(s) + mix / N, drawn with replacement (torch.multinomial); weights 1 / (N p).
All-zero scores give uniform sampling. `update` is accepted and ignored (the scores never change).
"""
from __future__ import annotations

from typing import Any

import torch

from .._checks import check_positive_int, check_tensor
from ._proportional import ProportionalSampler, mix_probabilities
from ._registry import register

__all__ = ["StaticSampler"]


def check_scores(name: str, scores: Any, num_samples: int | None) -> torch.Tensor:
    """Return `scores` if it is a 1-D real tensor of finite values >= 0 (of length num_samples if given)."""
    check_tensor(name, scores, ndim=1)
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"{name} must have a real dtype, got {scores.dtype}")
    if num_samples is not None:
        check_positive_int("num_samples", num_samples)
        if scores.numel() != num_samples:
            raise ValueError(f"{name} must have num_samples={num_samples} entries, got {scores.numel()}")
    s = scores.detach().double()
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"{name} must hold finite values >= 0, got min {float(s.min())}, max {float(s.max())}")
    return scores


@register("static", inputs=("scores",))
class StaticSampler(ProportionalSampler):
    """Fixed-score importance sampling with replacement.

    Args:
        scores: Tensor [N], finite and >= 0 (any device; copied to `device`). N = scores.numel().
        batch_size, mix, and the shared arguments of `FeedbackSampler` (num_samples, if given, must be N).
    """

    cost = "one multinomial draw over N (q precomputed once)"

    def __init__(self, scores: torch.Tensor, batch_size: int, *, mix: float = 0.1, num_samples: int | None = None,
                 **common: Any) -> None:
        check_scores("scores", scores, num_samples)
        super().__init__(scores.numel(), batch_size, mix=mix, **common)
        self.scores = scores.detach().to(self.device, torch.float32).clone()
        self._fixed_q = mix_probabilities(self.scores, self.mix)

    def _scores(self, candidates: torch.Tensor | None) -> torch.Tensor:
        return self.scores if candidates is None else self.scores[candidates]

    def _propose(self, generator: torch.Generator) -> tuple[None, torch.Tensor]:
        return None, self._fixed_q
