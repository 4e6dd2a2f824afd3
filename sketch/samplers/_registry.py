"""The one sampler registry: each sampler class registers itself where it is written, with the runtime inputs
its constructor needs.

    from sketch.samplers import FeedbackSampler, register, build_sampler, SAMPLERS

    @register("mine", inputs=("score_fn",))
    class MySampler(FeedbackSampler):
        option_checks = {"temperature": check_positive_float}     # what a config may set, each with its check
        def __init__(self, num_samples, batch_size, *, score_fn, temperature: float = 1.0, **common): ...

    sampler = build_sampler("history", num_samples=N, batch_size=512, mix=0.1, seed=0)

A class's *options* are the keyword arguments named in its `option_checks` (a config may set them; defaults
live in the constructor's signature). Its *inputs* are the other things its constructor takes besides the
shared arguments of `FeedbackSampler`: objects a training loop has, not settings. A harness supplies them by
input name (`INPUTS` below says what each one is), never by sampler name, so a sampler written outside this
package (`python -m bench.run plugins=[my_module] sampler=mine`) gets what it declares, like ours.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable, TypeVar

from .._shape import shape_defaults
from ._base import FeedbackSampler

__all__ = ["SAMPLERS", "INPUTS", "register", "build_sampler", "sketch_defaults"]

INPUTS: dict[str, str] = {
    "scores": "float [N]: one fixed score per item, known before training (e.g. a proxy model's losses)",
    "score_fn": "callable(indices) -> float [k]: the current model's per-sample losses of those items",
    "num_epochs": "int: the training budget in epochs",
    "sketch": "NWSketch: an empty sketch over the items' hash keys (its shape from the sampler's `sketch_defaults`)",
    "slots": "integer [N, L]: every item's sketch slots (`NWSketch.slots` of its hash key)",
    "labels": "[N]: the training labels",
}

SAMPLERS: dict[str, type[FeedbackSampler]] = {}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
S = TypeVar("S", bound=type)


def register(name: str, *, inputs: tuple[str, ...] = ()) -> Callable[[S], S]:
    """Class decorator: add the class to `SAMPLERS` under `name` (lower-case letters, digits, underscores) and
    record the runtime `inputs` its constructor takes (names from `INPUTS`) as `cls.inputs`."""
    if not isinstance(name, str) or not _NAME.match(name) or name == "all":
        raise ValueError(f"name must be lower-case letters, digits and underscores, starting with a letter, and not "
                         f"'all', got {name!r}")
    unknown = [i for i in inputs if i not in INPUTS]
    if unknown:
        raise ValueError(f"inputs must be names from sketch.samplers.INPUTS ({', '.join(INPUTS)}), got {unknown[0]!r}")

    def add(cls: S) -> S:
        if not (inspect.isclass(cls) and issubclass(cls, FeedbackSampler)):
            raise TypeError(f"register({name!r}) decorates a FeedbackSampler subclass, got {cls!r}")
        if name in SAMPLERS and SAMPLERS[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"sampler {name!r} is registered already, by {SAMPLERS[name].__module__}."
                             f"{SAMPLERS[name].__qualname__}")
        params = inspect.signature(cls.__init__).parameters
        missing = [i for i in inputs if i not in params]
        if missing:
            raise TypeError(f"{cls.__name__} declares input {missing[0]!r} but its constructor does not take it")
        cls.registry_name, cls.inputs = name, tuple(inputs)
        SAMPLERS[name] = cls
        return cls

    return add


def sketch_defaults(name: str) -> dict[str, Any]:
    """The sketch shape (family, depth, bits, width, bandwidth, decay) and key mode the sampler `name` is built with
    when none is given: the defaults in its `from_features` signature (the stream filter's are the lineage's), NWS's
    for what its signature does not name and for a sampler without a sketch."""
    nws = shape_defaults(SAMPLERS["nws"].from_features)
    cls = SAMPLERS[_known(name)]
    return {**nws, **(shape_defaults(cls.from_features) if hasattr(cls, "from_features") else {})}


def _known(name: Any) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"name must be one of {', '.join(SAMPLERS)}, got {name!r}")
    return name


def build_sampler(name: str, **kwargs: Any) -> FeedbackSampler:
    """Return the sampler registered as `name` built from `kwargs`; with `features` (and no `slots`), through its
    `from_features` (the sketch samplers: hash the features, then build)."""
    cls = SAMPLERS[_known(name)]
    if "features" in kwargs and hasattr(cls, "from_features"):
        return cls.from_features(**kwargs)
    return cls(**kwargs)
