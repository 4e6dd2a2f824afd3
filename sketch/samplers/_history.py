"""Sampling in proportion to each sample's last observed training loss: the cheap dynamic baseline.

    sampler = HistorySampler(num_samples=N, batch_size=512, mix=0.1, seed=0)
    for idx in sampler:
        loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
        (sampler.weights(idx) * loss).mean().backward()
        sampler.update(idx, loss.detach())       # remembers these losses

Score of a sample: its last loss from `update`; samples never seen get the mean of the observed losses
(no magic initial value); before any feedback the sampler is uniform. p = (1 - mix) s / sum(s) + mix / N,
drawn with replacement, weights 1 / (N p). Negative losses count as 0.
"""
from __future__ import annotations

from typing import Any

import torch

from ._losstable import LossTable
from ._proportional import ProportionalSampler
from ._registry import register

__all__ = ["HistorySampler"]


@register("history")
class HistorySampler(ProportionalSampler):
    """Last-seen-loss importance sampling. Args: num_samples, batch_size, mix, and `FeedbackSampler`'s."""

    cost = "O(N) elementwise refresh of p + one multinomial draw over N + one scatter of B losses"

    def __init__(self, num_samples: int, batch_size: int, *, mix: float = 0.1, **common: Any) -> None:
        super().__init__(num_samples, batch_size, mix=mix, **common)
        self.table = LossTable(self.num_samples, self.device)

    def _scores(self, candidates: torch.Tensor | None) -> torch.Tensor:
        filled = self.table.filled()
        return filled if candidates is None else filled[candidates]

    def _update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        self.table.update(indices, losses)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "table": self.table.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.table.load_state_dict(state["table"])
