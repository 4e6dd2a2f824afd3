"""The last observed training loss of every sample: the O(N) table behind the history and InfoBatch samplers.

    table = LossTable(num_samples, device)
    table.update(indices, losses)      # finite losses; a repeated index keeps the largest of its losses
    table.filled()                     # [N]: last loss, or the mean of the observed ones where never seen
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["LossTable"]


class LossTable:
    """Per-sample last-seen loss (float32 [N]) and a mask of the samples seen at least once."""

    def __init__(self, num_samples: int, device: torch.device) -> None:
        self.values = torch.zeros(num_samples, dtype=torch.float32, device=device)
        self.seen = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Overwrite the losses of `indices` (long [b], finite losses [b]); duplicates keep their max.

        amax makes the result independent of the order duplicates are processed in (deterministic on CUDA).
        """
        self.values.scatter_reduce_(0, indices, losses.to(self.values.dtype), "amax", include_self=False)
        self.seen[indices] = True

    def observed_mean(self) -> torch.Tensor:
        """Mean loss over the samples seen so far (0-dim tensor; 0 before any)."""
        count = self.seen.sum()
        total = torch.where(self.seen, self.values, torch.zeros_like(self.values)).sum()
        return total / count.clamp_min(1)

    def filled(self) -> torch.Tensor:
        """Return [N]: each sample's last loss; samples never seen get the mean of the observed ones."""
        return torch.where(self.seen, self.values, self.observed_mean())

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.cpu().clone(), "seen": self.seen.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["values"].shape != self.values.shape:
            raise ValueError(f"state_dict holds {state['values'].numel()} losses, this table holds {self.values.numel()}")
        self.values = state["values"].to(self.values.device, self.values.dtype).clone()
        self.seen = state["seen"].to(self.seen.device, torch.bool).clone()
