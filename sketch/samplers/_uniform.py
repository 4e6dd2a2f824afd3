"""Uniform sampling without replacement: the baseline every adaptive sampler is compared with.

    sampler = UniformSampler(num_samples=N, batch_size=512, seed=0)
    for epoch in range(E):
        sampler.set_epoch(epoch)
        for idx in sampler:                      # LongTensor [512]
            loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
            (sampler.weights(idx) * loss).mean().backward()   # weights are all ones
            sampler.update(idx, loss.detach())               # accepted and ignored

Each epoch walks a fresh random permutation (from the local generator seeded by (seed, epoch)); when the
fixed number of steps needs more than N indices, the next permutation continues the stream.
"""
from __future__ import annotations

from typing import Any

import torch

from ._base import FeedbackSampler
from ._permutation import PermutationStream
from ._registry import register

__all__ = ["UniformSampler"]


@register("uniform")
class UniformSampler(FeedbackSampler):
    """Random permutation per epoch, weights 1. Arguments: those of `FeedbackSampler`."""

    cost = "one randperm over N per pass through the data (amortized O(B) per step); no per-sample state"

    def __init__(self, num_samples: int, batch_size: int, **common: Any) -> None:
        super().__init__(num_samples, batch_size, **common)
        self._stream: PermutationStream | None = None

    def _start_epoch(self, generator: torch.Generator) -> None:
        self._stream = PermutationStream(None, self.num_samples, generator)

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self._stream.take(self.global_batch_size, generator)
        return indices, torch.ones(indices.numel(), device=self.device)

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return 1/N for every sample (float [N], or at `indices`): without replacement, every position of a
        permutation is uniform over the N samples."""
        return self._probabilities_at(torch.full((self.num_samples,), 1.0 / self.num_samples, device=self.device), indices)

    def _extra_state(self) -> dict[str, Any]:
        return {"stream": None if self._stream is None else self._stream.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        s = state["stream"]
        self._stream = None if s is None else PermutationStream.from_state_dict(s, self.device)
