"""The "full" NWS estimator: estimate every item's loss from the Nadaraya-Watson sketch (or only a uniform pool
of candidates) and draw the batch in proportion to the estimates. Registry name "nws_full".

    sampler = NWSFullSampler.from_features(features, batch_size=512, labels=Y, seed=0, refresh_every=4)

Each refresh estimates est_i = NW estimate (sum of row sums / sum of row counts) clamped at >= 0 and samples
with p = (1 - mix) est / sum(est) + mix / N (uniform while the sketch is empty); weights 1 / (N p). O(N L) per
refresh; cheaper variants (`ProportionalSampler`):
  - refresh_every=k: re-estimate every k steps and draw from the cached p in between;
  - pool_size=M: estimate only a uniform pool of M candidates per refresh and draw the batch from it,
    weights 1 / (M q); both keep the loss unbiased. They combine: a pool is then reused for k steps.
The sketch, slots, feedback (`reduce=` for data parallel), `rekey` and `from_features` (the one set of NWS
defaults) are `NWSBase`'s, shared with `NWSSampler`, the sketch-native draw.
"""
from __future__ import annotations

from typing import Any

import torch

from .._sketch import NWSketch
from ._nws_base import NWSBase
from ._proportional import ProportionalSampler
from ._registry import register

__all__ = ["NWSFullSampler"]


@register("nws_full", inputs=("sketch", "slots"))
class NWSFullSampler(NWSBase):
    """Importance sampling in proportion to the sketch's loss estimate of every item (or of a uniform pool).

    Args:
        sketch, slots, batch_size, mix, num_samples and the shared arguments: see `NWSBase`.
        pool_size: None (estimate all N) or M in [1, N] (two-stage sampling from a uniform pool of M).
        refresh_every: re-estimate every k steps and reuse the cached distribution in between.
    """

    option_checks = {**ProportionalSampler.option_checks, **ProportionalSampler.proposal_checks}
    cost = ("one sketch estimate (embedding_bag gather of L slots) of N items, or of pool_size items, every "
            "refresh_every steps + one multinomial draw; one sketch update of B * num_replicas items")

    def __init__(self, sketch: NWSketch, slots: torch.Tensor, batch_size: int, *, mix: float = 0.1,
                 pool_size: int | None = None, refresh_every: int = 1, num_samples: int | None = None,
                 **common: Any) -> None:
        super().__init__(sketch, slots, batch_size, mix=mix, num_samples=num_samples, **common)
        self._configure_proposal(pool_size, refresh_every)
        self._set_slots(slots)

    def _scores(self, candidates: torch.Tensor | None) -> torch.Tensor:
        slots = self.slots if candidates is None else self.slots.index_select(0, candidates)
        return self.sketch.estimate_slots(slots).clamp_min(0.0)
