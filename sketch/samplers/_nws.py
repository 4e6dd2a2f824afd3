"""The paper's sampler (arXiv 2311.13583): importance sampling by a Nadaraya-Watson sketch of the loss.

    sampler = NWSSampler.from_features(features, batch_size=512, depth=16, bits=12, width=4096, seed=0,
                                       proposal="sketch")
    for epoch in range(E):
        sampler.set_epoch(epoch)
        for idx in sampler:                      # LongTensor [512]
            loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
            (sampler.weights(idx) * loss).mean().backward(); opt.step(); opt.zero_grad()
            sampler.update(idx, loss.detach())  # inserts the batch's losses into the sketch

`features` [N, d] are what is hashed (inputs, or a fixed random embedding of them); `from_features` first
turns them into keys with `feature_keys` (centred by default: uncentred features put almost everything in
one or two SRP buckets and the sampler silently becomes uniform), optionally folds a group id per item
(e.g. its label) into the buckets, and computes the slots once (int32, [N, L]). Two proposals:

  proposal="full" (default): each refresh estimates the loss of every sample from the sketch, est_i = NW
      estimate clamped at >= 0, and samples with p = (1 - mix) est / sum(est) + mix / N (uniform while the
      sketch is empty); weights 1 / (N p). O(N L) per refresh; cheaper variants:
        - refresh_every=k: re-estimate every k steps and draw from the cached p in between;
        - pool_size=M: estimate only a uniform pool of M candidates per refresh and draw the batch from it,
          weights 1 / (M q); both keep the loss unbiased. They combine: a pool is then reused for k steps.
  proposal="sketch": draw straight from the sketch's buckets (a row uniformly, a bucket in proportion to its
      items times its estimate, an item uniformly inside it; mixed with uniform), with the exact p(i) in
      O(L) per drawn item: the cost per step does not depend on N (see `sketch.samplers._native`). Its p is
      a mixture of the rows' per-bucket estimates, not the ratio of summed sketch values that "full" uses.
        - refresh_every=1 (default): the bucket masses follow every update (O(B L) per update) and each
          step's distribution is rebuilt from them (O(L W) streaming sum);
        - refresh_every=k: the bucket masses are recomputed from the sketch every k steps (O(L W)) and the
          distribution is reused in between; p stays exact for what is drawn (it is the cached one's), the
          sketch keeps learning from every update, and the updates skip the O(B L) bookkeeping.
      pool_size does not apply (nothing is scored). Extra memory: one int32 permutation of the N items per
      row (the size of the int32 slots) plus a few arrays of L * W (`memory_bytes`).

With num_replicas > 1, call `update` on every rank with the all-gathered indices and losses (the sketch
must stay identical on all ranks), or, cheaper, with this rank's own indices and losses and `reduce=` a
function that sums the sketch update across ranks (`sketch.distributed` does this: the sketch is linear,
so all-reducing the per-rank updates equals one update with the global batch). Both proposals work either
way. On CUDA the sketch's scatter-add is not bit-deterministic unless torch.use_deterministic_algorithms(True)
is set.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .._checks import check_positive_int, check_tensor, one_of, renamed_keywords
from .._hashes import make_hash
from .._keys import KEY_MODES, feature_keys
from .._shape import shape_defaults
from .._sizing import suggest_bits
from .._sketch import NWSketch
from ._base import resolve_device
from ._native import Distribution, SketchProposal
from ._proportional import ProportionalSampler
from ._registry import register

__all__ = ["NWSSampler", "features_to_slots", "PROPOSALS"]

_INT32_MAX = 2**31 - 1
PROPOSALS = ("full", "sketch")


def features_to_slots(
    sketch: NWSketch,
    features: torch.Tensor,
    chunk_size: int = 65536,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the int32 slots [N, L] of `features` [N, d] (of `groups` [N], optional; see `NWSketch.slots`),
    moved to the sketch's device chunk by chunk."""
    check_tensor("features", features, ndim=2, floating=True)
    check_positive_int("chunk_size", chunk_size)
    if groups is not None:
        check_tensor("groups", groups, ndim=1, floating=False, size={0: features.shape[0]})
    if sketch.depth * sketch.width > _INT32_MAX:
        raise ValueError(f"depth * width must be < 2**31 to store slots as int32, got {sketch.depth * sketch.width}")
    out = torch.empty(features.shape[0], sketch.depth, dtype=torch.int32, device=sketch.device)
    for start in range(0, features.shape[0], chunk_size):  # a loop over chunks of rows, bounding memory
        chunk = features[start : start + chunk_size].to(sketch.device)
        group = None if groups is None else groups[start : start + chunk_size].to(sketch.device)
        out[start : start + chunk.shape[0]] = sketch.slots(chunk, group).to(torch.int32)
    return out


def check_sketch_and_slots(sketch: Any, slots: Any, num_samples: int | None) -> None:
    """Raise, naming the argument, unless `sketch` is an NWSketch and `slots` an integer [N, depth] tensor (with
    N = `num_samples` when that is given): the runtime inputs of the samplers built on a sketch."""
    if not isinstance(sketch, NWSketch):
        raise TypeError(f"sketch must be an NWSketch, got {type(sketch).__name__}")
    check_tensor("slots", slots, ndim=2, floating=False, size={1: sketch.depth})
    if num_samples is not None and num_samples != slots.shape[0]:
        raise ValueError(f"num_samples must equal slots.shape[0]={slots.shape[0]}, got {num_samples}")


@register("nws", inputs=("sketch", "slots"))
class NWSSampler(ProportionalSampler):
    """Importance sampling by the Nadaraya-Watson sketch's loss estimates.

    Args:
        sketch: an `NWSketch` on `device` (the sampler updates it in place).
        slots: int32/int64 [N, L] from `sketch.slots(features)` (or `features_to_slots`) on `device`;
            N = slots.shape[0].
        batch_size: indices per yielded batch (per rank).
        mix: uniform share alpha of p, in [0, 1] (every weight <= 1/alpha).
        proposal: "full" (estimate every item, or a pool, from the sketch and sample in proportion) or
            "sketch" (draw from the sketch's buckets; per-step cost independent of N; see the module docstring).
        pool_size: "full" only: None (estimate all N) or M in [1, N] (two-stage sampling from a uniform pool of M).
        refresh_every: re-estimate ("full") or recompute the bucket masses ("sketch") every k steps and reuse
            the cached distribution in between.
        num_samples: optional; must equal slots.shape[0].
        and the shared arguments of `FeedbackSampler`.
    """

    option_checks = {
        **ProportionalSampler.option_checks,
        **ProportionalSampler.proposal_checks,
        "proposal": one_of(*PROPOSALS),
    }
    cost = (
        'proposal="full": one sketch estimate (embedding_bag gather of L slots) of N items, or of pool_size items, '
        'every refresh_every steps + one multinomial draw; proposal="sketch": O(L W) streaming sum + '
        "O(B (log W + L)) draw, independent of N; both: one sketch update of B * num_replicas items"
    )

    def __init__(
        self,
        sketch: NWSketch,
        slots: torch.Tensor,
        batch_size: int,
        *,
        mix: float = 0.1,
        proposal: str = "full",
        pool_size: int | None = None,
        refresh_every: int = 1,
        num_samples: int | None = None,
        **common: Any,
    ) -> None:
        check_sketch_and_slots(sketch, slots, num_samples)
        super().__init__(slots.shape[0], batch_size, mix=mix, **common)
        self.proposal = self.check_options(proposal=proposal)["proposal"]
        self._configure_proposal(pool_size, refresh_every)
        if self.proposal == "sketch" and slots.shape[0] > _INT32_MAX:
            raise ValueError(f"slots must have at most 2**31 - 1 rows with proposal='sketch' (its item index is "
                             f"int32), got {slots.shape[0]}")
        if self.proposal == "sketch" and pool_size is not None:
            raise ValueError(f"pool_size must be None with proposal='sketch' (it draws from the sketch's buckets, "
                             f"not from a scored pool), got {pool_size}")
        if sketch.device != self.device:
            raise ValueError(f"sketch lives on {sketch.device} but device is {self.device}; move it with sketch.to(device)")
        if slots.device != self.device:
            raise ValueError(f"slots is on {slots.device} but device is {self.device}; move it with slots.to(device)")
        self.sketch = sketch
        self._rekeyed = False  # whether `rekey` replaced the slots given here (they are then part of the state)
        self._set_slots(slots)

    def _set_slots(self, slots: torch.Tensor) -> None:
        low, high = (int(v) for v in slots.aminmax())
        if low < 0 or high >= self.sketch.depth * self.sketch.width:
            raise ValueError(f"slots must lie in [0, depth * width = {self.sketch.depth * self.sketch.width}), got "
                             f"values in [{low}, {high}]; compute them with sketch.slots(features)")
        self.slots = slots
        self._native: SketchProposal | None = None
        self._dist: Distribution | None = None  # proposal="sketch": the cached distribution of the next draws
        if self.proposal == "sketch":
            self._native = SketchProposal(slots, self.sketch.width, self.global_batch_size)

    def rekey(self, slots: torch.Tensor, indices: torch.Tensor | None = None, values: torch.Tensor | None = None) -> None:
        """Give the items new slots (after their hash keys changed, e.g. re-hashed model features) and refill the
        sketch: it is emptied, then `values` [k] of the items `indices` [k] (e.g. each item's last observed loss;
        finite) are inserted under the new slots. Cached distributions are dropped. Call it between epochs; the new
        slots are then saved in `state_dict` (N * L int32), so a resumed run continues with them."""
        check_tensor("slots", slots, ndim=2, floating=False, size={0: self.num_samples, 1: self.sketch.depth})
        if slots.device != self.device:
            raise ValueError(f"slots is on {slots.device} but device is {self.device}; move it with slots.to(device)")
        self._set_slots(slots)
        self._rekeyed = True
        self._candidates, self._q = None, None
        self.sketch.reset()
        if indices is not None and values is not None and indices.numel() > 0:
            self.sketch.update_slots(slots.index_select(0, indices.to(self.device)), values.to(self.device))

    @classmethod
    @renamed_keywords(rows="depth")
    def from_features(
        cls,
        features: torch.Tensor,
        batch_size: int,
        *,
        family: str = "srp",
        depth: int = 8,
        bits: int = 10,
        width: int = 4096,
        bandwidth: float = 1.0,
        decay: float = 1.0,
        keys: str = "center",
        groups: torch.Tensor | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        chunk_size: int = 65536,
        **kwargs: Any,
    ) -> "NWSSampler":
        """Build the hash (`family` "srp" or "pstable"; `bandwidth` is used by "pstable"), the sketch and the
        int32 slots of `features` [N, d], then the sampler.

        keys: how `features` become hash keys (`feature_keys`): "center" (default) subtracts the column mean,
            "standardize" also scales columns to unit variance, "none" hashes the features as given.
        groups: optional integer [N] of non-negative group ids (e.g. class labels) folded into the buckets, so
            that the estimate of an item only pools items of its own group (`NWSketch.slots`).
        depth: rows L (`rows=` is accepted with a DeprecationWarning).
        bits: concatenated hashes per row; None (default): `suggest_bits(N)`, about 16 items per code, so that
            buckets do not all average thousands of items (which makes the estimate the global mean).
        width: buckets per row; None (default): 2**bits, one bucket per code (no aliasing for SRP).
        `seed` seeds both the hash and the sampler; the other keyword arguments (mix, proposal, pool_size,
        refresh_every, steps_per_epoch, ...) go to the sampler.
        """
        check_tensor("features", features, ndim=2, floating=True)
        one_of(*KEY_MODES)("keys", keys)
        dev = resolve_device(device)
        bits = suggest_bits(features.shape[0]) if bits is None else bits
        width = 2 ** min(bits, 24) if width is None else width
        hash_ = make_hash(family, features.shape[1], depth, bits, bandwidth, seed=seed, device=dev)
        sketch = NWSketch(hash_, width=width, decay=decay)
        slots = features_to_slots(sketch, feature_keys(features, keys), chunk_size, groups)
        return cls(sketch, slots, batch_size, seed=seed, device=dev, **kwargs)

    @classmethod
    def sketch_defaults(cls) -> dict[str, Any]:
        """The sketch `from_features` builds when nothing is given (the harness's `sketch` group reads these)."""
        return shape_defaults(cls.from_features)

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
        last = None if self._native is None else self._native.last_draw
        if last is not None and last[0] is indices and last[1] == indices._version:  # the batch just drawn
            batch_slots = last[2]
        else:
            batch_slots = self.slots.index_select(0, indices)  # index_select: 2-3x faster than [] on the CPU
        self.sketch._insert(batch_slots, losses)  # checked: slots validated at construction, losses finite
        if self._native is not None and self.refresh_every == 1:  # k > 1: the cached masses must stay as drawn
            self._native.absorb(self.sketch, batch_slots)

    def _start_epoch(self, generator: torch.Generator) -> None:
        super()._start_epoch(generator)
        self._dist = None

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self._native is None:
            return super()._draw(generator)
        if self._dist is None or self._step % self.refresh_every == 0:
            self._dist = self._native.distribution(self.sketch, self.mix)
        items, p = self._native.draw(self._dist, self.global_batch_size, generator)
        return items, 1.0 / (self.num_samples * p)

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return the probability that the next single draw picks each sample (float [N], or at `indices`).

        proposal="sketch": exactly p(i) = mix/N + (1 - mix)/L sum_r mu_{r,b_r(i)}/Z_r, O(L) per item, under the
            cached distribution while it serves the epoch under way (refresh_every > 1), else the current one.
        proposal="full": as `ProportionalSampler.probabilities` (with a pool: the pool-free q it approximates).
        """
        if self._native is None:
            return super().probabilities(indices)
        items = None if indices is None else self._checked_indices(indices)
        return self._native.probabilities(self._next_distribution(), items)

    def _next_distribution(self) -> Distribution:
        """The distribution the next draw uses: the cached one while it is live, else a fresh one."""
        live = (self._dist is not None and self._epoch_in_progress() and self._step % self.refresh_every != 0)
        return self._dist if live else self._native.distribution(self.sketch, self.mix)

    def memory_bytes(self) -> int:
        """Bytes held by the sampler's tensors: sketch tables, slots and (proposal="sketch") the bucket index."""
        native = 0 if self._native is None else self._native.memory_bytes()
        return self.sketch.memory_bytes() + self.slots.numel() * self.slots.element_size() + native

    # The live bucket state is a function of the sketch's table (rebuilt on loading); a distribution cached
    # for refresh_every > 1 steps is not, so its bucket state is saved with it.
    def _extra_state(self) -> dict[str, Any]:
        cached = self._native is not None and self.refresh_every > 1 and self._dist is not None
        native = self._native.state_dict(self._dist) if cached else None
        slots = self.slots.cpu().clone() if self._rekeyed else None
        return {**super()._extra_state(), "sketch": self.sketch.state_dict(), "native": native, "slots": slots}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.sketch.load_state_dict(state["sketch"])  # raw table and decay factor: bit-identical
        if state.get("slots") is not None:  # re-keyed before the checkpoint
            self._set_slots(state["slots"].to(self.device, self.slots.dtype))
            self._rekeyed = True
        native = state.get("native")
        self._dist = None
        if native is not None and self._native is not None:
            self._dist = self._native.load_state_dict(native, self.mix)
