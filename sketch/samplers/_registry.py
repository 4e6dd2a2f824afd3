"""Sampler registry: build a sampler from its name and keyword arguments (what a Hydra config holds).

    from sketch.samplers import build_sampler, SAMPLERS
    sampler = build_sampler("history", num_samples=N, batch_size=512, mix=0.1, seed=0)
    sampler = build_sampler("nws", features=X, batch_size=512, depth=16, bits=4, width=1024)

"nws" and "nws_full" with a `features` argument go through `from_features`; with `sketch` and `slots` it
calls the constructor. Every other name calls its class with the keyword arguments as given.
"""
from __future__ import annotations

from typing import Any

from ._base import FeedbackSampler
from ._history import HistorySampler
from ._infobatch import InfoBatchSampler
from ._loss import LossSampler
from ._nws import NWSSampler
from ._nws_base import NWSBase
from ._nws_full import NWSFullSampler
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
    "nws_full": NWSFullSampler,
    "stream_filter": StreamFilterSampler,
    "selective_backprop": SelectiveBackpropSampler,
}


def build_sampler(name: str, **kwargs: Any) -> FeedbackSampler:
    """Return `SAMPLERS[name](**kwargs)` (for "nws"/"nws_full" with `features`: the class's `from_features(**kwargs)`)."""
    if name not in SAMPLERS:
        raise ValueError(f"name must be one of {sorted(SAMPLERS)}, got {name!r}")
    cls = SAMPLERS[name]
    if issubclass(cls, NWSBase) and "features" in kwargs:
        return cls.from_features(**kwargs)
    return cls(**kwargs)
