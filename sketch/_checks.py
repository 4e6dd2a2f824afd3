"""Argument checks shared by the sketch package: one-line errors that name the argument.

Every public constructor and method of `sketch` validates what it is given with these helpers, so that
bad input fails at once with a `ValueError`/`TypeError` naming the argument, the value and what is allowed.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Mapping, TypeVar

import torch

__all__ = [
    "Check",
    "check_options",
    "optional",
    "one_of",
    "check_positive_int",
    "check_positive_float",
    "check_fraction",
    "check_tensor",
    "check_finite",
    "check_same_device",
    "renamed_keywords",
]


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return `value` as an int if it is an integer >= `minimum`, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number > 0, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_fraction(name: str, value: Any, *, low_open: bool = False, high_open: bool = False) -> float:
    """Return `value` as a float if it lies in [0, 1] (ends optionally open), else raise naming `name`."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    allowed = f"a number in {lo}0, 1{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = (not math.isfinite(v)) or v < 0 or v > 1 or (low_open and v == 0) or (high_open and v == 1)
    if bad:
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return v


def check_tensor(name: str, value: Any, *, ndim: int, floating: bool | None = None, size: dict[int, int] | None = None) -> torch.Tensor:
    """Return `value` if it is a tensor of `ndim` dims (and float/integer dtype, and sizes), else raise."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must have an integer dtype, got {value.dtype}")
    for dim, expected in (size or {}).items():
        if value.shape[dim] != expected:
            raise ValueError(f"{name} must have size {expected} in dimension {dim}, got shape {tuple(value.shape)}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return `value` if every entry is finite, else raise naming `name` and the count of bad entries."""
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        raise ValueError(f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf); only finite values are allowed")
    return value


def check_same_device(name: str, value: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return `value` if it lives on `device`, else raise naming `name` and both devices."""
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but the sketch lives on {device}; move it with .to({str(device)!r})")
    return value


Check = Callable[[str, Any], Any]  # (name, value) -> the value, normalized; raises naming `name`


def optional(check: Check) -> Check:
    """Return a check that lets None through and applies `check` to anything else."""

    def checked(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return checked


def one_of(*choices: Any) -> Check:
    """Return a check that accepts exactly one of `choices`."""

    def checked(name: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    return checked


def check_options(checks: Mapping[str, Check], options: Mapping[str, Any]) -> dict[str, Any]:
    """Return `options` with each value passed through its check in `checks` (names without a check pass
    unchanged); the first bad value raises the check's ValueError/TypeError, which names the option."""
    return {name: checks[name](name, value) if name in checks else value for name, value in options.items()}


Fn = TypeVar("Fn", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[Fn], Fn]:
    """Return a decorator that still accepts each deprecated keyword `old` of `renames` (old -> new name): it is
    passed on as `new` with a DeprecationWarning; giving both raises TypeError. The signature shown by
    `inspect.signature` (and `help`) is the wrapped function's, with the new names only."""

    def decorate(fn: Fn) -> Fn:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{old} is the deprecated name of {new}: pass {new} only, got both")
                    warnings.warn(f"{old}= is deprecated, {new}= replaced it (same meaning): pass {new}={kwargs[old]!r}",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
