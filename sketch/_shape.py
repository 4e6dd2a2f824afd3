"""The options that shape a sketch (hash family, rows, bits per row, buckets per row, bandwidth, decay), each with
the one check that decides its allowed values: the hash and sketch constructors apply these checks, and a
harness validates a whole sweep of settings with `check_sketch_options` before building anything.

    check_sketch_options(family="srp", depth=8, bits=10, width=4096)   # -> the options, normalized; or raises
    shape_defaults(NWSSampler.from_features)                          # -> {"family": "srp", "depth": ..., ...}
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

from ._checks import Check, check_fraction, check_options, check_positive_float, check_positive_int, one_of

__all__ = ["SHAPE_CHECKS", "SRP_MAX_BITS", "check_sketch_options", "shape_defaults"]

SRP_MAX_BITS = 62  # sign bits of one SRP row are packed into an int64 code

SHAPE_CHECKS: Mapping[str, Check] = {
    "family": one_of("srp", "pstable"),
    "depth": check_positive_int,
    "bits": check_positive_int,
    "width": check_positive_int,
    "bandwidth": check_positive_float,
    "decay": functools.partial(check_fraction, low_open=True),
}


def check_sketch_options(**options: Any) -> dict[str, Any]:
    """Return `options` checked by `SHAPE_CHECKS` (other names pass unchanged), plus the one rule between two of
    them: an SRP row holds at most `SRP_MAX_BITS` bits. The first bad value raises, naming it."""
    checked = check_options(SHAPE_CHECKS, options)
    if checked.get("family", "srp") == "srp" and checked.get("bits", 1) > SRP_MAX_BITS:
        raise ValueError(f"bits must be an integer in [1, {SRP_MAX_BITS}] for family 'srp', got {checked['bits']}")
    return checked


def shape_defaults(builder: Callable[..., Any]) -> dict[str, Any]:
    """The defaults of the shape options (and `keys`) in `builder`'s signature: where a sampler keeps its sketch's."""
    params = inspect.signature(builder).parameters
    return {name: params[name].default for name in (*SHAPE_CHECKS, "keys") if name in params}
