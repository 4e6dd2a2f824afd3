"""Sampler registry: build a sampler from its name and keyword arguments (what a Hydra config holds).

    from sketch.samplers import build_sampler, SAMPLERS
    sampler = build_sampler("history", num_samples=N, batch_size=512, mix=0.1, seed=0)
    sampler = build_sampler("nws", features=X, batch_size=512, depth=16, bits=4, width=1024)

"nws" with a `features` argument goes through `NWSSampler.from_features`; with `sketch` and `slots` it
calls the constructor. Every other name calls its class with the keyword arguments as given.
"""
from __future__ import annotations

from typing import Any

from ._base import FeedbackSampler
from ._history import HistorySampler
from ._infobatch import InfoBatchSampler
from ._loss import LossSampler
from ._nws import NWSSampler
from ._selective_backprop import SelectiveBackpropSampler
from ._static import StaticSampler
from ._stream_filter import StreamFilterSampler
from ._uniform import UniformSampler

__all__ = ["SAMPLERS", "build_sampler"]

SAMPLERS: dict[str, type[FeedbackSampler]] = {
    "uniform": UniformSampler,
    "static": StaticSampler,
    "loss": LossSampler,
    "history": HistorySampler,
    "infobatch": InfoBatchSampler,
    "nws": NWSSampler,
    "stream_filter": StreamFilterSampler,
    "selective_backprop": SelectiveBackpropSampler,
}


def build_sampler(name: str, **kwargs: Any) -> FeedbackSampler:
    """Return `SAMPLERS[name](**kwargs)` (for "nws" with `features`: `NWSSampler.from_features(**kwargs)`)."""
    if name not in SAMPLERS:
        raise ValueError(f"name must be one of {sorted(SAMPLERS)}, got {name!r}")
    cls = SAMPLERS[name]
    if cls is NWSSampler and "features" in kwargs:
        return NWSSampler.from_features(**kwargs)
    return cls(**kwargs)
