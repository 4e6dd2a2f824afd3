"""The stream filter that the Nadaraya-Watson sketch's lineage actually ran (the prototype behind arXiv
2311.13583): one pass over a shuffled stream, a sketch of the early losses, and a keep-or-thin decision
per item with Horvitz-Thompson weights. It belongs on imbalanced data with many easy negatives.

    sampler = StreamFilterSampler.from_features(features, batch_size=512, labels=Y, q=0.1)  # the lineage's sketch
    # or, with a sketch of your own: StreamFilterSampler(sketch, sketch.slots(features), 512, labels=Y, q=0.1)
    for idx in sampler:                          # LongTensor [512]: items that passed the filter
        loss = F.binary_cross_entropy_with_logits(model(X[idx]), Y[idx].float(), reduction="none")
        (sampler.weights(idx) * loss).mean().backward(); opt.step(); opt.zero_grad()
        sampler.update(idx, loss.detach())       # inserted into the sketch during the warm-up only

The stream: random permutations of [0, N) from the local generator, one per pass, continued as needed.
  - Warm-up: the first `warmup` stream items (capped at N: at most one pass) are all kept with weight 1,
    and the losses `update` reports for them are inserted into the sketch (feedback for other items is
    ignored unless `keep_learning`). The warm-up is learned state, like the sketch: it spans epochs if
    needed and is not repeated when an epoch is iterated again.
  - Then each item is kept with weight 1 if its class is in `keep_classes` or its sketch estimate is
    >= tau; otherwise it is kept with probability q and weight 1/q. So E[keep * weight] = 1 for every
    item, and the sum of weight * loss over the kept items is unbiased for the loss sum over the stream.
  - tau: `threshold` if given; else the `tau_quantile` quantile ("lower": an actual estimate) of the
    current estimates of the items not always kept (the sketch's answer for every item: one O(N * L)
    pass). It is computed when the warm-up ends, from the losses received by then, and recomputed at the
    start of any later epoch in which the sketch changed: every epoch with `keep_learning`; without it at
    most once, to take in the last warm-up losses, which arrive after the warm-up's last draw. An empty
    sketch gives every item the same estimate, so everything is kept. The lineage hand-set tau.
  - Kept items are re-batched: each step walks the stream in vectorised chunks until a global batch has
    been kept; surplus kept items carry over to the next step (they are discarded at the end of an
    epoch). Batches have the requested size and an epoch has a fixed number of steps, so an epoch covers
    about N / kept_fraction stream items, not N.

Sketch defaults: the lineage's own, stated in `from_features`'s signature (p-stable L2 hash, 100 rows, 1 hash
per row, 10,000 buckets, bandwidth 1), not NWSSampler's tuned ones.

Weights: `(weights * loss).mean()` over a batch is the lineage's loss; it estimates the mean loss divided
by the kept fraction (a constant scale that Adam ignores; multiply by `kept_fraction` to remove it).
Counters: `examined` stream items, `kept` items that passed the filter, `kept_fraction`.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch

from .._checks import check_fraction, check_positive_int, check_tensor, optional
from .._sketch import NWSketch
from ._base import FeedbackSampler, resolve_device
from ._nws_base import check_sketch_and_slots, sketch_of_features
from ._permutation import PermutationStream
from ._registry import register

__all__ = ["StreamFilterSampler", "probabilities_at"]

_MAX_CHUNK = 1 << 22  # stream items examined per vectorised chunk, at most (bounds memory)


def check_bool(name: str, value: Any) -> bool:
    """Return `value` if it is a bool, else raise naming `name`."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_number(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite real number, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def check_classes(name: str, value: Any) -> list[int]:
    """Return `value` as a sorted list of distinct ints if it is a sequence of integers, else raise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of integer class ids, got {value!r} ({type(value).__name__})")
    if any(isinstance(c, bool) or not isinstance(c, int) for c in value):
        raise TypeError(f"{name} must be a list of integer class ids, got {list(value)!r}")
    return sorted(set(value))


def probabilities_at(p: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
    """Return `p` [N] itself (indices None) or `p[indices]` after checking `indices` (1-D, integer, in range)."""
    if indices is None:
        return p
    check_tensor("indices", indices, ndim=1, floating=False)
    idx = indices.to(p.device, torch.long)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= p.numel()):
        low, high = int(idx.min()), int(idx.max())
        raise ValueError(f"indices must lie in [0, num_samples={p.numel()}), got values in [{low}, {high}]")
    return p[idx]


@register("stream_filter", inputs=("sketch", "slots", "labels"))
class StreamFilterSampler(FeedbackSampler):
    """One-pass stream filter by sketch-estimated loss, with Horvitz-Thompson weights (see the module doc).

    Args:
        sketch: an `NWSketch` on `device`; the sampler inserts losses into it in place.
        slots: int [N, L] from `sketch.slots(features)` on `device` (L = sketch.depth); N = slots.shape[0].
        batch_size: kept items per yielded batch (per rank).
        labels: Tensor [N] of class ids (or 0/1 targets) of the training items, for `keep_classes`;
            None: no class is always kept.
        warmup: stream items kept unconditionally while their losses fill the sketch; capped at N.
        q: probability in (0, 1] of keeping an item below tau (its weight is 1/q).
        tau_quantile: in [0, 1], the quantile of the estimates that sets tau (0 keeps everything).
        threshold: a fixed tau instead of the quantile (None: use tau_quantile).
        keep_classes: class ids always kept with weight 1. None: the positive class 1 when the labels are
            binary (all 0 or 1), else none; [] keeps no class.
        keep_learning: False (the lineage): after the warm-up the sketch is only queried; True: the losses
            of every `update` are inserted and tau follows them epoch by epoch.
        num_samples: optional; must equal slots.shape[0].
        and the shared arguments of `FeedbackSampler`.
    """

    option_checks = {
        "warmup": functools.partial(check_positive_int, minimum=0),
        "q": functools.partial(check_fraction, low_open=True),
        "tau_quantile": check_fraction,
        "threshold": optional(check_number),
        "keep_classes": optional(check_classes),
        "keep_learning": check_bool,
    }
    cost = (
        "about B * num_replicas / kept_fraction stream items examined per step: a sketch estimate (gather of "
        "L slots) and a uniform draw each, one host sync per chunk; an O(N * L) estimate and a k-th value "
        "for tau when the warm-up ends (and per epoch while the sketch changes)"
    )

    def __init__(
        self,
        sketch: NWSketch,
        slots: torch.Tensor,
        batch_size: int,
        *,
        labels: torch.Tensor | None = None,
        warmup: int = 10_000,
        q: float = 0.1,
        tau_quantile: float = 0.7,
        threshold: float | None = None,
        keep_classes: list[int] | None = None,
        keep_learning: bool = False,
        num_samples: int | None = None,
        **common: Any,
    ) -> None:
        check_sketch_and_slots(sketch, slots, num_samples)
        super().__init__(slots.shape[0], batch_size, **common)
        o = self.check_options(warmup=warmup, q=q, tau_quantile=tau_quantile, threshold=threshold,
                               keep_classes=keep_classes, keep_learning=keep_learning)
        self.warmup = min(o["warmup"], self.num_samples)
        self.q, self.tau_quantile, self.threshold = o["q"], o["tau_quantile"], o["threshold"]
        self.keep_learning = o["keep_learning"]
        self.sketch, self.slots = sketch, self._checked_slots(sketch, slots)
        self.keep_classes, self._always = self._always_kept(labels, o["keep_classes"])
        self.tau: float | None = None  # the current threshold; None until the warm-up ends
        self.examined = 0  # stream items examined
        self.kept = 0  # items that passed the filter (warm-up included)
        self._warmed = 0  # warm-up stream items drawn so far
        self._pending = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)  # warm-up losses due
        self._awaiting = False  # whether _pending may hold True
        self._changed = False  # sketch updated since tau was computed
        self._rate = self.q  # expected kept fraction under tau: sizes the chunks
        self._stream: PermutationStream | None = None
        self._buffer = (self._empty_long(), self._empty_float())  # kept items carried to the next step

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor,
        batch_size: int,
        *,
        labels: torch.Tensor | None = None,
        family: str = "pstable",
        depth: int = 100,
        bits: int = 1,
        width: int = 10_000,
        bandwidth: float = 1.0,
        keys: str = "center",
        seed: int = 0,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> "StreamFilterSampler":
        """Build the lineage's sketch over `features` [N, d] (its defaults: p-stable L2 hash, 100 rows, 1 hash per
        row, 10,000 buckets, bandwidth 1, centred keys), then the filter (`labels` for `keep_classes`; the other
        keyword arguments go to the constructor). No decay: the lineage's sketch kept every warm-up loss."""
        dev = resolve_device(device)
        sketch, slots = sketch_of_features(features, family=family, depth=depth, bits=bits, width=width,
                                           bandwidth=bandwidth, decay=1.0, keys=keys, groups=None, seed=seed, device=dev)
        return cls(sketch, slots, batch_size, labels=labels, seed=seed, device=dev, **kwargs)

    # -- construction helpers ---------------------------------------------------------------------
    def _checked_slots(self, sketch: NWSketch, slots: torch.Tensor) -> torch.Tensor:
        for name, where in (("sketch", sketch.device), ("slots", slots.device)):
            if where != self.device:
                raise ValueError(f"{name} lives on {where} but device is {self.device}; move it with .to(device)")
        low, high = (int(v) for v in slots.aminmax())
        size = sketch.depth * sketch.width
        if low < 0 or high >= size:
            raise ValueError(f"slots must lie in [0, depth * width = {size}), got values in [{low}, {high}]; "
                             f"compute them with sketch.slots(features)")
        return slots

    def _always_kept(self, labels: torch.Tensor | None, classes: list[int] | None) -> tuple[list[int], torch.Tensor]:
        """Resolve `keep_classes` against the labels; return it and the bool [N] mask of always-kept items."""
        if labels is None:
            if classes:
                raise ValueError(f"keep_classes must be None or [] when labels is None, got {classes}")
            return [], torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
        check_tensor("labels", labels, ndim=1, size={0: self.num_samples})
        labels = labels.to(self.device)
        if classes is None:
            binary = bool(((labels == 0) | (labels == 1)).all())
            classes = [1] if binary else []
        wanted = torch.tensor(classes, dtype=labels.dtype, device=self.device)
        return classes, torch.isin(labels, wanted)

    def _empty_long(self) -> torch.Tensor:
        return torch.empty(0, dtype=torch.long, device=self.device)

    def _empty_float(self) -> torch.Tensor:
        return torch.empty(0, dtype=torch.float32, device=self.device)

    # -- counters ---------------------------------------------------------------------------------
    @property
    def kept_fraction(self) -> float:
        """Fraction of the examined stream items that passed the filter (1.0 before any)."""
        return self.kept / self.examined if self.examined else 1.0

    @property
    def warmup_remaining(self) -> int:
        """Stream items still to be drawn before the filter starts."""
        return self.warmup - self._warmed

    # -- the filter -------------------------------------------------------------------------------
    def estimates(self) -> torch.Tensor:
        """Return the sketch's current loss estimates of all N items (float [N])."""
        return self.sketch.estimate_slots(self.slots)

    def _sure(self, idx: torch.Tensor | None, tau: float) -> torch.Tensor:
        """Bool mask of the items `idx` (None: all N) kept for sure under `tau`: always-kept or estimate >= tau."""
        slots = self.slots if idx is None else self.slots.index_select(0, idx)
        always = self._always if idx is None else self._always[idx]
        return always | (self.sketch.estimate_slots(slots) >= tau)

    def _keep_prob(self, sure: torch.Tensor) -> torch.Tensor:
        return torch.where(sure, 1.0, self.q).float()

    def _threshold(self) -> float:
        """tau from the current sketch (`threshold`, or the quantile of the not-always-kept items' estimates)."""
        if self.threshold is not None:
            return self.threshold
        pool = self.estimates()[~self._always]
        if pool.numel() == 0:
            return math.inf
        k = math.floor(self.tau_quantile * (pool.numel() - 1) + 1e-9)  # "lower" quantile: an actual estimate
        return float(torch.kthvalue(pool.float(), k + 1).values)

    def _set_threshold(self) -> None:
        self.tau = self._threshold()
        self._rate = float(self._keep_prob(self._sure(None, self.tau)).mean())
        self._changed = False

    def _current_tau(self) -> float | None:
        """The tau the next post-warm-up draw uses (computed without storing it), or None in the warm-up."""
        if self.tau is not None:
            return self.tau
        return self._threshold() if self.warmup_remaining == 0 else None

    def keep_probabilities(self) -> torch.Tensor:
        """Return the probability (float [N]) that each item is kept when the stream reaches it now: 1 in the
        warm-up; after it, 1 for the always-kept classes and estimates >= tau, q for the others."""
        tau = self._current_tau()
        if tau is None:
            return torch.ones(self.num_samples, device=self.device)
        return self._keep_prob(self._sure(None, tau))

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return the probability (float [N], or at `indices`) that one draw of the next batch picks each item:
        keep_probabilities() / its sum (uniform in the warm-up). Approximate in that it ignores the surplus
        already carried over and the without-replacement order of the stream."""
        keep = self.keep_probabilities()
        return probabilities_at(keep / keep.sum(), indices)

    # -- iteration --------------------------------------------------------------------------------
    def _start_epoch(self, generator: torch.Generator) -> None:
        self._stream = PermutationStream(None, self.num_samples, generator)
        self._buffer = (self._empty_long(), self._empty_float())
        if self.tau is not None and self._changed:
            self._set_threshold()

    def _chunk_size(self, needed: int) -> int:
        """Stream items to examine next so that about `needed` are kept (surplus carries over)."""
        warm = min(needed, self.warmup_remaining)
        filtered = math.ceil(1.25 * (needed - warm) / self._rate)
        return warm + min(filtered, max(needed - warm, _MAX_CHUNK))

    def _examine(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Walk `count` stream items; return the kept ones and their weights."""
        idx = self._stream.take(count, generator)
        warm = min(count, self.warmup_remaining)
        kept_idx, kept_w = [idx[:warm]], [torch.ones(warm, device=self.device)]
        if warm:
            self._pending[idx[:warm]] = True
            self._awaiting, self._warmed = True, self._warmed + warm
        rest = idx[warm:]
        if rest.numel():  # _draw has set tau
            sure = self._sure(rest, self.tau)
            keep = sure | (torch.rand(rest.numel(), generator=generator, device=self.device) < self.q)
            kept_idx.append(rest[keep])  # one host sync: the number kept
            kept_w.append(torch.where(sure[keep], 1.0, 1.0 / self.q).float())
        kept_idx, kept_w = torch.cat(kept_idx), torch.cat(kept_w)
        self.examined, self.kept = self.examined + count, self.kept + kept_idx.numel()
        return kept_idx, kept_w

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.global_batch_size
        idx, w = self._buffer
        while idx.numel() < g:  # a loop over chunks (usually one or two per step), not over items
            needed = g - idx.numel()
            if self.tau is None and needed > self.warmup_remaining:
                self._set_threshold()  # the warm-up ends in this chunk
            more_idx, more_w = self._examine(self._chunk_size(needed), generator)
            idx, w = torch.cat([idx, more_idx]), torch.cat([w, more_w])
        self._buffer = (idx[g:], w[g:])
        return idx[:g], w[:g]

    # -- feedback ---------------------------------------------------------------------------------
    def _update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        if not self.keep_learning:
            if not self._awaiting:
                return
            due = self._pending[indices]
            indices, losses = _first_occurrences(indices[due], losses[due])
            self._pending[indices] = False
            self._awaiting = bool(self._pending.any())  # O(N), only while warm-up losses are due
            if indices.numel() == 0:
                return
        self.sketch.update_slots(self.slots.index_select(0, indices), losses)
        self._changed = True

    # -- checkpoints ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        cpu = lambda t: t.detach().cpu().clone()  # noqa: E731
        return {
            "sketch": self.sketch.state_dict(),
            "stream": None if self._stream is None else self._stream.state_dict(),
            "buffer": tuple(cpu(t) for t in self._buffer),
            "pending": cpu(self._pending),
            "tau": self.tau,
            "rate": self._rate,
            "changed": self._changed,
            "warmed": self._warmed,
            "examined": self.examined,
            "kept": self.kept,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.sketch.load_state_dict(state["sketch"])
        s = state["stream"]
        self._stream = None if s is None else PermutationStream.from_state_dict(s, self.device)
        self._buffer = tuple(t.to(self.device) for t in state["buffer"])
        self._pending = state["pending"].to(self.device)
        self._awaiting = bool(self._pending.any())
        self.tau, self._rate, self._changed = state["tau"], state["rate"], state["changed"]
        self._warmed, self.examined, self.kept = state["warmed"], state["examined"], state["kept"]

    def __repr__(self) -> str:
        tau = "threshold" if self.threshold is not None else f"quantile {self.tau_quantile}"
        return (
            f"{super().__repr__()[:-1]}, warmup={self.warmup}, q={self.q}, tau={self.tau} ({tau}), "
            f"keep_classes={self.keep_classes}, keep_learning={self.keep_learning}, "
            f"examined={self.examined}, kept_fraction={self.kept_fraction:.3f})"
        )


def _first_occurrences(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the first of repeated indices (and its value), so no item is inserted twice from one update."""
    if indices.numel() < 2:
        return indices, values
    order = torch.argsort(indices, stable=True)
    ranked = indices[order]
    first = torch.ones_like(ranked, dtype=torch.bool)
    first[1:] = ranked[1:] != ranked[:-1]
    chosen = order[first]
    return indices[chosen], values[chosen]
