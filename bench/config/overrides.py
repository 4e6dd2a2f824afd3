"""Command-line overrides and their sweeps, parsed once with Hydra's own override parser.

    from bench.config.overrides import parse, sweep_axes, job_variants, sweep_size
    axes = sweep_axes(["sampler=uniform,nws", "seed=0,1,2"])      # {"sampler": ["uniform", "nws"], "seed": [...]}
    sweep_size(["sampler=uniform,nws", "seed=0,1,2"])              # 6 jobs
    job_variants(["sampler=uniform,nws", "seed=0,1"])              # override lists that together hold every value

Used by the command-line check (`bench.config.cli`) and the sweep progress line (`bench.results.callbacks`), so both read a
sweep the way Hydra's basic sweeper does: value lists `a,b,c`, `choice(...)` and `range(...)`.
"""
from __future__ import annotations

import math
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

__all__ = ["parse", "sweep_axes", "job_variants", "sweep_size", "NotEnumerable"]


class NotEnumerable(HydraException):
    """A sweep the basic sweeper cannot list (an interval or a glob): for a sweeper plugin to expand."""

    def __init__(self, override: str) -> None:
        super().__init__(f"{override}: an interval or glob sweep, for a sweeper plugin to expand")
        self.override = override


def parse(overrides: list[str]) -> list[Any]:
    """Return Hydra's parsed overrides (raises hydra's OverrideParseException on a syntax error)."""
    return OverridesParser.create().parse_overrides(list(overrides))


def sweep_axes(overrides: list[str]) -> dict[str, list[str]]:
    """Return {key: its values as override strings} for each sweep among `overrides` (a later one wins)."""
    axes: dict[str, list[str]] = {}
    for o in parse(overrides):
        if o.is_sweep_override():
            try:
                axes[o.get_key_element()] = list(o.sweep_string_iterator())
            except HydraException:  # intervals and globs
                raise NotEnumerable(o.input_line) from None
    return axes


def job_variants(overrides: list[str]) -> list[list[str]]:
    """Return override lists that, together, give every sweep value once: the first job, then that job with
    one axis moved to each of its other values. Plain overrides are kept as they are."""
    parsed = parse(overrides)
    axes = sweep_axes(overrides)
    first = [f"{o.get_key_element()}={axes[o.get_key_element()][0]}" if o.is_sweep_override() else line
             for o, line in zip(parsed, overrides)]
    variants = [first]
    for i, o in enumerate(parsed):
        if o.is_sweep_override():
            key = o.get_key_element()
            variants += [first[:i] + [f"{key}={v}"] + first[i + 1:] for v in axes[key][1:]]
    return variants


def sweep_size(overrides: list[str]) -> int:
    """Return the number of jobs `overrides` expand to (the product of the sweep axes' lengths; 1 for none)."""
    try:
        return max(1, math.prod(len(v) for v in sweep_axes(overrides).values()))
    except HydraException:  # a syntax error (NotEnumerable is one): Hydra reports it; the count is 1
        return 1
