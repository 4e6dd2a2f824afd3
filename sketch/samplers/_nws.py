"""The paper's sampler (arXiv 2311.13583): importance sampling by a Nadaraya-Watson sketch of the loss,
drawn straight from the sketch's buckets.

    sampler = NWSSampler.from_features(features, batch_size=512, labels=Y, seed=0)   # the tuned defaults
    for epoch in range(E):
        sampler.set_epoch(epoch)
        for idx in sampler:                      # LongTensor [512]
            loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
            (sampler.weights(idx) * loss).mean().backward(); opt.step(); opt.zero_grad()
            sampler.update(idx, loss.detach())  # inserts the batch's losses into the sketch

`features` [N, d] are what is hashed (inputs, or a fixed random embedding of them); `from_features` first
turns them into keys with `feature_keys` (centred by default: uncentred features put almost everything in
one or two SRP buckets and the sampler silently becomes uniform), folds the class of each item into the
buckets (`labels=`, one set of buckets per class), and computes the slots once (int32, [N, L]). Its defaults
(8 rows x 10 bits x 4096 buckets, mix 0.1, bucket masses every 4 steps) are the harness's tuned ones.

The draw (see `sketch.samplers._native`): a row uniformly, a bucket in proportion to its items times its
estimate, an item uniformly inside it; mixed with uniform. p(i) is exact and costs O(L) per drawn item, so
the cost per step does not depend on N. Its p is a mixture of the rows' per-bucket estimates, not the ratio
of summed sketch values that `NWSFullSampler` (registry name "nws_full") samples in proportion to.
  - refresh_every=k (default 4): every k steps the bucket masses absorb the k batches of feedback since the last
    refresh (O(k B L): only the touched buckets) and a distribution is built from them (O(L W / s) block sums);
    the k batches it serves are drawn together, in one go, when it is built. p stays exact for what is drawn
    (it is the cached one's) and the sketch itself learns from every update (one scatter of B L cells);
  - refresh_every=1: the same, every step.
Extra memory: one int32 permutation of the N items per row (the size of the int32 slots) plus a few arrays
of L * W (`memory_bytes`).

`move(indices, slots)` gives some items new slots while training (e.g. re-keyed from the model's current
features by a forward hook): the sketch keeps what it learned, the moved items are drawn from their new
buckets once the bucket index is rebuilt (at the next refresh), and p stays exact in between.

With num_replicas > 1, call `update` on every rank with the all-gathered indices and losses (the sketch
must stay identical on all ranks), or, cheaper, with this rank's own indices and losses and `reduce=` a
function that sums the sketch update across ranks (`sketch.distributed` does this: the sketch is linear,
so all-reducing the per-rank updates equals one update with the global batch). On CUDA the sketch's
scatter-add is not bit-deterministic unless torch.use_deterministic_algorithms(True) is set.
"""
from __future__ import annotations

from typing import Any

import torch

from .._checks import check_positive_int, check_tensor
from .._sketch import NWSketch
from ._native import Distribution, SketchProposal
from ._nws_base import NWSBase, features_to_slots
from ._proportional import ProportionalSampler
from ._registry import register

__all__ = ["NWSSampler", "features_to_slots"]

_INT32_MAX = 2**31 - 1


@register("nws", inputs=("sketch", "slots"))
class NWSSampler(NWSBase):
    """Importance sampling by the Nadaraya-Watson sketch, drawn from the sketch's buckets (exact p, per-step cost
    independent of N).

    Args:
        sketch, slots, batch_size, mix, num_samples and the shared arguments: see `NWSBase`.
        refresh_every: recompute the bucket masses every k steps and draw the k batches from that cached
            distribution (4: frozen by the harness's development tuning, docs/TUNING.md).
    """

    option_checks = {**ProportionalSampler.option_checks, "refresh_every": check_positive_int}
    refused_options = {**NWSBase.refused_options,
                       "pool_size": "it draws from the sketch's buckets, nothing is scored (NWSFullSampler takes a pool)"}
    cost = ("O(L W / s) block sums + O(B (log W + L)) draw every refresh_every steps, independent of N; one sketch "
            "update of B * num_replicas items per step")

    def __init__(self, sketch: NWSketch, slots: torch.Tensor, batch_size: int, *, mix: float = 0.1,
                 refresh_every: int = 4, num_samples: int | None = None, **common: Any) -> None:
        super().__init__(sketch, slots, batch_size, mix=mix, num_samples=num_samples, **common)
        self.refresh_every = self.check_options(refresh_every=refresh_every)["refresh_every"]
        if slots.shape[0] > _INT32_MAX:
            raise ValueError(f"slots must have at most 2**31 - 1 rows (the item index is int32), got {slots.shape[0]}")
        self._dist: Distribution | None = None  # the cached distribution of the next draws
        self._set_slots(slots)

    def _index_slots(self, slots: torch.Tensor) -> None:
        self._native = SketchProposal(slots, self.sketch.width, self.global_batch_size)
        self._drop_cache()

    def move(self, indices: torch.Tensor, slots: torch.Tensor) -> None:
        """Give the items `indices` [k] new slots [k, L] (e.g. re-hashed from the model's current features of a
        batch), keeping everything the sketch has learned. Their feedback goes to the new buckets at once (also
        for the batch just drawn); the draw picks them from their new buckets from the next epoch on, when the
        per-row bucket index is rebuilt (one O(L N log N) sort per epoch, only in epochs after a move). Until
        then the draw and `probabilities` use the index in force, so p stays exact. The moved slots are saved
        in `state_dict`."""
        idx = self._checked_indices(indices)
        check_tensor("slots", slots, ndim=2, floating=False, size={0: idx.numel(), 1: self.sketch.depth})
        if slots.device != self.device:
            raise ValueError(f"slots is on {slots.device} but device is {self.device}; move it with slots.to(device)")
        self._check_slot_range(slots)
        if self.slots is self._native.slots:  # copy on the first move: the index keeps the slots it was built from
            self.slots = self.slots.clone()
        self.slots.index_copy_(0, idx, slots.to(self.slots.dtype))
        self._rekeyed = True
        if self._last is not None:  # the batch just drawn is fed back under its items' new slots
            self._last = (self._last[0], self._last[1], self.slots.index_select(0, self._last[0]))

    def _drop_cache(self) -> None:
        self._dist = None
        self._block: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # items, weights, slots
        self._cursor = 0  # batches of the block yielded so far
        self._last: tuple[torch.Tensor, int, torch.Tensor] | None = None  # last batch, its _version, its slots

    def _batch_slots(self, indices: torch.Tensor) -> torch.Tensor:
        last = self._last
        if last is not None and last[0] is indices and last[1] == indices._version:  # the batch just drawn
            return last[2]
        return super()._batch_slots(indices)

    def _absorb(self, batch_slots: torch.Tensor) -> None:
        self._native.defer(self.sketch, batch_slots)  # applied at the next refresh: the cached masses stay as drawn

    def update(self, indices: torch.Tensor, losses: torch.Tensor, *, reduce: Any = None) -> None:
        """Feed back per-sample losses (see `NWSBase.update`). Fed the very batch tensor just yielded (unmodified)
        with finite losses, it skips the bounds check and reuses the batch's slots: one scatter into the sketch."""
        last = self._last
        trusted = (reduce is None and last is not None and indices is last[0] and indices._version == last[1]
                   and isinstance(losses, torch.Tensor) and losses.shape == indices.shape
                   and losses.device == self.device and losses.is_floating_point())
        if trusted and bool(torch.isfinite(losses).all()):
            self._update(indices, losses.detach())
            return
        super().update(indices, losses, reduce=reduce)

    def _start_epoch(self, generator: torch.Generator) -> None:
        super()._start_epoch(generator)
        if self.slots is not self._native.slots:  # items moved during the last epoch: index them where they are now
            self._index_slots(self.slots)
        self._drop_cache()

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self._dist is None or self._step % self.refresh_every == 0:
            self._dist = self._native.distribution(self.sketch, self.mix)
            self._block = None
        if self._block is None:  # draw every batch this distribution serves, in one go
            batches = min(self.refresh_every - self._step % self.refresh_every, self.steps_per_epoch - self._step)
            items, p = self._native.draw(self._dist, self.global_batch_size * max(1, batches), generator)
            self._block, self._cursor = (items, 1.0 / (self.num_samples * p), self._native.last_draw[2]), 0
        g = self.global_batch_size
        part = slice(self._cursor * g, (self._cursor + 1) * g)
        items, weights, slots = (t[part] for t in self._block)
        if self.slots is not self._native.slots:  # items moved since the index was built: feed back where they are now
            slots = self.slots.index_select(0, items)
        self._cursor += 1
        if self._cursor * g >= self._block[0].numel():
            self._block = None
        self._last = (items, items._version, slots)
        return items, weights

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return the probability that the next single draw picks each sample (float [N], or at `indices`):
        exactly p(i) = mix/N + (1 - mix)/L sum_r mu_{r,b_r(i)}/Z_r, O(L) per item, under the cached distribution
        while it serves the epoch under way (refresh_every > 1), else the current one."""
        items = None if indices is None else self._checked_indices(indices)
        return self._native.probabilities(self._next_distribution(), items)

    def _next_distribution(self) -> Distribution:
        """The distribution the next draw uses: the cached one while it is live, else a fresh one."""
        live = (self._dist is not None and self._epoch_in_progress() and self._step % self.refresh_every != 0)
        return self._dist if live else self._native.distribution(self.sketch, self.mix)

    def memory_bytes(self) -> int:
        """Bytes held by the sampler's tensors: sketch tables, slots and the bucket index."""
        return super().memory_bytes() + self._native.memory_bytes()

    # The live bucket state is a function of the sketch's table (rebuilt on loading); a distribution cached
    # for refresh_every > 1 steps is not, so its bucket state is saved with it, and so are the batches it has
    # drawn for the steps still to come.
    def _extra_state(self) -> dict[str, Any]:
        cached = self.refresh_every > 1 and self._dist is not None
        native = self._native.state_dict(self._dist) if cached else None
        block = None
        if cached and self._block is not None:
            rest = slice(self._cursor * self.global_batch_size, None)
            block = {"items": self._block[0][rest].cpu().clone(), "weights": self._block[1][rest].cpu().clone()}
        moved = None if self.slots is self._native.slots else self._native.slots.cpu().clone()  # the index in force
        return {**super()._extra_state(), "native": native, "block": block, "indexed_slots": moved}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        if state.get("indexed_slots") is not None:  # moves pending: the draw keeps the index it had
            slots = self.slots
            self._set_slots(state["indexed_slots"].to(self.device, slots.dtype))
            self.slots = slots
        self._drop_cache()
        native = state.get("native")
        if native is not None:
            self._dist = self._native.load_state_dict(native, self.mix)
        block = state.get("block")
        if block is not None:  # older states have none: the rest of the block is drawn from the restored distribution
            items = block["items"].to(self.device)
            self._block = (items, block["weights"].to(self.device), self.slots.index_select(0, items))
