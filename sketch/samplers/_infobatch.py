"""InfoBatch (Qin et al., ICLR 2024, arXiv 2303.04947) as a fixed-length sampler: random pruning of
well-learned samples, with rescaled weights so the loss stays unbiased, and full data at the end.

    sampler = InfoBatchSampler(num_samples=N, batch_size=512, num_epochs=E, prune_ratio=0.5, delta=0.875)
    for epoch in range(E):
        sampler.set_epoch(epoch)                 # required: pruning is decided per epoch
        for idx in sampler:
            loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
            (sampler.weights(idx) * loss).mean().backward()
            sampler.update(idx, loss.detach())   # remembers the last loss of each sample

At the start of each epoch before `delta * num_epochs`: the well-learned samples W are those seen at least
once whose last loss is below the mean of the observed losses (unseen samples are never pruned); each
is pruned independently with probability `prune_ratio` r (local generator). The kept set K is walked in
random permutations. Weights: kept samples of W get |K| / (N (1 - r)), the others |K| / N, so that
(weights * loss).mean() is unbiased for the full mean (in expectation over the pruning). From epoch
delta * num_epochs on (annealing) nothing is pruned and weights are 1.

Difference from the original: InfoBatch shortens each epoch to |K| samples, which is where its savings
come from, and rescales by 1 / (1 - r) only. Here the number of steps per epoch stays fixed (so
step-based LR schedules such as OneCycleLR keep working): the kept set is cycled to fill the epoch, and
the weights carry the extra |K| / N factor that a fixed-length draw from K needs. To realize savings,
pass a smaller `steps_per_epoch`. No monkeypatching, no global RNG, the loss tensor is never modified.
"""
from __future__ import annotations

import functools
from typing import Any

import torch

from .._checks import check_fraction, check_positive_int
from ._base import FeedbackSampler, epoch_seed
from ._losstable import LossTable
from ._permutation import PermutationStream
from ._registry import register

__all__ = ["InfoBatchSampler"]


@register("infobatch", inputs=("num_epochs",))
class InfoBatchSampler(FeedbackSampler):
    """Fixed-length InfoBatch.

    Args:
        num_samples, batch_size: as in `FeedbackSampler`.
        num_epochs: total epochs of the run (pruning stops at epoch delta * num_epochs).
        prune_ratio: r in [0, 1), the probability of pruning each well-learned sample.
        delta: fraction in [0, 1] of the epochs that may prune.
    """

    option_checks = {"prune_ratio": functools.partial(check_fraction, high_open=True), "delta": check_fraction}
    cost = "O(N) threshold + prune draw and one randperm of the kept set per epoch; one scatter of B losses per step"

    def __init__(self, num_samples: int, batch_size: int, *, num_epochs: int, prune_ratio: float = 0.5,
                 delta: float = 0.875, **common: Any) -> None:
        super().__init__(num_samples, batch_size, **common)
        self.num_epochs = check_positive_int("num_epochs", num_epochs)
        options = self.check_options(prune_ratio=prune_ratio, delta=delta)
        self.prune_ratio, self.delta = options["prune_ratio"], options["delta"]
        self.table = LossTable(self.num_samples, self.device)
        self.kept = self.num_samples  # |K| of the current epoch, for logging
        self._stream: PermutationStream | None = None
        self._epoch_weights: torch.Tensor | None = None

    def pruning(self, epoch: int) -> bool:
        """Whether `epoch` prunes (before the annealing epochs)."""
        return epoch < self.delta * self.num_epochs and self.prune_ratio > 0

    def _plan(self, generator: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Return the epoch's kept pool (LongTensor [K], None: all N) and per-sample weights (float [N]), drawing
        the pruning from `generator` (its first draws of the epoch)."""
        n = self.num_samples
        if not self.pruning(self.epoch):
            return None, torch.ones(n, device=self.device)
        well_learned = self.table.seen & (self.table.values < self.table.observed_mean())
        pruned = well_learned & (torch.rand(n, generator=generator, device=self.device) < self.prune_ratio)
        pool = torch.nonzero(~pruned).squeeze(1)
        k = pool.numel()
        return pool, torch.where(well_learned, k / (n * (1.0 - self.prune_ratio)), k / n).float()

    def _start_epoch(self, generator: torch.Generator) -> None:
        pool, self._epoch_weights = self._plan(generator)
        self.kept = self.num_samples if pool is None else pool.numel()
        self._stream = PermutationStream(pool, self.num_samples, generator)

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return the epoch's distribution (float [N], or at `indices`): 1/|K| on the kept set K, 0 on pruned
        samples. Draws walk permutations of K, so every position is uniform over K. The epoch is the one under
        way, else the plan a fresh iteration of `epoch` would draw now (same generator seed, current losses)."""
        if self._epoch_in_progress() and self._stream is not None:
            pool = self._stream.pool
        else:
            pool, _ = self._plan(torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch)))
        n = self.num_samples
        if pool is None:
            p = torch.full((n,), 1.0 / n, device=self.device)
        else:
            p = torch.zeros(n, device=self.device).index_fill_(0, pool, 1.0 / pool.numel())
        return self._probabilities_at(p, indices)

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self._stream.take(self.global_batch_size, generator)
        return indices, self._epoch_weights[indices]

    def _update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        self.table.update(indices, losses)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "table": self.table.state_dict(),
            "stream": None if self._stream is None else self._stream.state_dict(),
            "epoch_weights": None if self._epoch_weights is None else self._epoch_weights.cpu().clone(),
            "kept": self.kept,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.table.load_state_dict(state["table"])
        s, w = state["stream"], state["epoch_weights"]
        self._stream = None if s is None else PermutationStream.from_state_dict(s, self.device)
        self._epoch_weights = None if w is None else w.to(self.device)
        self.kept = int(state["kept"])
