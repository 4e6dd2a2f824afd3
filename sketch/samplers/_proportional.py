"""Sampling in proportion to scores, with a uniform floor, an optional candidate pool and a cached proposal.

Shared by the static, history, loss and NWS samplers. One step:

    every `refresh_every` steps:  candidates = all N (pool_size=None) or M uniform draws (with replacement)
                                  q = (1 - mix) * s / sum(s) + mix / M      s = scores of the candidates, >= 0
    every step:                   positions ~ q (with replacement), indices = candidates[positions],
                                  weights = 1 / (M * q[positions])

E[w * loss | candidates] is the candidates' mean loss, and uniform candidates are unbiased for the full
mean, so `(weights * loss).mean()` is unbiased however stale q is. Where the scores sum to 0 (nothing
learned yet) q is uniform.

Subclasses implement `_scores(candidates)`: LongTensor [M] or None (all N) -> Tensor [M] or [N].
"""
from __future__ import annotations

from typing import Any

import torch

from .._checks import check_fraction, check_options, check_positive_int, optional
from ._base import FeedbackSampler

__all__ = ["ProportionalSampler", "mix_probabilities", "draw_categorical"]

MULTINOMIAL_MAX_CATEGORIES = 2**24  # torch.multinomial's limit; beyond it we invert the CDF


def mix_probabilities(scores: torch.Tensor, mix: float) -> torch.Tensor:
    """Return float32 q [M] = (1 - mix) * s / sum(s) + mix / M with s = scores clamped at >= 0 (NaN -> 0).

    Uniform where sum(s) is 0. No host sync (safe inside a CUDA step).
    """
    s = torch.nan_to_num(scores.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    total = s.sum()
    positive = total > 0
    uniform = torch.full_like(s, 1.0 / s.numel())
    mixed = (1.0 - mix) * s / torch.where(positive, total, torch.ones_like(total)) + mix / s.numel()
    return torch.where(positive, mixed, uniform)


def draw_categorical(q: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Return n iid draws (LongTensor [n]) from the categorical distribution q (non-negative, sum > 0).

    CPU: torch.multinomial up to its 2^24 categories. CUDA: always the inverse CDF, measured 48x faster than
    torch.multinomial at 10^7 categories on an H200 (0.14 vs 6.8 ms for 512 draws; docs/SCALE.md).
    """
    if q.device.type == "cpu" and q.numel() <= MULTINOMIAL_MAX_CATEGORIES:
        return torch.multinomial(q, n, replacement=True, generator=generator)
    return inverse_cdf_draw(q, n, generator)


def inverse_cdf_draw(q: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """`draw_categorical` by inverting the float64 CDF: any number of categories, O(M + n log M)."""
    cdf = torch.cumsum(q, 0, dtype=torch.float64)
    u = torch.rand(n, generator=generator, device=q.device, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_max(q.numel() - 1)


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().cpu().clone()


class ProportionalSampler(FeedbackSampler):
    """Base of the samplers that draw with replacement in proportion to (mixed) scores.

    Args (besides `FeedbackSampler`'s):
        mix: alpha in [0, 1], the uniform share of q; it bounds every weight by 1/alpha. With 0 a sample
            whose score is 0 is never drawn (unbiased only if its loss is 0 too).

    Subclasses that expose the cheaper proposals call `_configure_proposal(pool_size, refresh_every)`:
        pool_size: None: score all N every refresh; M: score a uniform pool of M candidates (drawn with
            replacement) and draw the batch from it.
        refresh_every: k >= 1, re-score every k steps and draw from the cached q in between (the cache
            restarts with each epoch).
    """

    option_checks = {"mix": check_fraction}
    # the checks of `_configure_proposal`, for the subclasses that expose the proposal
    proposal_checks = {"pool_size": optional(check_positive_int), "refresh_every": check_positive_int}

    def __init__(self, num_samples: int, batch_size: int, *, mix: float = 0.1, **common: Any) -> None:
        super().__init__(num_samples, batch_size, **common)
        self.mix = self.check_options(mix=mix)["mix"]
        self.pool_size: int | None = None
        self.refresh_every = 1
        self._candidates: torch.Tensor | None = None  # cached proposal: candidates (None = all N) ...
        self._q: torch.Tensor | None = None  # ... and their probabilities

    def _configure_proposal(self, pool_size: int | None, refresh_every: int) -> None:
        """Validate and set `pool_size` and `refresh_every` (for the subclasses that expose them)."""
        checked = check_options(self.proposal_checks, {"pool_size": pool_size, "refresh_every": refresh_every})
        if pool_size is not None and pool_size > self.num_samples:
            raise ValueError(f"pool_size must be None or in [1, num_samples={self.num_samples}], got {pool_size}")
        self.pool_size, self.refresh_every = checked["pool_size"], checked["refresh_every"]

    def _scores(self, candidates: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        """Return the non-negative scores of `candidates` ([M]), or of all N samples when None."""
        raise NotImplementedError

    def _propose(self, generator: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor]:
        candidates = None
        if self.pool_size is not None:
            candidates = torch.randint(
                self.num_samples, (self.pool_size,), generator=generator, device=self.device, dtype=torch.long
            )
        return candidates, mix_probabilities(self._scores(candidates), self.mix)

    def _start_epoch(self, generator: torch.Generator) -> None:
        self._candidates, self._q = None, None

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self._q is None or self._step % self.refresh_every == 0:
            self._candidates, self._q = self._propose(generator)
        q = self._q
        positions = draw_categorical(q, self.global_batch_size, generator)
        indices = positions if self._candidates is None else self._candidates[positions]
        return indices, 1.0 / (q.numel() * q[positions])

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return q, the probability that the next single draw picks each sample (float [N], or at `indices`).

        Without a pool: the q the next draw uses, i.e. the cached q while it still serves the epoch under way
        (refresh_every > 1), else q from the current scores. With `pool_size` set the batch is drawn from a
        random pool of M candidates, so no fixed q over N describes one draw: this returns the pool-free
        q = (1 - mix) s / sum(s) + mix / N over all N current scores, which the pool approximates.
        """
        cached = (self.pool_size is None and self._q is not None and self._epoch_in_progress()
                  and self._step % self.refresh_every != 0)
        q = self._q if cached else mix_probabilities(self._all_scores(), self.mix)
        return self._probabilities_at(q, indices)

    def _all_scores(self) -> torch.Tensor:
        """The scores of all N samples (subclasses whose scoring is costly may chunk it)."""
        return self._scores(None)

    # The cached proposal can't be recomputed after later updates, so it is saved when it outlives a step.
    def _extra_state(self) -> dict[str, Any]:
        keep = self.refresh_every > 1
        return {
            "candidates": _cpu(self._candidates) if keep else None,
            "q": _cpu(self._q) if keep else None,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        to = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        self._candidates, self._q = to(state["candidates"]), to(state["q"])
