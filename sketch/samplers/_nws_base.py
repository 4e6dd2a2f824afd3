"""What both NWS samplers share: a Nadaraya-Watson sketch, the int32 slots of the N training items, the
feedback that updates the sketch (`reduce=` for data parallel), `rekey` / `move` of items to new slots,
`from_features` with the one set of NWS defaults, and checkpoints of the sketch and the slots.

The two samplers on top of it differ only in how a batch is drawn from the sketch:
  `NWSSampler` (sketch.samplers._nws): straight from the sketch's buckets, exact p, cost independent of N
      (the tuned default of the benchmark harness);
  `NWSFullSampler` (sketch.samplers._nws_full): estimate every item (or a uniform pool) and draw in
      proportion to the estimates.

The defaults of `from_features` (8 rows, 10 sign bits, 4096 buckets per row, centred keys, one set of buckets
per class when classification `labels` are given) are the ones frozen by the harness's development tuning
(docs/TUNING.md); the harness builds exactly this from its `sketch` group.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Optional

import torch

from .._checks import check_positive_int, check_tensor, one_of, renamed_keywords
from .._hashes import make_hash
from .._keys import KEY_MODES, feature_keys
from .._sketch import NWSketch
from ._base import resolve_device
from ._proportional import ProportionalSampler

__all__ = ["NWSBase", "features_to_slots", "check_sketch_and_slots", "class_groups", "sketch_of_features"]

_INT32_MAX = 2**31 - 1

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


def sketch_of_features(features: torch.Tensor, *, family: str, depth: int, bits: int, width: int, bandwidth: float,
                       decay: float, keys: str, groups: torch.Tensor | None, seed: int, device: torch.device,
                       chunk_size: int = 65536) -> tuple[NWSketch, torch.Tensor]:
    """Return an empty sketch of the given shape (hash seeded by `seed`) and the int32 slots [N, L] of the keys
    `feature_keys(features, keys)` (of `groups`, optional): what every sketch sampler's `from_features` builds."""
    check_tensor("features", features, ndim=2, floating=True)
    one_of(*KEY_MODES)("keys", keys)
    hash_ = make_hash(family, features.shape[1], depth, bits, bandwidth, seed=seed, device=device)
    sketch = NWSketch(hash_, width=width, decay=decay)
    return sketch, features_to_slots(sketch, feature_keys(features, keys), chunk_size, groups)


def check_sketch_and_slots(sketch: Any, slots: Any, num_samples: int | None) -> None:
    """Raise, naming the argument, unless `sketch` is an NWSketch and `slots` an integer [N, depth] tensor (with
    N = `num_samples` when that is given): the runtime inputs of the samplers built on a sketch."""
    if not isinstance(sketch, NWSketch):
        raise TypeError(f"sketch must be an NWSketch, got {type(sketch).__name__}")
    check_tensor("slots", slots, ndim=2, floating=False, size={1: sketch.depth})
    if num_samples is not None and num_samples != slots.shape[0]:
        raise ValueError(f"num_samples must equal slots.shape[0]={slots.shape[0]}, got {num_samples}")


def class_groups(labels: torch.Tensor | None, num_samples: int) -> torch.Tensor | None:
    """The per-class bucket groups of `labels` [N]: the labels themselves when they are class ids (an integer or
    bool tensor), None when there are no labels or they are float (regression targets make no buckets)."""
    if labels is None:
        return None
    check_tensor("labels", labels, ndim=1, size={0: num_samples})
    if labels.is_floating_point() or labels.is_complex():
        return None
    return labels.long()


class NWSBase(ProportionalSampler):
    """Shared base of `NWSSampler` and `NWSFullSampler`: a sketch, slots, feedback into the sketch, re-keying
    and checkpoints. Subclasses say how a batch is drawn (`_draw`, `probabilities`) and may keep an index of
    the slots (`_index_slots`) and follow the sketch's updates (`_absorb`).

    Args:
        sketch: an `NWSketch` on `device` (the sampler updates it in place).
        slots: int32/int64 [N, L] from `sketch.slots(features)` (or `features_to_slots`) on `device`;
            N = slots.shape[0].
        batch_size: indices per yielded batch (per rank).
        mix: uniform share alpha of p, in [0, 1] (every weight <= 1/alpha).
        num_samples: optional; must equal slots.shape[0].
        and the shared arguments of `FeedbackSampler`.
    """

    # options that other NWS versions took, with what to do instead (a one-line error naming them)
    refused_options: ClassVar[Mapping[str, str]] = {
        "proposal": "NWSSampler draws from the sketch's buckets, NWSFullSampler (registry name 'nws_full') "
                    "estimates every item",
    }

    def __init__(self, sketch: NWSketch, slots: torch.Tensor, batch_size: int, *, mix: float = 0.1,
                 num_samples: int | None = None, **common: Any) -> None:
        for name in set(common) & set(self.refused_options):
            raise ValueError(f"{name} is not an option of {type(self).__name__} (got {common[name]!r}): "
                             f"{self.refused_options[name]}")
        check_sketch_and_slots(sketch, slots, num_samples)
        super().__init__(slots.shape[0], batch_size, mix=mix, **common)
        if sketch.device != self.device:
            raise ValueError(f"sketch lives on {sketch.device} but device is {self.device}; move it with sketch.to(device)")
        if slots.device != self.device:
            raise ValueError(f"slots is on {slots.device} but device is {self.device}; move it with slots.to(device)")
        self.sketch = sketch
        self._rekeyed = False  # whether `rekey`/`move` replaced the slots given here (they are then part of the state)

    def _set_slots(self, slots: torch.Tensor) -> None:
        self._check_slot_range(slots)
        self.slots = slots
        self._index_slots(slots)

    def _check_slot_range(self, slots: torch.Tensor) -> None:
        if slots.numel() == 0:
            return
        low, high = (int(v) for v in slots.aminmax())
        if low < 0 or high >= self.sketch.depth * self.sketch.width:
            raise ValueError(f"slots must lie in [0, depth * width = {self.sketch.depth * self.sketch.width}), got "
                             f"values in [{low}, {high}]; compute them with sketch.slots(features)")

    def _index_slots(self, slots: torch.Tensor) -> None:
        """Hook: (re)build whatever the draw keeps about the slots (called whenever they change)."""

    def _absorb(self, batch_slots: torch.Tensor) -> None:
        """Hook: follow the sampler's own sketch update of `batch_slots` (called after every insert)."""

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
        self._drop_cache()
        self.sketch.reset()
        if indices is not None and values is not None and indices.numel() > 0:
            self.sketch.update_slots(slots.index_select(0, indices.to(self.device)), values.to(self.device))

    def _drop_cache(self) -> None:
        """Hook: forget any cached distribution (the slots or the sketch changed wholesale)."""

    @classmethod
    @renamed_keywords(rows="depth")
    def from_features(
        cls,
        features: torch.Tensor,
        batch_size: int,
        *,
        labels: torch.Tensor | None = None,
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
    ) -> "NWSBase":
        """Build the hash (`family` "srp" or "pstable"; `bandwidth` is used by "pstable"), the sketch and the
        int32 slots of `features` [N, d], then the sampler. The defaults are the harness's frozen, tuned ones
        (docs/TUNING.md): `python -m bench.run sampler=nws` builds exactly `NWSSampler.from_features(X, B,
        labels=Y, seed=seed)` for a classification dataset with inputs X and labels Y.

        labels: optional [N] class ids (integer or bool; e.g. the training labels): one set of buckets per class,
            so that an item's estimate pools only items of its own class (the tuned default of the harness).
            Float labels (a regression target) make no buckets. Ignored when `groups` is given.
        groups: optional integer [N] of non-negative group ids folded into the buckets (`NWSketch.slots`), for
            groupings other than the class.
        keys: how `features` become hash keys (`feature_keys`): "center" (default) subtracts the column mean,
            "standardize" also scales columns to unit variance, "none" hashes the features as given.
        depth: rows L (`rows=` is accepted with a DeprecationWarning). bits: concatenated hashes per row (see
            `suggest_bits` for a size from N instead). width: buckets per row (SRP: 2**bits <= width maps codes
            to buckets one to one). The sampler's cost per step does not depend on N at these fixed sizes.
        `seed` seeds both the hash and the sampler; the other keyword arguments (mix, refresh_every,
        steps_per_epoch, ... and NWSFullSampler's pool_size) go to the sampler.
        """
        dev = resolve_device(device)
        if groups is None:
            groups = class_groups(labels, features.shape[0])
        sketch, slots = sketch_of_features(features, family=family, depth=depth, bits=bits, width=width,
                                           bandwidth=bandwidth, decay=decay, keys=keys, groups=groups, seed=seed,
                                           device=dev, chunk_size=chunk_size)
        return cls(sketch, slots, batch_size, seed=seed, device=dev, **kwargs)

    def estimates(self) -> torch.Tensor:
        """Return the sketch's current loss estimates of all N samples (float [N], clamped at >= 0)."""
        return self.sketch.estimate_slots(self.slots).clamp_min(0.0)

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

    def _batch_slots(self, indices: torch.Tensor) -> torch.Tensor:
        """The slots of `indices` (subclasses may reuse those of the batch they just drew)."""
        return self.slots.index_select(0, indices)  # index_select: 2-3x faster than [] on the CPU

    def _update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        batch_slots = self._batch_slots(indices)
        self.sketch._insert(batch_slots, losses)  # checked: slots validated at construction, losses finite
        self._absorb(batch_slots)

    def memory_bytes(self) -> int:
        """Bytes held by the sampler's tensors: sketch tables and slots (subclasses add their own)."""
        return self.sketch.memory_bytes() + self.slots.numel() * self.slots.element_size()

    def _extra_state(self) -> dict[str, Any]:
        slots = self.slots.cpu().clone() if self._rekeyed else None
        return {**super()._extra_state(), "sketch": self.sketch.state_dict(), "slots": slots}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self.sketch.load_state_dict(state["sketch"])  # raw table and decay factor: bit-identical
        if state.get("slots") is not None:  # re-keyed before the checkpoint
            self._set_slots(state["slots"].to(self.device, self.slots.dtype))
            self._rekeyed = True
