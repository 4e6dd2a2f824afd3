"""Exact dynamic importance sampling: score a uniform candidate pool with the current model, then draw the
batch from the pool in proportion to those losses (Loshchilov & Hutter 2015, arXiv 1511.06343;
Katharopoulos & Fleuret 2018, arXiv 1803.00942). The forward passes over the pool are what it costs.

    @torch.no_grad()
    def score_fn(pool):                          # LongTensor [M] -> per-sample losses [M]
        return F.cross_entropy(model(X[pool]), Y[pool], reduction="none")

    sampler = LossSampler(num_samples=N, batch_size=512, score_fn=score_fn, pool_size=2048, mix=0.1)
    for idx in sampler:                          # score_fn runs inside next(sampler)
        loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
        (sampler.weights(idx) * loss).mean().backward()

Each step: a pool of M = pool_size uniform draws (with replacement; None: all N, in order), q over the
pool = (1 - mix) l / sum(l) + mix / M, the batch drawn from q with replacement, weights 1 / (M q). The
uniform pool is unbiased for the full mean and the weights unbias the draw from the pool.

Run it in the training process (not inside DataLoader workers): score_fn uses the live model. With
num_replicas > 1 every rank scores the whole global pool (the same on every rank); a harness may shard
the forward passes inside score_fn and all-gather. `update` is accepted and ignored.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .._checks import check_positive_int
from ._proportional import ProportionalSampler
from ._registry import register

__all__ = ["LossSampler"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def check_pool_size(name: str, value: Any) -> int | str | None:
    """Return `value` if it is "auto", None or an integer >= 1 (the upper bound N is checked on building)."""
    if value == "auto" or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be 'auto', None or an integer in [1, num_samples], got {value!r}")
    return value


@register("loss", inputs=("score_fn",))
class LossSampler(ProportionalSampler):
    """Pool-based exact-loss importance sampling.

    Args:
        num_samples, batch_size: as in `FeedbackSampler`.
        score_fn: callable(LongTensor [M] on `device`) -> Tensor [M] of current per-sample losses (run
            under torch.no_grad). Non-finite scores count as 0 and are counted in `skipped_nonfinite`.
        pool_size: "auto" (default): min(4 * batch_size * num_replicas, N); an int M in [1, N]; None: all N.
        mix: uniform share of q (see `ProportionalSampler`).
    """

    option_checks = {**ProportionalSampler.option_checks, "pool_size": check_pool_size}
    cost = "forward passes over a pool of M = pool_size samples (score_fn) + one multinomial draw over M"

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        score_fn: ScoreFn,
        pool_size: int | str | None = "auto",
        mix: float = 0.1,
        **common: Any,
    ) -> None:
        if not callable(score_fn):
            raise TypeError(f"score_fn must be a callable LongTensor [M] -> Tensor [M], got {type(score_fn).__name__}")
        if self.check_options(pool_size=pool_size)["pool_size"] == "auto":
            n = check_positive_int("num_samples", num_samples)
            b = check_positive_int("batch_size", batch_size) * check_positive_int("num_replicas", common.get("num_replicas", 1))
            pool_size = min(4 * b, n)
        super().__init__(num_samples, batch_size, mix=mix, **common)
        self._configure_proposal(pool_size, refresh_every=1)
        self.score_fn = score_fn

    def _scores(self, candidates: torch.Tensor | None) -> torch.Tensor:
        pool = torch.arange(self.num_samples, device=self.device) if candidates is None else candidates
        return self._score_pool(pool, count=True)

    def _all_scores(self) -> torch.Tensor:
        """Score all N with score_fn, `pool_size` at a time (all at once when pool_size is None), without
        counting non-finite scores in `skipped_nonfinite` (a probe must not change the sampler's record)."""
        chunk = self.pool_size or self.num_samples
        return torch.cat([self._score_pool(torch.arange(start, min(start + chunk, self.num_samples), device=self.device),
                                           count=False)
                          for start in range(0, self.num_samples, chunk)])  # a loop over chunks, not items

    def _score_pool(self, pool: torch.Tensor, count: bool) -> torch.Tensor:
        """score_fn(pool) under no_grad as float32 on the device, non-finite scores as 0 (counted if `count`)."""
        with torch.no_grad():
            out = self.score_fn(pool)
        if not isinstance(out, torch.Tensor) or out.shape != pool.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"score_fn must return a Tensor of shape [{pool.numel()}] (one loss per index), got {got}")
        scores = out.detach().to(self.device, torch.float32)
        finite = torch.isfinite(scores)
        bad = int((~finite).sum())
        if bad and count:
            self._count_nonfinite(bad, "score_fn output (scored as 0)")
        return torch.where(finite, scores, torch.zeros_like(scores)) if bad else scores
