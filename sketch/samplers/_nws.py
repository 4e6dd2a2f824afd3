"""The paper's sampler (arXiv 2311.13583): importance sampling by a Nadaraya-Watson sketch of the loss.

    sampler = NWSSampler.from_features(features, batch_size=512, rows=16, bits=4, width=1024, seed=0)
    for epoch in range(E):
        sampler.set_epoch(epoch)
        for idx in sampler:                      # LongTensor [512]
            loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
            (sampler.weights(idx) * loss).mean().backward(); opt.step(); opt.zero_grad()
            sampler.update(idx, loss.detach())  # inserts the batch's losses into the sketch

`features` [N, d] are what is hashed (inputs, or a fixed random embedding of them); their slots in the
sketch are computed once (int32, [N, L]). Each refresh estimates the loss of every sample from the sketch,
est_i = NW estimate clamped at >= 0, and samples with p = (1 - mix) est / sum(est) + mix / N (uniform while
the sketch is empty); weights 1 / (N p). Cheaper variants (see shared/PERF.md):
  - refresh_every=k: re-estimate every k steps and draw from the cached p in between;
  - pool_size=M: estimate only a uniform pool of M candidates per refresh and draw the batch from it,
    weights 1 / (M q); both keep the loss unbiased. They combine: a pool is then reused for k steps.

With num_replicas > 1, call `update` on every rank with the all-gathered indices and losses (the sketch
must stay identical on all ranks), or, cheaper, with this rank's own indices and losses and `reduce=` a
function that sums the sketch update across ranks (`sketch.distributed` does this: the sketch is linear,
so all-reducing the per-rank updates equals one update with the global batch). On CUDA the sketch's
scatter-add is not bit-deterministic unless torch.use_deterministic_algorithms(True) is set.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .._checks import check_positive_int, check_tensor
from .._hashes import make_hash
from .._sketch import NWSketch
from ._base import resolve_device
from ._proportional import ProportionalSampler

__all__ = ["NWSSampler"]

_INT32_MAX = 2**31 - 1


def features_to_slots(sketch: NWSketch, features: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
    """Return the int32 slots [N, L] of `features` [N, d] (moved to the sketch's device chunk by chunk)."""
    check_tensor("features", features, ndim=2, floating=True)
    check_positive_int("chunk_size", chunk_size)
    if sketch.depth * sketch.width > _INT32_MAX:
        raise ValueError(f"rows * width must be < 2**31 to store slots as int32, got {sketch.depth * sketch.width}")
    out = torch.empty(features.shape[0], sketch.depth, dtype=torch.int32, device=sketch.device)
    for start in range(0, features.shape[0], chunk_size):  # a loop over chunks of rows, bounding memory
        chunk = features[start : start + chunk_size].to(sketch.device)
        out[start : start + chunk.shape[0]] = sketch.slots(chunk).to(torch.int32)
    return out


class NWSSampler(ProportionalSampler):
    """Importance sampling by the Nadaraya-Watson sketch's loss estimates.

    Args:
        sketch: an `NWSketch` on `device` (the sampler updates it in place).
        slots: int32/int64 [N, L] from `sketch.slots(features)` on `device`; N = slots.shape[0].
        batch_size: indices per yielded batch (per rank).
        mix: uniform share alpha of p, in [0, 1] (every weight <= 1/alpha).
        pool_size: None (estimate all N) or M in [1, N] (two-stage sampling from a uniform pool of M).
        refresh_every: re-estimate every k steps, reuse the cached distribution in between.
        num_samples: optional; must equal slots.shape[0].
        and the shared arguments of `FeedbackSampler`.
    """

    option_checks = {**ProportionalSampler.option_checks, **ProportionalSampler.proposal_checks}
    cost = (
        "one sketch estimate (embedding_bag gather of L slots) of N items, or of pool_size items, every "
        "refresh_every steps + one multinomial draw + one sketch update of B * num_replicas items"
    )

    def __init__(
        self,
        sketch: NWSketch,
        slots: torch.Tensor,
        batch_size: int,
        *,
        mix: float = 0.1,
        pool_size: int | None = None,
        refresh_every: int = 1,
        num_samples: int | None = None,
        **common: Any,
    ) -> None:
        if not isinstance(sketch, NWSketch):
            raise TypeError(f"sketch must be an NWSketch, got {type(sketch).__name__}")
        check_tensor("slots", slots, ndim=2, floating=False, size={1: sketch.depth})
        if num_samples is not None and num_samples != slots.shape[0]:
            raise ValueError(f"num_samples must equal slots.shape[0]={slots.shape[0]}, got {num_samples}")
        super().__init__(slots.shape[0], batch_size, mix=mix, **common)
        self._configure_proposal(pool_size, refresh_every)
        if sketch.device != self.device:
            raise ValueError(f"sketch lives on {sketch.device} but device is {self.device}; move it with sketch.to(device)")
        if slots.device != self.device:
            raise ValueError(f"slots is on {slots.device} but device is {self.device}; move it with slots.to(device)")
        low, high = (int(v) for v in slots.aminmax())
        if low < 0 or high >= sketch.depth * sketch.width:
            raise ValueError(f"slots must lie in [0, rows * width = {sketch.depth * sketch.width}), got values in "
                             f"[{low}, {high}]; compute them with sketch.slots(features)")
        self.sketch = sketch
        self.slots = slots

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor,
        batch_size: int,
        *,
        family: str = "srp",
        rows: int = 16,
        bits: int = 4,
        width: int = 1024,
        bandwidth: float = 1.0,
        decay: float = 1.0,
        seed: int = 0,
        device: str | torch.device = "cpu",
        chunk_size: int = 65536,
        **kwargs: Any,
    ) -> "NWSSampler":
        """Build the hash (`family` "srp" or "pstable"; `bandwidth` is used by "pstable"), the sketch and the
        int32 slots of `features` [N, d], then the sampler. `seed` seeds both the hash and the sampler;
        the other keyword arguments (mix, pool_size, refresh_every, steps_per_epoch, ...) go to the sampler."""
        check_tensor("features", features, ndim=2, floating=True)
        dev = resolve_device(device)
        hash_ = make_hash(family, features.shape[1], rows, bits, bandwidth, seed=seed, device=dev)
        sketch = NWSketch(hash_, width=width, decay=decay)
        slots = features_to_slots(sketch, features, chunk_size)
        return cls(sketch, slots, batch_size, seed=seed, device=dev, **kwargs)

    def _scores(self, candidates: torch.Tensor | None) -> torch.Tensor:
        slots = self.slots if candidates is None else self.slots.index_select(0, candidates)
        return self.sketch.estimate_slots(slots).clamp_min(0.0)

    def estimates(self) -> torch.Tensor:
        """Return the sketch's current loss estimates of all N samples (float [N], clamped at >= 0)."""
        return self._scores(None)

    def update(
        self,
        indices: torch.Tensor,
        losses: torch.Tensor,
        *,
        reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        """Feed back per-sample losses (see `FeedbackSampler.update`).

        reduce: None (default): `indices`/`losses` are the whole (global) batch's. A callable: they are this
            rank's share only; their sketch update in table form ([L*W, 2], `NWSketch.delta`) is passed to
            `reduce`, which must return it summed over all ranks (e.g. an all_reduce), and the sum is applied.
            Every rank must then call `update` at every step, even when all its losses are non-finite (it
            then contributes a zero update); `skipped_nonfinite` counts this rank's dropped losses.
        """
        if reduce is None:
            super().update(indices, losses)
            return
        idx, values = self._clean_feedback(indices, losses)
        delta = reduce(self.sketch.delta(self.slots.index_select(0, idx), values))
        if self.sketch.decay < 1.0 and not bool(delta[:, 1].any()):
            return  # no finite loss on any rank: no update at all, as `update` with the global batch would do
        self.sketch.apply_delta(delta)

    def _update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        self.sketch.update_slots(self.slots.index_select(0, indices), losses)  # index_select: 2-3x faster than [] on the CPU

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "sketch": self.sketch.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.sketch.load_state_dict(state["sketch"])  # raw table and decay factor: bit-identical
