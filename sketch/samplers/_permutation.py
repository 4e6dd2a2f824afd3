"""Fixed-size chunks from successive random permutations of an index set: the without-replacement stream
behind the uniform and InfoBatch samplers.

    stream = PermutationStream(pool, num_samples, generator)   # pool: LongTensor [K], or None for all N
    batch = stream.take(512, generator)                         # when a permutation runs out, a new one starts

A chunk that crosses the end of a permutation is completed from the next one, so every batch has the
requested size and the number of batches per epoch stays fixed.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["PermutationStream"]


class PermutationStream:
    """Walk through random permutations of `pool` (or of range(num_samples) when pool is None)."""

    def __init__(self, pool: torch.Tensor | None, num_samples: int, generator: torch.Generator) -> None:
        self.pool = pool
        self.size = num_samples if pool is None else pool.numel()
        if self.size == 0:
            raise ValueError("PermutationStream needs a non-empty pool")
        self.device = generator.device
        self.order = self._permutation(generator)
        self.position = 0

    def _permutation(self, generator: torch.Generator) -> torch.Tensor:
        perm = torch.randperm(self.size, generator=generator, device=self.device)
        return perm if self.pool is None else self.pool[perm]

    def take(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Return the next `count` indices (LongTensor [count]), starting new permutations as needed."""
        pieces = []
        while count > 0:  # a loop over permutations (one or two per batch), not over items
            if self.position == self.size:
                self.order, self.position = self._permutation(generator), 0
            piece = self.order[self.position : self.position + count]
            pieces.append(piece)
            self.position += piece.numel()
            count -= piece.numel()
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def state_dict(self) -> dict[str, Any]:
        cpu = lambda t: None if t is None else t.cpu().clone()  # noqa: E731
        return {"pool": cpu(self.pool), "order": cpu(self.order), "position": self.position}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> "PermutationStream":
        stream = cls.__new__(cls)
        stream.pool = None if state["pool"] is None else state["pool"].to(device)
        stream.order = state["order"].to(device)
        stream.size = stream.order.numel()
        stream.position = int(state["position"])
        stream.device = device
        return stream
